"""Shared pieces for the service tests: a tiny random bundle, a served app, a face photo."""

from __future__ import annotations

from pathlib import Path

import pytest

from liveness.serve.app import create_app
from liveness.serve.settings import ServeSettings
from tests.fixtures.bad_images import astronaut
from tests.fixtures.bundles import make_model_dir
from tests.fixtures.serving import jpeg, started


@pytest.fixture(scope="session")
def face_jpeg() -> bytes:
    return jpeg(astronaut())


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("bundle") / "tiny")


@pytest.fixture(scope="module")
def client(bundle, one_torch_thread):
    """One app on the tiny bundle for a whole module; batches of up to 32 so the whole bad corpus fits in one."""
    app = create_app(ServeSettings(model=str(bundle), max_batch=64))  # the whole bad corpus in one batch
    with started(app) as test_client:
        yield test_client
