"""`python -m pipeline.prefect_server -- CMD`: the flows of CMD share one Prefect server that lives for CMD."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from pipeline.prefect_server import API_URL_VARIABLE, ServerStartError, shared_server

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Two flows in two processes, as two DVC stages: both must reach the shared server, and both runs end up in it.
TWO_STAGES = """
import json, os, subprocess, sys, urllib.request
url = os.environ["PREFECT_API_URL"]
stage = "from prefect import flow\\n@flow(name='stage')\\ndef stage():\\n    return 1\\nstage()\\n"
outputs = [subprocess.run([sys.executable, "-c", stage], capture_output=True, text=True, check=True) for _ in range(2)]
request = urllib.request.Request(url + "/flow_runs/filter", data=b"{}", headers={"content-type": "application/json"})
runs = json.load(urllib.request.urlopen(request))
print(json.dumps({"url": url, "runs": [run["state_type"] for run in runs],
                  "temporary_servers": sum("Starting temporary server" in o.stdout + o.stderr for o in outputs)}))
"""


def _wrapper(*command: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.prefect_server", "--", *command], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=420, env=env or os.environ.copy())


@pytest.mark.slow
def test_flows_of_the_command_share_one_server_that_stops_afterwards():
    environment = {key: value for key, value in os.environ.items() if key != API_URL_VARIABLE}
    completed = _wrapper(sys.executable, "-c", TWO_STAGES, env=environment)
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["url"].startswith("http://127.0.0.1:") and report["url"].endswith("/api")
    assert report["runs"] == ["COMPLETED", "COMPLETED"]  # both stages' runs are on the one server
    assert report["temporary_servers"] == 0  # no flow started a server of its own
    with pytest.raises(OSError):  # stopped with the command
        urllib.request.urlopen(report["url"] + "/health", timeout=2)


def test_the_command_exit_status_is_the_wrappers_and_a_set_url_is_reused():
    environment = {**os.environ, API_URL_VARIABLE: "http://127.0.0.1:9/api"}  # nothing is started for it
    completed = _wrapper(sys.executable, "-c", "import os, sys; print(os.environ['PREFECT_API_URL']); sys.exit(3)",
                         env=environment)
    assert completed.returncode == 3
    assert completed.stdout.strip() == "http://127.0.0.1:9/api"


def test_a_server_that_cannot_start_says_why(monkeypatch, tmp_path):
    broken = tmp_path / "prefect"
    broken.write_text("#!/bin/sh\necho 'no database here' >&2\nexit 7\n")
    broken.chmod(0o755)
    monkeypatch.delenv(API_URL_VARIABLE, raising=False)
    monkeypatch.setattr("pipeline.prefect_server._prefect_executable", lambda: str(broken))
    with pytest.raises(ServerStartError, match=r"exited with 7:\nno database here"):
        with shared_server(timeout_s=30):
            pass


def test_without_a_server_the_command_still_runs_with_a_warning(monkeypatch, capsys):
    from pipeline import prefect_server

    monkeypatch.delenv(API_URL_VARIABLE, raising=False)

    def refuse():
        raise ServerStartError("the `prefect` command is not installed")

    monkeypatch.setattr(prefect_server, "_prefect_executable", refuse)
    status = prefect_server.main(["--", sys.executable, "-c",
                                  "import os, sys; sys.exit(0 if 'PREFECT_API_URL' not in os.environ else 1)"])
    assert status == 0
    assert "Running without a shared server" in capsys.readouterr().err


def test_no_command_is_a_usage_error():
    completed = subprocess.run([sys.executable, "-m", "pipeline.prefect_server"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 2 and "give the command to run" in completed.stderr
