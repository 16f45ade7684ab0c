"""Hand-computed values for every loss term (DESIGN §1.2)."""

import math

import pytest
import torch

from liveness.model.discriminator import FAKE, REAL, Discriminator
from liveness.model.encoder import LatentCodes
from liveness.model.losses import (
    LossWeights,
    discriminator_loss,
    generator_adversarial_loss,
    identity_loss,
    latent_consistency_loss,
    pixel_loss,
    weighted_generator_loss,
)
from liveness.model.profiles import PROFILES


def _logits_with_real_probability(probability: float) -> torch.Tensor:
    """Two-way logits whose softmax gives ``probability`` to REAL."""
    logits = torch.zeros(1, 2)
    logits[0, REAL] = math.log(probability)
    logits[0, FAKE] = math.log(1 - probability)
    return logits


class TestPixelLoss:
    def test_sum_over_channels_and_pixels_divided_by_hw(self):
        image = torch.zeros(1, 3, 2, 2)
        reconstruction = torch.full((1, 3, 2, 2), 0.5)
        # 12 values differ by 0.5: ||.||_1 = 6, HW = 4
        assert pixel_loss(image, reconstruction).item() == pytest.approx(1.5)

    def test_averaged_over_batch(self):
        image = torch.zeros(2, 3, 2, 2)
        reconstruction = torch.stack([torch.full((3, 2, 2), 1.0), torch.full((3, 2, 2), -0.25)])
        # sample 1: 12 / 4 = 3; sample 2: 3 / 4 = 0.75; mean 1.875
        assert pixel_loss(image, reconstruction).item() == pytest.approx(1.875)

    def test_zero_for_perfect_reconstruction(self):
        image = torch.rand(2, 3, 4, 4)
        assert pixel_loss(image, image.clone()).item() == 0.0


class TestAdversarialLoss:
    def test_discriminator_side(self):
        # D(I) = 0.75 and D(I_real) = 0.25: -[log 0.75 + log(1 - 0.25)] = -2 log 0.75
        loss = discriminator_loss(_logits_with_real_probability(0.75), _logits_with_real_probability(0.25))
        assert loss.item() == pytest.approx(-2 * math.log(0.75), rel=1e-6)

    def test_discriminator_side_at_chance(self):
        loss = discriminator_loss(torch.zeros(4, 2), torch.zeros(4, 2))
        assert loss.item() == pytest.approx(2 * math.log(2), rel=1e-6)

    def test_generator_side_is_non_saturating(self):
        # D(I_real) = 0.25: -log 0.25
        assert generator_adversarial_loss(_logits_with_real_probability(0.25)).item() == pytest.approx(
            -math.log(0.25), rel=1e-6
        )

    def test_matches_log_d_formula_on_a_real_discriminator(self):
        torch.manual_seed(0)
        discriminator = Discriminator(PROFILES["tiny"])
        real, fake = torch.rand(3, 3, 16, 16), torch.rand(3, 3, 16, 16)
        expected = -(torch.log(discriminator.probability_real(real)).mean()
                     + torch.log(1 - discriminator.probability_real(fake)).mean())
        assert discriminator_loss(discriminator(real), discriminator(fake)).item() == pytest.approx(
            expected.item(), rel=1e-5
        )


class TestIdentityLoss:
    def test_l2_norm_over_embedding_length(self):
        first = torch.tensor([[3.0, 4.0, 0.0, 0.0]])
        second = torch.zeros(1, 4)
        # ||(3, 4, 0, 0)||_2 = 5, M = 4
        assert identity_loss(first, second).item() == pytest.approx(1.25)

    def test_averaged_over_batch_and_not_squared(self):
        first = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
        second = torch.tensor([[0.0, 0.0], [0.0, 1.0]])
        # sample 1: 5 / 2; sample 2: 1 / 2; mean 1.5
        assert identity_loss(first, second).item() == pytest.approx(1.5)


class TestLatentConsistencyLoss:
    def test_mean_absolute_difference_of_each_code_summed(self):
        codes = LatentCodes(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 3, 3))
        recodes = LatentCodes(torch.ones(1, 2, 2, 2), torch.full((1, 2, 3, 3), -0.5))
        # (1/8) * 8 + (1/18) * 9
        assert latent_consistency_loss(codes, recodes).item() == pytest.approx(1.5)

    def test_per_sample_normalisation(self):
        codes = LatentCodes(torch.zeros(2, 1, 1, 2), torch.zeros(2, 1, 1, 1))
        recodes = LatentCodes(torch.tensor([[[[1.0, 3.0]]], [[[0.0, 0.0]]]]), torch.tensor([[[[2.0]]], [[[0.0]]]]))
        # sample 1: 4/2 + 2/1 = 4; sample 2: 0; mean 2
        assert latent_consistency_loss(codes, recodes).item() == pytest.approx(2.0)


class TestWeightedSum:
    def test_weights_apply_per_term(self):
        terms = {"pixel": torch.tensor(2.0), "adversarial": torch.tensor(3.0), "latent": torch.tensor(5.0)}
        total = weighted_generator_loss(terms, LossWeights(pixel=50, adversarial=1, identity=7, latent=0.5))
        assert total.item() == pytest.approx(100 + 3 + 2.5)

    def test_identity_term_counts_when_present(self):
        terms = {"pixel": torch.tensor(1.0), "identity": torch.tensor(0.5)}
        assert weighted_generator_loss(terms, LossWeights(pixel=1, identity=4)).item() == pytest.approx(3.0)


class TestLatentModes:
    """loss.latent_mode: the scale-collapse remedies of DESIGN §1.4."""

    def _codes(self):
        from liveness.model.encoder import LatentCodes

        torch.manual_seed(0)
        codes = LatentCodes(torch.randn(2, 3, 2, 2, requires_grad=True), torch.randn(2, 3, 2, 2, requires_grad=True))
        recodes = LatentCodes(torch.randn(2, 3, 2, 2, requires_grad=True), torch.randn(2, 3, 2, 2, requires_grad=True))
        return codes, recodes

    def test_patent_mode_pulls_both_encoders(self):
        codes, recodes = self._codes()
        latent_consistency_loss(codes, recodes, "patent").backward()
        assert codes.background.grad.abs().sum() > 0 and recodes.background.grad.abs().sum() > 0

    def test_stop_gradient_leaves_e1_codes_alone_with_the_same_value(self):
        codes, recodes = self._codes()
        loss = latent_consistency_loss(codes, recodes, "stop_gradient")
        loss.backward()
        assert codes.background.grad is None and codes.face.grad is None
        assert recodes.background.grad.abs().sum() > 0
        assert loss.item() == pytest.approx(latent_consistency_loss(codes, recodes, "patent").item())

    def test_relative_mode_does_not_reward_shrinking_the_codes(self):
        from liveness.model.encoder import LatentCodes

        codes, recodes = self._codes()
        small = LatentCodes(codes.face * 0.01, codes.background * 0.01)
        small_recodes = LatentCodes(recodes.face * 0.01, recodes.background * 0.01)
        patent_ratio = (latent_consistency_loss(small, small_recodes, "patent")
                        / latent_consistency_loss(codes, recodes, "patent"))
        relative_ratio = (latent_consistency_loss(small, small_recodes, "relative")
                          / latent_consistency_loss(codes, recodes, "relative"))
        assert patent_ratio.item() == pytest.approx(0.01, rel=1e-4)
        assert relative_ratio.item() == pytest.approx(1.0, rel=1e-3)

    def test_unknown_mode_is_refused(self):
        codes, recodes = self._codes()
        with pytest.raises(ValueError, match="not one of"):
            latent_consistency_loss(codes, recodes, "nope")
