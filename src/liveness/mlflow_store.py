"""Where MLflow keeps runs and models: the tracking URI and experiments with a sensible artifact place."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"  # MLflow 3 refuses a ./mlruns file store


def tracking_uri(explicit: str | None = None) -> str:
    """``explicit``, else $MLFLOW_TRACKING_URI, else the project's SQLite store."""
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def use_experiment(name: str, uri: str) -> None:
    """Point MLflow at ``uri`` and experiment ``name``. A new experiment on a local SQLite store keeps its
    artifacts beside the database in ``mlartifacts/``, not in ``./mlruns`` of whatever folder the process runs in."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(name) is None and uri.startswith("sqlite:///"):
        database = Path(uri.removeprefix("sqlite:///")).resolve()
        mlflow.create_experiment(name, artifact_location=(database.parent / "mlartifacts").as_uri())
    mlflow.set_experiment(name)
