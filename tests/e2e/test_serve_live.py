"""`liveness serve` as a real uvicorn process on loopback: the bad-image corpus, SIGHUP, and the load script."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from liveness.serve.limits import STATUS_BY_REASON, UNSUPPORTED_MEDIA
from tests.fixtures.paths import PROJECT_ROOT
from tests.fixtures.bad_images import PATH_ONLY_REASONS, write_bad_image_corpus
from tests.fixtures.bundles import astronaut, make_model_dir
from tests.fixtures.serving import jpeg

pytestmark = pytest.mark.slow
QUIET = {"MLFLOW_DISABLE_TELEMETRY": "true", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DVC_NO_ANALYTICS": "1"}
MAX_BYTES = 2_000_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A served tiny random bundle; yields (base URL, process). Its log is shown if it fails to start."""
    root = tmp_path_factory.mktemp("serve")
    bundle = make_model_dir(root / "bundle")
    port, log = free_port(), root / "server.log"
    command = [sys.executable, "-m", "liveness", "serve", "--model", str(bundle), "--port", str(port),
               "--poll-s", "0", "--max-bytes", str(MAX_BYTES), "--params", str(root / "absent.yaml"),
               "--log-level", "warning"]
    with open(log, "wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, cwd=root,
                                   env=os.environ | QUIET | {"OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, f"server exited {process.returncode}:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"not ready in time:\n{log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_every_bad_image_is_a_4xx_and_the_server_stays_healthy(server, tmp_path):
    url, process = server
    corpus = write_bad_image_corpus(tmp_path / "corpus")
    sent = 0
    with httpx.Client(base_url=url, timeout=60) as client:
        for name, reason in corpus.items():
            if reason is None or reason in PATH_ONLY_REASONS:
                continue
            data = (tmp_path / "corpus" / name).read_bytes()
            for answer in (client.post("/v1/liveness", content=data),
                           client.post("/v1/liveness", files={"image": (name, data, "application/octet-stream")})):
                assert 400 <= answer.status_code < 500, (name, answer.status_code, answer.text)
                assert answer.status_code == STATUS_BY_REASON.get(reason, UNSUPPORTED_MEDIA), (name, answer.text)
                assert answer.json()["error"] == reason, name
                sent += 1
        oversize = client.post("/v1/liveness", content=b"\xff\xd8\xff" + b"\0" * MAX_BYTES)
        assert (oversize.status_code, oversize.json()["error"]) == (413, "payload_too_large")
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        good = client.post("/v1/liveness", content=jpeg(astronaut()), headers={"content-type": "image/jpeg"})
        assert good.status_code == 200 and good.json()["faces"] == 1 and good.json()["label"] in {"live", "spoof"}
        assert good.json()["trained_on"] == "synthetic" and good.json()["model"]["version"] == "local"
    assert sent == 2 * sum(1 for r in corpus.values() if r is not None and r not in PATH_ONLY_REASONS)
    assert process.poll() is None


def test_sighup_reloads_the_model(server):
    url, process = server
    before = httpx.get(f"{url}/readyz").json()
    process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 60
    while (now := httpx.get(f"{url}/readyz").json())["reloads"] == before["reloads"]:
        assert time.monotonic() < deadline, "SIGHUP did not reload the model"
        time.sleep(0.2)
    assert now["reloads"] == before["reloads"] + 1 and now["loaded_at"] > before["loaded_at"]
    assert process.poll() is None


def test_load_script_reports_json_with_no_errors(server):
    url, _ = server
    script = Path(PROJECT_ROOT) / "bench" / "serve_load.py"
    completed = subprocess.run([sys.executable, str(script), "--url", url, "--clients", "3", "--seconds", "2"],
                               capture_output=True, text=True, timeout=120, env=os.environ | QUIET)
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout)  # one JSON line and nothing else on stdout
    assert (result["clients"], result["seconds"], result["errors"], result["server"]) == (3, 2.0, 0, "external")
    assert result["requests"] > 0 and result["requests_per_s"] > 0
    assert 0 < result["p50_ms"] <= result["p95_ms"] <= result["p99_ms"]
    assert result["model"]["version"] == "local" and result["target_met"] is False
