"""MLFLOW_TRACKING_URI pointed at a team MLflow server works as the local SQLite store does: register (with its
content-hash dedupe), promote and predict from ``models:/liveness@champion``, artifacts proxied by the server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from liveness.cli import app
from liveness.registry.register import register
from tests.fixtures.params import tiny_params
from tests.fixtures.registry import write_metrics
from tests.fixtures.bundles import astronaut, make_model_dir, png_bytes

SERVER_START_SECONDS = 180


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_healthy(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"mlflow server exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    pytest.fail(f"mlflow server not healthy after {SERVER_START_SECONDS}s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def team_server(tmp_path):
    """`mlflow server` on a free local port, SQLite backend and a served artifact store under tmp_path."""
    server_dir = tmp_path / "server"
    server_dir.mkdir()
    port = _free_port()
    log = server_dir / "server.log"
    env = os.environ | {"MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "mlflow"), "server",
             "--backend-store-uri", f"sqlite:///{server_dir / 'db'}",
             "--artifacts-destination", str(server_dir / "art"),
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            cwd=server_dir, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, server, log)
        yield {"url": url, "dir": server_dir, "log": log}
    finally:
        # The server runs uvicorn workers as children: end its whole process group (started here, own session).
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)


@pytest.mark.slow
def test_register_promote_and_predict_through_a_team_server(team_server, tmp_path, monkeypatch):
    import mlflow

    url = team_server["url"]
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)  # register.tracking_uri unset: the environment decides
    make_model_dir(project / "runs/train")
    write_metrics(project / "reports/metrics.json")
    params = tiny_params(curate={"crop": {"size": 32}, "detection": {"device": "cpu"}},
                         register={"model_dir": str(project / "runs/train"),
                                   "metrics": str(project / "reports/metrics.json")})
    try:
        first = register(params)
        again = register(params)  # same content: the server's registry dedupes it too
        assert (first.version, first.reused, again.version, again.reused) == ("1", False, "1", True)
        client = MlflowClient(url)
        assert len(client.search_model_versions("name='liveness'")) == 1
        assert client.get_run(first.run_id).data.metrics["auc"] == 0.9

        # Artifacts went to the server's store, none to the project folder.
        served = team_server["dir"] / "art"
        for artifact in ("MLmodel", "generator.pt", "model_card.md", "code/liveness/bundle/predictor.py"):
            assert list(served.rglob(artifact)), artifact
        assert not (project / "mlruns").exists() and not (project / "mlartifacts").exists()
        assert not (project / "mlflow.db").exists()

        promoted = CliRunner().invoke(app, ["promote", "--params", "absent.yaml"])
        assert promoted.exit_code == 0, promoted.output
        assert "promoted liveness v1 to @champion" in promoted.stderr
        assert str(client.get_model_version_by_alias("liveness", "champion").version) == "1"
        assert client.get_model_version("liveness", "1").tags["promotion.decision"] == "promoted"
    finally:
        mlflow.set_tracking_uri(None)

    # A fresh process that knows only the server's URL loads the champion from it and scores an image.
    image = project / "astronaut.png"
    image.write_bytes(png_bytes(astronaut()))
    env = os.environ | {"MLFLOW_TRACKING_URI": url, "MLFLOW_DISABLE_TELEMETRY": "true"}
    predicted = subprocess.run([sys.executable, "-m", "liveness", "predict", str(image), "--model",
                                "models:/liveness@champion", "--params", "absent.yaml"],
                               capture_output=True, text=True, env=env, cwd=project, timeout=300)
    assert predicted.returncode == 0, predicted.stderr[-3000:] + team_server["log"].read_text()[-2000:]
    (row,) = [json.loads(line) for line in predicted.stdout.splitlines() if line.strip()]
    assert row["path"] == str(image) and row["face_found"] and row["label"] in {"live", "spoof"}
