"""Load test of the REST service: N concurrent clients for T seconds on loopback, one JSON line on stdout.

Each client posts a real face photo (``skimage.data.astronaut()``, 512x512, encoded as JPEG) to
``POST /v1/liveness`` over its own keep-alive connection, back to back, until the time is up; requests still
running then are waited for and counted. An error is any answer other than 200, or a failed connection.

Without ``--url`` the script starts ``liveness serve`` itself on a free loopback port. Without ``--model`` it
serves a RANDOM-WEIGHT tiny bundle (profile tiny, 32 px) built in a temporary folder: its scores mean nothing,
only its speed does (face detection dominates the cost per request), and the JSON says so in ``model_note``.

Target: 32 clients for 60 s with 0 errors. Examples::

    .venv/bin/python bench/serve_load.py                                   # 32 clients, 60 s, random tiny model
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
from pathlib import Path

import httpx
import numpy as np

TARGET = {"clients": 32, "seconds": 60, "errors": 0}
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


def random_tiny_bundle(folder: Path) -> Path:
    """generator.pt with random weights (seed 0) and a config.json, as registration would write them."""
    import torch

    from liveness.config import CropParams, DetectionParams, ModelParams
    from liveness.model.factory import build_generator
    from liveness.registry.predictor import BundleConfig, write_config

    tiny = ModelParams(profile="tiny", image_size=32)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(build_generator(tiny).state_dict(), folder / "generator.pt")
    write_config(folder, BundleConfig(tiny, CropParams(size=32), DetectionParams(device="cpu"), 0.5, "latent_bg",
                                      "synthetic"))
    return folder


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(model: str, port: int, log_path: Path, extra: list[str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "liveness", "serve", "--model", model, "--host", "127.0.0.1", "--port", str(port),
               "--poll-s", "0", "--log-level", "warning", *extra]
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


async def load(url: str, payload: bytes, clients: int, seconds: float, form: str, timeout_s: float) -> dict:
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    labels: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout_s) as client:
        start = time.perf_counter()
        stop_at = start + seconds

        async def one_client() -> None:
            while time.perf_counter() < stop_at:
                begin = time.perf_counter()
                try:
                    if form == "multipart":
                        answer = await client.post("/v1/liveness", files={"image": ("astronaut.jpg", payload, "image/jpeg")})
                    else:
                        answer = await client.post("/v1/liveness", content=payload, headers={"content-type": "image/jpeg"})
                except httpx.HTTPError as error:
                    statuses[type(error).__name__] += 1
                    continue
                latencies.append((time.perf_counter() - begin) * 1000)
                statuses[str(answer.status_code)] += 1
                if answer.status_code == 200:
                    labels[answer.json()["label"]] += 1

        await asyncio.gather(*(one_client() for _ in range(clients)))
        elapsed = time.perf_counter() - start
    requests = sum(statuses.values())
    errors = requests - statuses["200"]
    p50, p95, p99 = (np.percentile(latencies, [50, 95, 99]) if latencies else (float("nan"),) * 3)
    return {"requests": requests, "elapsed_s": round(elapsed, 3), "requests_per_s": round(requests / elapsed, 3),
            "p50_ms": round(float(p50), 2), "p95_ms": round(float(p95), 2), "p99_ms": round(float(p99), 2),
            "max_ms": round(max(latencies), 2) if latencies else None, "errors": errors,
            "error_kinds": {k: v for k, v in statuses.items() if k != "200"}, "labels": dict(labels)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="An already running server (e.g. http://127.0.0.1:8000); default: start one.")
    parser.add_argument("--model", help="What the started server serves (models:/..., a bundle folder); default: a "
                                        "random-weight tiny bundle in a temporary folder.")
    parser.add_argument("--clients", type=int, default=TARGET["clients"], help="Concurrent clients.")
    parser.add_argument("--seconds", type=float, default=TARGET["seconds"], help="How long clients keep sending.")
    parser.add_argument("--form", choices=("multipart", "raw"), default="multipart", help="How the image is sent.")
    parser.add_argument("--request-timeout-s", type=float, default=120.0, help="Client-side timeout per request.")
    parser.add_argument("--ready-timeout-s", type=float, default=300.0, help="How long to wait for /readyz.")
    parser.add_argument("--server-arg", action="append", default=[], help="Extra `liveness serve` argument for the "
                        "started server, e.g. --server-arg=--worker-threads=4 (repeatable).")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.seconds <= 0:
        parser.error("--clients must be >= 1 and --seconds > 0")
    payload = face_jpeg()
    with ExitStack() as stack:
        server, model_note, started = None, None, args.url is None
        url = (args.url or "").rstrip("/")
        if started:
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="serve-load-")))
            model = args.model
            if model is None:
                model, model_note = str(random_tiny_bundle(scratch / "random_tiny_bundle")), RANDOM_MODEL_NOTE
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            server = start_server(model, port, scratch / "server.log", args.server_arg)
            stack.callback(stop_server, server)
            try:
                ready = wait_ready(url, server, args.ready_timeout_s)
            except RuntimeError as error:
                say(f"{error}; server log:\n{(scratch / 'server.log').read_text(errors='replace')[-3000:]}")
                return 2
        else:
            ready = wait_ready(url, None, args.ready_timeout_s)
        say(f"ready: {ready['model']}; {args.clients} clients for {args.seconds:g} s")
        stats = asyncio.run(load(url, payload, args.clients, args.seconds, args.form, args.request_timeout_s))
    result = {"clients": args.clients, "seconds": args.seconds, **stats, "url": url,
              "server": "started by this script" if started else "external",
              "model": ready["model"], "model_note": model_note or "as served",
              "payload": f"astronaut 512x512 JPEG q90, {len(payload)} bytes, {args.form}",
              "cpu_count": os.cpu_count(), "target": TARGET,
              "target_met": args.clients >= TARGET["clients"] and args.seconds >= TARGET["seconds"]
              and stats["errors"] == 0}
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
