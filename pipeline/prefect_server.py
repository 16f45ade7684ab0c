"""One Prefect API server for a run of several flows: ``python -m pipeline.prefect_server -- dvc repro``.

Without ``PREFECT_API_URL`` every flow starts a temporary API server of its own and stops it when the flow ends.
On these 2 cores that costs 20-30 s per stage, about a third of the demo's 10 minutes. Under this wrapper the
stages share one server: it starts once (webserver only, no UI and no background services, which a run of
flows does not use), the command runs with ``PREFECT_API_URL`` pointing at it, and the server stops when the
command ends. Flow runs land in the same database as before (``PREFECT_HOME``).

An already set ``PREFECT_API_URL`` is used as it is. If the server cannot start, the command still runs, with a
warning, on per-flow temporary servers: slower, never lost.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pipeline  # noqa: F401 - the offline, quiet defaults, also for the server process

API_URL_VARIABLE = "PREFECT_API_URL"
STARTUP_TIMEOUT_S = 180.0  # as PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS in pipeline/__init__.py
STOP_TIMEOUT_S = 15.0


class ServerStartError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _prefect_executable() -> str:
    beside = Path(sys.executable).parent / "prefect"
    found = str(beside) if beside.is_file() else shutil.which("prefect")
    if not found:
        raise ServerStartError("the `prefect` command is not installed next to this Python or on PATH")
    return found


def _healthy(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2.0) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _stop(server: subprocess.Popen) -> None:
    if server.poll() is not None:
        return
    server.terminate()
    try:
        server.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


@contextmanager
def shared_server(timeout_s: float = STARTUP_TIMEOUT_S) -> Iterator[str]:
    """The API URL of a Prefect server that lives for the block: ``PREFECT_API_URL`` if set, else a server
    started here on a free loopback port and stopped on exit. Raises ``ServerStartError`` (with the server's
    last output) if it does not answer within ``timeout_s``."""
    if os.environ.get(API_URL_VARIABLE):
        yield os.environ[API_URL_VARIABLE]
        return
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    command = [_prefect_executable(), "server", "start", "--host", "127.0.0.1", "--port", str(port),
               "--no-services", "--no-ui", "--log-level", "WARNING"]
    with tempfile.TemporaryFile("w+") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + timeout_s
            while not _healthy(api_url):
                if server.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    tail = log.read()[-2000:]
                    state = f"exited with {server.returncode}" if server.poll() is not None else \
                        f"did not answer within {timeout_s:.0f} s"
                    raise ServerStartError(f"the Prefect server ({' '.join(command)}) {state}:\n{tail}")
                time.sleep(0.25)
            yield api_url
        finally:
            _stop(server)


def run_with_shared_server(command: list[str], timeout_s: float = STARTUP_TIMEOUT_S) -> int:
    """Run ``command`` with every Prefect flow in it on one server; its exit status."""
    try:
        with shared_server(timeout_s) as api_url:
            return subprocess.call(command, env={**os.environ, API_URL_VARIABLE: api_url})
    except ServerStartError as error:
        print(f"warning: {error}\nRunning without a shared server: each flow starts its own (slower).",
              file=sys.stderr)
        return subprocess.call(command)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run a command (e.g. `dvc repro`) whose Prefect flows share one API server, started for the "
                    "command and stopped after it; each flow would otherwise start its own (20-30 s each on 2 cores).",
        epilog="Example: python -m pipeline.prefect_server -- dvc repro")
    parser.add_argument("--startup-timeout-s", type=float, default=STARTUP_TIMEOUT_S,
                        help="how long to wait for the server to answer before running without it (default 180)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after `--`")
    arguments = parser.parse_args(argv)
    command = arguments.command[1:] if arguments.command[:1] == ["--"] else arguments.command
    if not command:
        parser.error("give the command to run, e.g. `-- dvc repro`")
    return run_with_shared_server(command, arguments.startup_timeout_s)


if __name__ == "__main__":
    raise SystemExit(main())
