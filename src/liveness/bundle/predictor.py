"""Images in, liveness decisions out: detect, align and crop as curation does, then score with the generator.

``Predictor(folder, backend)`` is the one way to load a bundle for scoring: ``liveness predict`` (both
backends), ``liveness serve``, the registered pyfunc model and the export checks all construct it. Plain Python
(no MLflow).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch

from liveness.bundle.files import CONFIG_FILE, GENERATOR_WEIGHTS, BundleConfig, TrainedOn, load_generator
from liveness.bundle.onnx_graph import OnnxScorer
from liveness.data.decode import REJECTION_REASONS, ImageRejected, decode_image, to_rgb8
from liveness.data.faces import DetectionFailed, Face, FaceDetector, align_and_crop, choose_face
from liveness.data.video import VIDEO_REASONS
from liveness.model.inputs import from_uint8
from liveness.model.score import score_components
from liveness.runtime import resolve_device

Label = Literal["live", "spoof", "no_face", "rejected"]
Backend = Literal["torch", "onnx"]
# Why a row was not scored: the decoder's reasons, plus what can go wrong after decoding (README's table).
PREDICTION_REASONS: dict[str, str] = {
    **REJECTION_REASONS,
    **VIDEO_REASONS,  # liveness predict samples videos before the model sees any frame
    "multiple_faces": "several faces of similar size; the multi-face policy (detection.multi_face) refused to choose",
    "detection_failed": "the face detector raised on this image (the message says how); the others were scored",
    "crop_failed": "the detected face could not be aligned and cropped (degenerate landmarks)",
    "score_not_finite": "the network gave a NaN or infinite score for this face; it is not labelled live or spoof",
    "processing_failed": "scoring this image raised unexpectedly; it was isolated from the rest of the batch",
}
BACKENDS: tuple[str, ...] = ("torch", "onnx")


@dataclass(frozen=True)
class Prediction:
    face_found: bool
    box: list[float] | None  # x1, y1, x2, y2 in source pixels
    score: float  # NaN when no face was scored
    threshold: float
    label: Label
    reason: str  # decode rejection reason or multiple_faces; "" otherwise
    trained_on: TrainedOn  # the bundle's data: scores of a "synthetic" model say nothing about real faces
    converted: str = ""  # how the input became 8-bit RGB (decode.CONVERSIONS), "" when it already was
    detail: str = ""  # for a rejected row, what happened in words (the reason code's message); "" otherwise

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Problem:
    """Why an image has no face crop: a reason code ("" when it has one) and what happened in words."""

    reason: str = ""
    detail: str = ""


def _face_problem_detail(reason: str, faces: int, multi_face: str, dominance: float) -> str:
    """What the multi-face policy's refusal means, for the row's ``detail``."""
    if reason != "multiple_faces":
        return ""
    rule = ("scores only images with one face" if multi_face == "reject" else
            f"scores the largest face only when its area is at least {dominance:g} times the next one's")
    return f"{faces} faces found; the model's multi_face policy {multi_face!r} {rule}. Crop the image to one face"


def synthetic_warning(name: str, version: str) -> str:
    """What to tell a user whose images a model trained on synthetic data has scored."""
    label = f"v{version}" if str(version).isdigit() else f"({version})"
    return f"model {name} {label} was trained on SYNTHETIC data; its scores say nothing about real faces"


class Predictor:
    """A loaded model bundle. ``predict`` takes encoded image bytes or RGB uint8 HxWx3 arrays.

    ``backend="onnx"`` scores the crops with onnxruntime from ``folder/model.onnx`` (``liveness export onnx``
    writes it; ``generator.pt`` is then not needed). Detection and cropping are the same for both backends.
    """

    phase_observer: Callable[[str, float], None] | None = None
    """Called with (phase, seconds) for the decode, detect and score phases of each ``predict`` call (serving
    sets it to its metrics, liveness.serve.metrics.PHASES); None: not timed."""

    def __init__(self, folder: Path, backend: Backend = "torch") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
        folder = Path(folder)
        config_path = folder / CONFIG_FILE
        if not config_path.is_file():
            raise FileNotFoundError(f"model config {config_path} not found; the bundle needs {GENERATOR_WEIGHTS} "
                                    f"and {CONFIG_FILE} (written at registration)")
        self.config = BundleConfig.from_json(json.loads(config_path.read_text()), str(config_path))
        self.device = torch.device(resolve_device(self.config.detection.device, "detection.device"))
        self.backend = backend
        self.generator, self.onnx_scorer = None, None
        if backend == "onnx":
            self.onnx_scorer = OnnxScorer.for_bundle(folder, self.config)
        else:
            self.generator = load_generator(folder, self.config.model).to(self.device).eval()
        detection = self.config.detection
        self.detector = FaceDetector(str(self.device), detection.min_face_size, detection.max_side,
                                     search=detection.detector_search(), dominance=detection.dominance)

    @property
    def threshold(self) -> float:
        return self.config.threshold

    @property
    def trained_on(self) -> TrainedOn:
        """What the model was trained on (the bundle config's ``data``): "synthetic" or "real"."""
        return self.config.data

    def predict(self, images: list[bytes | np.ndarray]) -> list[Prediction]:
        """One Prediction per input, in order; bad inputs become ``rejected`` rows, never exceptions.

        Each stage (decode, detect, crop, score) isolates its items: one bad image, or one that breaks the
        detector or the network, costs only its own row."""
        started = time.perf_counter()
        results: list[Prediction | None] = [None] * len(images)
        decoded: dict[int, tuple[np.ndarray, str]] = {}
        for position, item in enumerate(images):
            try:
                decoded[position] = _as_rgb(item, f"input {position}")
            except ImageRejected as error:
                results[position] = self._row(False, None, math.nan, "rejected", error.reason, detail=error.what)
        positions = list(decoded)
        decoded_at = time.perf_counter()
        found = self.crop_faces([decoded[p][0] for p in positions])
        detected_at = time.perf_counter()
        crops, scored = [], []
        for position, (face, problem, crop) in zip(positions, found, strict=True):
            converted = decoded[position][1]
            if face is None and problem.reason == "no_face":
                results[position] = self._row(False, None, math.nan, "no_face", "", converted)
                continue
            if face is None:
                results[position] = self._row(False, None, math.nan, "rejected", problem.reason, converted,
                                              problem.detail)
                continue
            crops.append(crop)
            scored.append((position, face, converted))
        scores = self._isolated_scores(crops)
        if self.phase_observer is not None:
            for phase, seconds in (("decode", decoded_at - started), ("detect", detected_at - decoded_at),
                                   ("score", time.perf_counter() - detected_at)):
                self.phase_observer(phase, seconds)
        for (position, face, converted), score in zip(scored, scores, strict=True):
            box = [float(v) for v in face.box]
            if score is None:
                results[position] = self._row(True, box, math.nan, "rejected", "processing_failed", converted,
                                              "the network failed on this image's face crop")
                continue
            if not math.isfinite(score):  # never let NaN compare as "live"
                results[position] = self._row(True, box, math.nan, "rejected", "score_not_finite", converted,
                                              f"the network's score for this face was {score}, not a finite number")
                continue
            label = "spoof" if score > self.threshold else "live"  # metrics.py: attack iff score > threshold
            results[position] = self._row(True, box, score, label, "", converted)
        return [result for result in results if result is not None]

    def _isolated_scores(self, crops: list[np.ndarray]) -> list[float | None]:
        """``_scores`` of the whole batch, or crop by crop when the batch fails (None for a crop that fails)."""
        try:
            return list(self._scores(crops))
        except Exception:  # noqa: BLE001 - retry one by one so only the crop at fault loses its score
            if len(crops) <= 1:
                return [None] * len(crops)
        scores: list[float | None] = []
        for crop in crops:
            try:
                scores.extend(self._scores([crop]))
            except Exception:  # noqa: BLE001
                scores.append(None)
        return scores

    def crop_faces(self, images: list[np.ndarray]) -> list[tuple[Face | None, Problem, np.ndarray | None]]:
        """(face, problem, crop) per RGB image: MTCNN, the multi-face policy and the aligned crop, exactly as
        curation makes the training, calibration and test crops (DESIGN §2.2, one face path). The problem's
        reason is "" when a face was cropped."""
        detection, crop = self.config.detection, self.config.crop
        results: list[tuple[Face | None, Problem, np.ndarray | None]] = []
        for image, found in zip(images, self.detector.detect_batch(images), strict=True):
            if isinstance(found, DetectionFailed):
                results.append((None, Problem(found.reason, str(found)), None))
                continue
            face, problem = choose_face(found, detection.multi_face, detection.dominance)
            if face is None:
                results.append((None, Problem(problem or "", _face_problem_detail(
                    problem or "", len(found), detection.multi_face, detection.dominance)), None))
                continue
            try:
                results.append((face, Problem(), align_and_crop(image, face, crop.size, crop.context).image))
            except Exception as error:  # noqa: BLE001 - degenerate landmarks or geometry: this image only
                results.append((None, Problem("crop_failed", f"aligning the face crop failed "
                                                             f"({type(error).__name__}: {error})"), None))
        return results

    def _row(self, found: bool, box: list[float] | None, score: float, label: Label, reason: str,
             converted: str = "", detail: str = "") -> Prediction:
        return Prediction(found, box, float(score), self.threshold, label, reason, self.trained_on, converted,
                          detail)

    @torch.no_grad()
    def _scores(self, crops: list[np.ndarray]) -> list[float]:
        """The configured score component of each uint8 crop (per sample: batching does not change it)."""
        if not crops:
            return []
        if self.onnx_scorer is not None:
            return self.onnx_scorer.score_crops(np.stack(crops)).astype(np.float64).tolist()
        batch = from_uint8(torch.from_numpy(np.stack(crops)).to(self.device))
        output = self.generator(batch, with_clear_face=False)
        score = self.config.score
        return score_components(batch, output, self.config.statistics, only=score)[score].float().cpu().tolist()


def _as_rgb(item: bytes | np.ndarray, source: str) -> tuple[np.ndarray, str]:
    """(RGB uint8 HxWx3, conversion code) from encoded bytes (ImageRejected says why not) or a pixel array."""
    if isinstance(item, (bytes, bytearray, memoryview)):
        decoded = decode_image(bytes(item), source=source)
        return decoded.pixels, decoded.converted
    if isinstance(item, np.ndarray):
        return array_to_rgb8(item, source)
    raise ImageRejected("unsupported_mode", f"{source}: rejected (unsupported_mode): {type(item).__name__}; pass "
                                            "encoded image bytes or an RGB uint8 HxWx3 array")


def array_to_rgb8(array: np.ndarray, source: str = "array") -> tuple[np.ndarray, str]:
    """Pixels given as an array, converted as the decoder converts files: HxW or HxWx1 grey, HxWx3 RGB, HxWx4
    RGBA (composited on neutral grey); uint8, or uint16 scaled to 8 bits."""
    def refuse(why: str) -> ImageRejected:
        return ImageRejected("unsupported_mode", f"{source}: rejected (unsupported_mode): array {array.dtype} "
                                                 f"{array.shape}: {why}; pass an RGB uint8 HxWx3 array")
    if array.dtype not in (np.uint8, np.uint16):
        raise refuse("only uint8 or uint16 samples")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)) or 0 in array.shape:
        raise refuse("expected HxW, HxWx1, HxWx3 or HxWx4")
    sixteen = array.dtype == np.uint16
    if sixteen:
        array = np.clip(np.rint(array.astype(np.float64) * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
    if array.ndim == 2:
        return np.ascontiguousarray(np.repeat(array[..., None], 3, axis=2)), "i;16->rgb" if sixteen else "l->rgb"
    if array.shape[2] == 4:
        from PIL import Image

        pixels, _ = to_rgb8(Image.fromarray(np.ascontiguousarray(array), "RGBA"))
        return pixels, "rgba16->rgb" if sixteen else "rgba->rgb"
    return np.ascontiguousarray(array), "rgb16->rgb" if sixteen else ""
