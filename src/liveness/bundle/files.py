"""The model-bundle format: a folder with ``generator.pt`` (weights only) and ``config.json`` (``BundleConfig``),
and optionally ``model.onnx`` (``liveness export onnx``). Training writes the weights, calibration the config's
threshold and score; registration, serving, ``liveness predict`` and export all read bundles through here.
Torch loads only with the weights (``load_generator``).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from typing import TYPE_CHECKING

from liveness.config import CropParams, DetectionParams, ModelParams
from liveness.io import atomic_write_json
from liveness.model.score_spec import SCORE_NAMES, STATISTIC_SCORES, ScoreStatistics

if TYPE_CHECKING:
    from liveness.model.generator import Generator

GENERATOR_WEIGHTS = "generator.pt"
CONFIG_FILE = "config.json"
# A bundle registered before detection.search existed was calibrated on crops of the full search: keep it.
BEFORE_SEARCH = {"search": "full"}
ONNX_FILE = "model.onnx"
TrainedOn = Literal["synthetic", "real"]
TRAINED_ON: tuple[str, ...] = ("synthetic", "real")


@dataclass(frozen=True)
class BundleConfig:
    """Everything besides the weights that decides a prediction; stored as ``config.json``."""

    model: ModelParams
    crop: CropParams
    detection: DetectionParams
    threshold: float
    score: str
    data: TrainedOn
    statistics: ScoreStatistics | None = None  # live-train statistics of the standardised and fused scores
    selection: str = ""  # why this score ships (calibrate's selection reason)

    def to_json(self) -> dict[str, Any]:
        raw = {"model": self.model.model_dump(mode="json"), "crop": self.crop.model_dump(mode="json"),
               "detection": self.detection.model_dump(mode="json"), "threshold": self.threshold,
               "score": self.score, "data": self.data, "selection": self.selection}
        if self.statistics is not None:
            raw["statistics"] = self.statistics.to_json()
        return raw

    @classmethod
    def from_json(cls, raw: dict[str, Any], source: str = CONFIG_FILE) -> "BundleConfig":
        try:
            statistics = ScoreStatistics.from_json(raw["statistics"]) if raw.get("statistics") else None
            detection = DetectionParams(**{**BEFORE_SEARCH, **raw["detection"]})
            config = cls(ModelParams(**raw["model"]), CropParams(**raw["crop"]), detection,
                         float(raw["threshold"]), str(raw["score"]), raw["data"], statistics, str(raw.get("selection", "")))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{source} is not a valid model config ({error}); re-register the model") from None
        if config.data not in TRAINED_ON:
            raise ValueError(f"{source}: data {config.data!r} is not one of {TRAINED_ON} (what the model was trained "
                             "on); re-register the model")
        if config.score not in SCORE_NAMES:
            raise ValueError(f"{source}: score {config.score!r} is not one of {SCORE_NAMES}; re-register the model")
        if config.score in STATISTIC_SCORES and (config.statistics is None or not config.statistics.supports(config.score)):
            raise ValueError(f"{source}: score {config.score!r} needs live-train statistics, which the config lacks; "
                             "re-register from a calibrate run (it writes reports/score_statistics.json)")
        if config.crop.size != config.model.image_size:
            raise ValueError(f"{source}: crop size {config.crop.size} differs from model.image_size "
                             f"{config.model.image_size}; set curate.crop.size to the size the model was trained on")
        if not math.isfinite(config.threshold):
            raise ValueError(f"{source}: threshold is {config.threshold}; calibrate before registering")
        return config


def write_config(folder: Path, config: BundleConfig) -> Path:
    """Write ``folder/config.json`` (sorted keys, so equal configs hash equal)."""
    path = Path(folder) / CONFIG_FILE
    atomic_write_json(path, config.to_json())
    return path


def read_bundle_config(folder: Path) -> BundleConfig:
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"model config {path} not found; a bundle holds {GENERATOR_WEIGHTS} and {CONFIG_FILE}")
    return BundleConfig.from_json(json.loads(path.read_text()), str(path))


def write_bundle(folder: Path, weights: Path, config: BundleConfig) -> Path:
    """A model bundle folder (``generator.pt`` + ``config.json``) that ``Predictor`` and ``liveness predict
    --model <folder>`` load."""
    if not Path(weights).is_file():
        raise FileNotFoundError(f"generator weights {weights} not found; train first")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(weights, folder / GENERATOR_WEIGHTS)
    write_config(folder, config)
    return folder


def load_generator(model_dir: Path, model_params: ModelParams) -> "Generator":
    """The trained generator from ``model_dir/generator.pt``, built from ``model_params`` (must match training)."""
    import torch  # here, so that reading a bundle's format does not load torch

    from liveness.model.factory import build_generator

    path = Path(model_dir) / GENERATOR_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(
            f"generator weights {path} not found; run training first (`liveness train --out {model_dir}`) "
            f"or point calibrate.model_dir at a training output folder"
        )
    generator = build_generator(model_params.width_profile())
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


def file_sha256(path: Path) -> str:
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()
