"""Load test of the REST service: N concurrent clients for T seconds on loopback, one JSON line on stdout.

Each client posts a real face photo (``skimage.data.astronaut()``, 512x512, encoded as JPEG) to
``POST /v1/liveness`` over its own keep-alive connection, back to back, until the time is up; requests still
running then are waited for and counted. An error is any answer other than 200, or a failed connection.

Without ``--url`` and ``--model`` the script compares detection: it starts three ``liveness serve`` processes
on free loopback ports, each serving a RANDOM-WEIGHT tiny bundle (profile tiny, 32 px; its scores mean nothing,
only its speed does, and the JSON says so in ``model_note``). ``old`` has the detection settings before issue 11
(min_face_size 20, max_side 640, the full search, torch's default threads per worker) on today's
``FaceDetector``; ``former`` is the old settings on the detector as it was before issue 11
(``FormerFaceDetector``: facenet-pytorch's ``MTCNN.detect``), i.e. the server as it was. Both run their workers
as threads in the server process, as the server did then. ``new`` is ``liveness serve`` with today's defaults:
DetectionParams' defaults (the coarse-first search) and a worker process per worker thread. The clients load one
server at a time, in ``--rounds`` slices whose order reverses every round (former old new, new old former, ...)
so that other work on the machine weighs on all alike; each configuration gets ``--seconds`` in all.

The JSON gives each configuration's figures, the requests/s ratio new / old, and where the request time went
(``phase_share``, from the servers' ``liveness_phase_duration_seconds`` metric): queue (waiting for a worker
thread), decode (worker time outside predict's detect and score: decoding the upload, and with worker processes
handing it over and the answer back), detect
(MTCNN, face policy, aligned crop), score (the network) and http (reading, parsing and answering);
``work_share`` splits the worker threads' time alone into decode, detect and score; ``server_cpu_ms_per_request``
and ``client_cpu_ms_per_request`` (from /proc) say what a request costs the machine, and
``cpu_bound_requests_per_s`` the rate all cores could sustain at that cost (a server's CPU time includes its
worker processes). ``ratio_requests_per_s`` is new / old (what today's detection settings and worker processes
gain), ``ratio_to_former`` new / former (the whole change).

With ``--model`` one started server serves that model; with ``--url`` the script loads a running server.

Target: 32 clients for 60 s with 0 errors; new at least 4x former requests/s with p99 at most 1.5 s. Examples::

    .venv/bin/python bench/serve_load.py                                   # former, old, new: 32 clients, 60 s each
    .venv/bin/python bench/serve_load.py --seconds 10 --rounds 2           # a quicker comparison
    .venv/bin/python bench/serve_load.py --model 'models:/liveness@champion' --clients 8 --seconds 20
    .venv/bin/python bench/serve_load.py --url http://127.0.0.1:8000 --clients 4 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

TARGET = {"clients": 32, "seconds": 60, "errors": 0, "min_ratio": 4.0, "max_p99_ms": 1500.0}
OLD_DETECTION = {"min_face_size": 20, "max_side": 640, "search": "full"}  # before issue 11; torch_threads below
FORMER_SERVE = ("import sys; sys.path.insert(0, {bench!r}); import serve_load; serve_load.serve_former()")
PHASE_METRIC = "liveness_phase_duration_seconds"
REQUEST_METRIC = "liveness_http_request_duration_seconds"
ROUTE = "/v1/liveness"
RANDOM_MODEL_NOTE = ("RANDOM-WEIGHT tiny bundle (profile tiny, 32 px) built for this benchmark in a temporary "
                     "folder: throughput and latency only, its scores and labels mean nothing")
QUIET_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
             "DVC_NO_ANALYTICS": "1", "DO_NOT_TRACK": "1"}


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def face_jpeg(quality: int = 90) -> bytes:
    from PIL import Image
    from skimage.data import astronaut

    buffer = io.BytesIO()
    Image.fromarray(astronaut()).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def detection_configs() -> dict[str, dict]:
    """The compared ``detection`` settings: old (before issue 11) and new (DetectionParams' defaults)."""
    import torch

    from liveness.config import DetectionParams

    new = DetectionParams(device="cpu")
    old = new.model_copy(update={**OLD_DETECTION, "torch_threads": torch.get_num_threads()}).model_dump(mode="json")
    return {"former": old, "old": old, "new": new.model_dump(mode="json")}


class FormerFaceDetector:
    """``FaceDetector`` as it was before issue 11, for the ``former`` server: facenet-pytorch's ``MTCNN.detect``
    (NCHW networks, torch area resampling from the full copy) on a copy at most ``max_side`` long."""

    def __init__(self, device: str = "cpu", min_face_size: int = 20, max_side: int = 640,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7), search: str = "full",
                 dominance: float = 2.0) -> None:
        from facenet_pytorch import MTCNN

        del search, dominance  # Predictor passes them; the former detector always searched every level

        self.device, self.max_side = device, max_side
        self._mtcnn = MTCNN(keep_all=True, device=device, min_face_size=min_face_size, thresholds=list(thresholds),
                            post_process=False, select_largest=False)

    def detect_batch(self, images: list[np.ndarray]) -> list:
        import cv2

        from liveness.data.faces import DetectionFailed, _faces

        found = []
        for image in images:
            factor = min(1.0, self.max_side / max(image.shape[:2]))
            copy = image if factor == 1.0 else cv2.resize(
                image, (round(image.shape[1] * factor), round(image.shape[0] * factor)), interpolation=cv2.INTER_AREA)
            try:
                boxes, probs, points = self._mtcnn.detect(np.ascontiguousarray(copy), landmarks=True)
                found.append(_faces(boxes, probs, points, 1.0 / factor))
            except Exception as error:  # noqa: BLE001 - as the detector now does: this image only
                found.append(DetectionFailed(f"face detection failed ({type(error).__name__}: {error})"))
        return found


def serve_former() -> None:
    """``liveness serve`` (arguments from the command line) with ``FormerFaceDetector`` in the Predictor."""
    import liveness.bundle.predictor as predictor
    from liveness.cli import app

    predictor.FaceDetector = FormerFaceDetector
    app()


def random_tiny_bundle(folder: Path, detection: dict | None = None) -> Path:
    """generator.pt with random weights (seed 0) and a config.json, as registration would write them."""
    import torch

    from liveness.config import CropParams, DetectionParams, ModelParams
    from liveness.model.factory import build_generator
    from liveness.bundle import BundleConfig, write_config

    tiny = ModelParams(profile="tiny", image_size=32)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(build_generator(tiny.width_profile()).state_dict(), folder / "generator.pt")
    write_config(folder, BundleConfig(tiny, CropParams(size=32), DetectionParams(**(detection or {"device": "cpu"})),
                                      0.5, "latent_bg", "synthetic"))
    return folder


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(model: str, port: int, log_path: Path, extra: list[str], former: bool = False,
                 threads: bool = False) -> subprocess.Popen:
    launcher = ["-c", FORMER_SERVE.format(bench=str(Path(__file__).resolve().parent))] if former else ["-m", "liveness"]
    # former and old run their workers as threads, as the server did before issue 11 (and the former detector
    # is patched into the server process only); new runs with the defaults, in worker processes
    kind = ["--worker-kind", "thread"] if threads else []
    command = [sys.executable, *launcher, "serve", "--model", model, "--host", "127.0.0.1", "--port", str(port),
               "--poll-s", "0", "--log-level", "warning", *kind, *extra]
    say(f"starting: {' '.join(command)}")
    log = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ | QUIET_ENV)


def wait_ready(url: str, server: subprocess.Popen | None, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=5) as client:
        while time.monotonic() < deadline:
            if server is not None and server.poll() is not None:
                raise RuntimeError(f"the server exited with code {server.returncode} before it was ready")
            try:
                answer = client.get(f"{url}/readyz")
                if answer.status_code == 200:
                    return answer.json()
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
    raise RuntimeError(f"{url}/readyz was not 200 within {timeout_s:g} s")


@dataclass
class Sample:
    """What the clients saw during one or more load slices against one server."""

    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    labels: Counter = field(default_factory=Counter)
    elapsed_s: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # server-side seconds summed over the slices
    server_cpu_s: float = 0.0  # CPU seconds the server process used during the slices (0: not measured)
    client_cpu_s: float = 0.0  # CPU seconds this script's clients used during them

    def add(self, other: "Sample") -> None:
        self.latencies_ms += other.latencies_ms
        self.statuses.update(other.statuses)
        self.labels.update(other.labels)
        self.elapsed_s += other.elapsed_s
        self.server_cpu_s += other.server_cpu_s
        self.client_cpu_s += other.client_cpu_s
        for key, value in other.phases.items():
            self.phases[key] = self.phases.get(key, 0.0) + value


async def load(url: str, payload: bytes, clients: int, seconds: float, form: str, timeout_s: float) -> Sample:
    sample = Sample()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout_s) as client:
        start = time.perf_counter()
        stop_at = start + seconds

        async def one_client() -> None:
            while time.perf_counter() < stop_at:
                begin = time.perf_counter()
                try:
                    if form == "multipart":
                        answer = await client.post(ROUTE, files={"image": ("astronaut.jpg", payload, "image/jpeg")})
                    else:
                        answer = await client.post(ROUTE, content=payload, headers={"content-type": "image/jpeg"})
                except httpx.HTTPError as error:
                    sample.statuses[type(error).__name__] += 1
                    continue
                sample.latencies_ms.append((time.perf_counter() - begin) * 1000)
                sample.statuses[str(answer.status_code)] += 1
                if answer.status_code == 200:
                    sample.labels[answer.json()["label"]] += 1

        await asyncio.gather(*(one_client() for _ in range(clients)))
        sample.elapsed_s = time.perf_counter() - start
    return sample


def summary(sample: Sample) -> dict:
    latencies = sample.latencies_ms
    requests = sum(sample.statuses.values())
    errors = requests - sample.statuses["200"]
    p50, p95, p99 = (np.percentile(latencies, [50, 95, 99]) if latencies else (float("nan"),) * 3)
    elapsed = sample.elapsed_s
    return {"requests": requests, "elapsed_s": round(elapsed, 3),
            "requests_per_s": round(requests / elapsed, 3) if elapsed else 0.0,
            "p50_ms": round(float(p50), 2), "p95_ms": round(float(p95), 2), "p99_ms": round(float(p99), 2),
            "max_ms": round(max(latencies), 2) if latencies else None, "errors": errors,
            "error_kinds": {k: v for k, v in sample.statuses.items() if k != "200"}, "labels": dict(sample.labels),
            **cpu_summary(sample, requests), **phase_summary(sample.phases)}


def cpu_summary(sample: Sample, requests: int) -> dict:
    """CPU milliseconds per request of the server and of the clients, and the requests/s that all cores could
    serve at that cost ({} when the server's CPU time was not measured). On a CPU-bound machine the last one
    is the ceiling: more requests/s needs less CPU per request."""
    if sample.server_cpu_s <= 0 or not requests:
        return {}
    server, client = sample.server_cpu_s / requests * 1000, sample.client_cpu_s / requests * 1000
    return {"server_cpu_ms_per_request": round(server, 2), "client_cpu_ms_per_request": round(client, 2),
            "cpu_bound_requests_per_s": round((os.cpu_count() or 1) * 1000 / (server + client), 2)}


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and of every live process below it (a server's worker
    processes), from /proc (Linux); 0.0 where that cannot be read."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = int(fields[1])
    tree, grown = {pid}, True
    while grown:
        below = {child for child, parent in parents.items() if parent in tree} - tree
        tree |= below
        grown = bool(below)
    total = 0.0
    for member in tree:
        fields = _stat(member)
        if fields is not None:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def server_seconds(url: str) -> dict[str, float]:
    """Summed seconds and counts of the scoring route and of each phase, from /metrics ({} when unavailable:
    an older server, or one that asks for a key)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        answer = httpx.get(f"{url}/metrics", timeout=10)
    except httpx.HTTPError:
        return {}
    if answer.status_code != 200:
        return {}
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(answer.text):
        for metric in family.samples:
            if family.name == PHASE_METRIC and metric.name.endswith(("_sum", "_count")):
                key = f"{metric.labels['phase']}{metric.name[len(PHASE_METRIC):]}"
            elif family.name == REQUEST_METRIC and metric.labels.get("route") == ROUTE and \
                    metric.name.endswith(("_sum", "_count")):
                key = f"request{metric.name[len(REQUEST_METRIC):]}"
            else:
                continue
            totals[key] = totals.get(key, 0.0) + metric.value
    return totals


def measured(url: str, payload: bytes, args: argparse.Namespace, seconds: float, pid: int | None = None) -> Sample:
    """One load slice, with the server's phase seconds over exactly that slice (clients wait for every request)
    and, given the server's ``pid``, the CPU time it and the clients used."""
    before = server_seconds(url)
    server_before, client_before = (process_cpu_s(pid) if pid else 0.0), time.process_time()
    sample = asyncio.run(load(url, payload, args.clients, seconds, args.form, args.request_timeout_s))
    if pid:
        sample.server_cpu_s = process_cpu_s(pid) - server_before
        sample.client_cpu_s = time.process_time() - client_before
    after = server_seconds(url)
    sample.phases = {key: after[key] - before.get(key, 0.0) for key in after} if before else {}
    return sample


def phase_summary(phases: dict[str, float]) -> dict:
    """Shares of the scoring route's request time: queue, decode, detect, score, http (the rest)."""
    request = phases.get("request_sum", 0.0)
    if request <= 0 or "work_sum" not in phases:
        return {}
    queue, work = phases["queue_sum"], phases["work_sum"]
    detect, score = phases["detect_sum"], phases["score_sum"]
    parts = {"queue": queue, "decode": work - detect - score, "detect": detect, "score": score,
             "http": request - queue - work}
    requests = phases.get("request_count", 0.0) or 1.0
    work_parts = {name: parts[name] for name in ("decode", "detect", "score")}
    return {"phase_share": {name: round(value / request, 4) for name, value in parts.items()},
            "work_share": {name: round(value / work, 4) for name, value in work_parts.items()} if work > 0 else {},
            "phase_mean_ms": {name: round(value / requests * 1000, 2) for name, value in parts.items()}}


def warm_up(url: str, payload: bytes, count: int = 4) -> None:
    """A few sequential requests, so MTCNN's first call and the allocator are not in the measured slices."""
    with httpx.Client(base_url=url, timeout=120) as client:
        for _ in range(count):
            client.post(ROUTE, files={"image": ("astronaut.jpg", payload, "image/jpeg")})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="An already running server (e.g. http://127.0.0.1:8000); default: start one.")
    parser.add_argument("--model", help="What one started server serves (models:/..., a bundle folder); default: "
                                        "compare old and new detection settings on random-weight tiny bundles.")
    parser.add_argument("--clients", type=int, default=TARGET["clients"], help="Concurrent clients.")
    parser.add_argument("--seconds", type=float, default=TARGET["seconds"],
                        help="How long clients keep sending, per configuration.")
    parser.add_argument("--rounds", type=int, default=2, help="Comparison only: ABBA rounds (old new, new old, ...); "
                        "each configuration gets seconds / rounds per round.")
    parser.add_argument("--form", choices=("multipart", "raw"), default="multipart", help="How the image is sent.")
    parser.add_argument("--request-timeout-s", type=float, default=120.0, help="Client-side timeout per request.")
    parser.add_argument("--ready-timeout-s", type=float, default=300.0, help="How long to wait for /readyz.")
    parser.add_argument("--server-arg", action="append", default=[], help="Extra `liveness serve` argument for the "
                        "started servers, e.g. --server-arg=--worker-threads=4 (repeatable).")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.seconds <= 0 or args.rounds < 1:
        parser.error("--clients and --rounds must be >= 1 and --seconds > 0")
    payload = face_jpeg()
    common = {"payload": f"astronaut 512x512 JPEG q90, {len(payload)} bytes, {args.form}",
              "cpu_count": os.cpu_count(), "target": TARGET}
    with ExitStack() as stack:
        if args.url is not None:
            url = args.url.rstrip("/")
            ready = wait_ready(url, None, args.ready_timeout_s)
            return single(args, payload, url, ready, "external", "as served", common)
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="serve-load-")))
        if args.model is not None:
            url, ready = start(stack, args, args.model, scratch / "server")
            if ready is None:
                return 2
            return single(args, payload, url, ready, "started by this script", "as served", common)
        configs = detection_configs()
        servers = {name: start(stack, args, str(random_tiny_bundle(scratch / f"{name}_bundle", detection)),
                               scratch / name, wait=False, former=name == "former", threads=name != "new")
                   for name, detection in configs.items()}
        pids = {name: server.pid for name, (_, server) in servers.items()}
        for name, (url, server) in list(servers.items()):
            try:
                servers[name] = (url, wait_ready(url, server, args.ready_timeout_s))
            except RuntimeError as error:
                say(f"{error}; server log:\n{(scratch / f'{name}.log').read_text(errors='replace')[-3000:]}")
                return 2
            warm_up(url, payload)
        samples = {name: Sample() for name in configs}
        order = list(configs)
        for round_index in range(args.rounds):
            for name in order if round_index % 2 == 0 else order[::-1]:  # former old new, new old former, ...
                say(f"round {round_index + 1}/{args.rounds}: {name}, {args.clients} clients for "
                    f"{args.seconds / args.rounds:g} s")
                samples[name].add(measured(servers[name][0], payload, args, args.seconds / args.rounds,
                                           pids[name]))
    results = {name: {**summary(samples[name]), "detection": configs[name]} for name in configs}
    results["former"]["detector"] = "FormerFaceDetector (before issue 11)"
    rates = {name: result["requests_per_s"] for name, result in results.items()}
    ratio = round(rates["new"] / rates["old"], 3) if rates["old"] else float("nan")
    to_former = round(rates["new"] / rates["former"], 3) if rates["former"] else float("nan")
    errors = sum(result["errors"] for result in results.values())
    result = {"clients": args.clients, "seconds": args.seconds, "rounds": args.rounds, "configs": results,
              "ratio_requests_per_s": ratio, "ratio_to_former": to_former, "new_p99_ms": results["new"]["p99_ms"],
              "errors": errors, "server": "three started by this script", "model_note": RANDOM_MODEL_NOTE, **common,
              "target_met": args.clients >= TARGET["clients"] and args.seconds >= TARGET["seconds"] and errors == 0
              and to_former >= TARGET["min_ratio"] and results["new"]["p99_ms"] <= TARGET["max_p99_ms"]}
    print(json.dumps(result), flush=True)
    return 0 if errors == 0 else 1


def start(stack: ExitStack, args: argparse.Namespace, model: str, stem: Path, wait: bool = True,
          former: bool = False, threads: bool = False):
    """Start ``liveness serve`` for ``model`` (stopped when ``stack`` closes): (url, ready answer), or (url, None)
    when it never got ready; with ``wait=False``, (url, process). ``former``: with ``FormerFaceDetector``."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = stem.with_suffix(".log")
    server = start_server(model, port, log, args.server_arg, former, threads)
    stack.callback(stop_server, server)
    if not wait:
        return url, server
    try:
        return url, wait_ready(url, server, args.ready_timeout_s)
    except RuntimeError as error:
        say(f"{error}; server log:\n{log.read_text(errors='replace')[-3000:]}")
        return url, None


def single(args: argparse.Namespace, payload: bytes, url: str, ready: dict, server: str, note: str,
           common: dict) -> int:
    """Load one server for the whole time and print its figures."""
    say(f"ready: {ready['model']}; {args.clients} clients for {args.seconds:g} s")
    stats = summary(measured(url, payload, args, args.seconds))
    result = {"clients": args.clients, "seconds": args.seconds, **stats, "url": url, "server": server,
              "model": ready["model"], "model_note": note, **common,
              "target_met": args.clients >= TARGET["clients"] and args.seconds >= TARGET["seconds"]
              and stats["errors"] == 0 and stats["p99_ms"] <= TARGET["max_p99_ms"]}
    print(json.dumps(result), flush=True)
    return 0 if stats["errors"] == 0 else 1


def stop_server(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


if __name__ == "__main__":
    sys.exit(main())
