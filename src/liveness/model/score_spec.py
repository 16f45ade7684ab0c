"""What the spoof scores are, without torch: their names (one tuple each, defined here only) and the live
statistics the statistics-based scores need. ``score`` computes the scores; ``liveness.config`` checks params
against the names, and a bundle's ``config.json`` carries the statistics, both before torch is loaded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

BASE_SCORES: tuple[str, ...] = ("latent_bg", "latent_bg_cos", "latent_face", "pixel", "pixel_hf", "latent_bg_rel",
                                "pixel_topk", "ssim", "gradient", "spectrum_hf")
STATISTIC_SCORES: tuple[str, ...] = ("latent_bg_std", "fused", "deviation", "feature_gaussian")
SCORE_NAMES: tuple[str, ...] = (*BASE_SCORES, *STATISTIC_SCORES)
DEFAULT_FUSION: tuple[str, ...] = ("latent_bg_std", "latent_bg_cos", "latent_face", "pixel", "pixel_hf")


@dataclass(frozen=True)
class ScoreStatistics:
    """Live-train statistics: the per-channel std of z_bg, and each fused score's mean and std."""

    background_std: tuple[float, ...]  # per channel of z_bg (E1), over live training crops
    score_mean: dict[str, float] = field(default_factory=dict)
    score_std: dict[str, float] = field(default_factory=dict)
    fusion: tuple[str, ...] = DEFAULT_FUSION
    samples: int = 0  # how many live crops they were fitted on
    feature_mean: tuple[float, ...] = ()  # of residual_features, for feature_gaussian
    feature_scale: tuple[float, ...] = ()
    feature_precision: tuple[tuple[float, ...], ...] = ()  # inverse shrunk covariance of the scaled features

    def __post_init__(self) -> None:
        unknown = [name for name in self.fusion if name not in SCORE_NAMES or name in STATISTIC_SCORES[1:]]
        if unknown:
            raise ValueError(f"fusion components {unknown} are not scores; choose from "
                             f"{[name for name in SCORE_NAMES if name not in STATISTIC_SCORES[1:]]}")

    def supports(self, score: str) -> bool:
        """Whether these statistics hold what ``score`` needs."""
        if score == "latent_bg_std":
            return bool(self.background_std)
        if score in ("fused", "deviation"):
            return bool(self.score_mean)
        if score == "feature_gaussian":
            return bool(self.feature_precision)
        return True

    def to_json(self) -> dict[str, Any]:
        return {"background_std": list(self.background_std), "score_mean": dict(self.score_mean),
                "score_std": dict(self.score_std), "fusion": list(self.fusion), "samples": self.samples,
                "feature_mean": list(self.feature_mean), "feature_scale": list(self.feature_scale),
                "feature_precision": [list(row) for row in self.feature_precision]}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> "ScoreStatistics":
        return cls(tuple(float(v) for v in raw["background_std"]), {k: float(v) for k, v in raw["score_mean"].items()},
                   {k: float(v) for k, v in raw["score_std"].items()}, tuple(raw["fusion"]), int(raw.get("samples", 0)),
                   tuple(float(v) for v in raw.get("feature_mean", ())),
                   tuple(float(v) for v in raw.get("feature_scale", ())),
                   tuple(tuple(float(v) for v in row) for row in raw.get("feature_precision", ())))
