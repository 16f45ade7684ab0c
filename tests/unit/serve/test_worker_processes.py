"""Worker processes (serve/processes.py): the same answers as worker threads, each from a process of its own, and
a process that dies costs only the answer of the image it died on."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from liveness.bundle import Prediction
from liveness.serve.app import create_app
from liveness.serve.limits import ServeError, Upload
from liveness.serve.model import LoadedModel
from liveness.serve.processes import ProcessWorkers
from liveness.serve.settings import ServeSettings
from tests.fixtures.serving import FakeSource, started, wait_for
from tests.unit.serve.crash_job import CRASH_NAME, decode_and_predict_or_die

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _answers(client, face_jpeg) -> tuple[dict, dict]:
    one = client.post("/v1/liveness", content=face_jpeg, headers={"content-type": "image/jpeg"})
    batch = client.post("/v1/liveness/batch", files=[("image", ("face.jpg", face_jpeg, "image/jpeg")),
                                                     ("image", ("junk.jpg", b"not an image", "image/jpeg"))])
    assert one.status_code == 200 and batch.status_code == 200
    return one.json(), batch.json()


def _comparable(answer: dict) -> dict:
    return {key: value for key, value in answer.items() if key != "latency_ms"}


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie that nobody reaped does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def test_worker_processes_answer_as_worker_threads(bundle, face_jpeg):
    answers, pids = {}, set()
    for kind in ("thread", "process"):
        app = create_app(ServeSettings(model=str(bundle), worker_kind=kind))
        with started(app) as client:
            answers[kind] = _answers(client, face_jpeg)
            processes = app.state.service.processes
            if kind == "process":
                pids = {pool.submit(os.getpid).result(60) for pool in processes._pools}
                assert len(pids) == 2 and os.getpid() not in pids  # one process per worker thread
                assert all(_alive(pid) for pid in pids)
                assert 'liveness_phase_duration_seconds_count{phase="detect"} 2.0' in client.get("/metrics").text
            else:
                assert processes is None
    assert not any(_alive(pid) for pid in pids)  # the app's shutdown stopped its worker processes
    (one_thread, batch_thread), (one_process, batch_process) = answers["thread"], answers["process"]
    assert _comparable(one_process) == _comparable(one_thread)
    assert one_process["face_found"] and one_process["label"] in {"live", "spoof"}
    assert _comparable(batch_process) == _comparable(batch_thread)
    assert [item["status"] for item in batch_process["results"]] == [200, 415]


SERVER_THAT_IS_KILLED = """
import os, sys, time
from liveness.serve.processes import ProcessWorkers
workers = ProcessWorkers(1, 1, "torch")
print(workers._pools[0].submit(os.getpid).result(120), flush=True)
time.sleep(600)
"""


def test_a_worker_process_never_outlives_a_killed_server():
    server = subprocess.Popen([sys.executable, "-c", SERVER_THAT_IS_KILLED], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[3])
    try:
        worker = int(server.stdout.readline())
        assert _alive(worker)
    finally:
        server.kill()
        server.wait(30)
    wait_for(lambda: not _alive(worker), timeout=20)  # it notices within PARENT_POLL_S and exits


def test_a_stand_in_predictor_runs_in_the_worker_threads():
    from tests.fixtures.serving import FakePredictor

    app = create_app(ServeSettings(model="fake"), source=FakeSource(), factory=lambda folder: FakePredictor())
    with started(app):
        assert app.state.service.processes is None


def test_an_unknown_worker_kind_is_refused():
    with pytest.raises(ValueError, match="worker_kind"):
        ServeSettings(worker_kind="fibre")


def test_the_cli_names_the_worker_kinds():
    from liveness.cli import app

    result = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "--worker-kind" in result.output
    result = CliRunner().invoke(app, ["serve", "--worker-kind", "fibre", "--model", "."])
    assert result.exit_code != 0 and "worker_kind" in result.output


def test_a_refusal_crosses_back_from_a_worker_process_intact():
    error = pickle.loads(pickle.dumps(ServeError(415, "not_an_image", "junk.jpg: not an image")))
    assert (error.status, error.error, error.detail) == (415, "not_an_image", "junk.jpg: not an image")


@pytest.fixture(scope="module")
def crashing_workers():
    workers = ProcessWorkers(1, 1, "torch", job=decode_and_predict_or_die)
    yield workers
    workers.shutdown()


def _model(bundle) -> LoadedModel:
    return LoadedModel(None, "tiny", "local", str(bundle), "r1", 0.0, None, "synthetic", bundle)


def test_an_image_that_kills_its_process_costs_only_its_own_answer(crashing_workers, bundle, face_jpeg):
    model = _model(bundle)
    crashing_workers.preload(model)
    images = [Upload("a.jpg", face_jpeg), Upload(CRASH_NAME, face_jpeg), Upload("b.jpg", face_jpeg)]
    first, crashed, last = crashing_workers.decode_and_predict(model, images, 10**8, 1)
    assert isinstance(first, Prediction) and isinstance(last, Prediction) and first.face_found
    assert isinstance(crashed, ServeError) and (crashed.status, crashed.error) == (422, "processing_failed")
    assert CRASH_NAME in crashed.detail
    assert crashing_workers.restarts == 2  # the batch, then the image alone
    (alone,) = crashing_workers.decode_and_predict(model, [Upload(CRASH_NAME, face_jpeg)], 10**8, 1)
    assert isinstance(alone, ServeError) and alone.status == 422
    (after,) = crashing_workers.decode_and_predict(model, [Upload("c.jpg", face_jpeg)], 10**8, 1)
    assert isinstance(after, Prediction) and after.score == first.score  # a fresh process, the same model


def test_a_process_that_died_while_idle_is_replaced_before_the_next_request(crashing_workers, bundle, face_jpeg):
    model = _model(bundle)
    pool = crashing_workers._pools[0]
    pid = pool.submit(os.getpid).result(60)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: pool._broken, timeout=30)  # the pool has noticed
    restarts = crashing_workers.restarts
    (answer,) = crashing_workers.decode_and_predict(model, [Upload("d.jpg", face_jpeg)], 10**8, 1)
    assert isinstance(answer, Prediction) and answer.face_found  # not this image's fault: no 422
    assert crashing_workers.restarts == restarts + 1
