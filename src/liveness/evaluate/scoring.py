"""Run a trained generator over a dataset: every score component per item, and the decomposition of a few items.

Scores are per sample (DESIGN §1.4): the generator has no batch-coupled layer, so batching only changes speed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from liveness.config import ModelParams
from liveness.model.factory import build_generator
from liveness.model.generator import Generator
from liveness.model.score import BASE_SCORES, DEFAULT_FUSION, SCORE_NAMES, ScoreStatistics, score_components
from liveness.train.runtime import Runtime, images_to_model_input

GENERATOR_WEIGHTS = "generator.pt"  # = liveness.train.trainer.GENERATOR_WEIGHTS; not imported: the trainer pulls in MLflow
__all__ = ["GENERATOR_WEIGHTS", "SCORE_NAMES", "load_generator", "score_dataset", "fit_score_statistics", "decompose"]


def load_generator(model_dir: Path, model_params: ModelParams) -> Generator:
    """The trained generator from ``model_dir/generator.pt``, built from ``model_params`` (must match training)."""
    path = Path(model_dir) / GENERATOR_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(
            f"generator weights {path} not found; run training first (`liveness train --out {model_dir}`) "
            f"or point calibrate.model_dir at a training output folder"
        )
    generator = build_generator(model_params)
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        generator.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(
            f"{path} does not fit the configured network (model.profile={model_params.profile!r}, "
            f"model.decoder_channels={model_params.decoder_channels}); set the model section the run was trained "
            f"with: {error}"
        ) from None
    return generator


def _as_batches(dataset: Dataset, batch_size: int) -> DataLoader:
    """Items in dataset order, stacked into uint8 (N, S, S, 3) batches."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)


@torch.no_grad()
def score_dataset(generator: Generator, dataset: Dataset, runtime: Runtime, batch_size: int,
                  statistics: ScoreStatistics | None = None) -> dict[str, np.ndarray]:
    """Every score of every item, as float64 arrays in dataset order: ``SCORE_NAMES`` with fitted
    ``statistics``, ``BASE_SCORES`` without.

    Items are uint8 (S, S, 3) crops. The generator runs in eval mode without gradients; its mode is restored.
    """
    was_training = generator.training
    generator.eval()
    names = [*BASE_SCORES, *(["latent_bg_std"] if statistics is not None else []),
             *(["fused", "deviation"] if statistics is not None and statistics.score_mean else [])]
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    try:
        for batch in _as_batches(dataset, batch_size):
            images = images_to_model_input(batch, runtime)
            with runtime.autocast():
                output = generator(images, with_clear_face=False)
            for name, values in score_components(images, output, statistics).items():
                if name in parts:
                    parts[name].append(values.float().cpu().numpy().astype(np.float64))
    finally:
        generator.train(was_training)
    return {name: np.concatenate(values) if values else np.empty(0) for name, values in parts.items()}


@torch.no_grad()
def fit_score_statistics(generator: Generator, live_train: Dataset, runtime: Runtime, batch_size: int,
                         fusion: tuple[str, ...] = DEFAULT_FUSION) -> ScoreStatistics:
    """``ScoreStatistics`` from LIVE TRAINING crops only: z_bg's per-channel std, then the mean and std of each
    fusion component. Nothing here may see calibration or test data (they would leak into the score)."""
    if len(live_train) < 2:
        raise ValueError(f"fitting score statistics needs at least 2 live training crops, got {len(live_train)}")
    was_training = generator.training
    generator.eval()
    count, total, total_squares = 0, None, None
    try:
        for batch in _as_batches(live_train, batch_size):
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
    scores = score_dataset(generator, live_train, runtime, batch_size, channel_std)
    return ScoreStatistics(channel_std.background_std,
                           {name: float(scores[name].mean()) for name in fusion},
                           {name: float(scores[name].std(ddof=1)) for name in fusion},
                           fusion, len(live_train))


def _to_unit_range(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> uint8 (N, H, W, 3)."""
    scaled = (images.float().clamp(-1, 1) + 1) * 127.5
    return scaled.round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


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
