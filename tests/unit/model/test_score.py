import pytest
import torch

from liveness.model.generator import Generator
from liveness.model.profiles import PROFILES
from liveness.model.score import latent_background_score, score_images


class TestLatentBackgroundScore:
    def test_mean_absolute_difference_per_sample(self):
        z_bg = torch.zeros(2, 2, 1, 2)
        z_bg_recoded = torch.tensor([[[[1.0, 1.0]], [[1.0, 1.0]]], [[[0.0, 2.0]], [[-2.0, 0.0]]]])
        assert latent_background_score(z_bg, z_bg_recoded).tolist() == pytest.approx([1.0, 1.0])

    def test_zero_when_codes_agree(self):
        z_bg = torch.randn(3, 4, 2, 2)
        assert latent_background_score(z_bg, z_bg.clone()).tolist() == [0.0, 0.0, 0.0]


class TestBatchIndependence:
    @pytest.mark.parametrize("profile,size", [("tiny", 32), ("small", 64)])
    def test_score_alone_equals_score_in_batch(self, profile, size):
        torch.manual_seed(0)
        generator = Generator(PROFILES[profile])
        images = torch.rand(5, 3, size, size) * 2 - 1
        in_batch = score_images(generator, images)
        alone = torch.cat([score_images(generator, images[i : i + 1]) for i in range(5)])
        assert in_batch.shape == (5,)
        torch.testing.assert_close(alone, in_batch, rtol=1e-5, atol=1e-7)
        # and the batch mates really differ, so the test is not trivially true
        assert in_batch.std() > 0

    def test_score_does_not_change_with_batch_mates(self):
        torch.manual_seed(1)
        generator = Generator(PROFILES["tiny"])
        probe = torch.rand(1, 3, 32, 32) * 2 - 1
        with_bright = score_images(generator, torch.cat([probe, torch.ones(3, 3, 32, 32)]))[0]
        with_dark = score_images(generator, torch.cat([probe, -torch.ones(3, 3, 32, 32)]))[0]
        torch.testing.assert_close(with_bright, with_dark, rtol=1e-5, atol=1e-7)

    def test_scoring_restores_training_mode(self):
        generator = Generator(PROFILES["tiny"]).train()
        score_images(generator, torch.zeros(1, 3, 32, 32))
        assert generator.training
