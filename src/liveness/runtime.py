"""Where and how the networks run: device and precision resolution, and images to network input.

``auto`` device means CUDA when a device is visible, else the CPU; ``auto`` precision means bf16 autocast on
CUDA and fp32 on the CPU. On CUDA the networks and their inputs use channels_last. Every stage and the serving
path resolve their settings here, so the rule is written once.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from liveness.model.inputs import from_uint8


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


def resolve_device(setting: str = "auto", key: str = "device") -> str:
    """``cuda`` or ``cpu`` for a ``device`` setting (auto, cpu or cuda); ``key`` names the setting in the error
    raised when cuda is asked for and no CUDA device is visible."""
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"{key} is cuda but no CUDA device is visible; set {key}: auto or cpu")
    return setting


def resolve_runtime(device: str = "auto", precision: str = "auto", local_rank: int = 0,
                    key: str = "train.device") -> Runtime:
    """The runtime for a device and a precision setting (``auto`` for either: see the module docstring)."""
    resolved = torch.device("cuda", local_rank) if resolve_device(device, key) == "cuda" else torch.device("cpu")
    if precision == "auto":
        precision = "bf16" if resolved.type == "cuda" else "fp32"
    return Runtime(resolved, precision)


def images_to_model_input(batch: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1] on the runtime's device and memory format."""
    return from_uint8(batch.to(runtime.device, non_blocking=True)).contiguous(memory_format=runtime.memory_format)
