"""Issue 11: in curation one record never fails a chunk; each gets its own manifest row with a reason."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from liveness.data import curate
from liveness.data.curate import CurationSettings, process_chunk
from liveness.data.records import SourceRecord
from tests.fixtures.bad_images import astronaut

SETTINGS = CurationSettings(kind="spoof", crop_size=32)


def _record(path, index: int) -> SourceRecord:
    return SourceRecord(source="test", path=str(path), subject=f"s{index}", label="spoof", species="print")


@pytest.fixture
def records(tmp_path, one_torch_thread):
    paths = []
    for index, (name, image) in enumerate([("one_pixel.png", np.full((1, 1, 3), 9, np.uint8)),
                                           ("odd.png", np.full((77, 91, 3), 50, np.uint8)),
                                           ("gray.png", np.asarray(Image.fromarray(astronaut()).convert("L"))),
                                           ("face.png", astronaut())]):
        Image.fromarray(image).save(tmp_path / name)
        paths.append(_record(tmp_path / name, index))
    return paths


def test_tiny_and_grey_images_beside_a_face(records):
    rows = [outcome.row for outcome in process_chunk(records, SETTINGS)]
    assert [row["reject_reason"] for row in rows] == ["no_face", "no_face", "", ""]
    assert [row["converted"] for row in rows] == ["", "", "l->rgb", ""]


def test_a_detector_failure_is_one_row(records, monkeypatch):
    detector = curate._detector(SETTINGS)
    real = detector._mtcnn.detect

    def detect(image, landmarks=True):
        if np.asarray(image).shape[:2] == (77, 91):
            raise RuntimeError("simulated MTCNN failure")
        return real(image, landmarks=landmarks)

    monkeypatch.setattr(detector._mtcnn, "detect", detect)
    rows = [outcome.row for outcome in process_chunk(records, SETTINGS)]
    assert rows[1]["reject_reason"] == "detection_failed" and "simulated" in rows[1]["reject_detail"]
    assert rows[3]["reject_reason"] == ""


def test_a_crop_failure_is_one_row(records, monkeypatch):
    real = curate._crop_outcome

    def crop(record, frame_index, image, faces, settings):
        if record.path.endswith("gray.png"):
            raise np.linalg.LinAlgError("simulated degenerate landmarks")
        return real(record, frame_index, image, faces, settings)

    monkeypatch.setattr(curate, "_crop_outcome", crop)
    rows = [outcome.row for outcome in process_chunk(records, SETTINGS)]
    assert rows[2]["reject_reason"] == "crop_failed" and rows[2]["converted"] == "l->rgb"
    assert rows[3]["reject_reason"] == ""


def test_a_reader_failure_is_one_row(records, monkeypatch):
    real = curate._decoded_images

    def decoded(record, settings):
        if record.path.endswith("odd.png"):
            raise RuntimeError("simulated reader bug")
        return real(record, settings)

    monkeypatch.setattr(curate, "_decoded_images", decoded)
    rows = [outcome.row for outcome in process_chunk(records, SETTINGS)]
    assert rows[1]["reject_reason"] == "unreadable" and "simulated reader bug" in rows[1]["reject_detail"]
    assert rows[3]["reject_reason"] == ""


@pytest.mark.parametrize(("detection", "search"), [({}, "coarse_first"), ({"multi_face": "reject"}, "full"),
                                                   ({"search": "full"}, "full")])
def test_curation_searches_as_serving_does(detection, search):
    from liveness.config import CurateParams, DetectionParams
    from liveness.data.stage import LIVE_KIND, settings_for

    params = DetectionParams(device="cpu", **detection)
    settings = settings_for(CurateParams(detection=params), LIVE_KIND)
    assert settings.search == search == params.detector_search()
    detector = curate._detector(settings)
    assert (detector.search, detector.dominance) == (search, params.dominance)
