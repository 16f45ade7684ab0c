"""Training checkpoints: written atomically, read with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from liveness.io import atomic_write

CHECKPOINT_VERSION = 2  # 2: per-step warm-up/cosine schedulers and the EMA of G ("ema", None when off)
REQUIRED_KEYS = (
    "version", "generator", "discriminator", "optimizer_g", "optimizer_d", "scheduler_g", "scheduler_d",
    "ema", "rng", "epoch", "step", "batch_in_epoch", "params",
)


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used; the message names the file and what to do."""


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save streamed to a temp file in the same folder, fsync, then rename over ``path``."""
    atomic_write(path, lambda stream: torch.save(obj, stream))


def capture_rng_state() -> dict[str, Any]:
    """Every RNG the run touches, in types that ``weights_only`` loading accepts."""
    numpy_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(numpy_state[1].astype(np.int64)),
            "pos": int(numpy_state[2]),
            "has_gauss": int(numpy_state[3]),
            "cached_gaussian": float(numpy_state[4]),
        },
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state((
        "MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
        numpy_state["has_gauss"], numpy_state["cached_gaussian"],
    ))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load and check a checkpoint; a corrupt, truncated or foreign file raises CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # zip, pickle and EOF errors all mean the same thing here
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({type(error).__name__}: {error}). "
            f"Delete it to start over, or restore an earlier copy."
        ) from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(payload).__name__}, not a training checkpoint")
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path} is not a liveness training checkpoint (missing {missing})")
    if payload["version"] != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {payload['version']}; this code reads version {CHECKPOINT_VERSION}. "
            f"Start the run over (--no-resume, or delete the checkpoint)."
        )
    return payload


@dataclass
class TrainingParts:
    """What a checkpoint saves and restores besides the RNGs and the position: G, D, their optimizers and
    learning-rate schedules, and the weight average of G (None when train.ema_decay is 0)."""

    generator: torch.nn.Module
    discriminator: torch.nn.Module
    optimizer_g: torch.optim.Optimizer
    optimizer_d: torch.optim.Optimizer
    scheduler_g: Any
    scheduler_d: Any
    ema: Any = None


def training_state(parts: TrainingParts, epoch: int, step: int, batch_in_epoch: int,
                   params: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint payload of a run at (epoch, step, batch_in_epoch), with the RNGs as they are now."""
    return {
        "version": CHECKPOINT_VERSION,
        "generator": parts.generator.state_dict(),
        "discriminator": parts.discriminator.state_dict(),
        "optimizer_g": parts.optimizer_g.state_dict(),
        "optimizer_d": parts.optimizer_d.state_dict(),
        "scheduler_g": parts.scheduler_g.state_dict(),
        "scheduler_d": parts.scheduler_d.state_dict(),
        "ema": parts.ema.state_dict() if parts.ema is not None else None,
        "rng": capture_rng_state(),
        "epoch": epoch,
        "step": step,
        "batch_in_epoch": batch_in_epoch,
        "params": params,
    }


def restore_training(payload: dict[str, Any], parts: TrainingParts, path: Path) -> None:
    """Load ``payload`` (``load_checkpoint``) into ``parts`` and the RNGs; the caller takes the position."""
    parts.generator.load_state_dict(payload["generator"])
    parts.discriminator.load_state_dict(payload["discriminator"])
    parts.optimizer_g.load_state_dict(payload["optimizer_g"])
    parts.optimizer_d.load_state_dict(payload["optimizer_d"])
    parts.scheduler_g.load_state_dict(payload["scheduler_g"])
    parts.scheduler_d.load_state_dict(payload["scheduler_d"])
    if parts.ema is not None:
        if payload["ema"] is None:
            raise CheckpointError(
                f"checkpoint {path} was written with train.ema_decay 0, so it holds no weight average to resume; "
                f"set train.ema_decay 0, or pass --no-resume to start over"
            )
        parts.ema.load_state_dict(payload["ema"])
    restore_rng_state(payload["rng"])
