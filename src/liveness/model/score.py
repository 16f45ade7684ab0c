"""The spoof scores: claim 9's Δ = d(z_bg, z_bg') and the alternatives DESIGN §1.4 asks us to measure.

Every score is a per-sample reduction of one forward pass (the generator has no batch-coupled layer), so a
sample's score never depends on its batch mates. Higher always means "more likely a spoof".

| name | what it computes |
|---|---|
| ``latent_bg`` | the patent's Δ: mean |z_bg - z_bg'| over the K_bg values (claim 9, the named default) |
| ``latent_bg_cos`` | 1 - cosine(z_bg, z_bg'): Δ without the codes' scale |
| ``latent_bg_std`` | Δ with each channel divided by its live-train standard deviation (needs statistics) |
| ``latent_face`` | Δ's comparison on the face codes |
| ``pixel`` | mean |I - I_real|: the reconstruction residual |
| ``pixel_hf`` | mean |high-pass(I - I_real)|: the fine detail the reconstruction does not reproduce |
| ``fused`` | mean of the live-train z-scores of ``ScoreStatistics.fusion`` (needs statistics) |
| ``deviation`` | root mean square of those z-scores: how atypical of live the sample is, in either direction |

``deviation`` is the one-class answer to a measured failure: recaptured attacks are smoother than live faces,
so the network rebuilds them *more* faithfully and the one-sided scores rank them as more live than live
(DESIGN §1.4). A sample whose gaps are unusually small is as atypical of live faces as one whose gaps are large;
no spoof data is needed to say so, only the live-train statistics.

``ScoreStatistics`` holds what the statistics-based scores need. It is fitted on live TRAINING crops only
(``liveness.evaluate.scoring.fit_score_statistics``) and travels with the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from liveness.model.generator import Generator, GeneratorOutput

BASE_SCORES: tuple[str, ...] = ("latent_bg", "latent_bg_cos", "latent_face", "pixel", "pixel_hf")
STATISTIC_SCORES: tuple[str, ...] = ("latent_bg_std", "fused", "deviation")
SCORE_NAMES: tuple[str, ...] = (*BASE_SCORES, *STATISTIC_SCORES)
DEFAULT_FUSION: tuple[str, ...] = ("latent_bg_std", "latent_bg_cos", "latent_face", "pixel", "pixel_hf")
HIGH_PASS_KERNEL = 5  # box blur side: the residual minus its local mean keeps detail finer than ~5 px
_EPSILON = 1e-8


@dataclass(frozen=True)
class ScoreStatistics:
    """Live-train statistics: the per-channel std of z_bg, and each fused score's mean and std."""

    background_std: tuple[float, ...]  # per channel of z_bg (E1), over live training crops
    score_mean: dict[str, float] = field(default_factory=dict)
    score_std: dict[str, float] = field(default_factory=dict)
    fusion: tuple[str, ...] = DEFAULT_FUSION
    samples: int = 0  # how many live training crops they were fitted on

    def __post_init__(self) -> None:
        unknown = [name for name in self.fusion if name not in SCORE_NAMES or name in ("fused", "deviation")]
        if unknown:
            raise ValueError(f"fusion components {unknown} are not scores; choose from {SCORE_NAMES[:-1]}")

    def to_json(self) -> dict[str, Any]:
        return {"background_std": list(self.background_std), "score_mean": dict(self.score_mean),
                "score_std": dict(self.score_std), "fusion": list(self.fusion), "samples": self.samples}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> "ScoreStatistics":
        return cls(tuple(float(v) for v in raw["background_std"]), {k: float(v) for k, v in raw["score_mean"].items()},
                   {k: float(v) for k, v in raw["score_std"].items()}, tuple(raw["fusion"]), int(raw.get("samples", 0)))


def latent_background_score(background: torch.Tensor, background_recoded: torch.Tensor) -> torch.Tensor:
    """Δ per sample: the mean absolute difference over the K_bg values of z_bg and z_bg'. Shape (N,)."""
    return (background.float() - background_recoded.float()).abs().flatten(1).mean(dim=1)


def pixel_residual_score(image: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """Mean absolute pixel residual |I - I_real| per sample, (N,): an alternative to Δ (DESIGN §1.4)."""
    return (image.float() - reconstruction.float()).abs().flatten(1).mean(dim=1)


def high_pass_residual_score(image: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """Mean |r - blur(r)| of the residual r = I - I_real, (N,): texture (halftone, moiré) the model cannot
    rebuild, without the smooth low-frequency error every under-trained reconstruction has."""
    residual = image.float() - reconstruction.float()
    pad = HIGH_PASS_KERNEL // 2
    local_mean = F.avg_pool2d(F.pad(residual, (pad, pad, pad, pad), mode="replicate"), HIGH_PASS_KERNEL, stride=1)
    return (residual - local_mean).abs().flatten(1).mean(dim=1)


def cosine_distance_score(codes: torch.Tensor, recodes: torch.Tensor) -> torch.Tensor:
    """1 - cos(z, z') over the flattened codes, (N,)."""
    return 1.0 - F.cosine_similarity(codes.float().flatten(1), recodes.float().flatten(1), dim=1, eps=_EPSILON)


def background_channel_differences(output: GeneratorOutput) -> torch.Tensor:
    """Mean |z_bg - z_bg'| per sample and channel, (N, C): Δ is its mean over C."""
    return (output.codes.background.float() - output.recodes.background.float()).abs().flatten(2).mean(dim=2)


def score_components(image: torch.Tensor, output: GeneratorOutput,
                     statistics: ScoreStatistics | None = None) -> dict[str, torch.Tensor]:
    """Every per-sample score of one forward pass, each (N,). Without ``statistics`` only ``BASE_SCORES``."""
    channel_differences = background_channel_differences(output)
    scores = {
        "latent_bg": channel_differences.mean(dim=1),
        "latent_bg_cos": cosine_distance_score(output.codes.background, output.recodes.background),
        "latent_face": latent_background_score(output.codes.face, output.recodes.face),
        "pixel": pixel_residual_score(image, output.reconstruction),
        "pixel_hf": high_pass_residual_score(image, output.reconstruction),
    }
    if statistics is None:
        return scores
    std = torch.tensor(statistics.background_std, dtype=torch.float32, device=channel_differences.device)
    scores["latent_bg_std"] = (channel_differences / std.clamp_min(_EPSILON)).mean(dim=1)
    if statistics.score_mean:
        standardised = [(scores[name] - statistics.score_mean[name]) / max(statistics.score_std[name], _EPSILON)
                        for name in statistics.fusion]
        stacked = torch.stack(standardised, dim=1)
        scores["fused"] = stacked.mean(dim=1)
        scores["deviation"] = stacked.square().mean(dim=1).sqrt()
    return scores


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
