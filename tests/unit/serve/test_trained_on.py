"""Honest answers: every REST answer, and every item of a batch, says what the served model was trained on."""

from __future__ import annotations

import logging

import pytest

from liveness.serve.app import create_app
from liveness.serve.settings import ServeSettings
from tests.fixtures.bad_images import astronaut
from tests.fixtures.serving import jpeg, started
from tests.fixtures.serving import FakePredictor, FakeSource


class RealPredictor(FakePredictor):
    trained_on = "real"


@pytest.mark.parametrize("predictor", [FakePredictor, RealPredictor])
def test_single_batch_and_readiness_answers_carry_trained_on(predictor):
    app = create_app(ServeSettings(model="fake", max_bytes=1000), source=FakeSource(),
                     factory=lambda folder: predictor())
    trained_on = predictor.trained_on
    image = jpeg(astronaut()[:16, :16])
    with started(app) as client:
        single = client.post("/v1/liveness", content=image).json()
        assert single["trained_on"] == trained_on and single["label"] == "live"
        assert single["model"] == {"name": "fake", "version": "1", "uri": "fake://model"}
        files = [("images", ("ok.jpg", image, "image/jpeg")), ("images", ("big.jpg", b"\xff" * 2000, "image/jpeg")),
                 ("images", ("junk.bin", b"not an image", "application/octet-stream"))]
        batch = client.post("/v1/liveness/batch", files=files).json()
        assert batch["trained_on"] == trained_on and batch["model"]["version"] == "1"
        assert [(item["status"], item["trained_on"]) for item in batch["results"]] == [
            (200, trained_on), (413, trained_on), (415, trained_on)]
        assert batch["results"][0]["result"]["trained_on"] == trained_on
        assert client.get("/readyz").json()["trained_on"] == trained_on
        spec = client.get("/openapi.json").json()["components"]["schemas"]
        for schema in ("LivenessResponse", "BatchItem", "BatchResponse"):
            assert spec[schema]["properties"]["trained_on"]["enum"] == ["synthetic", "real"], schema
            assert "trained_on" in spec[schema]["required"], schema


@pytest.mark.parametrize(("predictor", "warned"), [(FakePredictor, True), (RealPredictor, False)])
def test_loading_a_synthetic_model_logs_a_warning(predictor, warned, caplog):
    app = create_app(ServeSettings(model="fake"), source=FakeSource(), factory=lambda folder: predictor())
    with caplog.at_level(logging.WARNING, logger="liveness.serve"), started(app):
        pass
    messages = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    expected = "model fake v1 was trained on SYNTHETIC data; its scores say nothing about real faces"
    assert (expected in messages) is warned
