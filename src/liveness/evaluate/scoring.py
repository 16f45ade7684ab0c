"""Run a trained generator over a dataset: every score component per item, and the decomposition of a few items.

Scores are per sample (DESIGN §1.4): the generator has no batch-coupled layer, so batching only changes speed.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from liveness.model import quality
from liveness.model.generator import Generator
from liveness.model.score import (
    BASE_SCORES,
    DEFAULT_FUSION,
    SCORE_NAMES,
    STATISTIC_SCORES,
    ScoreStatistics,
    score_components,
    residual_features,
)
from liveness.model.inputs import to_uint8
from liveness.runtime import Runtime, images_to_model_input

__all__ = ["SCORE_NAMES", "score_dataset", "fit_score_statistics", "decompose"]


def _as_batches(dataset: Dataset, batch_size: int) -> DataLoader:
    """Items in dataset order, stacked into uint8 (N, S, S, 3) batches."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)


@torch.no_grad()
def score_dataset(generator: Generator, dataset: Dataset, runtime: Runtime, batch_size: int,
                  statistics: ScoreStatistics | None = None, with_features: bool = False) -> dict[str, np.ndarray]:
    """Every score of every item, as float64 arrays in dataset order: ``BASE_SCORES``, plus each statistics
    score that ``statistics`` supports. ``with_features`` adds ``features``, the (N, D) ``residual_features``.

    Items are uint8 (S, S, 3) crops. The generator runs in eval mode without gradients; its mode is restored.
    """
    was_training = generator.training
    generator.eval()
    names = [*BASE_SCORES, *(name for name in STATISTIC_SCORES if statistics is not None and statistics.supports(name))]
    parts: dict[str, list[np.ndarray]] = {name: [] for name in [*names, *(["features"] if with_features else [])]}
    try:
        for batch in _as_batches(dataset, batch_size):
            images = images_to_model_input(batch, runtime)
            with runtime.autocast():
                output = generator(images, with_clear_face=False)
            scores = score_components(images, output, statistics)
            if with_features:
                scores["features"] = residual_features(images, output.reconstruction)
            for name, values in scores.items():
                if name in parts:
                    parts[name].append(values.float().cpu().numpy().astype(np.float64))
    finally:
        generator.train(was_training)
    return {name: np.concatenate(values) if values else np.empty(0) for name, values in parts.items()}


def _gaussian(features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, scale and the inverse of a Ledoit-Wolf shrunk covariance of the scaled features: with a few hundred
    live crops and ~100 features the sample covariance is singular, the shrunk one is not."""
    from sklearn.covariance import LedoitWolf

    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale = np.where(scale > 1e-8, scale, 1.0)
    shrunk = LedoitWolf().fit((features - mean) / scale)
    return mean, scale, shrunk.precision_


@torch.no_grad()
def fit_score_statistics(generator: Generator, live: Dataset, runtime: Runtime, batch_size: int,
                         fusion: tuple[str, ...] = DEFAULT_FUSION) -> ScoreStatistics:
    """``ScoreStatistics`` from LIVE crops of a split of their own (``calibrate.statistics_split``): z_bg's
    per-channel std, each fusion component's mean and std, and the Gaussian of ``residual_features``. Nothing here
    may see calibration or test data (it would leak into the score)."""
    if len(live) < 2:
        raise ValueError(f"fitting score statistics needs at least 2 live crops, got {len(live)}")
    was_training = generator.training
    generator.eval()
    count, total, total_squares = 0, None, None
    try:
        for batch in _as_batches(live, batch_size):
            images = images_to_model_input(batch, runtime)
            with runtime.autocast():
                background = generator.encoder(images).background.double()
            values = background.transpose(0, 1).flatten(1)  # (C, N*h*w)
            count += values.shape[1]
            total = values.sum(dim=1) if total is None else total + values.sum(dim=1)
            squares = values.square().sum(dim=1)
            total_squares = squares if total_squares is None else total_squares + squares
    finally:
        generator.train(was_training)
    variance = (total_squares / count - (total / count).square()).clamp_min(0)
    channel_std = ScoreStatistics(tuple(float(v) for v in variance.sqrt().cpu()), fusion=fusion)
    scores = score_dataset(generator, live, runtime, batch_size, channel_std, with_features=True)
    mean, scale, precision = _gaussian(scores["features"])
    return ScoreStatistics(channel_std.background_std,
                           {name: float(scores[name].mean()) for name in fusion},
                           {name: float(scores[name].std(ddof=1)) for name in fusion},
                           fusion, len(live), tuple(map(float, mean)), tuple(map(float, scale)),
                           tuple(tuple(map(float, row)) for row in precision))


def _to_unit_range(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> uint8 (N, H, W, 3)."""
    return to_uint8(images).cpu().numpy()


@torch.no_grad()
def decompose(generator: Generator, crops: torch.Tensor, runtime: Runtime) -> dict[str, np.ndarray]:
    """What the generator makes of uint8 (N, S, S, 3) ``crops``: for the decomposition figure.

    Returns uint8 (N, S, S, 3) ``image`` (I), ``clear_face`` (I_c) and ``reconstruction`` (I_real), and float
    (N, h, w) ``latent_bg_map``: |z_bg - z_bg'| averaged over channels, at latent resolution.
    """
    was_training = generator.training
    generator.eval()
    try:
        images = images_to_model_input(crops, runtime)
        with runtime.autocast():
            output = generator(images, with_clear_face=True)
    finally:
        generator.train(was_training)
    difference = (output.codes.background.float() - output.recodes.background.float()).abs().mean(dim=1)
    return {
        "image": _to_unit_range(images),
        "clear_face": _to_unit_range(output.clear_face),
        "reconstruction": _to_unit_range(output.reconstruction),
        "latent_bg_map": difference.cpu().numpy().astype(np.float64),
    }


def reconstruction_quality(generator: Generator, dataset: Dataset, batch_size: int) -> dict[str, float]:
    """``liveness.model.quality.reconstruction_quality`` (median PSNR and SSIM, mean L_pix of I_real) over every
    crop of ``dataset``, the same figures the trainer logs on its held-out crops; NaNs when it is empty."""
    if not len(dataset):
        return {"psnr_db": float("nan"), "ssim": float("nan"), "pixel_l1": float("nan"), "samples": 0}
    crops = torch.stack([dataset[index] for index in range(len(dataset))])
    return {**quality.reconstruction_quality(generator, crops, batch_size), "samples": len(dataset)}
