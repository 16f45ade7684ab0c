"""Simulated presentation attacks: a camera recapturing a print, a screen, or a print with a region cut out,
and a live person wearing a paper mask.

Each recapture attack takes a live capture (uint8 RGB), its 5 landmarks, a random generator and optionally the
new scene behind the artefact, and returns the recaptured image (same size) with the face box (x1, y1, x2, y2)
in it. The cues are the ones real attacks leave, kept subtle: print dots and a compressed gamut, screen-grid
moire and colour casts, a paper or bezel edge against a different scene, and the recapture's own blur, noise
and JPEG. Every geometric transform is applied to the landmarks too, so the returned box is exact.

The worn mask (``simulate_mask_face``) is not a recapture: it takes an identity and makes ONE live capture in
which only the face interior is a printed copy of another capture of that face. Scene, hair, ears, neck and
background are the live capture's own, so its only cues are on the face: print texture and gamut, flat paper
shading instead of the face's relief, a faint paper edge and a slight misregistration.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from liveness.data.synthetic.faces import (
    Box,
    IdentityTraits,
    Scene,
    camera_capture,
    capture_scene,
    clip_box,
    compose_scene,
    face_box,
    face_interior,
    relight,
    render_background,
)
from liveness.data.synthetic.portable import exp, power

Attack = Callable[[np.ndarray, np.ndarray, np.random.Generator, np.ndarray | None], tuple[np.ndarray, Box]]

_BAYER_4 = np.array([[0, 8, 2, 10], [12, 4, 14, 6], [3, 11, 1, 9], [15, 7, 13, 5]], np.float32) / 16 - 0.5 + 1 / 32


# ---------------------------------------------------------------------------------------------------- the attacks


def simulate_print(live_image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator,
                   background: np.ndarray | None = None) -> tuple[np.ndarray, Box]:
    """A photo printed on paper (gamut, dots, fibres), held up in front of another scene and photographed."""
    return _print_attack(live_image, landmarks, rng, background, cut=False)


def simulate_replay(live_image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator,
                    background: np.ndarray | None = None) -> tuple[np.ndarray, Box]:
    """The live image shown on a screen (gamma, cast, subpixel grid, glare) inside its bezel, photographed."""
    screen = display(_float(live_image), rng)
    screen = screen * moire(screen.shape[:2], rng)
    screen = _glare(screen, rng)
    card, alpha, to_card = _device(screen, rng)
    return _recapture(card, alpha, to_card, landmarks, rng, background)


def simulate_cut_photo(live_image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator,
                       background: np.ndarray | None = None) -> tuple[np.ndarray, Box]:
    """The print ``simulate_print`` makes from the same ``rng``, with the eyes or the mouth cut out.

    The hole draws from its own spawned stream, so everything outside it matches that print exactly.
    """
    return _print_attack(live_image, landmarks, rng, background, cut=True)


def _print_attack(live_image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator,
                  background: np.ndarray | None, cut: bool) -> tuple[np.ndarray, Box]:
    """Print, optionally cut, mount on paper, recapture: the shared path of the print and cut-photo attacks."""
    photo = _float(live_image)
    printed = print_photo(photo, rng)
    if cut:
        printed = _cut_out(printed, photo, landmarks, rng.spawn(1)[0])
    card, to_card = _paper_card(printed, rng)
    return _recapture(card, np.ones(card.shape[:2], np.float32), to_card, landmarks, rng, background)


def simulate_mask_face(traits: IdentityTraits, rng: np.random.Generator,
                       size: tuple[int, int] = (128, 128)) -> tuple[np.ndarray, Box]:
    """A live person wearing a printed paper mask of another capture of their face, captured once.

    The live scene is drawn from ``rng`` exactly as ``render_face`` draws it and the camera capture uses the
    same draws after it; the mask draws from its own spawned stream. So outside the mask (and the camera's blur
    and JPEG blocks around it) the image is the live capture ``render_face(traits, rng, size)`` would give.
    The box is the wearer's face box, from the exact landmarks.
    """
    image, landmarks, _ = mask_face_capture(traits, rng, size)
    h, w = size
    return image, clip_box(face_box(landmarks), w, h)


def mask_face_capture(traits: IdentityTraits, rng: np.random.Generator,
                      size: tuple[int, int] = (128, 128)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``simulate_mask_face``'s capture, the wearer's 5 landmarks and where the mask changed the scene (H, W)."""
    scene = compose_scene(traits, rng, size)
    worn, touched = wear_paper_mask(scene, rng.spawn(1)[0])
    return capture_scene(worn, scene, rng), scene.landmarks.astype(np.float32), touched


ATTACKS: dict[str, Attack] = {"print": simulate_print, "replay": simulate_replay, "cut_photo": simulate_cut_photo}


# ---------------------------------------------------------------------------------------------------------- print


def print_photo(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What a printer makes of a float RGB photo: compressed gamut, dot gain blur, a dot screen, paper fibres."""
    image = _gamut(photo, rng)
    image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.35, 0.8))
    screened = halftone(image, rng) if rng.random() < 0.6 else ordered_dither(image, rng)
    image = image + rng.uniform(0.45, 0.75) * (screened - image)
    return image * _paper_fibres(image.shape[:2], rng)[..., None]


def _gamut(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ink on paper: less saturation and contrast, lifted blacks, paper-white highlights with a slight tint."""
    grey = photo.mean(axis=2, keepdims=True)
    image = grey + rng.uniform(0.55, 0.8) * (photo - grey)
    black = rng.uniform(0.06, 0.14)
    paper = np.array([1.0, rng.uniform(0.96, 1.0), rng.uniform(0.88, 0.97)], np.float32) * rng.uniform(0.88, 0.97)
    return (black + (paper - black) * image).astype(np.float32)


def halftone(image: np.ndarray, rng: np.random.Generator, oversample: int = 3) -> np.ndarray:
    """Rotated CMY dot screens, rendered ``oversample`` times finer and averaged back, as a camera sees dots."""
    h, w = image.shape[:2]
    big = cv2.resize(image, (w * oversample, h * oversample), interpolation=cv2.INTER_LINEAR)
    xs = np.arange(w * oversample, dtype=np.float32) / oversample
    ys = np.arange(h * oversample, dtype=np.float32) / oversample
    frequency = 2 * np.pi / rng.uniform(2.0, 3.2)
    base = rng.uniform(0, 90)
    ink = np.empty_like(big)
    for channel, angle in enumerate((15.0, 75.0, 0.0)):
        c, s = np.cos(np.deg2rad(base + angle)), np.sin(np.deg2rad(base + angle))
        waves = _plane_wave(xs, ys, frequency * c, frequency * s) + _plane_wave(xs, ys, -frequency * s, frequency * c)
        spot = 0.5 - 0.25 * waves  # 0 at dot centres, 1 between dots
        ink[..., channel] = np.clip((1 - big[..., channel] - spot) * 6 + 0.5, 0, 1)
    return cv2.resize(1 - ink, (w, h), interpolation=cv2.INTER_AREA)


def _plane_wave(xs: np.ndarray, ys: np.ndarray, kx: float, ky: float) -> np.ndarray:
    """cos(kx * x + ky * y) on the grid, from 1-D factors (no 2-D trigonometry)."""
    return np.outer(np.cos(ky * ys), np.cos(kx * xs)) - np.outer(np.sin(ky * ys), np.sin(kx * xs))


def ordered_dither(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 4x4 Bayer dither to a few levels per channel: the cross-hatch of cheap inkjet and laser prints."""
    h, w = image.shape[:2]
    levels = int(rng.integers(3, 6)) - 1
    threshold = np.tile(_BAYER_4, (h // 4 + 1, w // 4 + 1))[:h, :w, None]
    return np.clip(np.floor(image * levels + 0.5 + threshold) / levels, 0, 1).astype(np.float32)


def _paper_fibres(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Multiplicative paper texture: short fibres (noise smeared along a random direction) and fine grain."""
    noise = rng.normal(0, 1, shape).astype(np.float32)
    length = 7
    kernel = np.zeros((length, length), np.float32)
    angle = rng.uniform(0, np.pi)
    dx, dy = 3 * np.cos(angle), 3 * np.sin(angle)
    cv2.line(kernel, (round(3 - dx), round(3 - dy)), (round(3 + dx), round(3 + dy)), 1.0, 1)
    fibres = cv2.filter2D(noise, -1, kernel / kernel.sum())
    grain = rng.normal(0, 1, shape).astype(np.float32)
    return 1 + rng.uniform(0.02, 0.05) * fibres + 0.012 * grain


def _paper_card(printed: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The print on its sheet: often borderless, else a thin white margin; returns the card and photo->card map."""
    h, w = printed.shape[:2]
    margin = 0.0 if rng.random() < 0.45 else rng.uniform(0.015, 0.05)
    if margin == 0.0:
        return printed, np.eye(3)
    paper = np.array([0.96, 0.95, 0.9], np.float32) * _paper_fibres((h, w), rng)[..., None]
    return _inset(paper, printed, margin)


# --------------------------------------------------------------------------------------------------------- screen


def display(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A screen's rendition: its own gamma, a blue (cold LCD) or warm (night mode) cast, a lifted black level."""
    gamma = rng.uniform(0.75, 1.3)
    if rng.random() < 0.6:
        cast = np.array([rng.uniform(0.82, 0.9), rng.uniform(0.95, 1.0), rng.uniform(1.08, 1.18)], np.float32)
    else:
        cast = np.array([rng.uniform(1.08, 1.15), rng.uniform(0.98, 1.02), rng.uniform(0.78, 0.88)], np.float32)
    black = rng.uniform(0.03, 0.1)
    return black + (1 - black) * power(np.clip(photo, 0, 1), gamma) * cast


def moire(shape: tuple[int, int], rng: np.random.Generator, samples: int = 2, aperture: float = 0.5) -> np.ndarray:
    """Per-channel gain (mean 1) of an RGB-stripe pixel grid as the camera's pixels sample it.

    The screen's pitch is close to, but not, the camera's and the grid is slightly rotated and bent (lens
    distortion), so sampling it with a small aperture (``samples`` x ``samples`` points across ``aperture``
    pixels) aliases the grid into low-frequency, curved luminance and colour fringes: a filmed screen's moire.
    """
    h, w = shape
    pitch = rng.uniform(0.88, 0.97) if rng.random() < 0.5 else rng.uniform(1.03, 1.14)
    theta = np.deg2rad(rng.uniform(-10, 10))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    bend = np.float32(rng.uniform(-0.04, 0.04) / max(h, w))
    radius2 = (xx - w / 2) ** 2 + (yy - h / 2) ** 2
    xx, yy = xx + bend * radius2 * (xx - w / 2) / max(h, w), yy + bend * radius2 * (yy - h / 2) / max(h, w)
    offsets = (np.arange(samples) + 0.5) / samples * aperture - aperture / 2
    gains = np.zeros((h, w, 3), np.float32)
    for dy in offsets:
        for dx in offsets:
            gains += _stripe_grid(xx + dx, yy + dy, pitch, theta)
    gains /= gains.mean(axis=(0, 1), keepdims=True)
    return 1 + rng.uniform(0.06, 0.15) * (gains - 1)


def _stripe_grid(xx: np.ndarray, yy: np.ndarray, pitch: float, theta: float) -> np.ndarray:
    """Which subpixel (R, G or B vertical stripe, or the black matrix between rows) lies under each point."""
    u = (xx * np.cos(theta) + yy * np.sin(theta)) / pitch
    v = (-xx * np.sin(theta) + yy * np.cos(theta)) / pitch
    stripe = np.floor((u - np.floor(u)) * 3)
    lit = (v - np.floor(v)) < 0.8
    return np.stack([(stripe == channel) & lit for channel in range(3)], axis=-1).astype(np.float32)


def _glare(screen: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A soft specular reflection of a lamp or window on the glass, screen-blended."""
    h, w = screen.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    sx, sy = rng.uniform(0.08, 0.3, 2) * np.array([w, h])
    angle = rng.uniform(0, np.pi)
    u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
    v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
    blob = exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2)) * rng.uniform(0.15, 0.45)
    return 1 - (1 - screen) * (1 - blob[..., None])


def _device(screen: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The screen inside a dark bezel with rounded corners and a lighter rim; returns card, alpha and map."""
    h, w = screen.shape[:2]
    bezel = rng.uniform(0.03, 0.07)
    shade = rng.uniform(0.03, 0.16)
    yy = np.linspace(1.1, 0.9, h, dtype=np.float32)[:, None, None]
    body = np.broadcast_to(np.float32(shade) * yy * np.ones(3, np.float32), (h, w, 3)).copy()
    radius = max(2, int(bezel * w * 1.5))
    alpha = np.zeros((h, w), np.uint8)
    _rounded_rectangle(alpha, (0, 0, w - 1, h - 1), radius, 255, -1)
    rim = np.zeros((h, w), np.uint8)
    _rounded_rectangle(rim, (0, 0, w - 1, h - 1), radius, 255, max(1, w // 100))
    body += (rim.astype(np.float32) / 255 * rng.uniform(0.1, 0.25))[..., None]
    card, to_card = _inset(body, screen, bezel)
    return card, alpha.astype(np.float32) / 255, to_card


def _rounded_rectangle(canvas: np.ndarray, box: tuple[int, int, int, int], radius: int, value: int,
                       thickness: int) -> None:
    """A rounded rectangle outline (thickness > 0) or fill (-1) drawn on a uint8 canvas."""
    x1, y1, x2, y2 = box
    corners = ((x1 + radius, y1 + radius, 180), (x2 - radius, y1 + radius, 270),
               (x2 - radius, y2 - radius, 0), (x1 + radius, y2 - radius, 90))
    points = np.concatenate([
        cv2.ellipse2Poly((cx, cy), (radius, radius), 0, start, start + 90, 10) for cx, cy, start in corners
    ])
    if thickness < 0:
        cv2.fillPoly(canvas, [points], value, cv2.LINE_AA)
    else:
        cv2.polylines(canvas, [points], True, value, thickness, cv2.LINE_AA)


# ------------------------------------------------------------------------------------------------------ cut photo


def cut_hole_mask(landmarks: np.ndarray, shape: tuple[int, int], region: str,
                  rng: np.random.Generator) -> np.ndarray:
    """Float mask of the hole cut in the print: an ellipse around each eye, or one around the mouth."""
    points = np.asarray(landmarks, np.float64)
    spacing = float(np.linalg.norm(points[1] - points[0]))
    mask = np.zeros(shape, np.uint8)
    if region == "eyes":
        holes = [(points[i], (spacing * rng.uniform(0.3, 0.38), spacing * rng.uniform(0.17, 0.24))) for i in (0, 1)]
    elif region == "mouth":
        centre = points[3:].mean(axis=0)
        half = float(np.linalg.norm(points[4] - points[3])) / 2
        holes = [(centre, (half * rng.uniform(1.25, 1.5), spacing * rng.uniform(0.22, 0.3)))]
    else:
        raise ValueError(f"region must be 'eyes' or 'mouth', got {region!r}")
    angle = float(np.degrees(np.arctan2(*(points[1] - points[0])[::-1])))
    for centre, axes in holes:
        cv2.ellipse(mask, (round(centre[0] * 16), round(centre[1] * 16)), (round(axes[0] * 16), round(axes[1] * 16)),
                    angle, 0, 360, 255, -1, cv2.LINE_AA, 4)
    return mask.astype(np.float32) / 255


def _cut_out(printed: np.ndarray, photo: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Cut the eyes (more often) or the mouth out of ``printed`` and show what is behind the hole."""
    region = "eyes" if rng.random() < 0.65 else "mouth"
    hole = cut_hole_mask(landmarks, photo.shape[:2], region, rng)
    return cut_hole(printed, _behind_hole(photo, landmarks, rng), hole)


def cut_hole(printed: np.ndarray, behind: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """``behind`` through ``hole`` in ``printed``, with the cut edge's shadow falling on what is behind."""
    rim = cv2.GaussianBlur(hole, (0, 0), 1.0)
    shadow = np.clip(hole - rim, 0, 1) * 0.8
    seen = behind * (1 - shadow[..., None])
    return printed * (1 - hole[..., None]) + seen * hole[..., None]


def _behind_hole(photo: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What the hole reveals: the real face just behind the print (shifted, unprinted), bare skin, or a scene."""
    h, w = photo.shape[:2]
    kind = rng.choice(3, p=(0.6, 0.25, 0.15))
    if kind == 0:
        shift = np.float32([[1, 0, rng.uniform(-0.03, 0.03) * w], [0, 1, rng.uniform(-0.03, 0.03) * h]])
        face = cv2.warpAffine(photo, shift, (w, h), borderMode=cv2.BORDER_REFLECT)
        return face * rng.uniform(0.7, 1.0)
    if kind == 1:
        nose = np.asarray(landmarks[2], np.float64)
        x, y = int(np.clip(nose[0], 2, w - 3)), int(np.clip(nose[1], 2, h - 3))
        skin = np.median(photo[y - 2 : y + 3, x - 2 : x + 3].reshape(-1, 3), axis=0)
        texture = 1 + 0.04 * cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 2.0)
        return (skin * texture[..., None] * rng.uniform(0.65, 0.95)).astype(np.float32)
    return _float(render_background(rng, (h, w))) * rng.uniform(0.5, 0.9)


# ------------------------------------------------------------------------------------------------------ face mask


def wear_paper_mask(scene: Scene, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``scene.image`` with a paper mask on the face; returns the edited image and the touched area (H, W).

    The mask is a print (``print_photo``) of another capture of the same face, cut along that face from the
    brows to the chin, sometimes with eye holes, fitted to the wearer's landmarks with a slight
    misregistration. Paper is flat, so it is shaded by the scene's light as a gently bent sheet, not by the
    face's relief; its cut edge shows a thin paper-white rim and a faint contact shadow on the skin.
    """
    h, w = scene.image.shape[:2]
    photo_scene = compose_scene(scene.traits, rng, (h, w))
    photo = _float(capture_scene(photo_scene.image, photo_scene, rng))
    printed = print_photo(photo, rng)
    cut = face_interior(photo_scene, inset=rng.uniform(0.9, 0.97), above_brows=rng.uniform(0.0, 0.1))
    if rng.random() < 0.5:
        cut = cut * (1 - cut_hole_mask(photo_scene.landmarks, (h, w), "eyes", rng))
    fit = _misregistered(_similarity(photo_scene.landmarks, scene.landmarks), scene.landmarks, rng)
    printed = cv2.warpAffine(printed, fit, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    under = face_interior(scene, 1.0, 0.3) * (1 - scene.over_face)  # the wearer's hair and glasses stay on top
    cover = cv2.warpAffine(cut, fit, (w, h), flags=cv2.INTER_LINEAR) * under
    edge = np.clip(cover - cv2.erode(cover, np.ones((3, 3), np.uint8)), 0, 1) * rng.uniform(0.1, 0.25)
    paper = np.array([0.95, 0.94, 0.9], np.float32)
    sheet = (printed + (paper - printed) * edge[..., None]) * _paper_shading(scene, cover, rng)[..., None]
    sheet = sheet * _tone_match(sheet, scene.image, cover > 0.5, rng.uniform(0.3, 0.7))
    shadow = _contact_shadow(cover, scene, rng)
    image = scene.image * (1 - shadow[..., None])
    image = image * (1 - cover[..., None]) + sheet * cover[..., None]
    return image.astype(np.float32), np.maximum(cover, shadow)


def _tone_match(sheet: np.ndarray, face: np.ndarray, where: np.ndarray, strength: float) -> np.float32:
    """Gain that takes the sheet's mean tone ``strength`` of the way (in log) to the face's it covers.

    Whoever makes the mask prints it about as light as the face; the photo's own exposure still shows a little.
    """
    if not where.any():
        return np.float32(1.0)
    ratio = float(face[where].mean()) / max(float(sheet[where].mean()), 1e-3)
    return np.float32(power(ratio, strength))


def _similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama) taking ``source`` points onto ``target``, as a 2x3 matrix."""
    source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
    source_mean, target_mean = source.mean(0), target.mean(0)
    a, b = source - source_mean, target - target_mean
    u, singular, vt = np.linalg.svd(b.T @ a / len(a))
    d = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ d @ vt
    scale = np.trace(np.diag(singular) @ d) / a.var(0).sum()
    return np.hstack([scale * rotation, (target_mean - scale * rotation @ source_mean)[:, None]])


def _misregistered(fit: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``fit`` followed by a small slip about the face centre: a shift, a twist and a scale of a few percent."""
    points = np.asarray(landmarks, np.float64)
    spacing = float(np.linalg.norm(points[1] - points[0]))
    slip = cv2.getRotationMatrix2D(tuple(points.mean(0)), rng.uniform(-3, 3), rng.uniform(0.97, 1.03))
    slip[:, 2] += rng.uniform(-0.06, 0.06, 2) * spacing
    return slip @ np.vstack([fit, (0, 0, 1)])


def _paper_shading(scene: Scene, cover: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Lambert shade of a sheet tilted a little and bent around the face (no nose, brow or cheek relief)."""
    h, w = cover.shape
    xx = np.arange(w, dtype=np.float32)[None, :].repeat(h, 0)
    bend = rng.uniform(0.2, 0.5) * (xx - scene.pose.cx) / scene.pose.rx  # normal turns sideways across the sheet
    nx, ny = bend + rng.uniform(-0.1, 0.1), np.full_like(bend, rng.uniform(-0.1, 0.1))
    lx, ly, lz = scene.light.direction
    diffuse = np.clip((nx * lx + ny * ly + lz) / np.sqrt(nx ** 2 + ny ** 2 + 1), 0, 1)
    return scene.light.ambient + (1 - scene.light.ambient) * diffuse


def _contact_shadow(cover: np.ndarray, scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """The sheet's faint shadow on the skin just beyond its edge, offset away from the light."""
    h, w = cover.shape
    lx, ly, _ = scene.light.direction
    reach = 0.01 * w
    shift = np.float32([[1, 0, -lx * reach], [0, 1, -ly * reach]])
    shadow = cv2.GaussianBlur(cv2.warpAffine(cover, shift, (w, h)), (0, 0), 0.006 * w + 0.4)
    return np.clip(shadow - cover, 0, 1) * rng.uniform(0.15, 0.35)


# ------------------------------------------------------------------------------------------------------ recapture


def _recapture(card: np.ndarray, alpha: np.ndarray, to_card: np.ndarray, landmarks: np.ndarray,
               rng: np.random.Generator, background: np.ndarray | None) -> tuple[np.ndarray, Box]:
    """Place ``card`` over a new scene, light the whole frame and capture it; map the landmarks the same way."""
    h, w = card.shape[:2]
    scene = _float(background if background is not None else render_background(rng, (h, w)))
    if scene.shape != card.shape:
        raise ValueError(f"background shape {scene.shape} differs from the image's {card.shape}")
    placement = placement_homography((h, w), rng)
    warped = cv2.warpPerspective(card, placement, (w, h), flags=cv2.INTER_LINEAR)
    cover = cv2.warpPerspective(alpha, placement, (w, h), flags=cv2.INTER_LINEAR)[..., None]
    scene = scene * (1 - _drop_shadow(cover[..., 0], rng)[..., None])
    image = relight(scene * (1 - cover) + warped * cover, rng)
    points = cv2.perspectiveTransform(np.asarray(landmarks, np.float64).reshape(-1, 1, 2), placement @ to_card)
    return camera_capture(image, rng), clip_box(face_box(points.reshape(-1, 2)), w, h)


def placement_homography(shape: tuple[int, int], rng: np.random.Generator, scale: tuple[float, float] = (0.7, 0.95),
                         max_rotation_deg: float = 7.0, perspective: float = 0.03) -> np.ndarray:
    """Card -> frame: scaled, slightly rotated, shifted within the frame, corners jittered for a small tilt."""
    h, w = shape
    s = rng.uniform(*scale)
    theta = np.deg2rad(rng.uniform(-max_rotation_deg, max_rotation_deg))
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    slack = (1 - s) / 2 * 0.8
    centre = np.array([w / 2 + rng.uniform(-slack, slack) * w, h / 2 + rng.uniform(-slack, slack) * h])
    source = np.array([(0, 0), (w, 0), (w, h), (0, h)], np.float64)
    target = centre + ((source - (w / 2, h / 2)) * s) @ rotation.T
    target += rng.uniform(-perspective, perspective, (4, 2)) * np.array([w, h]) * s
    return cv2.getPerspectiveTransform(source.astype(np.float32), target.astype(np.float32))


def _drop_shadow(cover: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The card's soft shadow on the scene behind it, offset towards the lower right or left."""
    h, w = cover.shape
    offset = np.float32([[1, 0, rng.uniform(-0.02, 0.02) * w], [0, 1, rng.uniform(0.0, 0.025) * h]])
    shadow = cv2.warpAffine(cover, offset, (w, h))
    return cv2.GaussianBlur(shadow, (0, 0), 0.015 * w + 0.5) * rng.uniform(0.2, 0.5)


def _inset(frame: np.ndarray, content: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """``content`` shrunk into ``frame`` leaving ``margin`` (fraction of each side); returns card and map."""
    h, w = frame.shape[:2]
    x0, y0 = round(margin * w), round(margin * h)
    inner_w, inner_h = w - 2 * x0, h - 2 * y0
    card = frame.copy()
    card[y0 : y0 + inner_h, x0 : x0 + inner_w] = cv2.resize(content, (inner_w, inner_h), interpolation=cv2.INTER_AREA)
    to_card = np.array([[inner_w / w, 0, x0], [0, inner_h / h, y0], [0, 0, 1]], np.float64)
    return card, to_card


def _float(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    return image.astype(np.float32) / 255
