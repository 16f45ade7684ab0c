"""Quality metrics: blur, exposure, pose, pHash, thresholds and near-duplicate search."""

from __future__ import annotations

import io
import math

import cv2
import numpy as np
import pydantic
import pytest
from PIL import Image
from skimage import data as skdata

from liveness.config import QualityParams
from liveness.data.quality import (
    QUALITY_REASONS,
    NearDuplicateIndex,
    exposure,
    find_near_duplicates,
    hamming,
    inter_eye_distance,
    laplacian_variance,
    measure_quality,
    perceptual_hash,
    pose_from_landmarks,
    quality_reasons,
)
from tests.fixtures.bad_images import ASTRONAUT_FACE_BOX, ASTRONAUT_LANDMARKS, astronaut, encode

# A frontal face: symmetric eyes and mouth, nose on the midline.
FRONTAL = np.array([[40.0, 50.0], [80.0, 50.0], [60.0, 70.0], [45.0, 90.0], [75.0, 90.0]])


def _gray(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def _face(image: np.ndarray, scale: int = 1) -> np.ndarray:
    x1, y1, x2, y2 = (int(v) * scale for v in ASTRONAUT_FACE_BOX)
    return image[y1:y2, x1:x2]


def _measure_astronaut(**overrides) -> dict[str, float]:
    image = astronaut()
    arguments = dict(
        face_rgb=_face(image),
        landmarks=ASTRONAUT_LANDMARKS,
        box=ASTRONAUT_FACE_BOX,
        source_shape=image.shape,
        detection_probability=0.99,
        face_count=1,
    )
    return measure_quality(**(arguments | overrides))


def test_laplacian_variance_is_higher_for_sharp_than_blurred():
    gray = _gray(astronaut())
    assert laplacian_variance(gray) > 10 * laplacian_variance(cv2.GaussianBlur(gray, (0, 0), 3))


def test_laplacian_variance_needs_a_2d_image():
    with pytest.raises(ValueError, match="2-D"):
        laplacian_variance(astronaut())


def test_blur_metric_is_measured_at_a_fixed_working_size():
    upscaled = cv2.resize(astronaut(), None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    native = _measure_astronaut()["blur_laplacian_var"]
    doubled = _measure_astronaut(face_rgb=_face(upscaled, scale=2))["blur_laplacian_var"]
    assert 0.8 < doubled / native < 1.25


@pytest.mark.parametrize(
    ("fill", "mean", "clipped"),
    [(20, 20.0, 0.0), (235, 235.0, 0.0), (5, 5.0, 1.0), (250, 250.0, 1.0), (128, 128.0, 0.0)],
)
def test_exposure_of_flat_images(fill, mean, clipped):
    assert exposure(np.full((8, 8, 3), fill, np.uint8)) == pytest.approx((mean, clipped))


def test_exposure_counts_clipped_share():
    image = np.full((10, 10, 3), 128, np.uint8)
    image[:3] = 0
    image[3:5] = 255
    assert exposure(image)[1] == pytest.approx(0.5)


def test_exposure_of_darkened_and_brightened_photo():
    photo = astronaut().astype(np.float32)
    dark_mean, _ = exposure((photo * 0.2).astype(np.uint8))
    bright_mean, bright_clipped = exposure(np.clip(photo * 3, 0, 255).astype(np.uint8))
    normal_mean, normal_clipped = exposure(astronaut())
    assert dark_mean < normal_mean < bright_mean and bright_clipped > normal_clipped


def test_metrics_need_uint8_rgb():
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        exposure(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        perceptual_hash(np.zeros((4, 4, 3), np.float32))


def test_frontal_pose_is_zero():
    assert pose_from_landmarks(FRONTAL) == pytest.approx((0.0, 0.0), abs=1e-9)


def test_roll_follows_rotation_and_yaw_ignores_it():
    angle = math.radians(20)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    center = FRONTAL.mean(axis=0)
    yaw, roll = pose_from_landmarks((FRONTAL - center) @ rotation.T + center)
    assert roll == pytest.approx(20.0) and yaw == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize(("shift", "sign"), [(8.0, 1), (-8.0, -1)])
def test_nose_shift_sets_yaw_sign(shift, sign):
    landmarks = FRONTAL.copy()
    landmarks[2, 0] += shift
    yaw, roll = pose_from_landmarks(landmarks)
    assert np.sign(yaw) == sign and 15 < abs(yaw) < 30 and roll == pytest.approx(0.0)


def test_extreme_nose_shift_clips_to_90_degrees():
    landmarks = FRONTAL.copy()
    landmarks[2, 0] += 100
    assert pose_from_landmarks(landmarks)[0] == pytest.approx(90.0)


def test_pose_rejects_bad_landmarks():
    with pytest.raises(ValueError, match="5"):
        pose_from_landmarks(FRONTAL[:4])
    with pytest.raises(ValueError, match="coincide"):
        pose_from_landmarks(np.zeros((5, 2)))


def test_inter_eye_distance():
    assert inter_eye_distance(FRONTAL) == pytest.approx(40.0)


def test_phash_identical_images():
    assert hamming(perceptual_hash(astronaut()), perceptual_hash(astronaut().copy())) == 0


def test_phash_survives_recompression_and_resize():
    reference = perceptual_hash(astronaut())
    recompressed = np.asarray(Image.open(io.BytesIO(encode(Image.fromarray(astronaut()), "JPEG", quality=60))))
    half = cv2.resize(astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    assert hamming(reference, perceptual_hash(recompressed)) <= 4
    assert hamming(reference, perceptual_hash(half)) <= 4


@pytest.mark.parametrize("other", ["coffee", "chelsea", "mirrored"])
def test_phash_differs_for_different_images(other):
    image = np.ascontiguousarray(astronaut()[:, ::-1]) if other == "mirrored" else getattr(skdata, other)()
    assert hamming(perceptual_hash(astronaut()), perceptual_hash(image)) >= 20


def test_phash_is_64_bit():
    assert 0 <= perceptual_hash(astronaut()) < 1 << 64


def test_measure_quality_of_astronaut_is_accepted():
    metrics = _measure_astronaut()
    assert set(metrics) == {
        "detection_probability",
        "face_count",
        "inter_eye_px",
        "face_px",
        "blur_laplacian_var",
        "mean_luminance",
        "clipped_fraction",
        "yaw_deg",
        "roll_deg",
        "source_min_side_px",
    }
    assert all(isinstance(value, float) for value in metrics.values())
    assert metrics["face_px"] == 92.0 and metrics["source_min_side_px"] == 512.0
    assert quality_reasons(metrics, QualityParams()) == []


def test_missing_landmarks_fail_the_landmark_checks():
    metrics = _measure_astronaut(landmarks=None)
    assert all(math.isnan(metrics[key]) for key in ("inter_eye_px", "yaw_deg", "roll_deg"))
    assert quality_reasons(metrics, QualityParams()) == ["small_inter_eye", "pose_yaw", "pose_roll"]


def test_blurred_face_is_flagged_blurry():
    blurred = cv2.GaussianBlur(_face(astronaut()), (0, 0), 3)
    assert quality_reasons(_measure_astronaut(face_rgb=blurred), QualityParams()) == ["blurry"]


PASSING = {
    "detection_probability": 0.99,
    "face_count": 1.0,
    "inter_eye_px": 40.0,
    "face_px": 100.0,
    "blur_laplacian_var": 200.0,
    "mean_luminance": 128.0,
    "clipped_fraction": 0.01,
    "yaw_deg": 5.0,
    "roll_deg": -5.0,
    "source_min_side_px": 512.0,
}
FAILING = [
    ("detection_probability", 0.5, "low_detection_probability"),
    ("face_count", 0.0, "face_count_not_one"),
    ("face_count", 2.0, "face_count_not_one"),
    ("face_px", 30.0, "small_face"),
    ("inter_eye_px", 10.0, "small_inter_eye"),
    ("blur_laplacian_var", 5.0, "blurry"),
    ("blur_laplacian_var", float("nan"), "blurry"),
    ("mean_luminance", 20.0, "too_dark"),
    ("mean_luminance", 240.0, "too_bright"),
    ("clipped_fraction", 0.5, "clipped_exposure"),
    ("yaw_deg", 50.0, "pose_yaw"),
    ("yaw_deg", -50.0, "pose_yaw"),
    ("roll_deg", -40.0, "pose_roll"),
    ("source_min_side_px", 32.0, "low_resolution"),
]


def test_passing_metrics_have_no_reasons():
    assert quality_reasons(PASSING, QualityParams()) == []


@pytest.mark.parametrize(("metric", "value", "code"), FAILING)
def test_each_threshold_triggers_its_own_code(metric, value, code):
    assert quality_reasons(PASSING | {metric: value}, QualityParams()) == [code]


def test_every_quality_reason_is_tested_and_described():
    assert {code for _, _, code in FAILING} == set(QUALITY_REASONS)


def test_all_failures_are_reported_together():
    metrics = PASSING | {"face_count": 3.0, "mean_luminance": 10.0, "roll_deg": 90.0}
    assert quality_reasons(metrics, QualityParams()) == ["face_count_not_one", "too_dark", "pose_roll"]


def test_quality_reasons_names_missing_metrics():
    with pytest.raises(KeyError, match="blur_laplacian_var"):
        quality_reasons({k: v for k, v in PASSING.items() if k != "blur_laplacian_var"}, QualityParams())


def test_thresholds_are_frozen_and_validated():
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        QualityParams().min_face_px = 1  # type: ignore[misc]
    with pytest.raises(ValueError, match="luminance_range"):
        QualityParams(luminance_range=(200.0, 100.0))


def _brute_force(hashes, max_hamming):
    kept, duplicates = [], {}
    for index, value in enumerate(hashes):
        if value is None:
            continue
        matches = [k for k in kept if hamming(value, hashes[k]) <= max_hamming]
        if matches:
            duplicates[index] = min(matches)
        else:
            kept.append(index)
    return duplicates


def _planted_hashes(count: int, seed: int) -> list[int | None]:
    """Random 64-bit hashes where about a third are copies of an earlier one with 0-6 bits flipped."""
    rng = np.random.default_rng(seed)
    hashes: list[int | None] = []
    for index in range(count):
        roll = rng.random()
        if index and roll < 0.35:
            source = hashes[int(rng.integers(index))]
            flips = rng.choice(64, size=int(rng.integers(0, 7)), replace=False)
            hashes.append(None if source is None else source ^ sum(1 << int(bit) for bit in flips))
        elif roll < 0.38:
            hashes.append(None)
        else:
            hashes.append(int(rng.integers(0, 2**64, dtype=np.uint64)))
    return hashes


@pytest.mark.parametrize("max_hamming", [0, 4, 7])
def test_find_near_duplicates_matches_brute_force(max_hamming):
    hashes = _planted_hashes(2000, seed=max_hamming)
    expected = _brute_force(hashes, max_hamming)
    assert len(expected) > 50, "the planted set should hold many near-duplicates"
    assert find_near_duplicates(hashes, max_hamming) == expected


def test_index_streams_and_returns_the_callers_keys():
    index = NearDuplicateIndex(2)
    assert [index.add(value, key) for value, key in [(0b1111, 10), (1 << 50, 11), (0b0111, 12), (0b0011, 13)]] == [
        None,
        None,
        10,
        10,
    ]


def test_find_near_duplicates_keeps_first_and_ignores_none():
    assert find_near_duplicates([None, 0b1111, 0b1110, None, 0b1111, 1 << 40], 1) == {2: 1, 4: 1}


def test_find_near_duplicates_rejects_bad_input():
    with pytest.raises(ValueError, match="max_hamming"):
        find_near_duplicates([1, 2], 64)
    with pytest.raises(ValueError, match="key 1"):
        find_near_duplicates([1, -2], 4)
