"""Procedural faces: stable identities, varied renders, landmarks on the drawn features."""

import numpy as np
import pytest

from liveness.data.synthetic.faces import (
    HAIR_STYLES,
    clip_box,
    face_box,
    identity_traits,
    render_background,
    render_face,
)


def _render(identity: int, shot: int, size=(64, 64), seed: int = 0):
    return render_face(identity_traits(seed, identity), np.random.default_rng([seed, identity, shot]), size)


def _patch_luma(image: np.ndarray, point, radius: int = 1) -> float:
    x, y = (int(round(v)) for v in point)
    patch = image[y - radius : y + radius + 1, x - radius : x + radius + 1].astype(np.float32)
    return float(patch.mean())


class TestIdentityTraits:
    def test_same_identity_same_traits(self):
        assert identity_traits(3, 7) == identity_traits(3, 7)

    def test_traits_do_not_depend_on_how_many_identities_are_drawn(self):
        few = [identity_traits(0, k) for k in range(3)]
        many = [identity_traits(0, k) for k in range(50)]
        assert many[:3] == few

    def test_identities_differ_and_seeds_differ(self):
        traits = [identity_traits(0, k) for k in range(30)]
        assert len(set(traits)) == 30
        assert identity_traits(0, 4) != identity_traits(1, 4)

    def test_population_is_diverse(self):
        traits = [identity_traits(0, k) for k in range(80)]
        lightness = [sum(t.skin) / 3 for t in traits]
        assert max(lightness) - min(lightness) > 0.4  # light to dark skin
        assert {t.hair_style for t in traits} == set(HAIR_STYLES)
        assert any(t.glasses for t in traits) and not all(t.glasses for t in traits)


class TestRenderFace:
    @pytest.mark.parametrize("size", [(64, 64), (96, 96), (128, 128), (256, 256), (96, 128)])
    def test_shape_dtype_and_landmarks_inside(self, size):
        image, landmarks = _render(1, 0, size)
        assert image.shape == (*size, 3) and image.dtype == np.uint8
        assert landmarks.shape == (5, 2) and landmarks.dtype == np.float32
        h, w = size
        assert np.all((landmarks >= 0) & (landmarks < (w, h)))

    def test_deterministic_per_generator_seed(self):
        first, first_points = _render(2, 5)
        again, again_points = _render(2, 5)
        other, _ = _render(2, 6)
        assert np.array_equal(first, again) and np.array_equal(first_points, again_points)
        assert not np.array_equal(first, other)

    def test_landmark_order_is_plausible(self):
        for shot in range(20):
            _, (left_eye, right_eye, nose, left_mouth, right_mouth) = _render(shot % 7, shot)
            assert left_eye[0] < right_eye[0] and left_mouth[0] < right_mouth[0]
            assert max(left_eye[1], right_eye[1]) < nose[1] < min(left_mouth[1], right_mouth[1])
            assert left_eye[0] < nose[0] < right_eye[0]

    def test_eye_landmarks_sit_on_dark_pupils(self):
        """The landmark pixel is much darker than the skin a third of the eye spacing below it."""
        ratios = []
        for shot in range(20):
            image, points = _render(shot, shot, (128, 128))
            luma = image.mean(axis=2)
            dx, dy = points[1] - points[0]
            below = np.array([-dy, dx]) * 0.35
            pupils = np.mean([_patch_luma(luma, points[i], 0) for i in (0, 1)])
            skin = np.mean([_patch_luma(luma, points[i] + below) for i in (0, 1)])
            ratios.append(pupils / skin)
        assert np.median(ratios) < 0.4
        assert np.mean(np.array(ratios) < 0.9) >= 0.9

    def test_mouth_landmarks_end_the_lips(self):
        """The lip seam between the corners is darker than the skin just below the lower lip's edge."""
        darker = 0
        for shot in range(20):
            image, points = _render(shot, shot, (128, 128))
            luma = image.mean(axis=2)
            seam = (points[3] + points[4]) / 2
            spacing = np.linalg.norm(points[1] - points[0])
            chin = seam + (0, 0.45 * spacing)
            darker += _patch_luma(luma, seam, 0) < _patch_luma(luma, chin)
        assert darker >= 17

    def test_face_fills_35_to_50_percent_of_the_width(self):
        widths = []
        for shot in range(20):
            _, points = _render(shot, shot, (128, 128))
            x1, _, x2, _ = face_box(points)
            widths.append((x2 - x1) / 128)
        assert 0.33 < min(widths) and max(widths) < 0.55

    def test_roll_varies_between_shots(self):
        angles = []
        for shot in range(20):
            _, points = _render(4, shot, (128, 128))
            dx, dy = points[1] - points[0]
            angles.append(np.degrees(np.arctan2(dy, dx)))
        assert np.ptp(angles) > 8


def test_face_box_contains_landmarks_and_clips():
    _, points = _render(0, 0, (128, 128))
    x1, y1, x2, y2 = face_box(points)
    assert np.all((points[:, 0] > x1) & (points[:, 0] < x2) & (points[:, 1] > y1) & (points[:, 1] < y2))
    assert clip_box((-5.0, -2.0, 70.0, 200.0), 64, 64) == (0.0, 0.0, 63.0, 63.0)


def test_backgrounds_vary():
    scenes = [render_background(np.random.default_rng(k), (48, 64)) for k in range(12)]
    assert all(scene.shape == (48, 64, 3) and scene.dtype == np.uint8 for scene in scenes)
    means = np.array([scene.reshape(-1, 3).mean(axis=0) for scene in scenes])
    assert means.std(axis=0).min() > 10
