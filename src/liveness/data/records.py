"""What every source adapter yields: one record per image or video, before any decoding."""

from __future__ import annotations

from dataclasses import dataclass, field

LIVE = "live"
SPOOF = "spoof"

# Canonical attack species names used across adapters, reports and metrics. Adapters map each database's own
# codes onto these; the synthetic demo set uses print_a4 (print), replay_pc (screen replay), mask_region
# (cut photo) and mask_face (a printed paper mask worn by a live person), in CelebA-Spoof's codes 3, 7, 6 and 4.
SPECIES_LIVE = "live"
CELEBA_SPOOF_SPECIES = {
    0: SPECIES_LIVE,
    1: "print_photo",
    2: "print_poster",
    3: "print_a4",
    4: "mask_face",
    5: "mask_upper_body",
    6: "mask_region",
    7: "replay_pc",
    8: "replay_pad",
    9: "replay_phone",
    10: "mask_3d",
}
SPECIES_PRINT = "print"
SPECIES_PRINT_WARPED = "print_warped"
SPECIES_CUT = "print_cut"
SPECIES_REPLAY = "replay"


@dataclass(frozen=True)
class SourceRecord:
    """One image, or one video (``is_video``), as a database describes it.

    ``subject`` is the identity (live) or the person attacked/recorded (spoof); splits never let a subject
    cross. ``split_hint`` is the database's own split name when it has one (``train``, ``val``, ``test``,
    ``devel``...). ``landmarks`` are 5 (x, y) points (left eye, right eye, nose, left mouth corner, right mouth
    corner, from the viewer's side) and ``box`` is (x1, y1, x2, y2), both in source-image pixels, when the
    database ships them. ``frame_index`` is set for frames sampled from a video.
    """

    source: str
    path: str
    subject: str
    label: str  # LIVE or SPOOF
    species: str  # SPECIES_LIVE for live, else an attack species name
    split_hint: str | None = None
    is_video: bool = False
    frame_index: int | None = None
    landmarks: tuple[tuple[float, float], ...] | None = None
    box: tuple[float, float, float, float] | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def record_id(self) -> str:
        """Stable id: the path, plus ``#frame`` for video frames."""
        return self.path if self.frame_index is None else f"{self.path}#{self.frame_index}"
