"""Simulated attacks: a recapture with the cues of prints, screens and cut photos, and an exact face box."""

import cv2
import numpy as np
import pytest

from liveness.data.synthetic.attacks import (
    ATTACKS,
    cut_hole,
    cut_hole_mask,
    halftone,
    mask_face_capture,
    moire,
    ordered_dither,
    simulate_cut_photo,
    simulate_mask_face,
    simulate_print,
    simulate_replay,
)
from liveness.data.synthetic.faces import (
    camera_capture,
    clip_box,
    compose_scene,
    face_box,
    face_interior,
    identity_traits,
    render_face,
)

SIZE = 128
CENTRE_LANDMARKS = np.array([(52, 54), (76, 54), (64, 68), (54, 82), (74, 82)], np.float32)


def _live(identity: int = 3, shot: int = 0):
    return render_face(identity_traits(0, identity), np.random.default_rng([identity, shot]), (SIZE, SIZE))


def _crop(image: np.ndarray, box) -> np.ndarray:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    return image[y1:y2, x1:x2].astype(np.float32) / 255


def _chroma(pixels: np.ndarray) -> float:
    return float((pixels.max(axis=-1) - pixels.min(axis=-1)).mean())


def _band_energy(grey: np.ndarray) -> float:
    """Energy between 1 and 3 pixel blurs: where print dots and dither patterns live."""
    return float(np.mean((cv2.GaussianBlur(grey, (0, 0), 0.7) - cv2.GaussianBlur(grey, (0, 0), 2.0)) ** 2))


@pytest.mark.parametrize("name", sorted(ATTACKS))
class TestEveryAttack:
    def test_shape_dtype_box_and_difference(self, name):
        live, points = _live()
        attack, box = ATTACKS[name](live, points, np.random.default_rng(1), None)
        assert attack.shape == live.shape and attack.dtype == np.uint8
        x1, y1, x2, y2 = box
        assert 0 <= x1 < x2 <= SIZE - 1 and 0 <= y1 < y2 <= SIZE - 1
        assert np.abs(attack.astype(np.int16) - live).mean() > 10

    def test_face_keeps_roughly_its_scale(self, name):
        for shot in range(4):
            live, points = _live(shot, shot)
            _, box = ATTACKS[name](live, points, np.random.default_rng(shot), None)
            lx1, ly1, lx2, ly2 = face_box(points)
            scale = (box[2] - box[0]) / (lx2 - lx1)
            assert 0.55 < scale < 1.0

    def test_deterministic_and_uses_given_background(self, name):
        live, points = _live()
        first, first_box = ATTACKS[name](live, points, np.random.default_rng(5), None)
        again, again_box = ATTACKS[name](live, points, np.random.default_rng(5), None)
        assert np.array_equal(first, again) and first_box == again_box
        on_black, _ = ATTACKS[name](live, points, np.random.default_rng(5), np.zeros_like(live))
        assert np.percentile(on_black.mean(axis=2), 3) < 12  # the black scene shows around the artefact

    def test_rejects_a_background_of_another_size(self, name):
        live, points = _live()
        with pytest.raises(ValueError, match="background shape"):
            ATTACKS[name](live, points, np.random.default_rng(0), np.zeros((SIZE // 2, SIZE // 2, 3), np.uint8))


def _small_bright_spots(image: np.ndarray) -> np.ndarray:
    """Centres of dot-sized bright blobs; a paper margin, its corner or a glare is too big or too far out."""
    grey = cv2.GaussianBlur(image.mean(axis=2).astype(np.float32), (0, 0), 0.8)
    tophat = grey - cv2.morphologyEx(grey, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9)))
    count, _, stats, centres = cv2.connectedComponentsWithStats((tophat > 0.5 * tophat.max()).astype(np.uint8))
    small = (stats[1:, cv2.CC_STAT_WIDTH] <= 8) & (stats[1:, cv2.CC_STAT_HEIGHT] <= 8)
    central = np.all((centres[1:] > 24) & (centres[1:] < SIZE - 24), axis=1)  # the landmarks never leave it
    return centres[1:][small & central]


@pytest.mark.parametrize("attack", [simulate_print, simulate_replay])
def test_box_follows_the_geometric_transform(attack):
    """Bright dots drawn at the landmarks land where the returned box says the face is."""
    for seed in range(4):
        marks = np.zeros((SIZE, SIZE, 3), np.uint8)
        for x, y in CENTRE_LANDMARKS:
            cv2.circle(marks, (int(x), int(y)), 2, (255, 255, 255), -1)
        image, box = attack(marks, CENTRE_LANDMARKS, np.random.default_rng(seed), np.zeros_like(marks))
        found = _small_bright_spots(image)
        assert len(found) == 5
        by_height = found[np.argsort(found[:, 1])]
        found = np.concatenate([by_height[:2][np.argsort(by_height[:2, 0])], by_height[2:3],
                                by_height[3:][np.argsort(by_height[3:, 0])]])
        assert np.allclose(face_box(found), box, atol=2.0)


def test_print_compresses_the_gamut():
    """Ink on paper cannot reach the saturation of the live capture's colours."""
    ratios = []
    for shot in range(8):
        live, points = _live(shot, shot)
        printed, box = simulate_print(live, points, np.random.default_rng(shot))
        ratios.append(_chroma(_crop(printed, box)) / _chroma(_crop(live, face_box(points))))
    assert np.median(ratios) < 0.85


def test_print_screens_add_dot_pattern_energy():
    ramp = np.repeat(np.linspace(0.15, 0.85, SIZE, dtype=np.float32)[None, :, None], SIZE, axis=0)
    image = np.concatenate([ramp, ramp.transpose(1, 0, 2), 0.5 * np.ones_like(ramp)], axis=2)
    for screen in (halftone, ordered_dither):
        screened = screen(image, np.random.default_rng(0))
        assert screened.shape == image.shape
        assert _band_energy(screened.mean(axis=2)) > 20 * _band_energy(image.mean(axis=2)) + 1e-5
        assert abs(float(screened.mean()) - float(image.mean())) < 0.08  # tone is kept on average


def test_moire_is_periodic():
    gains = moire((SIZE, SIZE), np.random.default_rng(0)).mean(axis=2)
    spectrum = np.abs(np.fft.fft2(gains - gains.mean()))
    assert spectrum.max() > 50 * np.median(spectrum)
    assert abs(float(gains.mean()) - 1) < 1e-3


def _strongest_wave(image: np.ndarray) -> float:
    """Amplitude (grey levels) of the strongest sinusoid in the high-passed centre, always inside the screen."""
    luma = image[40:88, 40:88].astype(np.float32).mean(axis=2)
    luma -= cv2.GaussianBlur(luma, (0, 0), 4.0)
    return float(2 * np.abs(np.fft.fft2(luma)).max() / luma.size)


def test_replay_of_a_flat_grey_shows_moire_and_a_colour_cast():
    grey = np.full((SIZE, SIZE, 3), 128, np.uint8)
    for seed in range(4):
        camera_only = camera_capture(grey.astype(np.float32) / 255, np.random.default_rng(seed))
        replay, _ = simulate_replay(grey, CENTRE_LANDMARKS, np.random.default_rng(seed), grey)
        assert _strongest_wave(camera_only) < 0.5 < 0.8 < _strongest_wave(replay)
        centre = replay[40:88, 40:88].astype(np.float32)
        assert abs(float(np.log(centre[..., 2].mean() / centre[..., 0].mean()))) > 0.05


@pytest.mark.parametrize("region, inside, outside", [("eyes", (0, 1), (3, 4)), ("mouth", (3, 4), (0, 1))])
def test_cut_hole_mask_covers_its_region(region, inside, outside):
    live, points = _live()
    mask = cut_hole_mask(points, live.shape[:2], region, np.random.default_rng(0))
    assert mask.dtype == np.float32 and mask.max() == 1.0
    for index in inside:
        x, y = np.rint(points[index]).astype(int)
        assert mask[y, x] == 1.0
    for index in outside:
        x, y = np.rint(points[index]).astype(int)
        assert mask[y, x] == 0.0


def test_cut_hole_shows_what_is_behind_only_inside():
    live, points = _live()
    printed = np.full((SIZE, SIZE, 3), 0.8, np.float32)
    behind = np.full((SIZE, SIZE, 3), 0.1, np.float32)
    hole = cut_hole_mask(points, (SIZE, SIZE), "mouth", np.random.default_rng(0))
    holed = cut_hole(printed, behind, hole)
    assert np.array_equal(holed[hole == 0], printed[hole == 0])
    assert np.all(holed[hole == 1] < 0.15)
    with pytest.raises(ValueError, match="region"):
        cut_hole_mask(points, (SIZE, SIZE), "nose", np.random.default_rng(0))


def test_cut_photo_changes_only_the_cut_region():
    """With the same generator, a cut photo is the print with a hole: they differ at the eyes or mouth only."""
    for seed in range(4):
        live, points = _live(seed, seed)
        printed, print_box = simulate_print(live, points, np.random.default_rng(seed))
        cut, box = simulate_cut_photo(live, points, np.random.default_rng(seed))
        assert box == print_box
        changed = np.abs(cut.astype(np.int16) - printed).max(axis=2) > 10
        assert 0.003 < changed.mean() < 0.08
        ys, xs = np.nonzero(changed)
        x1, y1, x2, y2 = box
        assert x1 < np.median(xs) < x2 and y1 < np.median(ys) < y2


# ------------------------------------------------------------------------------------------------ paper face mask


def _masked(identity: int, shot: int):
    """A mask capture and the plain live capture drawn from the same stream."""
    traits = identity_traits(0, identity)
    masked, points, touched = mask_face_capture(traits, np.random.default_rng([identity, shot]), (SIZE, SIZE))
    live, live_points = render_face(traits, np.random.default_rng([identity, shot]), (SIZE, SIZE))
    return masked, points, touched, live, live_points


def _jpeg_reach(changed: np.ndarray, blur_radius: int = 3, mcu: int = 16, upsampling: int = 2) -> np.ndarray:
    """Pixels a change can reach through the camera: its blur, the 16x16 JPEG blocks it touches, chroma upsampling."""
    blurred = cv2.dilate(changed.astype(np.uint8), np.ones((2 * blur_radius + 1, 2 * blur_radius + 1), np.uint8))
    h, w = changed.shape
    blocks = blurred[: h // mcu * mcu, : w // mcu * mcu].reshape(h // mcu, mcu, w // mcu, mcu).max(axis=(1, 3))
    reach = np.kron(blocks, np.ones((mcu, mcu), np.uint8))
    return cv2.dilate(reach, np.ones((2 * upsampling + 1, 2 * upsampling + 1), np.uint8)) > 0


def test_mask_keeps_the_live_capture_outside_the_mask():
    """Background, hair, ears, neck: the live capture's own pixels once past the camera's blur and JPEG blocks."""
    for seed in range(6):
        masked, points, touched, live, live_points = _masked(seed, seed)
        assert np.array_equal(points, live_points)
        near = _jpeg_reach(touched > 0)
        assert near.mean() < 0.6
        difference = np.abs(masked.astype(np.int16) - live).max(axis=2)
        assert np.array_equal(masked[~near], live[~near])
        assert difference[touched > 0.99].mean() > 3


def test_mask_changes_the_face_from_brows_to_chin():
    for seed in range(6):
        masked, points, touched, live, _ = _masked(seed, seed)
        inside = touched > 0.99
        difference = np.abs(masked.astype(np.int16) - live).mean(axis=2)
        assert 3 < difference[inside].mean() < 40  # a printed copy of the same face: changed, but subtly
        for index in (2, 3, 4):  # nose tip and mouth corners are always under the paper
            x, y = np.rint(points[index]).astype(int)
            assert touched[y, x] > 0.9
        ys, _ = np.nonzero(inside)
        brows = points[:2, 1].min() - 0.6 * np.linalg.norm(points[1] - points[0])
        assert ys.min() > brows and inside.mean() < 0.25  # no forehead above the brows, no scene


def test_mask_is_made_of_print():
    """The printed copy has the print's compressed gamut and the fine texture of its dots and fibres."""
    chroma, texture = [], []
    for seed in range(8):
        masked, _, touched, live, _ = _masked(seed, seed)
        inside = cv2.erode((touched > 0.99).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        pixels = [image[inside].astype(np.float32) / 255 for image in (masked, live)]
        chroma.append(_chroma(pixels[0]) / _chroma(pixels[1]))
        grey = [image.astype(np.float32).mean(axis=2) / 255 for image in (masked, live)]
        fine = [float(np.mean((g - cv2.GaussianBlur(g, (0, 0), 0.7))[inside] ** 2)) for g in grey]
        texture.append(fine[0] / fine[1])
    assert np.median(chroma) < 0.85 and np.median(texture) > 1.2


def test_mask_box_is_the_wearers_exact_face_box_and_deterministic():
    traits = identity_traits(0, 5)
    image, box = simulate_mask_face(traits, np.random.default_rng(9), (SIZE, SIZE))
    again, again_box = simulate_mask_face(traits, np.random.default_rng(9), (SIZE, SIZE))
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
    assert np.array_equal(image, again) and box == again_box
    _, points = render_face(traits, np.random.default_rng(9), (SIZE, SIZE))
    assert box == clip_box(face_box(points), SIZE, SIZE)
    other, _ = simulate_mask_face(traits, np.random.default_rng(10), (SIZE, SIZE))
    assert not np.array_equal(image, other)


def test_mask_sometimes_has_eye_holes_showing_the_live_eyes():
    with_holes = 0
    for seed in range(12):
        masked, points, touched, live, _ = _masked(seed, seed)
        eyes = [touched[y, x] for x, y in np.rint(points[:2]).astype(int)]
        if max(eyes) < 0.5:
            with_holes += 1
            for x, y in np.rint(points[:2]).astype(int):  # the live pupil is seen through the hole
                assert abs(int(masked[y, x].mean()) - int(live[y, x].mean())) < 40
    assert 2 <= with_holes <= 10


def test_face_interior_runs_from_the_brows_to_the_chin():
    scene = compose_scene(identity_traits(0, 2), np.random.default_rng(0), (SIZE, SIZE))
    region = face_interior(scene)
    assert region.shape == (SIZE, SIZE) and region.dtype == np.float32
    for x, y in np.rint(scene.landmarks).astype(int):
        assert region[y, x] == pytest.approx(1.0, abs=1e-3)
    lower = face_interior(scene, above_brows=-0.3)  # the top edge comes down towards the eyes
    assert lower.sum() < region.sum()
    assert face_interior(scene, inset=0.8).sum() < region.sum()
