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
from liveness.model.score import score_components
from liveness.train.runtime import Runtime, images_to_model_input

GENERATOR_WEIGHTS = "generator.pt"  # = liveness.train.trainer.GENERATOR_WEIGHTS; not imported: the trainer pulls in MLflow
SCORE_NAMES: tuple[str, ...] = ("latent_bg", "latent_face", "pixel")  # the keys of score_components


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
def score_dataset(generator: Generator, dataset: Dataset, runtime: Runtime, batch_size: int) -> dict[str, np.ndarray]:
    """Every score component (``SCORE_NAMES``) of every item, as float64 arrays in dataset order.

    Items are uint8 (S, S, 3) crops. The generator runs in eval mode without gradients; its mode is restored.
    """
    was_training = generator.training
    generator.eval()
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SCORE_NAMES}
    try:
        for batch in _as_batches(dataset, batch_size):
            images = images_to_model_input(batch, runtime)
            with runtime.autocast():
                output = generator(images, with_clear_face=False)
            for name, values in score_components(images, output).items():
                parts[name].append(values.float().cpu().numpy().astype(np.float64))
    finally:
        generator.train(was_training)
    return {name: np.concatenate(values) if values else np.empty(0) for name, values in parts.items()}


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
