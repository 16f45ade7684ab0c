"""Property: at every entry point, every input gets its own row or answer (scored, no_face, or rejected with a
reason), never an exception or an HTTP 500, and one bad input never changes the others' results.

Entry points: ``Predictor.predict`` (torch and onnx backends), the pyfunc model, ``liveness serve`` (single and
batch) and curation (live and spoof). Inputs come from ``tests.fixtures.image_strategies``: sizes from 1x1
(the MTCNN pyramid crash of issue 11) to 1:100 strips, every mode, six formats, EXIF orientations, truncation.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from liveness.data.curate import CurationSettings, process_chunk
from liveness.data.decode import CONVERSIONS
from liveness.config import QualityParams
from liveness.data.records import SourceRecord
from liveness.bundle import PREDICTION_REASONS, Prediction, Predictor
from tests.fixtures.bad_images import astronaut
from tests.fixtures.image_strategies import ImageFile, image_files
from tests.fixtures.bundles import make_model_dir

pytestmark = pytest.mark.slow

ENTRY_SETTINGS = settings(max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
LABELS = {"live", "spoof", "no_face", "rejected"}
SMALL = dict(max_pixels=160 * 160, max_side=1600)  # keeps MTCNN cheap; still 1x1 to 1:100


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


ONE_PIXEL = _png(np.full((1, 1, 3), 200, np.uint8))  # issue 11: MTCNN's empty pyramid failed the whole batch
STRIP = _png(np.full((2, 200, 3), 90, np.uint8))  # shorter than MTCNN's 12 px window
FACE = _png(np.asarray(Image.fromarray(astronaut()).resize((160, 160))))  # at the pixel limit, a findable face


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, one_torch_thread) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("bundle"))


@pytest.fixture(scope="module")
def predictors(bundle) -> dict[str, Predictor]:
    from liveness.export.onnx import export_bundle

    export_bundle(bundle)
    return {"torch": Predictor(bundle), "onnx": Predictor(bundle, backend="onnx")}


def _check_row(row: Prediction) -> None:
    assert row.label in LABELS
    assert row.converted == "" or row.converted in CONVERSIONS
    if row.label == "rejected":
        assert row.reason in PREDICTION_REASONS, row
    assert bool(row.detail) == (row.label == "rejected"), row  # a rejection says what happened, in words
    if row.label in ("live", "spoof"):
        assert row.face_found and math.isfinite(row.score) and len(row.box) == 4
    else:
        assert math.isnan(row.score)


def _same(a: Prediction, b: Prediction) -> bool:
    scores_equal = (math.isnan(a.score) and math.isnan(b.score)) or a.score == pytest.approx(b.score, rel=1e-4, abs=1e-6)
    return (a.label, a.reason, a.converted, a.face_found) == (b.label, b.reason, b.converted, b.face_found) and scores_equal


@ENTRY_SETTINGS
@given(st.lists(image_files(**SMALL), min_size=1, max_size=3), st.sampled_from(["torch", "onnx"]))
@example([ImageFile(ONE_PIXEL, 1, 1, "RGB", "PNG", 1, None, len(ONE_PIXEL))], "torch")
@example([ImageFile(STRIP, 200, 2, "RGB", "PNG", 1, None, len(STRIP))], "onnx")
def test_predict_gives_every_input_its_own_row(predictors, images, backend):
    predictor = predictors[backend]
    batch = [image.data for image in images] + [FACE]
    rows = predictor.predict(batch)
    assert len(rows) == len(batch)
    for row in rows:
        _check_row(row)
    assert rows[-1].face_found, "a bad neighbour must not cost the face photo its score"
    for data, row in zip(batch, rows, strict=True):
        (alone,) = predictor.predict([data])
        assert _same(row, alone), (row, alone)


@ENTRY_SETTINGS
@given(st.lists(image_files(**SMALL), min_size=1, max_size=3))
def test_pyfunc_model_gives_every_input_its_own_row(bundle, images):
    from types import SimpleNamespace

    import pandas as pd

    from liveness.registry.pyfunc_model import BUNDLE, OUTPUT_COLUMNS, LivenessModel

    model = LivenessModel()
    model.load_context(SimpleNamespace(artifacts={BUNDLE: str(bundle)}))
    frame = model.predict(None, pd.DataFrame({"image": [image.data for image in images] + [FACE]}))
    assert list(frame.columns) == list(OUTPUT_COLUMNS) and len(frame) == len(images) + 1
    assert set(frame["label"]) <= LABELS and bool(frame["face_found"].iloc[-1])
    rejected = frame[frame["label"] == "rejected"]
    assert set(rejected["reason"]) <= set(PREDICTION_REASONS)
    assert rejected["detail"].astype(bool).all() and not frame.loc[frame["label"] != "rejected", "detail"].any()


@pytest.fixture(scope="module")
def client(bundle):
    from liveness.serve.app import create_app
    from liveness.serve.settings import ServeSettings
    from tests.fixtures.serving import started

    with started(create_app(ServeSettings(model=str(bundle), max_pixels=SMALL["max_pixels"]))) as test_client:
        yield test_client


@ENTRY_SETTINGS
@given(st.lists(image_files(**SMALL), min_size=1, max_size=3))
@example([ImageFile(ONE_PIXEL, 1, 1, "RGB", "PNG", 1, None, len(ONE_PIXEL))])
def test_serve_answers_every_image_with_a_200_or_a_4xx(client, images):
    for image in images:
        answer = client.post("/v1/liveness", content=image.data, headers={"content-type": "application/octet-stream"})
        assert answer.status_code == 200 or 400 <= answer.status_code < 500, (image, answer.text)
        body = answer.json()
        if answer.status_code == 200:
            assert body["label"] in LABELS
        else:
            assert body["error"] and body["detail"]
    files = [("images", (f"{i}.bin", image.data, "application/octet-stream")) for i, image in enumerate(images)]
    files.append(("images", ("face.png", FACE, "image/png")))
    answer = client.post("/v1/liveness/batch", files=files)
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [item["index"] for item in results] == list(range(len(files)))
    assert all(item["status"] == 200 or 400 <= item["status"] < 500 for item in results)
    assert results[-1]["status"] == 200 and results[-1]["result"]["faces"] == 1


LIVE = CurationSettings(kind="live", crop_size=32, thresholds=QualityParams(), max_pixels=SMALL["max_pixels"])
SPOOF = CurationSettings(kind="spoof", crop_size=32, max_pixels=SMALL["max_pixels"])


@ENTRY_SETTINGS
@given(st.lists(image_files(**SMALL), min_size=1, max_size=3), st.sampled_from(["live", "spoof"]))
@example([ImageFile(ONE_PIXEL, 1, 1, "RGB", "PNG", 1, None, len(ONE_PIXEL))], "live")
def test_curation_gives_every_file_its_own_manifest_row(tmp_path_factory, one_torch_thread, images, kind):
    folder = tmp_path_factory.mktemp("drawn")
    records = []
    for index, image in enumerate([*images, None]):
        path = folder / f"{index}.{'png' if image is None else image.image_format.lower()}"
        path.write_bytes(FACE if image is None else image.data)
        label, species = ("live", "live") if kind == "live" else ("spoof", "print")
        records.append(SourceRecord(source="drawn", path=str(path), subject=f"s{index}", label=label, species=species))
    outcomes = process_chunk(records, LIVE if kind == "live" else SPOOF)
    assert [outcome.row["path"] for outcome in outcomes] == [record.path for record in records]
    for outcome in outcomes:
        assert outcome.accepted or outcome.row["reject_reason"], outcome.row
        if outcome.crop is not None:
            assert outcome.crop.shape == (32, 32, 3) and outcome.crop.dtype == np.uint8
        assert outcome.row.get("converted", "") in {"", *CONVERSIONS}
    assert outcomes[-1].crop is not None, "a bad neighbour must not cost the face photo its crop"
