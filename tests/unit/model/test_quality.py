"""Reconstruction quality: PSNR, SSIM and L_pix of I_real against I, per sample then summarised."""

import math
from typing import NamedTuple

import numpy as np
import pytest
import torch
from torch import nn

from liveness.model.quality import PSNR_CAP_DB, image_quality, psnr_db, reconstruction_quality, ssim


class _Output(NamedTuple):
    reconstruction: torch.Tensor


class _FixedOffset(nn.Module):
    """A stand-in G whose I_real is its input plus ``offsets`` (in [0, 255] units), per sample."""

    def __init__(self, offsets: torch.Tensor | None = None) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))
        self.offsets = offsets

    def forward(self, image: torch.Tensor, with_clear_face: bool = True) -> _Output:
        if self.offsets is None:
            return _Output(image.clone())
        return _Output(image + self.offsets[: image.shape[0]] * 2 / 255)


class _Shrink(nn.Module):
    """A stand-in G whose I_real is 0.9 I: a per-sample error that does not depend on batch mates."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, image: torch.Tensor, with_clear_face: bool = True) -> _Output:
        return _Output(image * 0.9)


def _gray_crops(count: int, size: int = 32, value: int = 128) -> np.ndarray:
    return np.full((count, size, size, 3), value, dtype=np.uint8)


def _checkerboard(count: int, size: int, amplitude: float) -> torch.Tensor:
    signs = (torch.arange(size)[:, None] + torch.arange(size)[None, :]) % 2 * 2 - 1
    return amplitude * signs.float().expand(count, 3, size, size)


class TestReconstructionQuality:
    def test_perfect_reconstruction_scores_ssim_one_and_the_psnr_cap(self):
        crops = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
        quality = reconstruction_quality(_FixedOffset(), crops)
        assert quality == {"psnr_db": PSNR_CAP_DB, "ssim": pytest.approx(1.0), "pixel_l1": 0.0}

    def test_known_error_gives_the_known_psnr(self):
        # every pixel off by 5 levels: MSE = (5/255)^2, PSNR = 20 log10(255/5) = 34.15 dB
        quality = reconstruction_quality(_FixedOffset(_checkerboard(2, 32, 5.0)), _gray_crops(2))
        assert quality["psnr_db"] == pytest.approx(20 * math.log10(255 / 5), abs=1e-4)
        # L_pix on the [-1, 1] scale: 3 channels x (10/255) per pixel
        assert quality["pixel_l1"] == pytest.approx(3 * 10 / 255, rel=1e-5)
        assert quality["ssim"] < 1.0

    def test_psnr_and_ssim_are_medians_pixel_l1_a_mean(self):
        amplitudes = torch.tensor([1.0, 5.0, 25.0])
        offsets = torch.cat([_checkerboard(1, 32, float(a)) for a in amplitudes])
        quality = reconstruction_quality(_FixedOffset(offsets), _gray_crops(3))
        assert quality["psnr_db"] == pytest.approx(20 * math.log10(255 / 5), abs=1e-4)
        assert quality["pixel_l1"] == pytest.approx(float(3 * 2 * amplitudes.mean() / 255), rel=1e-5)

    def test_batches_do_not_change_the_figures(self):
        crops = np.random.default_rng(1).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
        generator = _Shrink()
        assert reconstruction_quality(generator, crops, batch_size=2) == pytest.approx(
            reconstruction_quality(generator, crops, batch_size=5))

    def test_training_mode_is_restored(self):
        generator = _FixedOffset().train()
        reconstruction_quality(generator, _gray_crops(1))
        assert generator.training

    @pytest.mark.parametrize("crops", [np.zeros((2, 32, 32, 3), np.float32), np.zeros((32, 32, 3), np.uint8)],
                             ids=["float", "no-batch-axis"])
    def test_wrong_input_is_explained(self, crops):
        with pytest.raises(ValueError, match=r"uint8 crops of shape \(N, H, W, 3\)"):
            reconstruction_quality(_FixedOffset(), crops)

    def test_no_crops_is_an_error(self):
        with pytest.raises(ValueError, match="at least one crop"):
            reconstruction_quality(_FixedOffset(), np.zeros((0, 32, 32, 3), np.uint8))


class TestMetrics:
    def test_ssim_matches_skimage_gaussian_ssim(self):
        from skimage.metrics import structural_similarity

        rng = np.random.default_rng(2)
        reference = rng.random((2, 3, 24, 24))
        distorted = np.clip(reference + rng.normal(0, 0.1, reference.shape), 0, 1)
        ours = ssim(torch.from_numpy(reference), torch.from_numpy(distorted))
        for sample in range(2):
            expected = structural_similarity(reference[sample], distorted[sample], channel_axis=0, data_range=1.0,
                                             gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
            assert ours[sample].item() == pytest.approx(expected, abs=1e-6)

    def test_ssim_needs_a_whole_window(self):
        with pytest.raises(ValueError, match="at least 11x11"):
            ssim(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))

    def test_psnr_is_per_sample_and_capped(self):
        reference = torch.zeros(2, 3, 4, 4)
        reconstruction = torch.stack([torch.zeros(3, 4, 4), torch.full((3, 4, 4), 0.1)])
        assert psnr_db(reference, reconstruction).tolist() == pytest.approx([PSNR_CAP_DB, 20.0])

    def test_model_scale_inputs_are_clamped_to_the_image_range(self):
        reference = torch.full((1, 3, 16, 16), 1.0)
        beyond = torch.full((1, 3, 16, 16), 1.5)  # Tanh never gives this, but a stand-in could
        assert image_quality(reference, beyond)["psnr_db"] == PSNR_CAP_DB
