"""The generator G: E1, both decoders, both heads and E2 (claims 1-6)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from liveness.model.decoder import ClearFaceHead, Decoder, RecombinationHead
from liveness.model.encoder import Encoder, LatentCodes
from liveness.model.profiles import WidthProfile


class GeneratorOutput(NamedTuple):
    clear_face: torch.Tensor | None  # I_c, (N, 3, H, W) in [-1, 1]; None when not requested
    reconstruction: torch.Tensor  # I_real, (N, 3, H, W) in [-1, 1]
    codes: LatentCodes  # z_face, z_bg from E1
    recodes: LatentCodes  # z_face', z_bg' from E2 re-encoding I_real


class Generator(nn.Module):
    """Everything except D and f.

    Images are (N, 3, H, W) scaled to [-1, 1], H = W divisible by 4. The network holds no batch-coupled
    layer (no BatchNorm), so each sample's outputs depend on that sample only.
    """

    def __init__(self, profile: WidthProfile, image_channels: int = 3) -> None:
        super().__init__()
        self.profile = profile
        self.encoder = Encoder(profile, image_channels)  # E1
        self.face_decoder = Decoder(profile)
        self.background_decoder = Decoder(profile)
        channels = profile.decoder_channels
        self.clear_face_head = ClearFaceHead(channels, profile.head_channels, image_channels)
        self.recombination_head = RecombinationHead(channels, channels, profile.head_channels, image_channels)
        self.re_encoder = Encoder(profile, image_channels)  # E2, separate weights

    def forward(self, image: torch.Tensor, with_clear_face: bool = True) -> GeneratorOutput:
        codes = self.encoder(image)
        deep_face = self.face_decoder(codes.face)
        deep_background = self.background_decoder(codes.background)
        clear_face = self.clear_face_head(deep_face) if with_clear_face else None
        reconstruction = self.recombination_head(deep_face, deep_background)
        recodes = self.re_encoder(reconstruction)
        return GeneratorOutput(clear_face, reconstruction, codes, recodes)
