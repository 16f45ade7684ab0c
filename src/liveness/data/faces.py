"""Face detection (MTCNN), 5-point similarity alignment and square crops that keep background context.

The background around the face is what the model separates from it, so crops keep ``context`` times the
face size (about 2 by default) and pad whatever falls outside the source image, recording how much.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# ArcFace's 5-point template for a 112x112 face crop: left eye, right eye, nose, left and right mouth corners.
FACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)


@dataclass(frozen=True)
class Face:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in source pixels
    probability: float  # detector confidence; 1.0 when the database supplied the face
    landmarks: np.ndarray | None  # (5, 2) float, or None when only a box is known

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)

    @property
    def short_side(self) -> float:
        x1, y1, x2, y2 = self.box
        return min(x2 - x1, y2 - y1)


@dataclass(frozen=True)
class Crop:
    image: np.ndarray  # uint8 (size, size, 3)
    padded_fraction: float  # share of the crop that lay outside the source image
    landmarks: np.ndarray | None  # (5, 2) in crop pixels


MTCNN_WINDOW_PX = 12  # P-Net's input: an image with a shorter side below it yields an empty pyramid


class DetectionFailed(Exception):
    """MTCNN raised on one image; that image becomes a rejected row (reason ``detection_failed``)."""

    reason = "detection_failed"


def _subset(levels: list[tuple], chosen: list[int], images: int) -> list[tuple]:
    """P-Net's per-level proposals of the ``chosen`` images only, their owners renumbered 0.. in that order."""
    import torch

    renumber = torch.full((images,), -1, dtype=torch.long)
    renumber[chosen] = torch.arange(len(chosen))
    return [(boxes[mine], renumber[owners[mine]]) for boxes, owners in levels for mine in [renumber[owners] >= 0]]


def _no_faces() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2))


def _detectable(image: np.ndarray) -> bool:
    return image.ndim == 3 and image.shape[2] == 3 and min(image.shape[:2]) >= MTCNN_WINDOW_PX


RNET_INPUT_PX, ONET_INPUT_PX = 24, 48  # the refining networks' square inputs
REFINE_SLICE = 16  # R-Net's and O-Net's candidates per forward pass on the CPU (_Mtcnn._refine)
PYRAMID_FACTOR = 0.709  # facenet-pytorch's scale step between pyramid levels
MTCNN_THRESHOLDS = (0.6, 0.7, 0.7)  # facenet-pytorch's face probability thresholds of P-Net, R-Net, O-Net
COARSE_SKIPPED_LEVELS = 2  # coarse-first search: P-Net's finest levels, left out while a dominant face is found
HOPEFUL_AREA = 1.0  # coarse-first: refine the coarse proposals only when one is at least a dominant face's area
HOPEFUL_SCORE = 0.95  # ... and P-Net's probability for it at least this
SEARCHES = ("coarse_first", "full")


def smallest_face_px(width: int, height: int, min_face_size: int, max_side: int) -> float:
    """The smallest face (short side, source pixels) a ``FaceDetector`` looks for in a width x height image."""
    return min_face_size * max(1.0, max(width, height) / max_side)


def _copy_size(shape: tuple[int, ...], max_side: int) -> tuple[tuple[int, int], float]:
    """((width, height), factor) of the detection copy of an image of ``shape``: longer side at most max_side."""
    height, width = shape[:2]
    longer = max(height, width)
    if longer <= max_side:
        return (width, height), 1.0
    factor = max_side / longer
    return (max(1, round(width * factor)), max(1, round(height * factor))), factor


class FaceDetector:
    """MTCNN (facenet-pytorch's networks and weights, which ship inside the package), one image or an equal-size
    batch.

    MTCNN's first stage scans an image pyramid; that scan is most of the cost, so it runs on a copy whose
    longer side is at most ``max_side``, looking for faces of at least ``min_face_size`` pixels of that copy
    (``smallest_face_px`` in source pixels). The cost follows the ratio ``max_side / min_face_size``: the
    defaults (304 / 20) look for faces down to 1/15.2 of the longer side, 42 px on a 640x480 frame, so that
    faces of quality.min_face_px (48) are still found as reliably as before. The two refining stages look at
    each candidate in the source image wherever the copy would show it smaller than the network's input, so
    small faces keep their detail and their landmarks stay as precise as without the copy. Boxes and landmarks
    are in source pixels. One detector serves every thread: it keeps no state between calls.

    ``search="coarse_first"`` (the default) first scans only the pyramid levels for faces of at least
    ``min_face_size / PYRAMID_FACTOR**2`` (about 2x min_face_size) copy pixels, three quarters of P-Net's cost
    left out. When a face found there has ``dominance`` times the area of the largest face the left-out levels
    look for, the search stops: under the ``largest`` multi-face policy no face they could add would be chosen
    or stop that face from being chosen, so the chosen face is the full search's; so are its box and landmarks,
    unless a fine-level proposal would have won a later NMS (none of the recall test's 352 images; 2 of the
    demo's 480, moved by about 2 px). Smaller faces beside such a face are then not reported, which
    is why the ``reject`` policy runs ``search="full"`` (DetectionParams.detector_search). Any other image gets
    exactly the full search.
    """

    def __init__(self, device: str = "cpu", min_face_size: int = 20, max_side: int = 304,
                 thresholds: tuple[float, float, float] = MTCNN_THRESHOLDS, search: str = "coarse_first",
                 dominance: float = 2.0) -> None:
        if search not in SEARCHES:
            raise ValueError(f"search {search!r} is not one of {SEARCHES}")
        if not dominance >= 1.0:
            raise ValueError(f"dominance must be at least 1, got {dominance}")
        self.device = device
        self.max_side = max_side
        self.min_face_size = min_face_size
        self.search, self.dominance = search, dominance
        self._mtcnn = _Mtcnn(device, min_face_size, max_side, thresholds,
                             dominance if search == "coarse_first" else None)

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in one RGB image, most probable first; raises ``DetectionFailed`` if MTCNN itself fails."""
        (found,) = self.detect_batch([image])
        if isinstance(found, DetectionFailed):
            raise found
        return found

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Face] | DetectionFailed]:
        """Faces per image, most probable first, or a ``DetectionFailed`` in that image's slot: one image never
        fails the others. Images smaller than MTCNN's 12 px window hold no findable face (its image pyramid is
        empty) and get []. Equal-size images are batched on the GPU; on the CPU one at a time is faster
        (measured: 0.26 s against 0.32 s for eight 160 px images)."""
        if not images:
            return []
        results: list[list[Face] | DetectionFailed | None] = [None] * len(images)
        pending: dict[int, np.ndarray] = {}
        for index, image in enumerate(images):
            # also a 1:100 strip whose short side shrinks below the window in the detection copy
            if _detectable(image) and min(_copy_size(image.shape, self.max_side)[0]) >= MTCNN_WINDOW_PX:
                pending[index] = image
            else:
                results[index] = []
        batchable = self.device != "cpu" and len({im.shape for im in pending.values()}) == 1
        if batchable and len(pending) > 1:
            try:
                boxes, probs, points = self._mtcnn.detect(np.stack(list(pending.values())), landmarks=True)
                for index, b, p, pts in zip(pending, boxes, probs, points, strict=True):
                    results[index] = _faces(b, p, pts, 1.0)
                pending = {}
            except Exception:  # noqa: BLE001 - retry one by one, so only the image at fault fails
                pass
        for index, image in pending.items():
            try:
                boxes, probs, points = self._mtcnn.detect(image, landmarks=True)
                results[index] = _faces(boxes, probs, points, 1.0)
            except Exception as error:  # noqa: BLE001 - odd input raises many types; name it per image
                results[index] = DetectionFailed(f"face detection failed on a {image.shape[1]}x{image.shape[0]} "
                                                 f"image ({type(error).__name__}: {error})")
        return results  # type: ignore[return-value]


class _Mtcnn:
    """MTCNN's three stages on facenet-pytorch's networks, with its own box helpers and thresholds.

    Unlike ``facenet_pytorch.MTCNN.detect``, the pyramid is resampled with OpenCV from the detection copy, and
    R-Net's and O-Net's crops come from the source image wherever the copy is too coarse for them (otherwise
    from the copy, which bounds the cost on very large images); they are resized with OpenCV too, and the
    networks run in channels-last memory layout (PyTorch's NCHW max pooling is slow on the CPU). All box
    arithmetic runs on the CPU, so the device changes only the networks' rounding.
    """

    def __init__(self, device: str, min_face_size: int, max_side: int, thresholds: tuple[float, float, float],
                 coarse_first_dominance: float | None = None) -> None:
        import torch
        from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

        self.device, self.min_face_size, self.max_side = torch.device(device), min_face_size, max_side
        self.coarse_first_dominance = coarse_first_dominance  # None: always the full search
        self.thresholds = tuple(float(t) for t in thresholds)
        self.pnet, self.rnet, self.onet = (net.to(self.device, memory_format=torch.channels_last).eval()
                                           for net in (PNet(), RNet(), ONet()))

    def downscale(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        size, factor = _copy_size(image.shape, self.max_side)
        if factor == 1.0:
            return np.ascontiguousarray(image), 1.0
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA), factor

    def detect(self, images: np.ndarray, landmarks: bool = True):
        """(boxes (n, 4), probabilities (n,), landmarks (n, 5, 2)) in source pixels, most probable first, for one
        HxWx3 RGB uint8 image; for an NxHxWx3 stack, three lists of those, one entry per image. Landmarks are
        always computed; the keyword is facenet-pytorch's."""
        import torch

        single = images.ndim == 3
        stack = [images] if single else list(images)
        with torch.inference_mode():
            found = self._cascade(stack)
        if single:
            return found[0]
        return tuple(list(part) for part in zip(*found)) if found else ([], [], [])

    def _tensor(self, batch: np.ndarray):
        import torch

        pixels = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device).permute(0, 3, 1, 2).float()
        return (pixels - 127.5) * 0.0078125  # MTCNN's input standardisation

    def _cascade(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        copies, factors = zip(*(self.downscale(image) for image in images))
        factor = factors[0]
        scales = self._scales(*copies[0].shape[:2])
        if not scales:
            return [_no_faces()] * len(images)
        skipped = COARSE_SKIPPED_LEVELS if self.coarse_first_dominance is not None else 0
        if skipped == 0 or len(scales) <= skipped:
            return self._refined(images, copies, factor, self._proposals(copies, factor, scales))
        # Coarse first: the levels that look for faces of at least min_face_size / PYRAMID_FACTOR**2 px. Only
        # images with a large, confident proposal are refined on them (R-Net's gate stops the rest before O-Net);
        # one whose coarse faces include a dominant one is done. The others get the full search, with the coarse
        # proposals and the networks' answers for crops already seen reused: their result is the full search's.
        coarse = self._proposals(copies, factor, scales[skipped:])
        large = self._large(coarse, factor)
        hopeful = sorted({owner for _, owners in large for owner in owners.tolist()})
        found: list = [None] * len(images)
        memo: dict = {}  # R-Net's and O-Net's outputs per crop: the full search sees the coarse crops again
        if hopeful:
            refined = self._refined([images[k] for k in hopeful], [copies[k] for k in hopeful], factor,
                                    _subset(coarse, hopeful, len(images)), HOPEFUL_AREA * self._dominant_area(factor),
                                    memo)
            for k, result in zip(hopeful, refined, strict=True):
                found[k] = result
        undecided = [k for k, result in enumerate(found) if result is None or not self._dominated(result[0], factor)]
        if undecided:
            subset = [copies[k] for k in undecided]
            levels = self._proposals(subset, factor, scales[:skipped]) + _subset(coarse, undecided, len(images))
            full = self._refined([images[k] for k in undecided], subset, factor, levels, memo=memo)
            for k, result in zip(undecided, full, strict=True):
                found[k] = result
        return found

    def _scales(self, height: int, width: int) -> list[float]:
        """P-Net's pyramid scales for a copy of height x width, finest (smallest faces) first."""
        scales, scale = [], MTCNN_WINDOW_PX / self.min_face_size
        while min(height, width) * scale >= MTCNN_WINDOW_PX:
            scales.append(scale)
            scale *= PYRAMID_FACTOR
        return scales

    def _dominant_area(self, factor: float) -> float:
        """The least area (source px) of a face that dominates every face the skipped fine levels look for."""
        side = self.min_face_size / PYRAMID_FACTOR ** COARSE_SKIPPED_LEVELS / factor
        return self.coarse_first_dominance * side * side

    def _large(self, levels: list[tuple], factor: float) -> list[tuple]:
        """The coarse proposals worth refining before the full search, per level as ``levels``: P-Net gave them at
        least HOPEFUL_SCORE, and their box (as P-Net's regression places it, squared by rerec) has at least
        HOPEFUL_AREA of a dominant face's area."""
        import torch

        least = HOPEFUL_AREA * self._dominant_area(factor)
        large = []
        for boxes, owners in levels:
            side_w, side_h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
            width = side_w * (1 + boxes[:, 7] - boxes[:, 5])
            height = side_h * (1 + boxes[:, 8] - boxes[:, 6])
            # rerec makes the box a square on its longer side; a weak proposal seldom becomes the face
            keep = (torch.maximum(width, height) ** 2 >= least) & (boxes[:, 4] >= HOPEFUL_SCORE)
            large.append((boxes[keep], owners[keep]))
        return large

    def _dominated(self, boxes: np.ndarray, factor: float) -> bool:
        """Whether one of an image's faces (source-pixel boxes) has at least ``dominance`` times the area of the
        largest face the skipped fine levels look for: no face they could add would then be chosen under the
        ``largest`` policy, or stop that face from being chosen."""
        if len(boxes) == 0:
            return False
        areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
        return bool(areas.max() >= self._dominant_area(factor))

    def _proposals(self, copies, factor: float, scales: list[float]) -> list[tuple]:
        """Stage 1: P-Net over the pyramid of the copies at ``scales``; per level (boxes with scores and
        regression, owner image), boxes in source pixels, after the level's own NMS."""
        from facenet_pytorch.models.utils.detect_face import generateBoundingBox
        from torchvision.ops import batched_nms

        height, width = copies[0].shape[:2]
        levels = []
        for scale in scales:
            size = (int(width * scale + 1), int(height * scale + 1))
            pyramid = np.stack([cv2.resize(copy, size, interpolation=cv2.INTER_AREA) for copy in copies])
            regression, probability = (out.cpu() for out in self.pnet(self._tensor(pyramid)))
            found, owner = generateBoundingBox(regression, probability[:, 1], scale * factor, self.thresholds[0])
            pick = batched_nms(found[:, :4], found[:, 4], owner, 0.5)
            levels.append((found[pick], owner[pick]))
        return levels

    def _refined(self, images, copies, factor: float, levels: list[tuple], least_area: float = 0.0,
                 memo: dict | None = None) -> list:
        """Stages 2 and 3 on P-Net's proposals (``levels``, finest first): R-Net on 24 px crops, then O-Net on
        48 px crops with the five landmarks; (boxes, probabilities, landmarks) per image, most probable first.
        With ``least_area``, an image none of whose R-Net boxes is that large (source px) skips O-Net and gets
        None: the coarse pass gives up on it early."""
        import torch
        from facenet_pytorch.models.utils.detect_face import bbreg, batched_nms_numpy, rerec
        from torchvision.ops import batched_nms

        empty = [_no_faces()] * len(images)
        if not levels:
            return empty
        boxes, owners = torch.cat([boxes for boxes, _ in levels]), torch.cat([owners for _, owners in levels])
        pick = batched_nms(boxes[:, :4], boxes[:, 4], owners, 0.7)
        boxes, owners = boxes[pick], owners[pick]
        side_w, side_h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        boxes = rerec(torch.stack([boxes[:, 0] + boxes[:, 5] * side_w, boxes[:, 1] + boxes[:, 6] * side_h,
                                   boxes[:, 2] + boxes[:, 7] * side_w, boxes[:, 3] + boxes[:, 8] * side_h,
                                   boxes[:, 4]], dim=1))
        # stage 2: R-Net on 24 px crops
        crops, keep = self._crops(images, copies, factor, boxes, owners, RNET_INPUT_PX)
        boxes, owners = boxes[keep], owners[keep]
        if crops is None:
            return empty
        regression, probability = self._refine(self.rnet, crops, memo)
        passed = probability[:, 1] > self.thresholds[1]
        boxes = torch.cat((boxes[passed, :4], probability[passed, 1:2]), dim=1)
        owners, regression = owners[passed], regression[passed]
        pick = batched_nms(boxes[:, :4], boxes[:, 4], owners, 0.7)
        boxes, owners = rerec(bbreg(boxes[pick], regression[pick])), owners[pick]
        given_up: set[int] = set()
        if least_area > 0:
            large = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) >= least_area
            given_up = set(range(len(images))) - set(owners[large].tolist())
            mine = torch.tensor([owner not in given_up for owner in owners.tolist()], dtype=torch.bool)
            boxes, owners = boxes[mine], owners[mine]
        # stage 3: O-Net on 48 px crops, with the five landmarks
        crops, keep = self._crops(images, copies, factor, boxes, owners, ONET_INPUT_PX)
        boxes, owners = boxes[keep], owners[keep]
        if crops is None:
            return empty
        regression, marks, probability = self._refine(self.onet, crops, memo)
        passed = probability[:, 1] > self.thresholds[2]
        boxes = torch.cat((boxes[passed, :4], probability[passed, 1:2]), dim=1)
        owners, regression, marks = owners[passed], regression[passed], marks[passed]
        box_w, box_h = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
        points = torch.stack((box_w[:, None] * marks[:, :5] + boxes[:, 0:1] - 1,
                              box_h[:, None] * marks[:, 5:10] + boxes[:, 1:2] - 1), dim=2)
        boxes = bbreg(boxes, regression)
        pick = batched_nms_numpy(boxes[:, :4], boxes[:, 4], owners, 0.7, "Min")
        boxes, owners, points = boxes[pick].numpy(), owners[pick].numpy(), points[pick].numpy()
        order = np.argsort(-boxes[:, 4], kind="stable")  # most probable first
        boxes, owners, points = boxes[order], owners[order], points[order]
        return [None if k in given_up else (boxes[owners == k, :4], boxes[owners == k, 4], points[owners == k])
                for k in range(len(images))]

    def _refine(self, net, crops: np.ndarray, memo: dict | None = None) -> tuple:
        """``net``'s outputs for a stack of candidate crops, run in slices of about REFINE_SLICE crops on the CPU:
        a whole stack's activations outgrow the core's L2 cache (R-Net on the astronaut's 69 crops: 10.3 ms at
        once, 8.3 ms in slices of 16, interleaved with the rest of detection). Slices are as equal as can be, so none is so small that the
        convolution picks another kernel; the outputs are the same as for the whole stack."""
        import torch

        if memo is not None:  # only the crops not seen yet go through the network
            keys = [(id(net), crop.tobytes()) for crop in crops]
            new = [row for row, key in enumerate(keys) if key not in memo]
            if len(new) == len(keys):  # nothing to reuse (the coarse pass): remember where each answer is
                outputs = self._refine(net, crops)
                for row, key in enumerate(keys):
                    memo[key] = (outputs, row)
                return outputs
            if new:
                fresh = self._refine(net, crops[new])
                for row, key in enumerate(keys[index] for index in new):
                    memo[key] = (fresh, row)
            found = [memo[key] for key in keys]
            return tuple(torch.stack([outputs[part][row] for outputs, row in found])
                         for part in range(len(found[0][0])))
        pieces = 1 if self.device.type != "cpu" else max(1, round(len(crops) / REFINE_SLICE))
        if pieces == 1:
            return tuple(out.cpu() for out in net(self._tensor(crops)))
        outputs = [net(self._tensor(part)) for part in np.array_split(crops, pieces)]
        return tuple(torch.cat(parts).cpu() for parts in zip(*outputs))

    @staticmethod
    def _crops(images, copies, factor: float, boxes, owners, side: int):
        """``side`` px crops of each box as facenet-pytorch cuts them (truncated to whole pixels, clipped to the
        image, no padding), from the copy when it shows the box at least ``side`` px wide, else from the source;
        (stacked crops or None, which boxes gave one)."""
        import torch

        crops, keep = [], []
        for (x1, y1, x2, y2), owner in zip(boxes[:, :4].tolist(), owners.tolist()):
            from_copy = (x2 - x1) * factor >= side
            image, scale = (copies[owner], factor) if from_copy else (images[owner], 1.0)
            height, width = image.shape[:2]
            x, y, ex, ey = (int(v * scale) for v in (x1, y1, x2, y2))  # int() truncates, as facenet's pad()
            x, y, ex, ey = max(x, 1), max(y, 1), min(ex, width), min(ey, height)
            if ey <= y - 1 or ex <= x - 1:
                keep.append(False)
                continue
            patch = image[y - 1 : ey, x - 1 : ex]
            shrink = patch.shape[0] >= side and patch.shape[1] >= side
            crops.append(cv2.resize(patch, (side, side),
                                    interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR))
            keep.append(True)
        return (np.stack(crops) if crops else None), torch.tensor(keep, dtype=torch.bool)


LANDMARK_STEP_PX = 1.0 / 8.0
"""Boxes and landmarks are rounded to this step. Batching and thread count move MTCNN's outputs by ~1e-5 px,
enough to change a crop pixel by one grey level; rounded, the same image gives byte-identical crops in
curation, calibration and serving (DESIGN §2.2, one face path)."""


def _quantised(values: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(values, dtype=np.float64) / LANDMARK_STEP_PX) * LANDMARK_STEP_PX


def _faces(boxes, probs, points, scale: float) -> list[Face]:
    """MTCNN returns None (no face) or object arrays; normalise both to a list of Face in source pixels."""
    if boxes is None or len(boxes) == 0:
        return []
    faces = []
    for box, probability, landmarks in zip(np.asarray(boxes, dtype=np.float64), probs, points):
        if probability is None:
            continue
        faces.append(Face(tuple(float(v) for v in _quantised(box * scale)), float(probability),
                          _quantised(np.asarray(landmarks, dtype=np.float64) * scale)))
    return faces


def choose_face(faces: list[Face], policy: str = "largest", dominance: float = 2.0) -> tuple[Face | None, str | None]:
    """Apply the multi-face policy: the face to use, or None and a reject reason.

    ``reject`` refuses any image with more than one face; ``largest`` takes the largest face when its area is
    at least ``dominance`` times the next one (a bystander in the background), else refuses.
    """
    if not faces:
        return None, "no_face"
    if len(faces) == 1:
        return faces[0], None
    if policy == "reject":
        return None, "multiple_faces"
    ordered = sorted(faces, key=lambda face: face.area, reverse=True)
    if ordered[0].area >= dominance * ordered[1].area:
        return ordered[0], None
    return None, "multiple_faces"


def box_overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def choose_hinted_face(faces: list[Face], hint: tuple[float, float, float, float]) -> tuple[Face | None, str | None]:
    """The detected face a database points at: the one whose box holds the centre of the database's box and
    overlaps it most. The database only selects and checks; the crop geometry stays the detector's."""
    if not faces:
        return None, "no_face"
    cx, cy = (hint[0] + hint[2]) / 2.0, (hint[1] + hint[3]) / 2.0
    holding = [face for face in faces if face.box[0] <= cx <= face.box[2] and face.box[1] <= cy <= face.box[3]]
    if not holding:
        return None, "database_face_not_detected"
    return max(holding, key=lambda face: box_overlap(face.box, hint)), None


def _scaled_template(size: int, context: float) -> np.ndarray:
    face_side = size / context
    return FACE_TEMPLATE_112 / 112.0 * face_side + (size - face_side) / 2.0


def _similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (Umeyama) taking ``source`` points onto ``target``; 2x3 matrix."""
    source_mean, target_mean = source.mean(0), target.mean(0)
    source_centered, target_centered = source - source_mean, target - target_mean
    covariance = target_centered.T @ source_centered / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(singular) @ sign) / source_centered.var(0).sum()
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = target_mean - matrix[:, :2] @ source_mean
    return matrix


def _box_matrix(box: tuple[float, float, float, float], size: int, context: float) -> np.ndarray:
    """Axis-aligned square crop centred on the box, ``context`` times its longer side."""
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1) * context
    scale = size / side
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    return np.array([[scale, 0.0, size / 2.0 - scale * cx], [0.0, scale, size / 2.0 - scale * cy]])


def align_and_crop(image: np.ndarray, face: Face, size: int = 128, context: float = 2.0) -> Crop:
    """Similarity-align on the 5 landmarks (or centre on the box when there are none) into a square crop.

    The face fills about 1/``context`` of the crop. Strong downscaling goes through an area resize first so
    large photos do not alias.
    """
    if face.landmarks is not None:
        matrix = _similarity(np.asarray(face.landmarks, dtype=np.float64), _scaled_template(size, context))
    else:
        matrix = _box_matrix(face.box, size, context)
    landmarks = None
    if face.landmarks is not None:
        points = np.asarray(face.landmarks, dtype=np.float64)
        landmarks = points @ matrix[:, :2].T + matrix[:, 2]
    source = image
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale < 0.5:
        factor = min(1.0, scale * 2.0)
        new_size = (max(1, round(image.shape[1] * factor)), max(1, round(image.shape[0] * factor)))
        source = cv2.resize(image, new_size, interpolation=cv2.INTER_AREA)
        actual = np.diag([new_size[0] / image.shape[1], new_size[1] / image.shape[0]])
        matrix = matrix.copy()
        matrix[:, :2] = matrix[:, :2] @ np.linalg.inv(actual)
    crop = cv2.warpAffine(source, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(0, 0, 0))
    inside = cv2.warpAffine(np.full(source.shape[:2], 255, np.uint8), matrix, (size, size), flags=cv2.INTER_NEAREST,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    padded = float((inside == 0).mean())
    return Crop(np.ascontiguousarray(crop), padded, landmarks)
