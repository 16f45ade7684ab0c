"""Worker processes: each worker thread of the server hands its decode-and-score job to a process of its own.

Detection is mostly Python and torch glue, and threads of one process take turns at the interpreter lock: two
requests running side by side in one process leave a fifth of two cores idle (bench/serve_load.py). In processes
of their own, the workers run truly in parallel and the server process keeps only HTTP. Each process loads the
served model itself (``preload``, before the model is swapped in, so /readyz stays 503 until every worker can
answer) and keeps the last two models it served, so requests that started on the previous model finish on it.

A worker process that dies (a decoder crash on a hostile file) is replaced; its request's images are retried
one by one in the new process, and an image that kills a process again gets a 422 of its own. Worker processes
never outlive the server: shutdown stops them, and each exits by itself when its server is gone (SIGKILL).
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import threading
import time
from collections import OrderedDict
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from liveness.bundle import Prediction
    from liveness.serve.limits import ServeError, Upload
    from liveness.serve.model import LoadedModel

log = logging.getLogger("liveness.serve")
KEPT_MODELS = 2  # per worker process: the served model and the one before it (requests still running on it)
PARENT_POLL_S = 1.0  # how often a worker process checks that its server still runs
STOP_TIMEOUT_S = 10.0  # at shutdown, how long a worker may take to finish before it is killed
START_TIMEOUT_S = 300.0  # a worker process's start and model load (imports torch: seconds, not minutes)

ModelKey = tuple[str, str, str]  # (bundle folder, revision, backend)
_predictors: "OrderedDict[ModelKey, object]" = OrderedDict()  # in a worker process only


def _start(threads: int) -> None:
    """Worker process initializer: its torch threads, the heavy imports done before the first request, and a
    watch on the server process, so that a worker never outlives it (even a server killed with SIGKILL)."""
    import os

    import torch

    import liveness.bundle  # noqa: F401 - torch, torchvision, facenet-pytorch, OpenCV

    torch.set_num_threads(threads)
    server = os.getppid()
    threading.Thread(target=_exit_with, args=(server,), name="liveness-server-watch", daemon=True).start()


def _exit_with(server: int, every_s: float = PARENT_POLL_S) -> None:
    import os
    import time

    while os.getppid() == server:
        time.sleep(every_s)
    os._exit(0)  # the server is gone: nobody can ask this process for anything


def _predictor(key: ModelKey):
    from liveness.serve.model import predictor_factory

    if key not in _predictors:
        folder, _, backend = key
        _predictors[key] = predictor_factory(backend)(Path(folder))
        while len(_predictors) > KEPT_MODELS:
            _predictors.popitem(last=False)
    _predictors.move_to_end(key)
    return _predictors[key]


def _preload(key: ModelKey) -> str:
    """In a worker process: load the model (if it is not already); returns what it was trained on."""
    return _predictor(key).trained_on


def _decode_and_predict(key: ModelKey, images: list["Upload"], max_pixels: int, threads: int,
                        ) -> tuple[list["Prediction | ServeError"], list[tuple[str, float]]]:
    """In a worker process: ``work.decode_and_predict`` on this process's copy of the model; also returns the
    phases the predictor timed, for the server's metrics."""
    import torch

    from liveness.serve.work import decode_and_predict

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    predictor = _predictor(key)
    phases: list[tuple[str, float]] = []
    predictor.phase_observer = lambda phase, seconds: phases.append((phase, seconds))
    try:
        return decode_and_predict(_Served(predictor), images, max_pixels), phases
    finally:
        predictor.phase_observer = None


class _Served:
    """What ``decode_and_predict`` needs of a LoadedModel: its predictor."""

    def __init__(self, predictor) -> None:
        self.predictor = predictor


def model_key(model: "LoadedModel", backend: str) -> ModelKey:
    if model.folder is None:
        raise ValueError(f"model {model.name} has no bundle folder to load in a worker process")
    return str(model.folder), model.revision, backend


class ProcessWorkers:
    """``count`` single-process pools, one per worker thread (a thread keeps the pool it first used)."""

    def __init__(self, count: int, threads: int, backend: str,
                 observe_phase: Callable[[str, float], None] | None = None, job: Callable | None = None) -> None:
        self.count, self.threads, self.backend, self._observe = count, threads, backend, observe_phase
        self._job = job or _decode_and_predict  # a module-level function (pickled by name); tests pass their own
        self._context = multiprocessing.get_context("spawn")  # never fork a process that runs torch threads
        self._lock = threading.Lock()
        self._pools = [self._new_pool() for _ in range(count)]
        self._assigned = threading.local()
        self._next = itertools.count()
        self.restarts = 0

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(1, mp_context=self._context, initializer=_start, initargs=(self.threads,))

    def _slot(self) -> int:
        if not hasattr(self._assigned, "slot"):
            self._assigned.slot = next(self._next) % self.count
        return self._assigned.slot

    def _restart(self, slot: int, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pools[slot] is broken:
                broken.shutdown(wait=False, cancel_futures=True)
                self._pools[slot] = self._new_pool()
                self.restarts += 1
                log.warning("worker process %d died; started a new one", slot)

    def preload(self, model: "LoadedModel", timeout_s: float = START_TIMEOUT_S) -> None:
        """Load ``model`` in every worker process (starting them if need be); raises if one cannot."""
        key = model_key(model, self.backend)
        loads = [self._submit(slot, _preload, key) for slot in range(self.count)]  # they start side by side
        for slot, load in enumerate(loads):
            try:
                load.result(timeout_s)
            except BrokenProcessPool:
                self._restart(slot, self._pools[slot])
                self._pools[slot].submit(_preload, key).result(timeout_s)

    def decode_and_predict(self, model: "LoadedModel", images: list["Upload"], max_pixels: int, threads: int,
                           ) -> list["Prediction | ServeError"]:
        """``work.decode_and_predict`` in this thread's worker process; one image that kills the process costs
        only its own answer (a 422)."""
        from liveness.serve.limits import ServeError

        key, slot = model_key(model, self.backend), self._slot()
        try:
            return self._run(slot, key, images, max_pixels, threads)
        except BrokenProcessPool:
            pass
        if len(images) == 1:
            return [_crashed(images[0])]
        outcomes: list[Prediction | ServeError] = []
        for image in images:  # find the image at fault: each alone, in a fresh process when one dies
            try:
                outcomes.extend(self._run(slot, key, [image], max_pixels, threads))
            except BrokenProcessPool:
                outcomes.append(_crashed(image))
        return outcomes

    def _submit(self, slot: int, function: Callable, *args):
        """``function(*args)`` in the slot's process; a process that died while idle is replaced first (not the
        fault of these images)."""
        try:
            return self._pools[slot].submit(function, *args)
        except BrokenProcessPool:
            self._restart(slot, self._pools[slot])
            return self._pools[slot].submit(function, *args)

    def _run(self, slot: int, key: ModelKey, images, max_pixels: int, threads: int):
        future = self._submit(slot, self._job, key, images, max_pixels, threads)
        pool = self._pools[slot]
        try:
            outcomes, phases = future.result()
        except BrokenProcessPool:  # it died on these images
            self._restart(slot, pool)
            raise
        if self._observe is not None:
            for phase, seconds in phases:
                self._observe(phase, seconds)
        return outcomes

    def shutdown(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop every worker process: queued jobs are cancelled, a running one gets ``timeout_s`` to finish."""
        processes = [process for pool in self._pools for process in list(getattr(pool, "_processes", {}).values())]
        for pool in self._pools:
            pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + timeout_s
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(5)


def _crashed(image: "Upload") -> "ServeError":
    from liveness.serve.limits import ServeError

    log.error("a worker process died while processing %s", image.filename)
    return ServeError(422, "processing_failed", f"{image.filename}: processing this image stopped its worker process; "
                                                "report it with the file")
