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


from types import SimpleNamespace  # noqa: E402

import numpy as np  # noqa: E402

from liveness.model.encoder import LatentCodes  # noqa: E402
import dataclasses  # noqa: E402

from liveness.model.score import (  # noqa: E402
    BASE_SCORES,
    SCORE_NAMES,
    ScoreStatistics,
    feature_gaussian_score,
    gradient_residual_score,
    high_frequency_spectrum_score,
    high_pass_residual_score,
    relative_latent_score,
    score_components,
    residual_features,
    structural_dissimilarity_score,
    topk_patch_residual_score,
)


def _output(background, recoded_background, reconstruction):
    face = torch.zeros(background.shape[0], 1, 1, 1)
    return SimpleNamespace(codes=LatentCodes(face, background), recodes=LatentCodes(face, recoded_background),
                           reconstruction=reconstruction)


class TestScoreComponents:
    def test_hand_computed_values(self):
        # one sample, 2 channels of 1x2: z_bg = [[1, 1], [2, 2]], z_bg' = [[2, 2], [2, 2]]
        background = torch.tensor([[[[1.0, 1.0]], [[2.0, 2.0]]]])
        recoded = torch.tensor([[[[2.0, 2.0]], [[2.0, 2.0]]]])
        image = torch.zeros(1, 3, 4, 4)
        statistics = ScoreStatistics((0.5, 2.0), {"latent_bg": 0.25, "pixel": 0.0},
                                     {"latent_bg": 0.5, "pixel": 1.0}, ("latent_bg", "pixel"))
        scores = score_components(image, _output(background, recoded, torch.full((1, 3, 4, 4), 0.5)), statistics)
        assert set(scores) == set(SCORE_NAMES) - {"feature_gaussian"}  # these statistics hold no feature Gaussian
        assert scores["latent_bg"].item() == pytest.approx(0.5)  # mean |diff| over 4 values: (1+1+0+0)/4
        cosine = (1 * 2 * 2 + 2 * 2 * 2) / (np.sqrt(1 + 1 + 4 + 4) * np.sqrt(16))
        assert scores["latent_bg_cos"].item() == pytest.approx(1 - cosine, rel=1e-5)
        assert scores["latent_bg_std"].item() == pytest.approx((1 / 0.5 + 0 / 2.0) / 2)  # channel 1 diff 1, std 0.5
        assert scores["pixel"].item() == pytest.approx(0.5)
        assert scores["pixel_hf"].item() == pytest.approx(0.0, abs=1e-7)  # a flat residual has no fine detail
        # fused: mean of ((0.5 - 0.25) / 0.5, (0.5 - 0) / 1) = (0.5 + 0.5) / 2
        assert scores["fused"].item() == pytest.approx(0.5)
        assert scores["deviation"].item() == pytest.approx(0.5)  # rms of (0.5, 0.5)

    def test_deviation_is_two_sided(self):
        """Too small a gap is as atypical of live as too large a one: fused tells them apart, deviation does not."""
        statistics = ScoreStatistics((1.0,), {"pixel": 0.5}, {"pixel": 0.1}, ("pixel",))
        background = torch.zeros(2, 1, 1, 1)
        image = torch.zeros(2, 3, 2, 2)
        reconstruction = torch.stack([torch.full((3, 2, 2), 0.3), torch.full((3, 2, 2), 0.7)])  # z = -2 and +2
        scores = score_components(image, _output(background, background, reconstruction), statistics)
        assert scores["fused"].tolist() == pytest.approx([-2.0, 2.0])
        assert scores["deviation"].tolist() == pytest.approx([2.0, 2.0])

    def test_without_statistics_only_the_base_scores(self):
        background = torch.randn(2, 2, 2, 2)
        scores = score_components(torch.zeros(2, 3, 4, 4), _output(background, background * 2, torch.zeros(2, 3, 4, 4)))
        assert tuple(scores) == BASE_SCORES

    def test_high_pass_sees_a_checkerboard_but_not_a_ramp(self):
        ramp = torch.linspace(-1, 1, 16).repeat(1, 3, 16, 1)
        checker = ((torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2).float().expand(1, 3, 16, 16) * 0.2
        zero = torch.zeros(1, 3, 16, 16)
        assert high_pass_residual_score(ramp * 0.1, zero).item() < 0.01
        assert high_pass_residual_score(checker, zero).item() > 0.05

    def test_statistics_round_trip_through_json(self):
        statistics = ScoreStatistics((0.1, 0.2), {"pixel": 1.0}, {"pixel": 2.0}, ("pixel",), 9,
                                     (0.5, 1.5), (1.0, 2.0), ((1.0, 0.25), (0.25, 2.0)))
        assert ScoreStatistics.from_json(statistics.to_json()) == statistics

    def test_statistics_without_a_gaussian_load_and_say_so(self):
        """metrics written before feature_gaussian existed still load; they just cannot give that score."""
        raw = ScoreStatistics((0.1,), {"pixel": 1.0}, {"pixel": 2.0}, ("pixel",), 3).to_json()
        for key in ("feature_mean", "feature_scale", "feature_precision"):
            raw.pop(key)
        loaded = ScoreStatistics.from_json(raw)
        assert loaded.supports("deviation") and not loaded.supports("feature_gaussian")

    def test_fusion_of_fused_is_refused(self):
        with pytest.raises(ValueError, match="not scores"):
            ScoreStatistics((1.0,), fusion=("fused",))
        with pytest.raises(ValueError, match="not scores"):
            ScoreStatistics((1.0,), fusion=("deviation",))


class TestEveryScoreIsBatchIndependent:
    def test_with_statistics(self):
        torch.manual_seed(0)
        generator = Generator(PROFILES["tiny"]).eval()
        images = torch.rand(5, 3, 32, 32) * 2 - 1
        statistics = ScoreStatistics(tuple(float(v) for v in torch.rand(PROFILES["tiny"].latent_channels) + 0.1),
                                     {name: 0.1 for name in ("latent_bg_std", "pixel", "pixel_hf")},
                                     {name: 0.2 for name in ("latent_bg_std", "pixel", "pixel_hf")},
                                     ("latent_bg_std", "pixel", "pixel_hf"))
        with torch.no_grad():
            output = generator(images, with_clear_face=False)
            features = residual_features(images, output.reconstruction)
        dimension = features.shape[1]
        statistics = dataclasses.replace(
            statistics, feature_mean=tuple(features.mean(0).tolist()), feature_scale=tuple(features.std(0).add(1e-3).tolist()),
            feature_precision=tuple(tuple(row) for row in torch.eye(dimension).tolist()))
        with torch.no_grad():
            in_batch = score_components(images, generator(images, with_clear_face=False), statistics)
            alone = [score_components(images[i:i + 1], generator(images[i:i + 1], with_clear_face=False), statistics)
                     for i in range(5)]
        assert set(in_batch) == set(SCORE_NAMES)
        for name in SCORE_NAMES:
            torch.testing.assert_close(torch.cat([item[name] for item in alone]), in_batch[name], rtol=1e-5, atol=1e-6)
            assert in_batch[name].std() > 0, name
        for name in SCORE_NAMES:  # serving asks for one score: the same value, and nothing it did not ask for
            with torch.no_grad():
                only = score_components(images, generator(images, with_clear_face=False), statistics, only=name)
            torch.testing.assert_close(only[name], in_batch[name])
            expected = {name} | (set(statistics.fusion) | {"fused", "deviation"} if name in ("fused", "deviation")
                                 else set())
            assert set(only) == expected, name


class TestLocalisedAndScaleFreeScores:
    def _pair(self, size=32):
        torch.manual_seed(3)
        image = torch.rand(1, 3, size, size) * 2 - 1
        return image, image.clone()

    def test_perfect_reconstruction_scores_zero_or_floor(self):
        image, same = self._pair()
        assert topk_patch_residual_score(image, same).item() == 0.0
        assert structural_dissimilarity_score(image, same).item() == pytest.approx(0.0, abs=1e-5)
        assert gradient_residual_score(image, same).item() == 0.0
        assert high_frequency_spectrum_score(image, same).item() == pytest.approx(np.log(1e-8), abs=1e-3)

    def test_topk_sees_a_small_local_defect_that_the_mean_dilutes(self):
        image = torch.zeros(1, 3, 64, 64)
        local = image.clone()
        local[..., 8:16, 8:16] = 1.0  # one 8x8 patch: 1.6% of the pixels
        spread = image + 1.0 * (8 * 8) / (64 * 64)  # the same total error spread evenly
        assert pixel_mean(local) == pytest.approx(pixel_mean(spread), rel=1e-4)
        assert topk_patch_residual_score(local, image).item() > 10 * topk_patch_residual_score(spread, image).item()

    def test_spectrum_sees_a_fine_grid_not_a_smooth_shift(self):
        zero = torch.zeros(1, 3, 32, 32)
        grid = ((torch.arange(32)[:, None] + torch.arange(32)[None, :]) % 2).float().expand(1, 3, 32, 32) * 0.2
        smooth = torch.linspace(0, 0.2, 32).repeat(1, 3, 32, 1)
        assert high_frequency_spectrum_score(grid, zero).item() > high_frequency_spectrum_score(smooth, zero).item() + 3

    def test_spectrum_matches_torch_fft(self):
        image, zero = torch.rand(2, 3, 16, 12), torch.zeros(2, 3, 16, 12)
        power = torch.fft.fft2(image.mean(dim=1)).abs().square() / (16 * 12)
        fy = torch.minimum(torch.arange(16), 16 - torch.arange(16)) / 8
        fx = torch.minimum(torch.arange(12), 12 - torch.arange(12)) / 6
        band = (fy[:, None] ** 2 + fx[None, :] ** 2).sqrt() > 0.5
        expected = torch.log(power[:, band].mean(dim=1) + 1e-8)
        torch.testing.assert_close(high_frequency_spectrum_score(image, zero), expected, rtol=1e-4, atol=1e-4)

    def test_ssim_ignores_a_brightness_shift_more_than_l1_does(self):
        image, _ = self._pair()
        brighter = (image + 0.1).clamp(-1, 1)
        noisy = image + 0.1 * torch.randn_like(image).sign()
        assert pixel_mean(brighter, image) == pytest.approx(pixel_mean(noisy, image), rel=0.2)
        assert structural_dissimilarity_score(brighter, image) < structural_dissimilarity_score(noisy, image) / 3

    def test_relative_latent_score_is_scale_free(self):
        z = torch.randn(2, 4, 3, 3)
        z_recoded = z + 0.1 * torch.randn_like(z)
        torch.testing.assert_close(relative_latent_score(z * 0.01, z_recoded * 0.01), relative_latent_score(z, z_recoded),
                                   rtol=1e-4, atol=1e-6)
        assert (latent_background_score(z * 0.01, z_recoded * 0.01) < latent_background_score(z, z_recoded)).all()

    def test_scores_work_on_images_smaller_than_their_windows(self):
        image = torch.rand(2, 3, 4, 4)
        for score in (topk_patch_residual_score, structural_dissimilarity_score, gradient_residual_score,
                      high_frequency_spectrum_score):
            assert score(image, torch.zeros_like(image)).shape == (2,)


class TestFeatureGaussian:
    def test_identity_precision_is_the_mean_squared_z_score(self):
        statistics = ScoreStatistics((1.0,), feature_mean=(1.0, 2.0), feature_scale=(1.0, 2.0),
                                     feature_precision=((1.0, 0.0), (0.0, 1.0)))
        features = torch.tensor([[1.0, 2.0], [3.0, 2.0], [1.0, 6.0]])
        assert feature_gaussian_score(features, statistics).tolist() == pytest.approx([0.0, 2.0, 2.0])

    def test_correlated_features_are_discounted(self):
        """Two perfectly correlated live features: a sample that moves both together is typical, one that breaks
        the correlation is not, although both are equally far from the mean in plain z-scores."""
        covariance = torch.tensor([[1.0, 0.95], [0.95, 1.0]])
        statistics = ScoreStatistics((1.0,), feature_mean=(0.0, 0.0), feature_scale=(1.0, 1.0),
                                     feature_precision=tuple(tuple(r) for r in torch.linalg.inv(covariance).tolist()))
        together, apart = torch.tensor([[1.0, 1.0]]), torch.tensor([[1.0, -1.0]])
        assert feature_gaussian_score(apart, statistics).item() > 10 * feature_gaussian_score(together, statistics).item()

    def test_statistics_fitted_on_fewer_features_score_their_leading_ones(self):
        """A bundle calibrated before colour_consistency_features (44 features) still scores with its 44."""
        statistics = ScoreStatistics((1.0,), feature_mean=(0.0, 0.0), feature_scale=(1.0, 1.0),
                                     feature_precision=((1.0, 0.0), (0.0, 1.0)))
        features = torch.tensor([[1.0, 1.0, 100.0]])
        assert feature_gaussian_score(features, statistics).item() == pytest.approx(1.0)


def _face_crop(size=64, seed=0):
    """A flat 'skin' crop with mild texture: one skin colour everywhere, as the consistency features assume."""
    generator = torch.Generator().manual_seed(seed)
    skin = torch.tensor([0.55, 0.15, -0.05]).view(1, 3, 1, 1)
    return (skin + 0.03 * torch.randn(1, 3, size, size, generator=generator)).clamp(-1, 1)


def _desaturate_face_parts(image, amount=0.4):
    """What a worn print does to the face interior: towards grey; the forehead above the cut stays as it was."""
    from liveness.model.score import FACE_PARTS

    out = image.clone()
    size = image.shape[-1]
    for top, bottom, left, right in FACE_PARTS.values():
        window = (..., slice(round(top * size), round(bottom * size)), slice(round(left * size), round(right * size)))
        part = out[window]
        grey = part.mean(dim=1, keepdim=True)
        out[window] = grey + (1 - amount) * (part - grey)
    return out


class TestColourConsistencyFeatures:
    def test_shape_and_count(self):
        from liveness.model.score import CONSISTENCY_FEATURES, FEATURE_COUNT, colour_consistency_features

        image = _face_crop()
        assert colour_consistency_features(image, image).shape == (1, CONSISTENCY_FEATURES) == (1, 12)
        assert residual_features(image.repeat(2, 1, 1, 1), image.repeat(2, 1, 1, 1)).shape == (2, FEATURE_COUNT)
        assert FEATURE_COUNT == 56

    def test_zero_when_the_network_rebuilds_the_input(self):
        from liveness.model.score import colour_consistency_features

        image = _desaturate_face_parts(_face_crop())
        assert colour_consistency_features(image, image).abs().max().item() == 0.0

    def test_a_face_interior_paler_than_its_forehead_shows_when_the_rebuild_keeps_one_skin(self):
        """Saturation is every 4th feature; a live-looking rebuild (one skin) against a print-faced input."""
        from liveness.model.score import colour_consistency_features

        live = _face_crop()
        masked = _desaturate_face_parts(live)
        saturation = slice(3, None, 4)
        against_live = colour_consistency_features(masked, live)[0, saturation]
        assert (against_live < -0.05).all(), against_live
        assert colour_consistency_features(live, live)[0, saturation].abs().max().item() < 1e-6

    def test_a_uniform_colour_cast_cancels(self):
        """A whole-crop cast (white balance) is not an attack cue: parts and forehead move together."""
        from liveness.model.score import colour_consistency_features

        live = _face_crop()
        cast = (live + torch.tensor([0.1, 0.0, -0.1]).view(1, 3, 1, 1)).clamp(-1, 1)
        features = colour_consistency_features(cast, live)[0]
        luminance_and_opponents = [i for i in range(12) if i % 4 != 3]
        assert features[luminance_and_opponents].abs().max().item() < 0.02


def pixel_mean(image, reference=None):
    reference = torch.zeros_like(image) if reference is None else reference
    return (image - reference).abs().mean().item()
