"""Procedural SYNTHETIC faces: stable identity traits, per-image renders and 5-point landmarks.

No real person is depicted. Each identity's traits come from its own random stream, so identity k looks the
same however many identities are generated; each image varies background, lighting, pose, sensor noise and
JPEG compression around those traits, which is the variation curation and training need to see.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from liveness.data.synthetic.portable import exp, power, sin

RGB = tuple[float, float, float]
Box = tuple[float, float, float, float]

HAIR_STYLES = ("none", "short", "long", "fringe")
_HAIR_STYLE_WEIGHTS = (0.12, 0.4, 0.3, 0.18)
# Light to dark, sampled continuously along this ramp (RGB in [0, 1]).
_SKIN_RAMP = np.array([
    (255, 226, 204), (241, 198, 170), (226, 176, 140), (205, 150, 112),
    (176, 120, 84), (141, 91, 62), (105, 66, 45), (74, 47, 34),
], dtype=np.float32) / 255
_HAIR_COLOURS = np.array([
    (22, 18, 16), (48, 33, 24), (88, 58, 38), (122, 62, 34), (176, 140, 92), (218, 190, 138), (150, 146, 142),
], dtype=np.float32) / 255
_HAIR_COLOUR_WEIGHTS = (0.3, 0.25, 0.17, 0.06, 0.1, 0.06, 0.06)
_IRIS_COLOURS = np.array([
    (52, 32, 20), (92, 56, 30), (112, 92, 48), (74, 104, 66), (68, 108, 150), (104, 116, 126),
], dtype=np.float32) / 255
_IRIS_WEIGHTS = (0.35, 0.25, 0.12, 0.08, 0.12, 0.08)
_TRAITS_STREAM = 0x7A175  # keeps identity streams apart from per-image streams built from the same seed
_SHIFT = 4  # cv2 sub-pixel bits for drawing


@dataclass(frozen=True)
class IdentityTraits:
    """What stays fixed for one synthetic identity; lengths are in face half-width (u) or half-height (v)."""

    skin: RGB
    face_aspect: float  # half-height / half-width
    jaw: float  # jaw width at the chin line relative to the cheeks
    eye_level: float  # v of the eye centres (0 = face centre)
    eye_spacing: float  # u of each eye centre from the midline
    eye_width: float  # eye half-width, u
    eye_open: float  # eye half-height / half-width
    iris: RGB
    brow_gap: float  # brow above the eye, v
    brow_thickness: float  # u
    brow_arch: float  # v
    brow: RGB
    nose_level: float  # v of the nose tip
    nose_width: float  # nostril half-width, u
    mouth_level: float  # v of the mouth corners
    mouth_width: float  # mouth half-width, u
    lip_thickness: float  # upper lip, v
    lip: RGB
    hair_style: str  # one of HAIR_STYLES
    hairline: float  # v of the hairline at the midline
    hair: RGB
    glasses: bool
    glasses_colour: RGB


def identity_traits(seed: int, identity_index: int) -> IdentityTraits:
    """Traits of identity ``identity_index``; its own random stream makes them independent of the count."""
    rng = np.random.default_rng([_TRAITS_STREAM, seed, identity_index])
    skin = _skin_tone(rng)
    hair = _HAIR_COLOURS[rng.choice(len(_HAIR_COLOURS), p=_HAIR_COLOUR_WEIGHTS)] * rng.uniform(0.85, 1.12)
    style = HAIR_STYLES[rng.choice(len(HAIR_STYLES), p=_HAIR_STYLE_WEIGHTS)]
    brow = np.minimum(hair * rng.uniform(0.55, 0.85), skin * 0.55)
    lip = skin * np.array([0.86, 0.6, 0.62]) + np.array([0.05, 0.0, 0.02]) * rng.uniform(0.5, 1.5)
    return IdentityTraits(
        skin=_rgb(skin),
        face_aspect=float(rng.uniform(1.18, 1.42)),
        jaw=float(rng.uniform(0.62, 0.9)),
        eye_level=float(rng.uniform(-0.1, 0.0)),
        eye_spacing=float(rng.uniform(0.4, 0.48)),
        eye_width=float(rng.uniform(0.18, 0.23)),
        eye_open=float(rng.uniform(0.38, 0.55)),
        iris=_rgb(_IRIS_COLOURS[rng.choice(len(_IRIS_COLOURS), p=_IRIS_WEIGHTS)] * rng.uniform(0.9, 1.1)),
        brow_gap=float(rng.uniform(0.17, 0.24)),
        brow_thickness=float(rng.uniform(0.06, 0.11)),
        brow_arch=float(rng.uniform(0.02, 0.08)),
        brow=_rgb(brow),
        nose_level=float(rng.uniform(0.3, 0.38)),
        nose_width=float(rng.uniform(0.15, 0.22)),
        mouth_level=float(rng.uniform(0.58, 0.66)),
        mouth_width=float(rng.uniform(0.27, 0.36)),
        lip_thickness=float(rng.uniform(0.045, 0.075)),
        lip=_rgb(lip),
        hair_style=style,
        hairline=float(rng.uniform(-0.72, -0.56)),
        hair=_rgb(hair),
        glasses=bool(rng.random() < 0.22),
        glasses_colour=_rgb(rng.choice([(0.08, 0.07, 0.07), (0.35, 0.22, 0.12), (0.62, 0.6, 0.58)])),
    )


def _skin_tone(rng: np.random.Generator) -> np.ndarray:
    """A tone along the light-to-dark ramp with a small warm/olive undertone shift."""
    position = rng.uniform(0, len(_SKIN_RAMP) - 1)
    low = int(position)
    high = min(low + 1, len(_SKIN_RAMP) - 1)
    tone = _SKIN_RAMP[low] + (position - low) * (_SKIN_RAMP[high] - _SKIN_RAMP[low])
    return tone * (1 + rng.normal(0, 0.025, 3)) * np.array([1.0, 1 + rng.normal(0, 0.02), 1.0])


def _rgb(values: np.ndarray | tuple) -> RGB:
    r, g, b = (float(v) for v in np.clip(values, 0, 1))
    return (r, g, b)


@dataclass(frozen=True)
class _Pose:
    """Per-image placement of the face: centre and half-axes in pixels, yaw/pitch as feature shifts, roll."""

    cx: float
    cy: float
    rx: float
    ry: float
    yaw: float
    pitch: float
    roll_deg: float


def _draw_pose(rng: np.random.Generator, traits: IdentityTraits, size: tuple[int, int]) -> _Pose:
    """Face 35-50% of the width, off-centre by a few percent, small yaw/pitch/roll."""
    h, w = size
    rx = rng.uniform(0.36, 0.48) * w / 2
    ry = min(rx * traits.face_aspect, 0.33 * h)
    return _Pose(
        cx=w / 2 + rng.uniform(-0.05, 0.05) * w,
        cy=h * 0.5 + rng.uniform(-0.04, 0.05) * h,
        rx=rx,
        ry=ry,
        yaw=float(rng.uniform(-0.3, 0.3)),
        pitch=float(rng.uniform(-0.06, 0.06)),
        roll_deg=float(rng.uniform(-12, 12)),
    )


@lru_cache(maxsize=8)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy.setflags(write=False)
    xx.setflags(write=False)
    return xx, yy


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(points, dtype=np.float64) * (1 << _SHIFT)).astype(np.int32)


def _poly_mask(shape: tuple[int, int], points: np.ndarray) -> np.ndarray:
    """Anti-aliased filled polygon as a float mask in [0, 1]."""
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [_fixed(points)], 255, cv2.LINE_AA, _SHIFT)
    return mask.astype(np.float32) / 255


def _ellipse_mask(shape: tuple[int, int], centre: tuple[float, float], axes: tuple[float, float],
                  angle: float = 0.0) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.ellipse(mask, tuple(int(v) for v in _fixed(centre)), tuple(int(v) for v in _fixed(np.maximum(axes, 0.3))),
                angle, 0, 360, 255, -1, cv2.LINE_AA, _SHIFT)
    return mask.astype(np.float32) / 255


def _band(points: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Outline of a stroke along ``points`` with per-point ``widths`` (a tapered brow, lid or lip line)."""
    tangent = np.gradient(points, axis=0)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-6
    offset = normal * (widths[:, None] / 2)
    return np.concatenate([points + offset, (points - offset)[::-1]])


def _gauss(shape: tuple[int, int], centre: tuple[float, float], sigma: tuple[float, float]) -> np.ndarray:
    xx, yy = _grid(*shape)
    return exp(-0.5 * (((xx - centre[0]) / sigma[0]) ** 2 + ((yy - centre[1]) / sigma[1]) ** 2))


class _Layer:
    """Premultiplied RGB + alpha, painted back to front so soft edges composite correctly."""

    def __init__(self, shape: tuple[int, int]) -> None:
        self.rgb = np.zeros((*shape, 3), np.float32)
        self.alpha = np.zeros(shape, np.float32)

    def paint(self, colour: np.ndarray | RGB, mask: np.ndarray) -> None:
        """Paint ``colour`` (RGB, or an image of the layer's size) through ``mask``, touching only its bounds."""
        x, y, w, h = cv2.boundingRect((mask > 0).astype(np.uint8))
        if w == 0:
            return
        window = np.s_[y : y + h, x : x + w]
        m = mask[window]
        colour = np.asarray(colour, np.float32)
        fill = colour[window] if colour.ndim == 3 else colour
        self.rgb[window] = self.rgb[window] * (1 - m[..., None]) + fill * m[..., None]
        self.alpha[window] = self.alpha[window] * (1 - m) + m


@dataclass(frozen=True)
class _Features:
    """Feature positions of one render, in pixels, before roll."""

    eyes: tuple[tuple[float, float, float], ...]  # (x, y, half-width) viewer's left first
    eye_half_height: float
    nose: tuple[float, float]
    nose_half_width: float
    mouth: tuple[float, float]  # centre
    mouth_half_width: float
    lip: float
    smile: float


def _layout(traits: IdentityTraits, pose: _Pose, rng: np.random.Generator) -> _Features:
    """Feature positions: yaw shifts nearer features more (nose > mouth > eyes) and narrows the far eye."""
    def x_at(u: float, depth: float) -> float:
        return pose.cx + (u + pose.yaw * depth) * pose.rx

    def y_at(v: float, depth: float) -> float:
        return pose.cy + (v + pose.pitch * depth) * pose.ry

    eye_w = traits.eye_width * pose.rx
    eyes = tuple(
        (x_at(side * traits.eye_spacing, 0.28), y_at(traits.eye_level, 0.5),
         eye_w * (1 - 0.5 * abs(pose.yaw) if side * pose.yaw > 0 else 1 + 0.1 * abs(pose.yaw)))
        for side in (-1, 1)
    )
    return _Features(
        eyes=eyes,
        eye_half_height=eye_w * traits.eye_open * rng.uniform(0.85, 1.1),
        nose=(x_at(0, 0.5), y_at(traits.nose_level, 1.0)),
        nose_half_width=traits.nose_width * pose.rx,
        mouth=(x_at(0, 0.33), y_at(traits.mouth_level, 0.8)),
        mouth_half_width=traits.mouth_width * pose.rx * rng.uniform(0.93, 1.07),
        lip=traits.lip_thickness * pose.ry,
        smile=float(rng.uniform(-0.2, 1.0)),
    )


@dataclass(frozen=True)
class Scene:
    """One live scene in front of the camera, before the global light and the camera act on it.

    ``image`` is float32 RGB in about [0, 1]; ``landmarks`` are the 5 (x, y) points in its pixels. The pose,
    feature layout, light and the head's roll matrix are kept so that a worn artefact (a paper mask) can be
    fitted to exactly this face before the one capture that ``capture_scene`` makes.
    """

    image: np.ndarray
    landmarks: np.ndarray
    traits: IdentityTraits
    pose: _Pose
    features: _Features
    light: _Light
    rotation: np.ndarray  # 2x3: head frame (before roll) -> image
    over_face: np.ndarray  # (H, W) alpha of what lies on top of the face skin: hair, glasses frames


def render_face(traits: IdentityTraits, rng: np.random.Generator,
                size: tuple[int, int] = (128, 128)) -> tuple[np.ndarray, np.ndarray]:
    """One capture of ``traits``: a uint8 (H, W, 3) RGB image and 5 (x, y) landmarks (float32, pixels).

    Landmarks are the eye centres, nose tip and mouth corners, viewer's left first. This is the one live
    capture process: ``compose_scene`` then ``capture_scene``, both from ``rng``.
    """
    scene = compose_scene(traits, rng, size)
    return capture_scene(scene.image, scene, rng), scene.landmarks.astype(np.float32)


def compose_scene(traits: IdentityTraits, rng: np.random.Generator, size: tuple[int, int] = (128, 128)) -> Scene:
    """Pose, light, background, body and head of one live capture, composited (no global light, no camera)."""
    h, w = size
    pose = _draw_pose(rng, traits, size)
    light = _draw_light(rng)
    scene = render_background(rng, size).astype(np.float32) / 255
    scene = _draw_body(scene, traits, pose, rng)
    features = _layout(traits, pose, rng)
    head, over_face = _draw_head(traits, pose, features, light, rng, size)
    rotation = cv2.getRotationMatrix2D((pose.cx, pose.cy), pose.roll_deg, 1.0)
    rgb = cv2.warpAffine(head.rgb, rotation, (w, h), flags=cv2.INTER_LINEAR)
    alpha = cv2.warpAffine(head.alpha, rotation, (w, h), flags=cv2.INTER_LINEAR)
    image = scene * (1 - alpha[..., None]) + rgb
    landmarks = _landmarks(features) @ rotation[:, :2].T + rotation[:, 2]
    over_face = cv2.warpAffine(over_face, rotation, (w, h), flags=cv2.INTER_LINEAR)
    return Scene(image, landmarks, traits, pose, features, light, rotation, over_face)


def capture_scene(image: np.ndarray, scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """The scene's global light and one camera capture of ``image`` (``scene.image`` or an edit of it)."""
    return camera_capture(relight(image, rng, light=scene.light), rng)


def face_interior(scene: Scene, inset: float = 0.95, above_brows: float = 0.04) -> np.ndarray:
    """Float mask (H, W) of the face from just above the brows to the chin, inside the face contour.

    ``inset`` shrinks the contour towards the face centre (1 follows the skin's edge); ``above_brows`` raises
    the top edge above the brows' highest point, in face half-heights. The mask rolls with the head.
    """
    pose, features, traits = scene.pose, scene.features, scene.traits
    h, w = scene.image.shape[:2]
    contour = _face_contour(pose, traits.jaw)
    contour = (pose.cx, pose.cy) + (contour - (pose.cx, pose.cy)) * inset
    spacing = features.eyes[1][0] - features.eyes[0][0]
    brow_top = min(ey - 0.1 * ew for _, ey, ew in features.eyes) - spacing * (
        1.1 * traits.brow_gap + traits.brow_arch + 0.55 * traits.brow_thickness)
    _, yy = _grid(h, w)
    region = _poly_mask((h, w), contour) * np.clip(yy - (brow_top - above_brows * pose.ry) + 0.5, 0, 1)
    return cv2.warpAffine(region, scene.rotation, (w, h), flags=cv2.INTER_LINEAR)


def _landmarks(features: _Features) -> np.ndarray:
    (lx, ly, _), (rx_, ry_, _) = features.eyes
    mx, my = features.mouth
    half = features.mouth_half_width
    return np.array([(lx, ly), (rx_, ry_), features.nose, (mx - half, my), (mx + half, my)], np.float64)


def face_box(landmarks: np.ndarray) -> Box:
    """A square face box (x1, y1, x2, y2) from 5 landmarks: brows to chin, cheek to cheek, like a detector's."""
    points = np.asarray(landmarks, np.float64)
    eyes, mouth = points[:2].mean(axis=0), points[3:].mean(axis=0)
    side = 1.2 * (np.linalg.norm(points[1] - points[0]) + np.linalg.norm(mouth - eyes))
    centre = eyes + 0.55 * (mouth - eyes)
    return (centre[0] - side / 2, centre[1] - side / 2, centre[0] + side / 2, centre[1] + side / 2)


def clip_box(box: Box, width: int, height: int) -> Box:
    """``box`` clipped to the pixels of a ``width`` x ``height`` image."""
    x1, y1, x2, y2 = box
    return (float(np.clip(x1, 0, width - 1)), float(np.clip(y1, 0, height - 1)),
            float(np.clip(x2, 0, width - 1)), float(np.clip(y2, 0, height - 1)))


# ---------------------------------------------------------------------------------------------------------- light


@dataclass(frozen=True)
class _Light:
    direction: np.ndarray  # unit vector towards the light, image axes (x right, y down, z to the viewer)
    ambient: float


def _draw_light(rng: np.random.Generator) -> _Light:
    direction = np.array([rng.uniform(-0.9, 0.9), rng.uniform(-0.8, 0.25), 1.0])
    return _Light(direction / np.linalg.norm(direction), float(rng.uniform(0.3, 0.5)))


def relight(image: np.ndarray, rng: np.random.Generator, light: _Light | None = None) -> np.ndarray:
    """Global illumination of a capture: exposure, colour temperature and a soft gradient across the frame."""
    h, w = image.shape[:2]
    xx, yy = _grid(h, w)
    direction = light.direction if light is not None else _draw_light(rng).direction
    slope = rng.uniform(0.0, 0.35)
    field = 1 + slope * ((xx / w - 0.5) * direction[0] + (yy / h - 0.5) * direction[1])
    warmth = rng.uniform(-0.05, 0.05)
    gains = rng.uniform(0.8, 1.12) * np.array([1 + warmth, 1.0, 1 - warmth], np.float32)
    return image * field[..., None] * gains


def camera_capture(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sensor blur, signal-dependent noise and JPEG (quality 70-95) of a float [0, 1] RGB image -> uint8 RGB."""
    sigma = rng.uniform(0.0, 0.7)
    if sigma > 0.3:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    image = np.clip(image, 0, 1)
    noise = rng.normal(0.0, 1.0, image.shape).astype(np.float32) * np.float32(rng.uniform(0.004, 0.016))
    image = image + noise * np.sqrt(image + 0.05)
    bgr = cv2.cvtColor(to_uint8(image), cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(70, 96))])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------- background


def render_background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A uint8 RGB scene behind a face: a gradient, a texture, an indoor-like room or a radial light."""
    h, w = size
    kind = rng.choice(4, p=(0.22, 0.22, 0.4, 0.16))
    builders = (_gradient_scene, _texture_scene, _indoor_scene, _radial_scene)
    scene = builders[kind](rng, size)
    scene = cv2.GaussianBlur(scene, (0, 0), rng.uniform(0.4, 2.5) * max(h, w) / 128)
    scene = scene * (1 + 0.06 * _value_noise(rng, size, 6)[..., None])
    return to_uint8(scene)


def _colour(rng: np.random.Generator, low: float = 0.15, high: float = 0.9, saturation: float = 0.35) -> np.ndarray:
    value = rng.uniform(low, high)
    return np.clip(value * (1 + saturation * rng.uniform(-1, 1, 3)), 0, 1).astype(np.float32)


def _value_noise(rng: np.random.Generator, size: tuple[int, int], cells: int) -> np.ndarray:
    """Smooth noise in about [-1, 1] with ``cells`` features across the image."""
    h, w = size
    coarse = rng.uniform(-1, 1, (cells + 1, cells + 1)).astype(np.float32)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)


def _linear(rng: np.random.Generator, size: tuple[int, int], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    h, w = size
    xx, yy = _grid(h, w)
    angle = rng.uniform(0, 2 * np.pi)
    t = (xx / w - 0.5) * np.cos(angle) + (yy / h - 0.5) * np.sin(angle) + 0.5
    return a + np.clip(t, 0, 1)[..., None] * (b - a)


def _gradient_scene(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    return _linear(rng, size, _colour(rng), _colour(rng)) * (1 + 0.12 * _value_noise(rng, size, 3)[..., None])


def _texture_scene(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Fractal noise between two colours: plaster, fabric, foliage."""
    noise = sum(_value_noise(rng, size, cells) / (i + 1) for i, cells in enumerate((3, 8, 20, 40)))
    t = np.clip(0.5 + 0.4 * noise, 0, 1)[..., None]
    a, b = _colour(rng), _colour(rng)
    return a + t * (b - a)


def _radial_scene(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    centre = (rng.uniform(0, w), rng.uniform(0, h))
    glow = _gauss(size, centre, (rng.uniform(0.3, 0.8) * w, rng.uniform(0.3, 0.8) * h))[..., None]
    dark, bright = _colour(rng, 0.05, 0.4), _colour(rng, 0.6, 1.0, 0.2)
    return dark + glow * (bright - dark)


def _indoor_scene(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A wall with a floor, door/window/frame/shelf rectangles and soft lamp or plant blobs."""
    h, w = size
    wall = _colour(rng, 0.35, 0.9, 0.25)
    scene = np.ascontiguousarray(_linear(rng, size, wall, wall * rng.uniform(0.6, 0.95)), dtype=np.float32)
    if rng.random() < 0.6:
        horizon = int(rng.uniform(0.6, 0.9) * h)
        floor = _colour(rng, 0.15, 0.6)
        streaks = cv2.resize(rng.uniform(-1, 1, (h // 2 + 1, 3)).astype(np.float32), (w, h - horizon))
        scene[horizon:] = floor * (1 + 0.15 * streaks[..., None])
    for _ in range(rng.integers(2, 7)):
        _rectangle(scene, rng)
    for _ in range(rng.integers(0, 4)):
        blob = _gauss(size, (rng.uniform(0, w), rng.uniform(0, h)), tuple(rng.uniform(0.04, 0.15, 2) * w))
        scene += (_colour(rng, 0.0, 1.0, 0.6) - scene) * (blob * rng.uniform(0.4, 0.9))[..., None]
    return scene


def _rectangle(scene: np.ndarray, rng: np.random.Generator) -> None:
    """One piece of furniture: a plain block, a bright window with bars, or a framed picture."""
    h, w = scene.shape[:2]
    x1, y1 = int(rng.uniform(-0.2, 0.9) * w), int(rng.uniform(-0.2, 0.8) * h)
    x2, y2 = x1 + int(rng.uniform(0.1, 0.5) * w), y1 + int(rng.uniform(0.1, 0.6) * h)
    kind = rng.integers(3)
    colour = _colour(rng, 0.7, 1.0, 0.1) if kind == 1 else _colour(rng, 0.05, 0.9, 0.5)
    cv2.rectangle(scene, (x1, y1), (x2, y2), tuple(float(c) for c in colour), -1)
    edge = tuple(float(c) for c in _colour(rng, 0.05, 0.5))
    thickness = max(1, w // 80)
    if kind == 1:
        cv2.line(scene, ((x1 + x2) // 2, y1), ((x1 + x2) // 2, y2), edge, thickness)
        cv2.line(scene, (x1, (y1 + y2) // 2), (x2, (y1 + y2) // 2), edge, thickness)
    if kind >= 1:
        cv2.rectangle(scene, (x1, y1), (x2, y2), edge, thickness * 2)


# ----------------------------------------------------------------------------------------------------------- body


def _draw_body(scene: np.ndarray, traits: IdentityTraits, pose: _Pose, rng: np.random.Generator) -> np.ndarray:
    """Long hair at the back, shoulders in per-image clothing and the neck; they do not roll with the head."""
    h, w = scene.shape[:2]
    cx, cy, rx, ry = pose.cx, pose.cy, pose.rx, pose.ry
    layer = _Layer((h, w))
    if traits.hair_style == "long":
        layer.paint(_hair_albedo(traits, (h, w), rng) * 0.7, _long_hair_mask(pose, rng, (h, w)))
    top = cy + ry * rng.uniform(1.15, 1.35)
    clothes = _colour(rng, 0.08, 0.85, 0.6) * (1 + 0.08 * _value_noise(rng, (h, w), 12))[..., None]
    layer.paint(clothes, _ellipse_mask((h, w), (cx, top + ry * 1.1), (rx * rng.uniform(2.1, 2.7), ry * 1.1)))
    neck_half = rx * rng.uniform(0.42, 0.52)
    neck = np.array([
        (cx - neck_half, cy + ry * 0.4), (cx + neck_half, cy + ry * 0.4), (cx + neck_half * 1.1, top + ry * 0.15),
        (cx, top + ry * 0.35), (cx - neck_half * 1.1, top + ry * 0.15),
    ])
    xx, yy = _grid(h, w)
    under_chin = 0.55 + 0.3 * np.clip((yy - (cy + ry * 0.9)) / (ry * 0.5), 0, 1)
    layer.paint(np.asarray(traits.skin, np.float32) * under_chin[..., None], _poly_mask((h, w), neck))
    return scene * (1 - layer.alpha[..., None]) + layer.rgb


# ----------------------------------------------------------------------------------------------------------- head


def _draw_head(traits: IdentityTraits, pose: _Pose, features: _Features, light: _Light,
               rng: np.random.Generator, shape: tuple[int, int]) -> tuple[_Layer, np.ndarray]:
    """Hair, ears, face and features as albedo, then shaded from a height map so the face looks rounded.

    Also returns the alpha of what was painted over the skin (hair cap, glasses frames), before roll.
    """
    layer = _Layer(shape)
    over = np.zeros(shape, np.float32)
    hair = _hair_albedo(traits, shape, rng)
    if traits.hair_style != "long":
        _draw_ears(layer, traits, pose, features)
    skin_mask = _poly_mask(shape, _face_contour(pose, traits.jaw))
    layer.paint(_skin_albedo(traits, pose, features, rng, shape), skin_mask)
    _draw_brows(layer, traits, features)
    _draw_eyes(layer, traits, features)
    _draw_nose(layer, traits, features)
    _draw_mouth(layer, traits, features)
    if traits.hair_style != "none":
        over = _hair_cap_mask(traits, pose, features, rng, shape)
        layer.paint(hair, over)
    shade, specular = _shading(layer.alpha, _bumps(pose, features, shape), light, pose.rx)
    layer.rgb = layer.rgb * power(shade[..., None], np.array([0.85, 1.0, 1.15]))
    layer.rgb += (specular * skin_mask * rng.uniform(0.04, 0.14))[..., None]
    _draw_catchlights(layer, features)
    if traits.glasses:
        frame = _draw_glasses(layer, traits, pose, features)
        over = 1 - (1 - over) * (1 - frame)
    return layer, over


def _face_contour(pose: _Pose, jaw: float, points: int = 72) -> np.ndarray:
    """Ellipse whose lower half narrows towards the chin by ``jaw``."""
    angle = np.linspace(0, 2 * np.pi, points, endpoint=False)
    u, v = np.cos(angle), np.sin(angle)
    lower = np.clip(v, 0, None)
    u = u * (1 - (1 - jaw) * lower ** 1.8)
    return np.stack([pose.cx + u * pose.rx, pose.cy + v * pose.ry], axis=1)


def _skin_albedo(traits: IdentityTraits, pose: _Pose, features: _Features, rng: np.random.Generator,
                 shape: tuple[int, int]) -> np.ndarray:
    """Skin colour with blotchy texture, blushed cheeks and a slightly darker beard/jaw area."""
    skin = np.asarray(traits.skin, np.float32)
    texture = 1 + 0.035 * _value_noise(rng, shape, 24) + 0.02 * _value_noise(rng, shape, 60)
    albedo = skin * texture[..., None]
    blush = rng.uniform(0.05, 0.2)
    for (ex, _, _) in features.eyes:
        cheek = _gauss(shape, (ex + 0.1 * (ex - pose.cx), features.nose[1]), (pose.rx * 0.22, pose.ry * 0.14))
        albedo = albedo * (1 - blush * cheek[..., None] * np.array([0.0, 0.45, 0.35], np.float32))
    return albedo


def _hair_albedo(traits: IdentityTraits, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Hair colour with fine strands: noise smeared along a mostly vertical direction."""
    noise = rng.normal(0, 1, shape).astype(np.float32)
    length = max(3, shape[1] // 12) | 1
    kernel = np.zeros((length, length), np.float32)
    cv2.line(kernel, (length // 2 + int(rng.integers(-2, 3)), 0), (length // 2, length - 1), 1.0, 1)
    strands = cv2.filter2D(noise, -1, kernel / kernel.sum())
    return np.asarray(traits.hair, np.float32) * (1 + 0.35 * strands)[..., None]


def _long_hair_mask(pose: _Pose, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Hair falling behind the neck to the shoulders, with a ragged lower edge."""
    xx, yy = _grid(*shape)
    u = (xx - pose.cx) / pose.rx
    v = (yy - pose.cy) / pose.ry
    end = rng.uniform(1.2, 1.8) + 0.08 * sin(u * rng.uniform(6, 12) + rng.uniform(0, 6))
    crown = 1 - (np.clip(v, None, 0) / 1.1) ** 2
    half_width = np.where(crown > 0, 1.12 * np.sqrt(np.abs(crown)), -1) + 0.18 * np.clip(v, 0, None)
    inside = np.minimum((half_width - np.abs(u)) * pose.rx, (end - v) * pose.ry)
    return np.clip(inside + 0.5, 0, 1)


def _hair_cap_mask(traits: IdentityTraits, pose: _Pose, features: _Features, rng: np.random.Generator,
                   shape: tuple[int, int]) -> np.ndarray:
    """Hair over the skull down to a hairline that drops towards the temples (long hair: along the cheeks).

    A fringe comes down to just above the brows. Edges are irregular so the hair does not read as a helmet.
    """
    xx, yy = _grid(*shape)
    u = (xx - pose.cx) / (pose.rx * 1.09)
    v = (yy - (pose.cy - 0.05 * pose.ry)) / (pose.ry * 1.08)
    radius = np.sqrt(u ** 2 + v ** 2) + 0.025 * _value_noise(rng, shape, 14)
    scalp = np.clip((1 - radius) * pose.rx + 0.5, 0, 1)
    x_face = np.abs(xx - pose.cx) / pose.rx
    ragged = 0.03 * _value_noise(rng, shape, 18)
    if traits.hair_style == "fringe":
        top = (features.eyes[0][1] - pose.cy) / pose.ry - traits.brow_gap - 0.12
        line = top + 0.03 * sin(x_face * rng.uniform(14, 22)) + 0.45 * power(x_face, 2.5)
    else:
        side = 0.75 if traits.hair_style == "long" else 0.02
        line = traits.hairline + (side - traits.hairline) * power(np.clip(x_face, 0, 1), 2.5)
    hairline = pose.cy + (line + ragged) * pose.ry
    return scalp * np.clip((hairline - yy) * 0.8 + 0.5, 0, 1)


def _draw_ears(layer: _Layer, traits: IdentityTraits, pose: _Pose, features: _Features) -> None:
    shape = layer.alpha.shape
    ear_y = features.eyes[0][1] + 0.15 * pose.ry
    for side in (-1, 1):
        centre = (pose.cx + side * pose.rx * (0.98 - 0.15 * side * pose.yaw), ear_y)
        ear = _ellipse_mask(shape, centre, (pose.rx * 0.14, pose.ry * 0.22))
        layer.paint(np.asarray(traits.skin, np.float32) * 0.92, ear)


def _draw_brows(layer: _Layer, traits: IdentityTraits, features: _Features) -> None:
    shape = layer.alpha.shape
    t = np.linspace(0, 1, 14)
    spacing = features.eyes[1][0] - features.eyes[0][0]  # the brows scale with the eye spacing
    for (ex, ey, ew), outward in zip(features.eyes, (-1, 1)):
        x = ex + outward * ew * (-1.05 + 2.4 * t)
        y = ey - traits.brow_gap * spacing * 1.1 - traits.brow_arch * spacing * np.sin(np.pi * t ** 0.8) - 0.1 * ew * t
        widths = traits.brow_thickness * spacing * 1.1 * (1.0 - 0.6 * t ** 1.5)
        mask = cv2.GaussianBlur(_poly_mask(shape, _band(np.stack([x, y], axis=1), widths)), (0, 0), 0.5)
        layer.paint(traits.brow, mask * 0.9)


def _eye_outline(ex: float, ey: float, ew: float, eh: float, outward: int) -> tuple[np.ndarray, np.ndarray]:
    """Upper and lower lid curves from the inner to the outer corner; the outer corner sits a little higher."""
    s = np.linspace(-1, 1, 16)
    x = ex + outward * s * ew
    lift = -0.12 * eh * s
    upper = np.stack([x, ey + lift - eh * (1 - s ** 2) ** 0.7 * (1 + 0.12 * s)], axis=1)
    lower = np.stack([x, ey + lift + 0.8 * eh * (1 - s ** 2) ** 0.9], axis=1)
    return upper, lower


def _draw_eyes(layer: _Layer, traits: IdentityTraits, features: _Features) -> None:
    shape = layer.alpha.shape
    eh = features.eye_half_height
    for (ex, ey, ew), outward in zip(features.eyes, (-1, 1)):
        upper, lower = _eye_outline(ex, ey, ew, eh, outward)
        skin = np.asarray(traits.skin, np.float32)
        crease = _poly_mask(shape, _band(upper + (0, -0.9 * eh), np.full(16, max(0.7, 0.3 * eh))))
        layer.paint(skin * 0.72, crease * 0.5)
        sclera = _poly_mask(shape, np.concatenate([upper, lower[::-1]]))
        layer.paint((0.86, 0.84, 0.8), sclera)
        iris_r = max(eh * 1.05, 1.2)
        layer.paint(traits.iris, _ellipse_mask(shape, (ex, ey), (iris_r, iris_r)) * sclera)
        layer.paint((0.03, 0.02, 0.02), _ellipse_mask(shape, (ex, ey), (iris_r * 0.5, iris_r * 0.5)) * sclera)
        lid_width = max(0.9, 0.4 * eh) * (1.2 - 0.4 * np.abs(np.linspace(-1, 1, 16)))
        layer.paint((0.07, 0.05, 0.05), _poly_mask(shape, _band(upper, lid_width)))
        layer.paint(skin * 0.7, _poly_mask(shape, _band(lower, np.full(16, 0.6))) * 0.35)


def _draw_catchlights(layer: _Layer, features: _Features) -> None:
    """A small reflection on the upper iris, off the pupil so the pupil stays the darkest point."""
    shape = layer.alpha.shape
    iris_r = max(features.eye_half_height * 1.05, 1.2)
    r = max(0.45, iris_r * 0.2)
    for ex, ey, _ in features.eyes:
        layer.paint((1.0, 1.0, 1.0), _ellipse_mask(shape, (ex - 0.6 * iris_r, ey - 0.6 * iris_r), (r, r)) * 0.7)


def _draw_nose(layer: _Layer, traits: IdentityTraits, features: _Features) -> None:
    shape = layer.alpha.shape
    nx, ny = features.nose
    nw = features.nose_half_width
    dark = np.asarray(traits.skin, np.float32) * 0.38
    for side in (-1, 1):
        nostril = _ellipse_mask(shape, (nx + side * nw * 0.5, ny + nw * 0.32), (nw * 0.3, nw * 0.15), side * 15)
        layer.paint(dark, cv2.GaussianBlur(nostril, (0, 0), 0.5) * 0.8)
        t = np.linspace(0, 1, 8)
        wing = np.stack([nx + side * nw * (0.75 + 0.3 * np.sin(np.pi * t)), ny - nw * 0.3 + nw * 0.65 * t], axis=1)
        layer.paint(dark * 1.6, _poly_mask(shape, _band(wing, np.full(8, max(0.6, nw * 0.12)))) * 0.4)


def _draw_mouth(layer: _Layer, traits: IdentityTraits, features: _Features) -> None:
    """Upper lip with a cupid's bow, fuller lower lip, and the dark line between them."""
    shape = layer.alpha.shape
    mx, my = features.mouth
    half = features.mouth_half_width
    s = np.linspace(-1, 1, 21)
    x = mx + s * half
    line = my + features.smile * features.lip * 0.7 * (1 - s ** 2)
    bow = (1 - s ** 2) ** 0.5 * (1 - 0.3 * np.exp(-(s / 0.12) ** 2)) + 0.15 * np.exp(-((np.abs(s) - 0.28) / 0.14) ** 2)
    top = line - features.lip * bow
    bottom = line + features.lip * 1.35 * (1 - s ** 2) ** 0.7
    lip = np.asarray(traits.lip, np.float32)
    seam = np.stack([x, line], axis=1)
    layer.paint(lip * 0.85, _poly_mask(shape, np.concatenate([np.stack([x, top], axis=1), seam[::-1]])))
    layer.paint(lip, _poly_mask(shape, np.concatenate([seam, np.stack([x, bottom], axis=1)[::-1]])))
    layer.paint(lip * 0.35, _poly_mask(shape, _band(seam, np.full(21, max(0.8, features.lip * 0.25)))))


def _draw_glasses(layer: _Layer, traits: IdentityTraits, pose: _Pose, features: _Features) -> np.ndarray:
    """Rims, bridge and temples as thin anti-aliased lines, with a faint lens tint; returns the frame's alpha."""
    h, w = layer.alpha.shape
    frame = np.zeros((h, w), np.uint8)
    lens = np.zeros((h, w), np.uint8)
    thickness = max(1, round(w / 110))
    rims = []
    for (ex, ey, ew), outward in zip(features.eyes, (-1, 1)):
        centre, axes = (ex + outward * 0.1 * ew, ey + 0.1 * ew), (ew * 1.55, ew * 1.15)
        rims.append((centre, axes))
        cv2.ellipse(lens, _point(centre), _point(axes), 0, 0, 360, 255, -1, cv2.LINE_AA, _SHIFT)
        cv2.ellipse(frame, _point(centre), _point(axes), 0, 0, 360, 255, thickness, cv2.LINE_AA, _SHIFT)
        temple_x = pose.cx + outward * pose.rx * 0.99
        cv2.line(frame, _point((centre[0] + outward * axes[0], centre[1] - 0.3 * axes[1])),
                 _point((temple_x, centre[1] - 0.4 * axes[1])), 255, thickness, cv2.LINE_AA, _SHIFT)
    (left, left_axes), (right, right_axes) = rims
    cv2.line(frame, _point((left[0] + left_axes[0], left[1] - 0.2 * left_axes[1])),
             _point((right[0] - right_axes[0], right[1] - 0.2 * right_axes[1])), 255, thickness, cv2.LINE_AA, _SHIFT)
    layer.paint((0.92, 0.95, 1.0), lens.astype(np.float32) / 255 * 0.05)
    layer.paint(traits.glasses_colour, frame.astype(np.float32) / 255)
    return frame.astype(np.float32) / 255


def _point(xy: tuple[float, float]) -> tuple[int, int]:
    fixed = _fixed(xy)
    return int(fixed[0]), int(fixed[1])


def _bumps(pose: _Pose, features: _Features, shape: tuple[int, int]) -> np.ndarray:
    """Relief added to the head's rounded height map: nose, brow ridge, cheekbones, lips, eye sockets."""
    rx, ry = pose.rx, pose.ry
    nx, ny = features.nose
    nw = features.nose_half_width
    eye_y = features.eyes[0][1]
    between_eyes = (features.eyes[0][0] + features.eyes[1][0]) / 2
    xx, yy = _grid(*shape)
    along = np.clip((yy - eye_y) / max(ny - eye_y, 1.0), 0, 1)  # 0 between the eyes, 1 at the nose tip
    bridge_x = between_eyes + (nx - between_eyes) * along
    ridge = exp(-0.5 * ((xx - bridge_x) / (nw * 0.45)) ** 2) * along * (yy < ny + nw * 0.2)
    height = 0.2 * rx * ridge + 0.14 * rx * _gauss(shape, (nx, ny), (nw * 0.6, nw * 0.5))
    for ex, ey, ew in features.eyes:
        height -= 0.12 * rx * _gauss(shape, (ex, ey), (ew * 1.2, ew * 0.9))
        height += 0.08 * rx * _gauss(shape, (ex, ey - ew * 1.3), (ew * 1.3, ew * 0.5))
        height += 0.07 * rx * _gauss(shape, (ex + 0.15 * (ex - pose.cx), ny - 0.05 * ry), (ew * 1.2, ew))
    mx, my = features.mouth
    height += 0.05 * rx * _gauss(shape, (mx, my + features.lip), (features.mouth_half_width * 0.8, features.lip * 1.5))
    height -= 0.05 * rx * _gauss(shape, (mx, my + features.lip * 4), (features.mouth_half_width, features.lip * 1.2))
    return height


def _shading(alpha: np.ndarray, bumps: np.ndarray, light: _Light, rx: float) -> tuple[np.ndarray, np.ndarray]:
    """Lambert shade (ambient + diffuse) and a Blinn specular term from the normals of a height map."""
    height = cv2.GaussianBlur(alpha, (0, 0), 0.42 * rx) * 1.3 * rx + bumps
    gx = cv2.Sobel(height, cv2.CV_32F, 1, 0, ksize=3) / 8
    gy = cv2.Sobel(height, cv2.CV_32F, 0, 1, ksize=3) / 8
    norm = np.sqrt(gx ** 2 + gy ** 2 + 1)
    lx, ly, lz = light.direction
    diffuse = np.clip((-gx * lx - gy * ly + lz) / norm, 0, 1)
    halfway = light.direction + np.array([0.0, 0.0, 1.0])
    hx, hy, hz = halfway / np.linalg.norm(halfway)
    specular = power(np.clip((-gx * hx - gy * hy + hz) / norm, 0, 1), 24)
    return light.ambient + (1 - light.ambient) * diffuse, specular
