"""The networks' input convention: RGB, NCHW, ``x / 127.5 - 1`` of uint8 pixels, so values lie in [-1, 1].

Every caller converts through these (training, scoring, serving, the ONNX graph's documented transform), so the
convention is written once.
"""

from __future__ import annotations

import torch

PIXEL_SCALE = 127.5  # uint8 x -> x / PIXEL_SCALE - 1


def from_uint8(batch: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W) in [-1, 1], on the batch's device."""
    return batch.permute(0, 3, 1, 2).float().div(PIXEL_SCALE).sub(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float (N, 3, H, W) in [-1, 1] (clipped) -> uint8 (N, H, W, 3), rounded to the nearest grey level."""
    return ((images.float().clamp(-1, 1) + 1) * PIXEL_SCALE).round().to(torch.uint8).permute(0, 2, 3, 1)
