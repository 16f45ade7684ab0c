"""The deploy profile: the patent's topology at edge-device widths, within the FLOP budget, accepted by params."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from liveness.config import ModelParams, load_params
from liveness.model.discriminator import Discriminator
from liveness.model.generator import Generator
from liveness.model.profiles import DEPLOY, PATENT, POOL, PROFILES, UPSAMPLE, WidthProfile, scaled
from tests.fixtures.paths import PROJECT_ROOT

DEPLOY_GFLOP_MAX = 0.5  # the budget per face
SPEEDUP_MIN = 8.0  # the latency target; FLOPs must at least allow it


def scoring_gflop(profile: WidthProfile, size: int) -> float:
    """GFLOP per face of the scoring pass (E1, decoders, recombination, E2; no clear-face head)."""
    generator = Generator(profile).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        generator(torch.zeros(1, 3, size, size), with_clear_face=False)
    return counter.get_total_flops() / 1e9


def _convs(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def _widths(plan: tuple) -> list[int]:
    return [w for w in plan if w not in (POOL, UPSAMPLE)]


def test_deploy_is_registered_with_its_input_size():
    assert PROFILES["deploy"] is DEPLOY and DEPLOY.image_size == 64
    assert (PATENT.image_size, PROFILES["small"].image_size, PROFILES["tiny"].image_size) == (128, 64, 32)


def test_deploy_scoring_pass_fits_the_flop_budget(one_torch_thread):
    gflop = scoring_gflop(DEPLOY, DEPLOY.image_size)
    assert 0.05 < gflop <= DEPLOY_GFLOP_MAX
    assert scoring_gflop(PATENT, PATENT.image_size) / gflop >= SPEEDUP_MIN


def test_deploy_is_narrower_than_patent_everywhere():
    pairs = [(_widths(DEPLOY.encoder), _widths(PATENT.encoder)), (_widths(DEPLOY.decoder), _widths(PATENT.decoder)),
             ([DEPLOY.latent_channels, DEPLOY.head_channels], [PATENT.latent_channels, PATENT.head_channels])]
    for deploy, patent in pairs:
        assert all(d < p for d, p in zip(deploy, patent, strict=True))


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_profile_keeps_the_patent_topology(name):
    """DESIGN §1.1 for each profile: only widths differ."""
    profile = PROFILES[name]
    generator = Generator(profile)
    assert generator.encoder is not generator.re_encoder
    for encoder in (generator.encoder, generator.re_encoder):
        layers = list(encoder.features)
        convs = _convs(encoder.features)
        assert len(convs) == 9 and sum(isinstance(m, nn.ReLU) for m in layers) == 9
        assert [m.stride for m in layers if isinstance(m, nn.MaxPool2d)] == [2, 2]
        assert all(c.kernel_size == (3, 3) and c.stride == (1, 1) for c in convs)
        assert [c.out_channels for c in convs] == _widths(profile.encoder)
        separation = encoder.separation
        assert separation.face_head.kernel_size == (1, 1) and separation.background_head.kernel_size == (3, 3)
        assert separation.face_head.in_channels == separation.background_head.in_channels == profile.encoder[-1] // 2
        assert separation.face_head.out_channels == separation.background_head.out_channels == profile.latent_channels
    assert generator.face_decoder is not generator.background_decoder
    for decoder in (generator.face_decoder, generator.background_decoder):
        layers = list(decoder.layers)
        assert [c.out_channels for c in _convs(decoder)] == _widths(profile.decoder)
        assert sum(isinstance(m, nn.Upsample) for m in layers) == 2 and sum(isinstance(m, nn.ReLU) for m in layers) == 9
    for head in (generator.clear_face_head, generator.recombination_head):
        assert len(_convs(head)) == 2 and isinstance(head.layers[-1], nn.Tanh)
    assert generator.recombination_head.layers[0].in_channels == 2 * profile.decoder_channels
    assert len(_convs(Discriminator(profile))) == 6
    norms = (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm, nn.LayerNorm)
    assert not any(isinstance(m, norms) for m in generator.modules())


def test_deploy_shapes_at_its_input_size(one_torch_thread):
    size = DEPLOY.image_size
    with torch.no_grad():
        out = Generator(DEPLOY).eval()(torch.rand(2, 3, size, size) * 2 - 1)
    for code in (*out.codes, *out.recodes):
        assert code.shape == (2, DEPLOY.latent_channels, size // 4, size // 4)
    assert out.clear_face.shape == out.reconstruction.shape == (2, 3, size, size)
    assert Discriminator(DEPLOY)(torch.zeros(2, 3, size, size)).shape == (2, 2)


def test_image_size_must_suit_two_poolings():
    with pytest.raises(ValueError, match="divisible by 4"):
        WidthProfile("bad", PATENT.encoder, 64, PATENT.decoder, 64, PATENT.discriminator, image_size=30)
    assert scaled(PATENT, 2, "half").image_size == 128 and scaled(PATENT, 2, "half", image_size=96).image_size == 96


def test_params_accept_the_deploy_profile_on_the_shipped_crops():
    """`dvc exp run -S model.profile=deploy` validates, and the shipped 64 px crops fit its input size."""
    params = load_params(PROJECT_ROOT / "params.yaml", {"model.profile": "deploy"})
    assert params.model.profile == "deploy"
    assert params.model.image_size == params.curate.crop.size == params.spoof.crop.size == DEPLOY.image_size
    assert ModelParams(profile="deploy", image_size=64).profile == "deploy"
