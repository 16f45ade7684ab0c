"""A small metrics-logger interface that tracking back-ends plug into.

The trainer writes every logged value to ``metrics.jsonl`` in its output folder and, when an MLflow run is
active in the process, to that run as well. MLflow is imported only if the caller already imported it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Mapping, Protocol


class MetricsLogger(Protocol):
    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...


class JsonlMetricsLogger:
    """Appends one JSON object per call; params go to the first line of a fresh file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def _append(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as stream:
            stream.write(json.dumps(record, sort_keys=True) + "\n")

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._append({"params": dict(params)})

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self._append({"step": step, **{name: float(value) for name, value in metrics.items()}})


class MlflowMetricsLogger:
    """Logs to the active MLflow run (params are flattened ``section.key`` strings)."""

    def __init__(self) -> None:
        import mlflow

        self._mlflow = mlflow

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._mlflow.log_params({name: str(value) for name, value in params.items()})

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self._mlflow.log_metrics({name: float(value) for name, value in metrics.items()}, step=step)


class CompositeLogger:
    def __init__(self, loggers: list[MetricsLogger]) -> None:
        self.loggers = loggers

    def log_params(self, params: Mapping[str, Any]) -> None:
        for logger in self.loggers:
            logger.log_params(params)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        for logger in self.loggers:
            logger.log_metrics(metrics, step)


def active_mlflow_logger() -> MlflowMetricsLogger | None:
    """An MLflow logger when the process has an active MLflow run, else None."""
    mlflow = sys.modules.get("mlflow")
    if mlflow is None or mlflow.active_run() is None:
        return None
    return MlflowMetricsLogger()


def flatten_params(nested: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, f"{name}."))
        else:
            flat[name] = value
    return flat
