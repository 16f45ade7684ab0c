"""Small in-memory and memory-mapped crop datasets, and built-in smoke data.

The smoke data is a handful of procedural, face-like images so that training runs with no database at all.
It is synthetic and says so; the full synthetic demo set with identities and attacks is the data issue's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset


class CropArrayDataset(Dataset):
    """Serves ``crops[i]``, a uint8 (H, W, 3) array, from an in-memory or memory-mapped (N, H, W, 3) array."""

    def __init__(self, crops: np.ndarray) -> None:
        if crops.ndim != 4 or crops.shape[-1] != 3 or crops.dtype != np.uint8:
            raise ValueError(f"crops must be a uint8 array of shape (N, H, W, 3), got {crops.dtype} {crops.shape}")
        self.crops = crops

    def __len__(self) -> int:
        return int(self.crops.shape[0])

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(np.array(self.crops[index], dtype=np.uint8, copy=True))  # memmap pages are read-only


def load_npy_crops(path: Path) -> CropArrayDataset:
    """A memory-mapped ``.npy`` file of uint8 (N, H, W, 3) crops."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"crop file {path} not found; give a .npy of uint8 (N, H, W, 3) crops, or use --data smoke")
    return CropArrayDataset(np.load(path, mmap_mode="r"))


def make_smoke_crops(count: int, size: int, seed: int = 0) -> np.ndarray:
    """``count`` synthetic face-like crops: textured background, skin ellipse, eyes, brows and mouth."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    crops = np.empty((count, size, size, 3), dtype=np.uint8)
    for index in range(count):
        base = rng.uniform(40, 220, size=3)
        tilt = rng.uniform(-60, 60, size=3)
        image = base + tilt * yy[..., None] + rng.normal(0, 6, size=(size, size, 3))
        cx, cy = 0.5 + rng.uniform(-0.05, 0.05), 0.52 + rng.uniform(-0.05, 0.05)
        rx, ry = rng.uniform(0.2, 0.26), rng.uniform(0.27, 0.33)
        face = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
        skin = np.array([rng.uniform(150, 240), rng.uniform(100, 190), rng.uniform(70, 160)])
        image[face] = skin + 20 * (0.5 - yy[face, None])
        for side in (-1, 1):
            ex, ey = cx + side * rx * 0.45, cy - ry * 0.2
            image[((xx - ex) / 0.035) ** 2 + ((yy - ey) / 0.02) ** 2 <= 1.0] = (30, 25, 20)
            image[(np.abs(xx - ex) < 0.06) & (np.abs(yy - (ey - 0.05)) < 0.008)] = skin * 0.45
        mouth = (np.abs(xx - cx) < rx * 0.4) & (np.abs(yy - (cy + ry * 0.5)) < 0.015)
        image[mouth] = (150, 50, 60)
        crops[index] = np.clip(image, 0, 255).astype(np.uint8)
    return crops
