"""Width profiles: the channel plan of every network, by name.

The patent fixes the topology (9 conv 3x3 + 2 poolings per encoder, 9 conv 3x3 + 2 upsamplings per decoder,
6 conv discriminator) but not the intermediate widths. A profile fills those in, and names the input size its
widths were chosen for. ``P`` marks a stride-2 pooling and ``U`` a x2 upsampling.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

POOL = "P"
UPSAMPLE = "U"

Plan = tuple[int | str, ...]


@dataclass(frozen=True)
class WidthProfile:
    name: str
    encoder: Plan  # E1 and E2; the last width is the latent whole feature, split in half by the separation module
    latent_channels: int  # channels of z_face and of z_bg
    decoder: Plan  # face and background decoders; the last width is the deep feature's
    head_channels: int  # hidden width of the clear-face and recombination heads
    discriminator: tuple[int, ...]  # the 6 conv widths of D
    image_size: int = 128  # the input size the widths were chosen for: the recommended model.image_size

    def __post_init__(self) -> None:
        _check_plan(self.name, "encoder", self.encoder, POOL)
        _check_plan(self.name, "decoder", self.decoder, UPSAMPLE)
        if self.encoder[-1] % 2:
            raise ValueError(f"profile {self.name}: the encoder's last width must be even to split in half")
        if len(self.discriminator) != 6:
            raise ValueError(f"profile {self.name}: the discriminator needs exactly 6 conv widths")
        if self.image_size < 8 or self.image_size % 4:
            raise ValueError(f"profile {self.name}: image_size must be at least 8 and divisible by 4, "
                             f"got {self.image_size}")

    @property
    def decoder_channels(self) -> int:
        return int(self.decoder[-1])

    def with_decoder_channels(self, channels: int) -> "WidthProfile":
        """The same profile with the deep-feature width changed (the patent says 64 in one place, 32 in another)."""
        return replace(self, decoder=(*self.decoder[:-1], channels))


def _check_plan(profile: str, part: str, plan: Plan, marker: str) -> None:
    convs = [w for w in plan if w != marker]
    markers = [w for w in plan if w == marker]
    if len(convs) != 9 or len(markers) != 2 or not all(isinstance(w, int) and w > 0 for w in convs):
        raise ValueError(
            f"profile {profile}: the {part} plan must hold 9 positive conv widths and 2 {marker!r} markers, got {plan}"
        )
    if plan[-1] == marker:
        raise ValueError(f"profile {profile}: the {part} plan must end with a conv width, got {plan}")


def scaled(profile: WidthProfile, divisor: int, name: str, image_size: int | None = None) -> WidthProfile:
    """The same topology with every width divided by ``divisor`` (and, when given, another input size)."""

    def scale(plan: tuple) -> tuple:
        return tuple(step if isinstance(step, str) else step // divisor for step in plan)

    return WidthProfile(
        name=name,
        encoder=scale(profile.encoder),
        latent_channels=profile.latent_channels // divisor,
        decoder=scale(profile.decoder),
        head_channels=profile.head_channels // divisor,
        discriminator=scale(profile.discriminator),
        image_size=image_size or profile.image_size,
    )


# DESIGN §1.1: the widths we read into the patent.
PATENT = WidthProfile(
    name="patent",
    encoder=(64, 64, POOL, 128, 128, 128, POOL, 256, 256, 256, 256),
    latent_channels=64,
    decoder=(256, 256, 256, 256, UPSAMPLE, 128, 128, 128, UPSAMPLE, 64, 64),
    head_channels=64,
    discriminator=(64, 64, 128, 128, 256, 256),
    image_size=128,
)

# For CPU edge devices: the same topology as PATENT (every part of DESIGN §1.1: E1 and E2 with 9 conv3x3 + 2
# poolings and the 1x1 / 3x3 separation heads, two 9-conv decoders with 2 upsamplings, the clear-face and
# recombination heads), narrower and at 64 px. A channel at full resolution costs 16 times one at H/4, so the
# widths grow as the resolution falls: 8 at full size, 24 at H/2, 48 at H/4, 16-channel codes. The scoring
# pass (E1, both decoders, recombination, E2) is about 0.35 GFLOP per face against about 45 for PATENT at
# 128 px (bench/infer_latency.py measures both and their 1-thread latency).
DEPLOY = WidthProfile(
    name="deploy",
    encoder=(8, 8, POOL, 24, 24, 24, POOL, 48, 48, 48, 48),
    latent_channels=16,
    decoder=(48, 48, 48, 48, UPSAMPLE, 24, 24, 24, UPSAMPLE, 8, 8),
    head_channels=8,
    discriminator=(16, 16, 32, 32, 64, 64),  # training only; not in the deployed scoring graph
    image_size=64,
)

PROFILES: dict[str, WidthProfile] = {
    "patent": PATENT,
    "small": scaled(PATENT, 4, "small", image_size=64),  # the CPU demo
    "tiny": scaled(PATENT, 8, "tiny", image_size=32),  # unit tests and smoke runs
    "deploy": DEPLOY,  # CPU edge devices
}


def get_profile(name: str, decoder_channels: int | None = None) -> WidthProfile:
    if name not in PROFILES:
        raise KeyError(f"unknown width profile {name!r}; choose one of {sorted(PROFILES)}")
    profile = PROFILES[name]
    return profile.with_decoder_channels(decoder_channels) if decoder_channels else profile
