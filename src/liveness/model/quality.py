"""How well G rebuilds held-out live crops: PSNR, SSIM and L_pix of I_real against I.

A model that does not reconstruct live faces cannot tell them from spoofs by reconstruction, so these are the
first figures to read after training. Every figure is computed per sample; the summary is the median of
PSNR and SSIM over samples and the mean of L_pix (which is comparable with the training loss).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from liveness.model.inputs import from_uint8
from liveness.model.losses import pixel_loss

PSNR_CAP_DB = 100.0  # a perfect reconstruction (MSE 0) scores this instead of infinity
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def psnr_db(reference: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """Per-sample PSNR in dB of (N, C, H, W) images on the [0, 1] scale, capped at ``PSNR_CAP_DB``."""
    mse = (reference.double() - reconstruction.double()).pow(2).flatten(1).mean(dim=1)
    psnr = 10.0 * torch.log10(1.0 / mse.clamp_min(1e-300))
    return psnr.clamp_max(PSNR_CAP_DB).masked_fill(mse == 0, PSNR_CAP_DB)


def _gaussian_line(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    offsets = torch.arange(SSIM_WINDOW, dtype=dtype, device=device) - (SSIM_WINDOW - 1) / 2
    line = torch.exp(-offsets.pow(2) / (2 * SSIM_SIGMA ** 2))
    return line / line.sum()


def ssim(reference: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """Per-sample SSIM (Wang et al. 2004) of (N, C, H, W) images on [0, 1], averaged over channels and positions.

    An 11x11 Gaussian window (sigma 1.5) over the positions where it fits whole, population (co)variances,
    C1 = (0.01)^2 and C2 = (0.03)^2: skimage's ``structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1)`` per channel. The window is applied as two 1-D passes.
    """
    if min(reference.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, "
                         f"got {tuple(reference.shape[-2:])}")
    x, y = reference.double(), reconstruction.double()
    batch, channels = x.shape[:2]
    line = _gaussian_line(x.dtype, x.device)
    # the five local moments of every channel in one pass: E[x], E[y], E[x^2], E[y^2], E[xy]
    stacked = torch.cat([x, y, x * x, y * y, x * y], dim=1).flatten(0, 1).unsqueeze(1)
    moments = F.conv2d(F.conv2d(stacked, line.view(1, 1, -1, 1)), line.view(1, 1, 1, -1))
    mean_x, mean_y, mean_xx, mean_yy, mean_xy = moments.view(batch, 5, channels, *moments.shape[-2:]).unbind(1)
    var_x = mean_xx - mean_x ** 2
    var_y = mean_yy - mean_y ** 2
    cov_xy = mean_xy - mean_x * mean_y
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2
    index = ((2 * mean_x * mean_y + c1) * (2 * cov_xy + c2)
             / ((mean_x ** 2 + mean_y ** 2 + c1) * (var_x + var_y + c2)))
    return index.flatten(1).mean(dim=1)


def image_quality(reference: torch.Tensor, reconstruction: torch.Tensor) -> dict[str, float]:
    """Summary figures for (N, 3, H, W) images in [-1, 1] (the model's scale)."""
    reference01 = ((reference.float() + 1) / 2).clamp(0, 1)
    reconstruction01 = ((reconstruction.float() + 1) / 2).clamp(0, 1)
    return {
        "psnr_db": float(psnr_db(reference01, reconstruction01).median()),
        "ssim": float(ssim(reference01, reconstruction01).median()),
        "pixel_l1": float(pixel_loss(reference.float(), reconstruction.float())),
    }


def _as_uint8_tensor(images: Any) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(images)) if not isinstance(images, torch.Tensor) else images
    if tensor.dtype != torch.uint8 or tensor.ndim != 4 or tensor.shape[-1] != 3:
        raise ValueError(f"reconstruction_quality expects uint8 crops of shape (N, H, W, 3), "
                         f"got {tensor.dtype} {tuple(tensor.shape)}")
    return tensor


@torch.no_grad()
def reconstruction_quality(generator: nn.Module, images_uint8: Any, batch_size: int = 64) -> dict[str, float]:
    """Median PSNR (dB, [0, 1] scale, capped at 100), median SSIM and mean L_pix of G's I_real on these crops.

    ``images_uint8`` is a uint8 (N, H, W, 3) array or tensor. ``pixel_l1`` is L_pix of claim 8 (the L1 norm over
    channels and pixels divided by H*W, on the [-1, 1] scale), so it reads like the training ``loss_pixel``.
    G's training mode is restored afterwards; no RNG is consumed.
    """
    crops = _as_uint8_tensor(images_uint8)
    if crops.shape[0] == 0:
        raise ValueError("reconstruction_quality needs at least one crop")
    parameter = next(generator.parameters())
    was_training = generator.training
    generator.eval()
    references, reconstructions = [], []
    try:
        for start in range(0, crops.shape[0], batch_size):
            batch = from_uint8(crops[start:start + batch_size].to(parameter.device))
            output = generator(batch.to(parameter.dtype), with_clear_face=False)
            references.append(batch.cpu())
            reconstructions.append(output.reconstruction.float().cpu())
    finally:
        generator.train(was_training)
    return image_quality(torch.cat(references), torch.cat(reconstructions))
