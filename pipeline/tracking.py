"""MLflow runs for the stage flows: one run per stage, tied together by a pipeline id tag.

The default store is SQLite in the project (MLflow 3 refuses a ./mlruns file store); ``MLFLOW_TRACKING_URI``
points at a team server instead. ``LIVENESS_PIPELINE_ID`` (set by the full-pipeline flow) ties the stage
runs of one ``dvc repro`` together; a stage run alone gets a fresh id.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import mlflow
import yaml

from liveness.mlflow_store import tracking_uri, use_experiment
from liveness.train.metrics_logger import flatten_params

EXPERIMENT = "liveness"
PIPELINE_ID_VARIABLE = "LIVENESS_PIPELINE_ID"


def pipeline_id() -> str:
    return os.environ.setdefault(PIPELINE_ID_VARIABLE, uuid.uuid4().hex[:12])


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def dvc_data_hashes(lock: Path = Path("dvc.lock")) -> dict[str, str]:
    """The md5 of every stage output recorded in dvc.lock, as ``data.<path>`` tags."""
    if not lock.is_file():
        return {}
    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    return {f"data.{out['path']}": out.get("md5", "") for stage in stages.values() for out in stage.get("outs", [])}


@contextlib.contextmanager
def stage_run(stage: str, params: dict, data_source: str) -> Iterator[mlflow.ActiveRun]:
    """An MLflow run for one stage with params, pipeline id, git commit, data source and dvc.lock hashes.

    Pass ``params={}`` when the stage logs its own params (the trainer does)."""
    use_experiment(EXPERIMENT, tracking_uri())
    tags = {"stage": stage, "pipeline_id": pipeline_id(), "git_commit": git_commit(), "data_source": data_source,
            **dvc_data_hashes()}
    with mlflow.start_run(run_name=stage, tags=tags) as run:
        mlflow.log_params({name: str(value)[:500] for name, value in flatten_params(params).items()})
        yield run


def data_source(*folders: Path) -> str:
    """"synthetic" when every curated manifest among ``folders`` is synthetic, else "real"."""
    from liveness.data.shards import read_manifest

    manifests = [Path(folder) / "manifest.parquet" for folder in folders]
    flags = [bool(read_manifest(path)["synthetic"].all()) for path in manifests if path.is_file()]
    return "synthetic" if flags and all(flags) else "real"
