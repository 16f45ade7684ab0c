"""Shared building block: a plan of 3x3 convolutions with ReLU, poolings and upsamplings."""

from __future__ import annotations

from torch import nn

from liveness.model.profiles import POOL, UPSAMPLE, Plan


def conv_relu_stack(in_channels: int, plan: Plan) -> tuple[nn.Sequential, int]:
    """Build ``plan`` as conv3x3(stride 1)+ReLU layers, max-pool(2) at ``P`` and nearest x2 at ``U``.

    Returns the stack and its output width.
    """
    layers: list[nn.Module] = []
    channels = in_channels
    for step in plan:
        if step == POOL:
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        elif step == UPSAMPLE:
            layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
        else:
            layers.append(nn.Conv2d(channels, int(step), kernel_size=3, stride=1, padding=1))
            layers.append(nn.ReLU(inplace=True))
            channels = int(step)
    return nn.Sequential(*layers), channels
