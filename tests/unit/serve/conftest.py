"""Shared pieces for the service tests: a tiny random bundle, a served app, a face photo."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from liveness.serve.app import create_app
from liveness.serve.settings import ServeSettings
from tests.fixtures.bad_images import astronaut
from tests.unit.registry.test_predictor import make_model_dir


def jpeg(image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def face_jpeg() -> bytes:
    return jpeg(astronaut())


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("bundle") / "tiny")


@contextmanager
def started(app, timeout: float = 120.0) -> Iterator[TestClient]:
    """A TestClient whose app has loaded its model (the lifespan loads it in the background)."""
    with TestClient(app) as client:
        assert app.state.holder.wait_ready(timeout), app.state.holder.last_error
        yield client


def wait_for(condition, timeout: float = 60.0, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout} s")


@pytest.fixture(scope="module")
def client(bundle, one_torch_thread):
    """One app on the tiny bundle for a whole module; batches of up to 32 so the whole bad corpus fits in one."""
    app = create_app(ServeSettings(model=str(bundle), max_batch=64))  # the whole bad corpus in one batch
    with started(app) as test_client:
        yield test_client
