"""First and second encoders with their separation modules (claims 2, 3 and 6)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from liveness.model.layers import conv_relu_stack
from liveness.model.profiles import WidthProfile


class LatentCodes(NamedTuple):
    face: torch.Tensor  # z_face: (N, latent, H/4, W/4)
    background: torch.Tensor  # z_bg:   (N, latent, H/4, W/4)


class SeparationModule(nn.Module):
    """Claim 3: split the latent whole feature in half; 1x1 conv -> z_face, 3x3 conv -> z_bg.

    The two kernel sizes differ on purpose (DESIGN §1.1). The codes are left linear (no activation).
    """

    def __init__(self, whole_channels: int, latent_channels: int) -> None:
        super().__init__()
        half = whole_channels // 2
        self.face_head = nn.Conv2d(half, latent_channels, kernel_size=1)
        self.background_head = nn.Conv2d(half, latent_channels, kernel_size=3, padding=1)

    def forward(self, whole: torch.Tensor) -> LatentCodes:
        face_half, background_half = torch.chunk(whole, 2, dim=1)
        return LatentCodes(self.face_head(face_half), self.background_head(background_half))


class Encoder(nn.Module):
    """Claim 2 (E1) and claim 6 (E2): 9 conv3x3+ReLU with 2 stride-2 poolings, then the separation module."""

    def __init__(self, profile: WidthProfile, in_channels: int = 3) -> None:
        super().__init__()
        self.features, whole_channels = conv_relu_stack(in_channels, profile.encoder)
        self.separation = SeparationModule(whole_channels, profile.latent_channels)

    def forward(self, image: torch.Tensor) -> LatentCodes:
        return self.separation(self.features(image))
