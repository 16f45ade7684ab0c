"""Quality metrics for curating live faces: pure functions on arrays, thresholds passed in.

``measure_quality`` turns one detected face into named numbers; ``quality_reasons`` compares them with
the thresholds (``liveness.config.QualityParams``, params.yaml ``curate.quality``) and returns every failed check as a stable code (empty list: accepted). Near-duplicate
detection uses a 64-bit DCT perceptual hash and multi-index hashing so it scales to ~100k images.

Landmarks are 5 (x, y) points in source-image pixels, in the ``SourceRecord`` order: left eye, right eye, nose,
left mouth corner, right mouth corner (from the viewer's side).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence

import cv2
import numpy as np
from numpy.typing import ArrayLike

from liveness.config import QualityParams

BLUR_WORKING_SIDE_PX = 112
"""Short side the face crop is resized to before measuring blur, so the metric does not depend on resolution."""

NOSE_DEPTH_RATIO = 0.5
"""Assumed nose-tip depth in front of the eye-mouth plane, as a fraction of the inter-eye distance (yaw model)."""

CLIP_LOW, CLIP_HIGH = 5, 250
"""Luminance at or below / at or above which a pixel counts as clipped."""

HASH_BITS = 64


QUALITY_REASONS: dict[str, str] = {
    "low_detection_probability": "face detector confidence below the minimum",
    "face_count_not_one": "the source image holds no face or more than one face",
    "small_face": "detection box short side below the minimum",
    "small_inter_eye": "distance between the eyes below the minimum",
    "blurry": "Laplacian variance of the face below the minimum (out of focus or motion blur)",
    "too_dark": "mean face luminance below the range",
    "too_bright": "mean face luminance above the range",
    "clipped_exposure": "too many face pixels crushed to black or blown to white",
    "pose_yaw": "head turned left/right beyond the maximum",
    "pose_roll": "head tilted in-plane beyond the maximum",
    "low_resolution": "source image short side below the minimum",
}

# (code, metric, passes). Written as "passes" so a NaN metric fails its check instead of slipping through.
_CHECKS: tuple[tuple[str, str, Callable[[float, QualityParams], bool]], ...] = (
    ("low_detection_probability", "detection_probability", lambda v, t: v >= t.min_detection_probability),
    ("face_count_not_one", "face_count", lambda v, t: v == 1),
    ("small_face", "face_px", lambda v, t: v >= t.min_face_px),
    ("small_inter_eye", "inter_eye_px", lambda v, t: v >= t.min_inter_eye_px),
    ("blurry", "blur_laplacian_var", lambda v, t: v >= t.min_blur_laplacian_var),
    ("too_dark", "mean_luminance", lambda v, t: v >= t.luminance_range[0]),
    ("too_bright", "mean_luminance", lambda v, t: v <= t.luminance_range[1]),
    ("clipped_exposure", "clipped_fraction", lambda v, t: v <= t.max_clipped_fraction),
    ("pose_yaw", "yaw_deg", lambda v, t: abs(v) <= t.max_abs_yaw_deg),
    ("pose_roll", "roll_deg", lambda v, t: abs(v) <= t.max_abs_roll_deg),
    ("low_resolution", "source_min_side_px", lambda v, t: v >= t.min_source_side_px),
)


def _require_rgb(rgb: np.ndarray) -> np.ndarray:
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or 0 in rgb.shape:
        raise ValueError(f"expected a non-empty uint8 HxWx3 RGB array, got {rgb.dtype} {rgb.shape}")
    return rgb


def _luminance(rgb: np.ndarray) -> np.ndarray:
    """Rec. 601 luma (what cv2 calls gray), uint8."""
    return cv2.cvtColor(_require_rgb(rgb), cv2.COLOR_RGB2GRAY)


def _landmarks(landmarks: ArrayLike) -> np.ndarray:
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (5, 2):
        raise ValueError(f"expected 5 (x, y) landmarks, got shape {points.shape}")
    return points


def laplacian_variance(gray: np.ndarray) -> float:
    """Variance of the Laplacian of a 2-D image: high for sharp edges, low for blur. Depends on scale."""
    if gray.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale array, got shape {gray.shape}")
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def exposure(rgb: np.ndarray) -> tuple[float, float]:
    """Mean luminance (0-255) and the share of pixels at or below 5 or at or above 250."""
    luma = _luminance(rgb)
    clipped = (luma <= CLIP_LOW) | (luma >= CLIP_HIGH)
    return float(luma.mean()), float(clipped.mean())


def inter_eye_distance(landmarks: ArrayLike) -> float:
    """Distance between the two eye landmarks, in the landmarks' pixels."""
    points = _landmarks(landmarks)
    return float(np.hypot(*(points[1] - points[0])))


def pose_from_landmarks(landmarks: ArrayLike) -> tuple[float, float]:
    """Approximate (yaw, roll) in degrees from 5 landmarks.

    Roll is the angle of the eye line (left eye to right eye), positive when it turns clockwise on screen
    (the viewer's right eye lower). Yaw is an approximation: the nose tip's offset from the face midline (the
    mean of the eye and mouth midpoints), measured along the eye line so roll does not leak in, divided by the
    inter-eye distance, is taken as ``NOSE_DEPTH_RATIO * sin(yaw)``; the sine is clipped to [-1, 1]. It ignores
    pitch and the foreshortening of the inter-eye distance, so treat it as a gate, not a measurement. Positive
    yaw means the nose points to the viewer's right.
    """
    points = _landmarks(landmarks)
    left_eye, right_eye, nose, left_mouth, right_mouth = points
    eye_line = right_eye - left_eye
    distance = float(np.hypot(*eye_line))
    if distance == 0.0:
        raise ValueError("the two eye landmarks coincide; pose is undefined")
    roll = math.degrees(math.atan2(eye_line[1], eye_line[0]))
    midline = ((left_eye + right_eye) / 2 + (left_mouth + right_mouth) / 2) / 2
    offset = float(np.dot(nose - midline, eye_line / distance)) / distance
    yaw = math.degrees(math.asin(float(np.clip(offset / NOSE_DEPTH_RATIO, -1.0, 1.0))))
    return yaw, roll


def perceptual_hash(rgb: np.ndarray) -> int:
    """64-bit DCT pHash: 32x32 luma, DCT, the 8x8 lowest frequencies minus DC, each bit set above their median.

    The DC term (mean brightness) is left out, so 63 bits carry information and the top bit is always 0.
    Robust to rescaling and recompression; compare hashes with ``hamming``.
    """
    small = cv2.resize(_luminance(rgb), (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].ravel()[1:]
    return sum(1 << int(bit) for bit in np.flatnonzero(low > np.median(low)))


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two hashes."""
    return (a ^ b).bit_count()


def _face_px(box: Sequence[float]) -> float:
    x1, y1, x2, y2 = box
    return float(min(x2 - x1, y2 - y1))


def _blur_at_working_size(face_rgb: np.ndarray) -> float:
    """Laplacian variance after resizing the face so its short side is ``BLUR_WORKING_SIDE_PX``."""
    luma = _luminance(face_rgb)
    height, width = luma.shape
    scale = BLUR_WORKING_SIDE_PX / min(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return laplacian_variance(cv2.resize(luma, size, interpolation=interpolation))


def measure_quality(
    face_rgb: np.ndarray,
    landmarks: ArrayLike | None,
    box: Sequence[float],
    source_shape: Sequence[int],
    detection_probability: float,
    face_count: int,
) -> dict[str, float]:
    """All quality metrics of one face. ``face_rgb`` is the face region (uint8 RGB); ``landmarks`` and ``box``
    (x1, y1, x2, y2) are in source pixels; ``source_shape`` is the source image's (height, width, ...).

    Without landmarks (None) the inter-eye distance and pose are NaN: unknown, so they fail their checks."""
    mean_luminance, clipped_fraction = exposure(face_rgb)
    yaw, roll = (math.nan, math.nan) if landmarks is None else pose_from_landmarks(landmarks)
    return {
        "detection_probability": float(detection_probability),
        "face_count": float(face_count),
        "inter_eye_px": math.nan if landmarks is None else inter_eye_distance(landmarks),
        "face_px": _face_px(box),
        "blur_laplacian_var": _blur_at_working_size(face_rgb),
        "mean_luminance": mean_luminance,
        "clipped_fraction": clipped_fraction,
        "yaw_deg": yaw,
        "roll_deg": roll,
        "source_min_side_px": float(min(source_shape[:2])),
    }


def quality_reasons(metrics: dict[str, float], thresholds: QualityParams) -> list[str]:
    """Every failed check as a ``QUALITY_REASONS`` code, in a fixed order; empty means accepted."""
    missing = {metric for _, metric, _ in _CHECKS} - metrics.keys()
    if missing:
        raise KeyError(f"quality metrics lack {sorted(missing)}; compute them with measure_quality")
    return [code for code, metric, passes in _CHECKS if not passes(metrics[metric], thresholds)]


class NearDuplicateIndex:
    """Streaming near-duplicate filter: ``add`` each hash in order; the first of a group is kept.

    Multi-index hashing: the 64 bits are split into max_hamming + 1 bands, and two hashes within distance d
    agree exactly on at least one band (pigeonhole), so only kept hashes sharing a band value are compared.
    Bands narrow as max_hamming grows, so the work per hash grows roughly as n / 2**(64 / (max_hamming + 1)):
    about 2 s for 100k random hashes at the default 4, 12 s at 6, minutes at 10.
    """

    def __init__(self, max_hamming: int) -> None:
        if not 0 <= max_hamming < HASH_BITS:
            raise ValueError(f"max_hamming must be in 0..63, got {max_hamming}")
        self.max_hamming = max_hamming
        count = max_hamming + 1
        edges = [round(band * HASH_BITS / count) for band in range(count + 1)]
        self._bands = [(low, (1 << (high - low)) - 1) for low, high in zip(edges, edges[1:])]
        self._buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
        self._hashes: list[int] = []  # kept hashes, in the order they were kept
        self._keys: list[int] = []

    def add(self, value: int, key: int) -> int | None:
        """The key of the earliest kept hash within ``max_hamming`` of ``value``; else keep ``value`` under
        ``key`` and return None."""
        if not 0 <= value < 1 << HASH_BITS:
            raise ValueError(f"hash for key {key} is not a 64-bit unsigned integer: {value}")
        bands = [(band, (value >> shift) & mask) for band, (shift, mask) in enumerate(self._bands)]
        candidates = {slot for band in bands for slot in self._buckets.get(band, ())}
        hashes, limit = self._hashes, self.max_hamming
        earliest = min((slot for slot in candidates if (value ^ hashes[slot]).bit_count() <= limit), default=None)
        if earliest is not None:
            return self._keys[earliest]
        for band in bands:
            self._buckets[band].append(len(hashes))
        hashes.append(value)
        self._keys.append(key)
        return None


def find_near_duplicates(hashes: Sequence[int | None], max_hamming: int) -> dict[int, int]:
    """Map the index of each near-duplicate to the index of the earliest kept image within ``max_hamming``.

    Images are visited in order; one with no kept image within distance is kept. ``None`` entries (images with
    no hash) are skipped. See ``NearDuplicateIndex`` for the method and its cost.
    """
    index = NearDuplicateIndex(max_hamming)
    duplicates: dict[int, int] = {}
    for position, value in enumerate(hashes):
        if value is not None and (first := index.add(value, position)) is not None:
            duplicates[position] = first
    return duplicates
