"""The spoof score of claim 9 (DESIGN §1.4): Δ = d(z_bg, z_bg')."""

from __future__ import annotations

import torch

from liveness.model.generator import Generator


def latent_background_score(background: torch.Tensor, background_recoded: torch.Tensor) -> torch.Tensor:
    """Δ per sample: the mean absolute difference over the K_bg values of z_bg and z_bg'. Shape (N,)."""
    return (background.float() - background_recoded.float()).abs().flatten(1).mean(dim=1)


@torch.no_grad()
def score_images(generator: Generator, images: torch.Tensor) -> torch.Tensor:
    """Δ for a batch of images in [-1, 1]; higher means more likely a spoof.

    The generator has no batch-coupled layers and the score is a per-sample reduction, so a sample's score
    is the same alone or in any batch (up to float rounding).
    """
    was_training = generator.training
    generator.eval()
    try:
        output = generator(images, with_clear_face=False)
    finally:
        generator.train(was_training)
    return latent_background_score(output.codes.background, output.recodes.background)
