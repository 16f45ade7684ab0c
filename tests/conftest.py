"""Shared fixtures. Tests run offline and quiet: telemetry off, Prefect and torch homes isolated."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_homes(tmp_path_factory, monkeypatch):
    """No test reads or writes the user's torch cache, Prefect home or MLflow store."""
    home = tmp_path_factory.mktemp("homes")
    monkeypatch.setenv("TORCH_HOME", str(home / "torch"))
    monkeypatch.setenv("PREFECT_HOME", str(home / "prefect"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")


def tiny_params(**sections):
    """Params for fast tests: tiny widths, 32 px, no workers; sections override per key."""
    from liveness.config import parse_params

    raw = {
        "model": {"profile": "tiny", "image_size": 32},
        "identity": {"backbone": "onet"},
        "train": {"epochs": 1, "batch_size": 4, "num_workers": 0, "log_every_steps": 1, "checkpoint_every_steps": 1000},
    }
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return parse_params(raw)


@pytest.fixture
def smoke_dataset():
    from liveness.data.memory import CropArrayDataset, make_smoke_crops

    return CropArrayDataset(make_smoke_crops(24, 32, seed=3))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny networks gain nothing from intra-op threads, and on a busy 2-core machine threads waiting on each
    other made some tests 10x slower; the setting is restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
