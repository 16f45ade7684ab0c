"""The spoof score of claim 9 (DESIGN §1.4): Δ = d(z_bg, z_bg')."""

from __future__ import annotations

import torch

from liveness.model.generator import Generator, GeneratorOutput


def latent_background_score(background: torch.Tensor, background_recoded: torch.Tensor) -> torch.Tensor:
    """Δ per sample: the mean absolute difference over the K_bg values of z_bg and z_bg'. Shape (N,)."""
    return (background.float() - background_recoded.float()).abs().flatten(1).mean(dim=1)


def pixel_residual_score(image: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """Mean absolute pixel residual |I - I_real| per sample, (N,): an alternative to Δ (DESIGN §1.4)."""
    return (image.float() - reconstruction.float()).abs().flatten(1).mean(dim=1)


def score_components(image: torch.Tensor, output: GeneratorOutput) -> dict[str, torch.Tensor]:
    """Every per-sample score of one forward pass: ``latent_bg`` (the patent's Δ), ``latent_face`` (the same
    comparison on the face codes) and ``pixel`` (the reconstruction residual). Each is (N,), higher = spoof."""
    return {
        "latent_bg": latent_background_score(output.codes.background, output.recodes.background),
        "latent_face": latent_background_score(output.codes.face, output.recodes.face),
        "pixel": pixel_residual_score(image, output.reconstruction),
    }


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
