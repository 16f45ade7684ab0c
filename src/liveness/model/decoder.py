"""Face and background decoders and the two output heads (claims 4 and 5)."""

from __future__ import annotations

import torch
from torch import nn

from liveness.model.layers import conv_relu_stack, he_init
from liveness.model.profiles import WidthProfile


def he_init_conv(in_channels: int, out_channels: int) -> nn.Conv2d:
    """A head's first conv3x3 (followed by ReLU), He-initialised like the stacks."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
    he_init(conv)
    return conv


class Decoder(nn.Module):
    """Claim 4: 9 conv3x3+ReLU with 2 x2 upsamplings, latent code -> full-size deep feature.

    The face decoder and the background decoder share this structure and have separate weights.
    """

    def __init__(self, profile: WidthProfile) -> None:
        super().__init__()
        self.layers, self.out_channels = conv_relu_stack(profile.latent_channels, profile.decoder)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return self.layers(code)


class ClearFaceHead(nn.Module):
    """Claim 5, feature reconstruction: conv, conv, Tanh on the deep face feature alone -> clear face I_c."""

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int = 3) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            he_init_conv(in_channels, hidden_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden_channels, out_channels, kernel_size=3, padding=1),
            nn.Tanh(),
        )

    def forward(self, deep_face: torch.Tensor) -> torch.Tensor:
        return self.layers(deep_face)


class RecombinationHead(nn.Module):
    """Claim 5, recombination: concat(deep face, deep background), conv, conv, Tanh -> I_real."""

    def __init__(self, face_channels: int, background_channels: int, hidden_channels: int, out_channels: int = 3):
        super().__init__()
        self.layers = nn.Sequential(
            he_init_conv(face_channels + background_channels, hidden_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden_channels, out_channels, kernel_size=3, padding=1),
            nn.Tanh(),
        )

    def forward(self, deep_face: torch.Tensor, deep_background: torch.Tensor) -> torch.Tensor:
        return self.layers(torch.cat([deep_face, deep_background], dim=1))
