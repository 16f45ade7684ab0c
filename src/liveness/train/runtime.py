"""Device and precision choices: bf16 autocast and channels_last on CUDA, fp32 on CPU."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    precision: str  # "fp32" or "bf16"

    @property
    def channels_last(self) -> bool:
        return self.device.type == "cuda"

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()


def resolve_runtime(device: str = "auto", precision: str = "auto", local_rank: int = 0) -> Runtime:
    """``auto`` picks CUDA when present; ``auto`` precision is bf16 on CUDA and fp32 on CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("train.device is cuda but no CUDA device is visible; set train.device: auto or cpu")
        resolved = torch.device("cuda", local_rank)
    else:
        resolved = torch.device("cpu")
    if precision == "auto":
        precision = "bf16" if resolved.type == "cuda" else "fp32"
    return Runtime(resolved, precision)


def images_to_model_input(batch: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1] on the runtime's device and memory format."""
    batch = batch.to(runtime.device, non_blocking=True).permute(0, 3, 1, 2).float()
    return batch.div_(127.5).sub_(1.0).contiguous(memory_format=runtime.memory_format)
