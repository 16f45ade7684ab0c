"""The plain-Python predictor: detection, crop and score on a tiny random generator."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
from PIL import Image

from liveness.bundle import Predictor
from tests.fixtures.bundles import astronaut, make_model_dir, png_bytes


@pytest.fixture(scope="module")
def predictor(tmp_path_factory) -> Predictor:
    return Predictor(make_model_dir(tmp_path_factory.mktemp("bundle")))


def test_face_photo_is_scored_and_labelled_by_threshold(predictor):
    (result,) = predictor.predict([png_bytes(astronaut())])
    assert result.face_found and len(result.box) == 4 and result.reason == result.detail == ""
    assert math.isfinite(result.score) and result.threshold == 0.5
    assert result.label == ("spoof" if result.score > result.threshold else "live")


def test_array_input_matches_bytes_input(predictor):
    from_bytes, from_array = predictor.predict([png_bytes(astronaut()), astronaut()])
    assert from_bytes.score == pytest.approx(from_array.score)


def test_blank_image_has_no_face(predictor):
    (result,) = predictor.predict([png_bytes(np.full((96, 96, 3), 128, np.uint8))])
    assert (result.face_found, result.box, result.label, result.reason) == (False, None, "no_face", "")
    assert math.isnan(result.score)


def test_bad_bytes_are_rejected_with_reason(predictor):
    empty, garbage = predictor.predict([b"", b"this is not an image at all"])
    assert (empty.label, empty.reason) == ("rejected", "empty_file")
    assert (garbage.label, garbage.reason) == ("rejected", "not_an_image")
    # the decoder's words, without its "input N: rejected (reason): " prefix
    assert empty.detail.startswith("0 bytes") and garbage.detail.startswith("not a recognised image")


def test_several_faces_say_how_many_and_which_policy_refused(predictor):
    (row,) = predictor.predict([np.hstack([astronaut(), astronaut()])])
    assert (row.label, row.reason) == ("rejected", "multiple_faces")
    assert row.detail.startswith("2 faces found") and "'largest'" in row.detail and "2 times" in row.detail


def test_score_alone_equals_score_in_batch(predictor):
    face = astronaut()
    alone = predictor.predict([png_bytes(face)])[0].score
    batch = predictor.predict([png_bytes(face[:, ::-1].copy()), b"", png_bytes(face), png_bytes(face[::2, ::2].copy())])
    assert batch[2].score == pytest.approx(alone, rel=1e-5, abs=1e-7)


def test_config_mismatch_names_the_fix(tmp_path):
    folder = make_model_dir(tmp_path)
    raw = json.loads((folder / "config.json").read_text())
    raw["crop"]["size"] = 64
    (folder / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="curate.crop.size"):
        Predictor(folder)


@pytest.mark.parametrize(("detection", "search"), [({}, "coarse_first"), ({"multi_face": "reject"}, "full"),
                                                   ({"search": "full"}, "full")])
def test_the_detector_searches_as_the_bundle_config_says(tmp_path, detection, search):
    folder = make_model_dir(tmp_path / "bundle")
    config = json.loads((folder / "config.json").read_text())
    config["detection"].update(detection)
    (folder / "config.json").write_text(json.dumps(config))
    detector = Predictor(folder).detector
    assert (detector.search, detector.dominance) == (search, config["detection"]["dominance"])


def test_every_row_says_what_the_model_was_trained_on(predictor, tmp_path):
    rows = predictor.predict([png_bytes(astronaut()), png_bytes(np.full((96, 96, 3), 128, np.uint8)), b""])
    assert predictor.trained_on == "synthetic"
    assert [(row.label, row.trained_on) for row in rows] == [(rows[0].label, "synthetic"), ("no_face", "synthetic"),
                                                              ("rejected", "synthetic")]
    assert rows[0].as_dict()["trained_on"] == "synthetic"
    real = Predictor(make_model_dir(tmp_path / "real", data="real"))
    (row,) = real.predict([astronaut()])
    assert real.trained_on == row.trained_on == row.as_dict()["trained_on"] == "real" and row.face_found


def test_config_without_a_known_data_kind_is_refused(tmp_path):
    folder = make_model_dir(tmp_path)
    raw = json.loads((folder / "config.json").read_text())
    raw["data"] = "unknown"
    (folder / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="data 'unknown' is not one of"):
        Predictor(folder)
    del raw["data"]
    (folder / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="not a valid model config"):
        Predictor(folder)


def test_synthetic_warning_names_the_model_and_version():
    from liveness.bundle import synthetic_warning

    assert synthetic_warning("liveness", "3") == ("model liveness v3 was trained on SYNTHETIC data; its scores say "
                                                   "nothing about real faces")
    assert synthetic_warning("tiny", "local").startswith("model tiny (local) was trained on SYNTHETIC data")


class TestIsolation:
    """Issue 11: one input never fails the batch, and its neighbours' rows are unchanged."""

    def test_a_one_pixel_image_beside_a_face(self, predictor):
        """The 1x1 image whose empty MTCNN pyramid once crashed the whole batch."""
        tiny, face = predictor.predict([png_bytes(np.full((1, 1, 3), 200, np.uint8)), png_bytes(astronaut())])
        assert (tiny.label, tiny.reason, tiny.face_found) == ("no_face", "", False)
        (alone,) = predictor.predict([png_bytes(astronaut())])
        assert face.face_found and face.score == pytest.approx(alone.score)

    def test_strips_narrower_than_the_detector_window_have_no_face(self, predictor):
        rows = predictor.predict([np.zeros((3, 300, 3), np.uint8), np.zeros((5000, 50, 3), np.uint8)])
        assert [row.label for row in rows] == ["no_face", "no_face"]

    def test_a_detector_failure_costs_only_its_image(self, predictor, monkeypatch):
        real = predictor.detector._mtcnn.detect

        def detect(image, landmarks=True):
            if np.asarray(image).shape[:2] == (77, 91):
                raise RuntimeError("simulated MTCNN failure")
            return real(image, landmarks=landmarks)

        monkeypatch.setattr(predictor.detector._mtcnn, "detect", detect)
        odd, face = predictor.predict([np.full((77, 91, 3), 50, np.uint8), astronaut()])
        assert (odd.label, odd.reason) == ("rejected", "detection_failed")
        assert "91x77" in odd.detail and "simulated MTCNN failure" in odd.detail
        assert face.face_found and math.isfinite(face.score)

    def test_a_scoring_failure_costs_only_its_face(self, predictor, monkeypatch):
        real = predictor._scores
        mirrored = astronaut()[:, ::-1].copy()

        def scores(crops):
            if len(crops) > 1:
                raise RuntimeError("simulated batch failure")
            if np.array_equal(crops[0], predictor.crop_faces([mirrored])[0][2]):
                raise RuntimeError("simulated failure on this crop")
            return real(crops)

        monkeypatch.setattr(predictor, "_scores", scores)
        bad, good = predictor.predict([mirrored, astronaut()])
        assert (bad.label, bad.reason) == ("rejected", "processing_failed") and math.isnan(bad.score)
        assert bad.detail and good.detail == ""
        assert good.face_found and math.isfinite(good.score)

    def test_a_nan_score_is_never_labelled_live(self, predictor, monkeypatch):
        monkeypatch.setattr(predictor, "_scores", lambda crops: [math.nan] * len(crops))
        (row,) = predictor.predict([astronaut()])
        assert (row.label, row.reason, row.face_found) == ("rejected", "score_not_finite", True)
        assert "nan" in row.detail

    @pytest.mark.parametrize(("array", "converted"), [
        (np.full((64, 64), 90, np.uint8), "l->rgb"),
        (np.full((64, 64, 1), 90, np.uint8), "l->rgb"),
        (np.full((64, 64, 4), 90, np.uint8), "rgba->rgb"),
        (np.full((64, 64, 3), 90 * 257, np.uint16), "rgb16->rgb"),
    ])
    def test_arrays_are_converted_like_files(self, predictor, array, converted):
        (row,) = predictor.predict([array])
        assert (row.label, row.converted) == ("no_face", converted)

    def test_arrays_that_are_not_pixels_are_rejected_with_a_reason(self, predictor):
        rows = predictor.predict([np.zeros((4, 4, 2), np.uint8), np.zeros((4, 4, 3), np.float32), "a path"])
        assert [(row.label, row.reason) for row in rows] == [("rejected", "unsupported_mode")] * 3

    def test_converted_is_reported_for_a_decoded_file(self, predictor):
        buffer = io.BytesIO()
        Image.fromarray(astronaut()).convert("RGBA").save(buffer, "PNG")
        (row,) = predictor.predict([buffer.getvalue()])
        assert row.face_found and row.converted == "rgba->rgb"
