"""The train stage as plain functions: which dataset to read, and where a resumable checkpoint lives."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from liveness.config import Params
from liveness.data.memory import CropArrayDataset, load_npy_crops, make_smoke_crops
from liveness.data.shards import ShardDataset, read_manifest

SMOKE = "smoke"


def training_dataset(params: Params, data: str | None = None, smoke_count: int = 256) -> tuple[Dataset, str]:
    """The dataset ``data`` names (default ``train.data``) and a one-line description of it.

    ``smoke``: built-in synthetic smoke crops; a ``.npy`` file: uint8 (N, H, W, 3) crops; otherwise a curated
    folder (``manifest.parquet`` + ``shards/``) read at ``train.split`` with ``train.augment``.
    """
    if data == SMOKE:
        crops = make_smoke_crops(smoke_count, params.model.image_size, params.base.seed)
        return CropArrayDataset(crops), f"{smoke_count} built-in SYNTHETIC smoke crops (not real faces)"
    source = Path(data) if data is not None else params.train.data
    if source.suffix == ".npy":
        dataset = load_npy_crops(source)
        return dataset, f"{len(dataset)} crops from {source}"
    augment = params.train.augment
    dataset = ShardDataset(source / "manifest.parquet", source / "shards", params.train.split, augment,
                           params.base.seed)
    return dataset, f"{len(dataset)} curated crops from {source} (split {params.train.split})"


def validation_crops(params: Params, data: str | None = None) -> tuple[np.ndarray | None, str]:
    """The fixed held-out batch whose reconstruction quality the trainer reports, and a line describing it.

    A curated folder gives the first ``train.val_count`` crops of ``train.val_split``, unaugmented. ``smoke``
    gives that many smoke crops drawn with another seed than the training ones. A ``.npy`` file, a null
    ``val_split`` or a manifest without that split give None (nothing to score).
    """
    train = params.train
    if train.val_split is None:
        return None, "no held-out crops (train.val_split is null)"
    if data == SMOKE:
        crops = make_smoke_crops(train.val_count, params.model.image_size, params.base.seed + 1)
        return crops, f"{train.val_count} held-out SYNTHETIC smoke crops (another seed)"
    source = Path(data) if data is not None else train.data
    if source.suffix == ".npy":
        return None, f"no held-out crops ({source} has no splits)"
    if train.val_split not in set(read_manifest(source / "manifest.parquet")["split"]):
        return None, f"no held-out crops (split {train.val_split!r} is not in {source})"
    dataset = ShardDataset(source / "manifest.parquet", source / "shards", train.val_split, None, params.base.seed)
    count = min(train.val_count, len(dataset))
    if count == 0:
        return None, f"no held-out crops (split {train.val_split!r} of {source} is empty)"
    crops = np.stack([dataset[index].numpy() for index in range(count)])
    return crops, f"{count} held-out crops from {source} (split {train.val_split})"


def checkpoint_key(params: Params, data: Path) -> str:
    """A key for the run that the params and the data define, so resume never mixes two different runs.

    Under DVC the stage's outputs are removed before it reruns; checkpoints stored under this key survive an
    interrupted ``dvc repro`` and are found again by the same params and data.
    """
    digest = hashlib.sha256()
    sections = {name: getattr(params, name).model_dump(mode="json") for name in ("base", "model", "identity", "loss", "train")}
    digest.update(json.dumps(sections, sort_keys=True).encode())
    manifest = Path(data) / "manifest.parquet"
    if manifest.is_file():
        digest.update(manifest.read_bytes())
    return digest.hexdigest()[:16]
