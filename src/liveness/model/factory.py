"""Build the networks from a width profile (``profiles.get_profile``); the params schema is not an argument, so
this package stays pure torch (DESIGN §3)."""

from __future__ import annotations

from liveness.model.discriminator import Discriminator
from liveness.model.generator import Generator
from liveness.model.profiles import WidthProfile


def build_generator(profile: WidthProfile) -> Generator:
    return Generator(profile)


def build_discriminator(profile: WidthProfile) -> Discriminator:
    return Discriminator(profile)
