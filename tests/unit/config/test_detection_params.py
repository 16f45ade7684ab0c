"""DetectionParams and the FaceDetector it configures must not drift apart, and its defaults must keep the
smallest face curation accepts findable."""

import inspect

import pytest
from pydantic import ValidationError

from liveness.config import DetectionParams, QualityParams, load_params
from liveness.data.faces import FaceDetector, smallest_face_px
from tests.fixtures.paths import PROJECT_ROOT


def test_face_detector_defaults_agree():
    defaults = {name: parameter.default for name, parameter in inspect.signature(FaceDetector).parameters.items()}
    params = DetectionParams()
    assert ((defaults["min_face_size"], defaults["max_side"], defaults["search"], defaults["dominance"])
            == (params.min_face_size, params.max_side, params.search, params.dominance))


def test_params_yaml_keeps_the_defaults():
    params = load_params(PROJECT_ROOT / "params.yaml")
    for section in (params.curate, params.spoof):
        assert section.detection.model_dump(exclude={"device"}) == DetectionParams().model_dump(exclude={"device"})


def test_a_640x480_frame_keeps_faces_of_the_smallest_accepted_size_findable():
    params = DetectionParams()
    assert smallest_face_px(640, 480, params.min_face_size, params.max_side) < QualityParams().min_face_px


@pytest.mark.parametrize(("width", "height", "expected"), [(160, 160, 20.0), (304, 200, 20.0), (608, 400, 40.0)])
def test_smallest_face_grows_with_images_longer_than_max_side(width, height, expected):
    assert smallest_face_px(width, height, 20, 304) == expected


def test_torch_threads_cannot_be_negative():
    with pytest.raises(ValidationError):
        DetectionParams(torch_threads=-1)


def test_bundles_without_torch_threads_still_load():
    raw = DetectionParams().model_dump(mode="json")
    del raw["torch_threads"]
    assert DetectionParams(**raw).torch_threads == 0


def test_the_coarse_first_search_runs_only_under_the_largest_policy():
    assert DetectionParams().detector_search() == "coarse_first"
    assert DetectionParams(multi_face="reject").detector_search() == "full"  # reject must see every face
    assert DetectionParams(search="full").detector_search() == "full"
    with pytest.raises(ValidationError):
        DetectionParams(search="fastest")


def test_bundles_registered_before_the_search_option_keep_the_full_search(tmp_path):
    from liveness.bundle.files import BundleConfig

    raw = DetectionParams().model_dump(mode="json")
    del raw["search"]
    config = BundleConfig.from_json({"model": {"profile": "tiny", "image_size": 32}, "crop": {"size": 32},
                                     "detection": raw, "threshold": 0.5, "score": "pixel", "data": "synthetic"})
    assert config.detection.search == "full"
    raw["search"] = "coarse_first"
    config = BundleConfig.from_json({"model": {"profile": "tiny", "image_size": 32}, "crop": {"size": 32},
                                     "detection": raw, "threshold": 0.5, "score": "pixel", "data": "synthetic"})
    assert config.detection.search == "coarse_first"
