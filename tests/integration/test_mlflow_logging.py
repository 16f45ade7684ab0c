"""The trainer logs to an active MLflow run (SQLite store), and to metrics.jsonl always."""

import json

import pytest

from liveness.train.metrics_logger import active_mlflow_logger
from liveness.train.trainer import Trainer
from tests.fixtures.params import tiny_params


@pytest.fixture
def mlflow_sqlite(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("trainer-logging")  # forget an experiment another test made active in another store
    yield mlflow
    while mlflow.active_run() is not None:
        mlflow.end_run()


@pytest.mark.slow
def test_logs_params_and_losses_to_the_active_run(tmp_path, smoke_dataset, mlflow_sqlite):
    mlflow = mlflow_sqlite
    params = tiny_params(train={"epochs": 2}, identity={"backbone": "none"})
    with mlflow.start_run() as run:
        Trainer(params, tmp_path / "out").fit(smoke_dataset)
    client = mlflow.tracking.MlflowClient()
    logged = client.get_run(run.info.run_id).data
    assert logged.params["identity.backbone"] == "none"
    assert logged.params["identity.loss_dropped"] == "True"
    assert logged.params["train.lr"] == "0.0001"
    history = client.get_metric_history(run.info.run_id, "loss_g")
    assert [m.step for m in history] == list(range(1, 13))
    assert "loss_identity" not in logged.metrics
    assert client.get_metric_history(run.info.run_id, "epoch_loss_pixel")[-1].step == 12


def test_no_active_run_means_no_mlflow_logger(mlflow_sqlite):
    assert active_mlflow_logger() is None


def test_jsonl_always_written(tmp_path, smoke_dataset):
    Trainer(tiny_params(), tmp_path).fit(smoke_dataset)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["params"]["identity.backbone"] == "onet"
    assert records[0]["params"]["identity.stand_in"] is True
    steps = [r["step"] for r in records if "loss_g" in r]
    assert steps == list(range(1, 7))
    assert all(r["images_per_second"] > 0 for r in records if "loss_g" in r)
