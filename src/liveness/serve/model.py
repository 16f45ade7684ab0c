"""The served model, its reloads and the worker threads that run it.

A background thread loads the model (so /healthz answers at once and /readyz says 503 until it is ready), then
checks the source's revision every ``poll_s`` seconds (an alias that moved) and whenever ``request_reload`` is
called (SIGHUP). A new model is loaded beside the old one and swapped in under a lock; requests already running
finish on the model they started with. A failed load or check keeps the current model serving.
``InferenceExecutor`` is the bounded worker pool: it times each job and gives each worker its share of the cores.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from liveness.bundle import Predictor, synthetic_warning
from liveness.registry.resolve import ModelSource
from liveness.serve.metrics import ServeMetrics

log = logging.getLogger("liveness.serve")
RETRY_S = 5.0  # until the first model loads, retry this often even when polling is off

PredictorFactory = Callable[[Path], Predictor]


def predictor_factory(backend: str = "torch") -> PredictorFactory:
    """``Predictor(folder)``, passing ``backend`` only when it is not the default (older Predictors lack it)."""
    if backend == "torch":
        return Predictor
    if "backend" not in inspect.signature(Predictor).parameters:
        raise ValueError(f"backend {backend!r} is not available: this Predictor has no backend option; use torch")
    return lambda folder: Predictor(folder, backend=backend)


@dataclass(frozen=True)
class LoadedModel:
    predictor: Predictor
    name: str
    version: str
    uri: str
    revision: str
    loaded_at: float
    download: Path | None  # the folder we downloaded into and delete when this model is replaced
    trained_on: str  # the bundle's data, "synthetic" or "real"; every answer repeats it
    folder: Path | None = None  # the bundle folder the predictor was loaded from (worker processes load it too)

    def info(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "uri": self.uri}


class ModelHolder:
    def __init__(self, source: ModelSource, metrics: ServeMetrics, *, poll_s: float = 0.0,
                 factory: PredictorFactory = Predictor, retry_s: float = RETRY_S,
                 before_swap: Callable[[LoadedModel], None] | None = None) -> None:
        self.source, self.metrics, self.poll_s, self.retry_s = source, metrics, poll_s, retry_s
        self._factory = factory
        self.before_swap = before_swap  # e.g. ProcessWorkers.preload; raising keeps the current model
        self._swap = threading.Lock()  # guards _current
        self._reloading = threading.Lock()  # one load at a time
        self._current: LoadedModel | None = None
        self._wake, self._stop, self._ready = threading.Event(), threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None
        self._workdir: Path | None = None
        self._downloads = itertools.count()
        self.last_error: str | None = None
        self.reloads = 0

    @property
    def current(self) -> LoadedModel | None:
        with self._swap:
            return self._current

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    def start(self) -> None:
        self._workdir = Path(tempfile.mkdtemp(prefix="liveness-serve-"))
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="liveness-model-loader", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def request_reload(self) -> None:
        """Reload now, even when the revision looks unchanged (SIGHUP)."""
        self._wake.set()

    def reload(self, force: bool = False) -> bool:
        """Load the source's current revision when it differs from the served one (or ``force``); True if swapped."""
        with self._reloading:
            revision = self.source.revision()
            current = self.current
            if current is not None and not force and current.revision == revision:
                return False
            download = self._new_download_dir()
            try:
                folder = self.source.fetch(revision, download)
                predictor = self._factory(folder)
                if hasattr(predictor, "phase_observer"):
                    predictor.phase_observer = self.metrics.observe_phase
                loaded = LoadedModel(predictor, self.source.name, self.source.version(revision), self.source.uri,
                                     revision, time.time(), download, predictor.trained_on, Path(folder))
                if self.before_swap is not None:
                    self.before_swap(loaded)
            except BaseException:
                shutil.rmtree(download, ignore_errors=True)
                raise
            with self._swap:
                previous, self._current = self._current, loaded
            self.reloads += 1
            self.last_error = None
            self.metrics.reloads.labels("success").inc()
            self.metrics.served(loaded.name, loaded.version, None if previous is None else (previous.name, previous.version))
            self._ready.set()
            if previous is not None and previous.download is not None:
                shutil.rmtree(previous.download, ignore_errors=True)
            log.info("serving %s version %s (revision %s, trained on %s data)", loaded.name, loaded.version, revision,
                     loaded.trained_on)
            if loaded.trained_on == "synthetic":
                log.warning("%s", synthetic_warning(loaded.name, loaded.version))
            return True

    def _new_download_dir(self) -> Path:
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="liveness-serve-"))
        folder = self._workdir / str(next(self._downloads))
        folder.mkdir(parents=True)
        return folder

    def _run(self) -> None:
        force = False
        while not self._stop.is_set():
            try:
                self.reload(force=force)
            except Exception as error:  # noqa: BLE001 - keep serving the current model; say why on /readyz
                self.last_error = f"{type(error).__name__}: {error}"
                self.metrics.reloads.labels("failure").inc()
                log.warning("model load from %s failed: %s", self.source.uri, self.last_error)
            wait = self.poll_s or None
            if self.current is None:
                wait = min(wait or self.retry_s, self.retry_s)
            force = self._wake.wait(wait)
            self._wake.clear()


def torch_threads_per_worker(setting: int, workers: int, cores: int | None = None) -> int:
    """Intra-op threads for each of ``workers`` threads: ``setting`` when positive, else the cores shared out
    (at least 1 each), so that requests running side by side never ask for more threads than there are cores."""
    if setting > 0:
        return setting
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // workers)


class InferenceExecutor(ThreadPoolExecutor):
    """The bounded pool that decodes and scores. Each job records its wait for a thread (phase ``queue``) and its
    run (``work``) in the metrics, and runs torch with the served model's ``detection.torch_threads``
    (``torch_threads_per_worker``). torch's thread count belongs to the calling thread, so each worker sets its
    own, before the job, whenever the served model asks for another count."""

    def __init__(self, workers: int, holder: ModelHolder, metrics: ServeMetrics) -> None:
        super().__init__(workers, thread_name_prefix="liveness-infer")
        self._pool_size, self._holder, self._metrics = workers, holder, metrics

    def submit(self, fn, /, *args, **kwargs) -> Future:
        queued = time.perf_counter()
        threads = self.torch_threads()

        def job():
            started = time.perf_counter()
            self._metrics.observe_phase("queue", started - queued)
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
            try:
                return fn(*args, **kwargs)
            finally:
                self._metrics.observe_phase("work", time.perf_counter() - started)

        return super().submit(job)

    def torch_threads(self) -> int:
        """torch threads per worker for the served model (``torch_threads_per_worker``)."""
        try:
            setting = self._holder.current.predictor.config.detection.torch_threads
        except AttributeError:  # no model yet, or a stand-in predictor without a bundle config (tests)
            setting = 0
        return torch_threads_per_worker(setting, self._pool_size)
