"""The four training signals of claim 8 (DESIGN §1.2). Each returns a scalar, averaged over the batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from liveness.model.discriminator import FAKE, REAL
from liveness.model.encoder import LatentCodes


def pixel_loss(image: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """L_pix = (1/HW) ||I - I_real||_1 (sum over channels and pixels, divided by H*W)."""
    height, width = image.shape[-2:]
    per_sample = (image - reconstruction).abs().flatten(1).sum(dim=1) / (height * width)
    return per_sample.mean()


def _cross_entropy_to(logits: torch.Tensor, label: int) -> torch.Tensor:
    target = torch.full((logits.shape[0],), label, dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits.float(), target)


def discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """D side of min_G max_D E[log D(I)] + E[log(1 - D(I_real))], as a loss to minimise.

    With D's two-way softmax, -log D(I) is the cross-entropy of I against REAL and -log(1 - D(I_real)) is
    the cross-entropy of I_real against FAKE.
    """
    return _cross_entropy_to(logits_real, REAL) + _cross_entropy_to(logits_fake, FAKE)


def generator_adversarial_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """G side, non-saturating form: -log D(I_real) rather than log(1 - D(I_real)).

    Same fixed point as the minimax form but strong gradients early in training (Goodfellow et al. 2014).
    """
    return _cross_entropy_to(logits_fake, REAL)


def identity_loss(embedding_image: torch.Tensor, embedding_clear_face: torch.Tensor) -> torch.Tensor:
    """L_id = (1/M) ||f(I) - f(I_c)||_2 with M the embedding length (the L2 norm, not squared)."""
    length = embedding_image.shape[1]
    difference = embedding_image.float() - embedding_clear_face.float()
    return (torch.linalg.vector_norm(difference, ord=2, dim=1) / length).mean()


def _mean_abs_per_sample(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.float() - b.float()).abs().flatten(1).mean(dim=1)


LATENT_MODES = ("patent", "stop_gradient", "relative")


def latent_consistency_loss(codes: LatentCodes, recodes: LatentCodes, mode: str = "patent") -> torch.Tensor:
    """L_lat = (1/K_face) ||z_face - z_face'||_1 + (1/K_bg) ||z_bg - z_bg'||_1, K the code's element count.

    ``mode`` (DESIGN §1.4, scale collapse): ``patent`` as claimed; ``stop_gradient`` detaches E1's codes, so only
    E2 is pulled towards them; ``relative`` divides each term by the (detached) mean |z| of E1's code per sample,
    so making the codes small no longer makes the loss small.
    """
    if mode not in LATENT_MODES:
        raise ValueError(f"latent consistency mode {mode!r} is not one of {LATENT_MODES}")
    if mode == "stop_gradient":
        codes = LatentCodes(codes.face.detach(), codes.background.detach())
    face = _mean_abs_per_sample(codes.face, recodes.face)
    background = _mean_abs_per_sample(codes.background, recodes.background)
    if mode == "relative":
        face = face / (codes.face.detach().float().abs().flatten(1).mean(dim=1) + 1e-6)
        background = background / (codes.background.detach().float().abs().flatten(1).mean(dim=1) + 1e-6)
    return (face + background).mean()


@dataclass(frozen=True)
class LossWeights:
    pixel: float = 50.0
    adversarial: float = 1.0
    identity: float = 1.0
    latent: float = 1.0


def weighted_generator_loss(terms: dict[str, torch.Tensor], weights: LossWeights) -> torch.Tensor:
    """The total G loss: the weighted sum of whichever terms were computed (``pixel``, ``adversarial``, ...)."""
    total = torch.zeros((), device=next(iter(terms.values())).device)
    for name, value in terms.items():
        total = total + getattr(weights, name) * value
    return total
