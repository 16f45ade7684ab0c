"""Build the networks from the params sections they own."""

from __future__ import annotations

from liveness.config import ModelParams
from liveness.model.discriminator import Discriminator
from liveness.model.generator import Generator
from liveness.model.profiles import WidthProfile, get_profile


def profile_for(params: ModelParams) -> WidthProfile:
    return get_profile(params.profile, params.decoder_channels)


def build_generator(params: ModelParams) -> Generator:
    return Generator(profile_for(params))


def build_discriminator(params: ModelParams) -> Discriminator:
    return Discriminator(profile_for(params))
