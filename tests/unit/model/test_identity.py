"""The identity network f: real VGGFace2 loading (from files the tests write), the stand-in, and freezing."""

import pytest
import torch
import torch.nn.functional as F
from facenet_pytorch import InceptionResnetV1
from facenet_pytorch.models.mtcnn import ONet
from torch import nn

from liveness.model.identity import (
    VGGFACE2_FILENAME,
    IdentityWeightsError,
    build_identity_network,
    build_onet,
    build_vggface2,
    fetch_vggface2_weights,
    resolve_vggface2_weights,
)


@pytest.fixture(scope="module")
def vggface2_state():
    """A state dict with exactly the layout of facenet-pytorch's VGGFace2 release, logits layer included."""
    torch.manual_seed(7)
    network = InceptionResnetV1(classify=False).eval()
    for module in network.modules():  # non-default BN statistics, so eval-mode use is visible
        if isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    state = network.state_dict()
    state["logits.weight"] = torch.randn(8631, 512) * 0.01
    state["logits.bias"] = torch.zeros(8631)
    return state


@pytest.fixture
def vggface2_file(tmp_path, vggface2_state):
    path = tmp_path / VGGFACE2_FILENAME
    torch.save(vggface2_state, path)
    return path


class TestVggface2:
    def test_loads_from_file_and_matches_reference(self, vggface2_file, vggface2_state):
        identity = build_vggface2(vggface2_file)
        reference = InceptionResnetV1(classify=False)
        reference.load_state_dict({k: v for k, v in vggface2_state.items() if not k.startswith("logits.")})
        reference.eval()
        image = torch.rand(2, 3, 128, 128) * 2 - 1
        # facenet expects 160 px and (x * 255 - 127.5) / 128 standardisation
        expected_input = F.interpolate(image, size=(160, 160), mode="bilinear", align_corners=False) * 127.5 / 128
        with torch.no_grad():
            torch.testing.assert_close(identity(image), reference(expected_input))
        assert identity.embedding_dim == 512 and not identity.stand_in
        assert not hasattr(identity.backbone, "logits"), "the last FC must be removed"

    def test_loads_from_torch_hub_cache(self, tmp_path, vggface2_state, monkeypatch):
        monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
        cached = tmp_path / "torch" / "hub" / "checkpoints" / VGGFACE2_FILENAME
        cached.parent.mkdir(parents=True)
        torch.save(vggface2_state, cached)
        assert resolve_vggface2_weights(None) == cached
        assert build_identity_network("vggface2").name == "vggface2"

    def test_missing_weights_say_which_file_to_put_where(self, tmp_path, monkeypatch):
        monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
        with pytest.raises(IdentityWeightsError) as caught:
            build_identity_network("vggface2")
        message = str(caught.value)
        assert VGGFACE2_FILENAME in message
        assert str(tmp_path / "empty" / "checkpoints" / VGGFACE2_FILENAME) in message
        assert "identity.backbone: none" in message and "identity.weights" in message

    def test_missing_explicit_path_is_named(self, tmp_path):
        with pytest.raises(IdentityWeightsError, match="absent.pt"):
            build_vggface2(tmp_path / "absent.pt")

    def test_truncated_file_is_a_clear_error(self, vggface2_file, tmp_path):
        truncated = tmp_path / "truncated.pt"
        truncated.write_bytes(vggface2_file.read_bytes()[:5000])
        with pytest.raises(IdentityWeightsError, match="truncated"):
            build_vggface2(truncated)

    def test_foreign_state_dict_is_rejected(self, tmp_path):
        path = tmp_path / "other.pt"
        torch.save({"conv.weight": torch.zeros(1)}, path)
        with pytest.raises(IdentityWeightsError, match="does not match InceptionResnetV1"):
            build_vggface2(path)


class TestFetch:
    def test_fetch_from_local_url_puts_weights_in_place(self, vggface2_file, tmp_path):
        destination = tmp_path / "cache" / VGGFACE2_FILENAME
        assert fetch_vggface2_weights(destination, vggface2_file.as_uri(), progress=False) == destination
        assert build_vggface2(destination).embedding_dim == 512
        assert [p.name for p in destination.parent.iterdir()] == [VGGFACE2_FILENAME]

    def test_fetch_of_bad_file_leaves_nothing_behind(self, tmp_path):
        bad = tmp_path / "bad.pt"
        bad.write_bytes(b"not a checkpoint")
        destination = tmp_path / "cache" / VGGFACE2_FILENAME
        with pytest.raises(IdentityWeightsError):
            fetch_vggface2_weights(destination, bad.as_uri(), progress=False)
        assert list(destination.parent.iterdir()) == []


class TestOnetStandIn:
    def test_uses_the_shipped_mtcnn_weights(self):
        identity = build_onet()
        shipped = ONet(pretrained=True).state_dict()
        for name, value in identity.backbone.onet.state_dict().items():
            assert torch.equal(value, shipped[name]), name

    def test_is_labelled_a_stand_in_with_256_features(self):
        identity = build_onet()
        embedding = identity(torch.rand(3, 3, 64, 64) * 2 - 1)
        assert identity.stand_in and identity.name == "onet" and embedding.shape == (3, 256)


class TestFrozen:
    @pytest.mark.parametrize("backbone", ["onet", "vggface2"])
    def test_never_trains_but_passes_gradient_to_input(self, backbone, vggface2_file):
        identity = build_identity_network(backbone, vggface2_file)
        parent = nn.ModuleDict({"f": identity})
        parent.train()
        assert not identity.training and not any(m.training for m in identity.modules())
        assert not any(p.requires_grad for p in identity.parameters())
        image = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_()
        identity(image).sum().backward()
        assert image.grad is not None and image.grad.abs().sum() > 0
        assert all(p.grad is None for p in identity.parameters())

    def test_none_drops_the_network(self):
        assert build_identity_network("none") is None

    def test_unknown_backbone(self):
        with pytest.raises(ValueError, match="unknown identity backbone"):
            build_identity_network("arcface")
