"""The alternating update: who gets gradient, who changes, and when."""

import pytest
import torch

from liveness.model.discriminator import Discriminator
from liveness.model.generator import Generator
from liveness.model.identity import build_onet
from liveness.model.losses import LossWeights
from liveness.model.profiles import PROFILES
from liveness.runtime import resolve_runtime
from liveness.train.step import TrainingStep

# Parameters that by design get no gradient from the G loss, per identity choice.
NO_GRADIENT_BY_DESIGN = {
    "onet": set(),
    # Without f, the clear face I_c feeds no loss, so its head is untrained (the run records L_id dropped).
    "none": {"clear_face_head.layers.0.weight", "clear_face_head.layers.0.bias",
             "clear_face_head.layers.2.weight", "clear_face_head.layers.2.bias"},
}


def _snapshot(module):
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def _build(identity_name: str):
    torch.manual_seed(0)
    generator, discriminator = Generator(PROFILES["tiny"]), Discriminator(PROFILES["tiny"])
    identity = build_onet() if identity_name == "onet" else None
    optimizer_g = torch.optim.Adam(generator.parameters(), lr=1e-3)
    optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=1e-3)
    step = TrainingStep(generator, discriminator, discriminator, identity, optimizer_g, optimizer_d,
                        LossWeights(), resolve_runtime("cpu"))
    return step, generator, discriminator, identity


@pytest.fixture
def images():
    torch.manual_seed(1)
    return torch.rand(4, 3, 32, 32) * 2 - 1


class TestGradientFlow:
    @pytest.mark.parametrize("identity_name", ["onet", "none"])
    def test_every_generator_parameter_gets_gradient_from_g_loss(self, identity_name, images):
        step, generator, _, _ = _build(identity_name)
        step(images)  # grads left on G are those of the G loss alone (zeroed before the G backward)
        without = {name for name, p in generator.named_parameters() if p.grad is None or p.grad.abs().sum() == 0}
        assert without == NO_GRADIENT_BY_DESIGN[identity_name]

    def test_losses_reported(self, images):
        step, *_ = _build("onet")
        losses = step(images)
        assert set(losses) == {"loss_d", "loss_g", "loss_pixel", "loss_adversarial", "loss_latent", "loss_identity"}
        assert all(torch.isfinite(v) and not v.requires_grad for v in losses.values())
        weights = LossWeights()
        expected = (weights.pixel * losses["loss_pixel"] + weights.adversarial * losses["loss_adversarial"]
                    + weights.latent * losses["loss_latent"] + weights.identity * losses["loss_identity"])
        torch.testing.assert_close(losses["loss_g"], expected)

    def test_no_identity_term_without_f(self, images):
        step, *_ = _build("none")
        assert "loss_identity" not in step(images)


class TestWhoChangesWhen:
    def test_discriminator_changes_only_in_its_own_step(self, images):
        step, generator, discriminator, _ = _build("onet")
        before_g, before_d = _snapshot(generator), _snapshot(discriminator)
        seen = {}
        original_d_step = step.optimizer_d.step

        def record_d_step(*args, **kwargs):
            seen["g_during_d_step"] = _snapshot(generator)
            result = original_d_step(*args, **kwargs)
            seen["d_after_d_step"] = _snapshot(discriminator)
            return result

        step.optimizer_d.step = record_d_step
        step(images)
        # the D step changed D and left G alone
        assert any(not torch.equal(before_d[k], seen["d_after_d_step"][k]) for k in before_d)
        assert all(torch.equal(before_g[k], seen["g_during_d_step"][k]) for k in before_g)
        # the G step changed G and left D exactly as its own step left it
        after_g, after_d = _snapshot(generator), _snapshot(discriminator)
        assert all(torch.equal(after_d[k], seen["d_after_d_step"][k]) for k in after_d)
        assert any(not torch.equal(before_g[k], after_g[k]) for k in before_g)
        assert all(p.requires_grad for p in discriminator.parameters()), "D must be trainable again after the G step"

    def test_identity_network_never_changes(self, images):
        step, _, _, identity = _build("onet")
        before = _snapshot(identity)
        for _ in range(3):
            step(images)
        after = _snapshot(identity)
        assert all(torch.equal(before[k], after[k]) for k in before)
        assert not identity.training


class TestScheduledTerms:
    """``adversarial`` and ``identity`` switch D's step and L_id off for one iteration (train.d_every etc.)."""

    def test_without_adversarial_d_is_neither_run_nor_changed(self, images):
        step, generator, discriminator, _ = _build("onet")
        calls = []
        discriminator.register_forward_hook(lambda *args: calls.append(1))
        before_g, before_d = _snapshot(generator), _snapshot(discriminator)
        losses = step(images, adversarial=False)
        assert not calls
        assert all(torch.equal(before_d[k], v) for k, v in _snapshot(discriminator).items())
        assert any(not torch.equal(before_g[k], v) for k, v in _snapshot(generator).items())
        assert set(losses) == {"loss_g", "loss_pixel", "loss_latent", "loss_identity"}
        weights = LossWeights()
        expected = (weights.pixel * losses["loss_pixel"] + weights.latent * losses["loss_latent"]
                    + weights.identity * losses["loss_identity"])
        torch.testing.assert_close(losses["loss_g"], expected)

    def test_without_identity_f_is_not_run(self, images):
        step, _, _, identity = _build("onet")
        calls = []
        identity.register_forward_hook(lambda *args: calls.append(1))
        losses = step(images, identity=False)
        assert not calls and "loss_identity" not in losses
        step(images)
        assert len(calls) == 2, "f(I) and f(I_c) when L_id is on"
