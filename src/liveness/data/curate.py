"""Curation: records -> decoded images/frames -> face -> aligned crop -> quality -> shards + manifest.

The per-record work (``process_chunk``) is a pure function of its inputs, so any runner can fan it out:
in order, a local process pool, or Prefect tasks on threads, processes or a Dask cluster (``pipeline/``).
Results are consumed in record order, so the same inputs and params give byte-identical shards and
manifest whatever the runner. Bad input never stops a run: it becomes a manifest row with a reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from liveness.config import DEFAULT_MAX_PIXELS, QualityParams
from liveness.data.decode import ImageRejected, load_image
from liveness.data.faces import DetectionFailed, Face, FaceDetector, align_and_crop, box_overlap, choose_face, choose_hinted_face
from liveness.data.quality import (
    BLUR_WORKING_SIDE_PX,
    NearDuplicateIndex,
    measure_quality,
    perceptual_hash,
    quality_reasons,
)
from liveness.data.records import SourceRecord
from liveness.data.shards import ShardWriter, write_manifest
from liveness.data.splits import assign_splits, check_disjoint
from liveness.data.video import VideoError, sample_frames

SYNTHETIC_MARKER = "SYNTHETIC.txt"
REASON_SEPARATOR = ";"


@dataclass(frozen=True)
class CurationSettings:
    """Everything the per-record work needs; plain values so it pickles to any worker."""

    kind: str  # "live" (quality filters on) or "spoof" (detection and crop only)
    crop_size: int = 128
    context: float = 2.0
    multi_face: str = "largest"
    dominance: float = 2.0
    database_hint: bool = True
    video_frames: int = 5
    max_pixels: int = DEFAULT_MAX_PIXELS
    detector_device: str = "cpu"
    min_face_size: int = 20
    detect_max_side: int = 304  # DetectionParams.max_side; stage.py passes the params value
    search: str = "coarse_first"  # DetectionParams.detector_search(); stage.py passes it
    torch_threads: int = 1
    thresholds: QualityParams | None = None  # None: no quality filter (spoof sets)


@dataclass
class CropOutcome:
    """One image or video frame: its manifest row and, when a face was cropped, the crop."""

    row: dict[str, Any]
    crop: np.ndarray | None = None

    @property
    def accepted(self) -> bool:
        return not self.row["reject_reason"]


@dataclass
class CurationResult:
    manifest: pd.DataFrame
    rejected_samples: dict[str, list[np.ndarray]] = field(default_factory=dict)
    accepted_samples: list[np.ndarray] = field(default_factory=list)


_DETECTORS: dict[tuple, FaceDetector] = {}


def _detector(settings: CurationSettings) -> FaceDetector:
    """One MTCNN per worker process, built on first use."""
    key = (settings.detector_device, settings.min_face_size, settings.detect_max_side, settings.search,
           settings.dominance)
    if key not in _DETECTORS:
        _DETECTORS[key] = FaceDetector(settings.detector_device, settings.min_face_size, settings.detect_max_side,
                                       search=settings.search, dominance=settings.dominance)
    return _DETECTORS[key]


def _base_row(record: SourceRecord, frame_index: int | None) -> dict[str, Any]:
    return {
        "record_id": record.path if frame_index is None else f"{record.path}#{frame_index}",
        "source": record.source,
        "path": record.path,
        "frame_index": -1 if frame_index is None else int(frame_index),
        "subject": record.subject,
        "label": record.label,
        "species": record.species,
        "split_hint": record.split_hint or "",
        "synthetic": bool(record.extra.get("synthetic", False)),
        "reject_reason": "",
    }


def _rejected(record: SourceRecord, reason: str, detail: str, frame_index: int | None = None) -> CropOutcome:
    row = _base_row(record, frame_index)
    row.update(reject_reason=reason, reject_detail=detail)
    return CropOutcome(row)


def database_box(record: SourceRecord) -> tuple[float, float, float, float] | None:
    """The face box a database ships, or one around the landmarks it ships; None when it ships neither."""
    if record.box is not None:
        return tuple(float(v) for v in record.box)
    if record.landmarks is not None:
        points = np.asarray(record.landmarks, dtype=np.float64)
        margin = np.ptp(points, axis=0).max() * 0.6
        return tuple(float(v) for v in (*(points.min(0) - margin), *(points.max(0) + margin)))
    return None


def _decoded_images(record: SourceRecord, settings: CurationSettings,
                    ) -> Iterator[tuple[int | None, np.ndarray | CropOutcome, str]]:
    """(frame index, RGB image, how it was converted to RGB), or a rejected outcome in place of the image."""
    if record.is_video:
        try:
            frames = sample_frames(record.path, settings.video_frames)
        except VideoError as error:
            yield None, _rejected(record, error.reason, str(error)), ""
            return
        if record.frame_index is not None:
            frames = [(i, frame) for i, frame in frames if i == record.frame_index]
        for frame_index, frame in frames:
            yield frame_index, frame, ""
        return
    try:
        decoded = load_image(record.path, max_pixels=settings.max_pixels)
    except ImageRejected as error:
        yield None, _rejected(record, error.reason, str(error)), ""
        return
    yield None, decoded.pixels, decoded.converted


def _crop_outcome(record: SourceRecord, frame_index: int | None, image: np.ndarray, faces: list[Face],
                  settings: CurationSettings) -> CropOutcome:
    """Crop the chosen detected face the way ``Predictor`` does: every crop of every stage comes from MTCNN's
    landmarks (DESIGN §2.2). A database's own face only says which detected face is the subject."""
    hint = database_box(record) if settings.database_hint else None
    if hint is None:
        face, reason = choose_face(faces, settings.multi_face, settings.dominance)
    else:
        face, reason = choose_hinted_face(faces, hint)
    if face is None:
        outcome = _rejected(record, reason, f"{len(faces)} faces found", frame_index)
        outcome.row["face_count"] = len(faces)
        return outcome
    crop = align_and_crop(image, face, settings.crop_size, settings.context)
    row = _base_row(record, frame_index)
    row["padded_fraction"] = crop.padded_fraction
    row["face_side_px"] = float(face.short_side)
    row["source_side_px"] = float(min(image.shape[:2]))
    row["database_iou"] = float(box_overlap(face.box, hint)) if hint is not None else float("nan")
    if settings.thresholds is not None:
        # Sharpness and exposure are judged on the face alone, cut from the source at the working size, so
        # a small output crop does not make a sharp photo look blurry.
        face_only = align_and_crop(image, face, BLUR_WORKING_SIDE_PX, context=1.0).image
        metrics = measure_quality(face_only, face.landmarks, face.box, image.shape, face.probability, len(faces))
        row.update(metrics)
        reasons = quality_reasons(metrics, settings.thresholds)
        row["reject_reason"] = REASON_SEPARATOR.join(reasons)
        row["phash"] = f"{perceptual_hash(crop.image):016x}"
    else:
        row.update(detection_probability=face.probability, face_count=len(faces))
    return CropOutcome(row, crop.image)


def process_chunk(records: Sequence[SourceRecord], settings: CurationSettings) -> list[CropOutcome]:
    """Decode, detect, align, crop and measure a chunk of records; outcomes in record order.

    Images of one size are detected together, which batches MTCNN on the GPU.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(settings.torch_threads)  # identical float results in every worker and runner
    try:
        return _process_chunk(records, settings)
    finally:
        torch.set_num_threads(threads)


def _process_chunk(records: Sequence[SourceRecord], settings: CurationSettings) -> list[CropOutcome]:
    pending: list[tuple[SourceRecord, int | None, np.ndarray]] = []
    conversions: list[str] = []
    slots: list[CropOutcome | int] = []
    for record in records:
        try:
            decoded = list(_decoded_images(record, settings))
        except Exception as error:  # noqa: BLE001 - a reader bug on one record must not fail the run
            decoded = [(None, _rejected(record, "unreadable", f"{type(error).__name__}: {error}"), "")]
        for frame_index, image, converted in decoded:
            if isinstance(image, CropOutcome):
                slots.append(image)
            else:
                slots.append(len(pending))
                pending.append((record, frame_index, image))
                conversions.append(converted)

    detected: dict[int, list[Face] | DetectionFailed] = {}
    by_shape: dict[tuple, list[int]] = {}
    for i, (_, _, image) in enumerate(pending):
        by_shape.setdefault(image.shape, []).append(i)
    for indices in by_shape.values():
        for i, faces in zip(indices, _detector(settings).detect_batch([pending[i][2] for i in indices]), strict=True):
            detected[i] = faces

    outcomes: list[CropOutcome] = []
    for slot in slots:
        if isinstance(slot, CropOutcome):
            outcomes.append(slot)
            continue
        record, frame_index, image = pending[slot]
        found = detected[slot]
        if isinstance(found, DetectionFailed):
            outcomes.append(_rejected(record, found.reason, str(found), frame_index))
            continue
        try:
            outcome = _crop_outcome(record, frame_index, image, found, settings)
        except Exception as error:  # noqa: BLE001 - one odd image (degenerate landmarks, ...) never fails the run
            outcome = _rejected(record, "crop_failed", f"{type(error).__name__}: {error}", frame_index)
        outcome.row["converted"] = conversions[slot]
        outcomes.append(outcome)
    return outcomes


ChunkMapper = Callable[[Callable[[Sequence[SourceRecord], CurationSettings], list[CropOutcome]],
                        list[list[SourceRecord]], CurationSettings], Iterable[list[CropOutcome]]]


def map_in_order(function, chunks, settings) -> Iterator[list[CropOutcome]]:
    """Run chunks one after another in this process."""
    for chunk in chunks:
        yield function(chunk, settings)


def process_pool_mapper(workers: int) -> ChunkMapper:
    """Run chunks in a local process pool; results come back in submission order."""

    def run(function, chunks, settings):
        with ProcessPoolExecutor(max_workers=workers) as pool:
            yield from pool.map(function, chunks, [settings] * len(chunks))

    return run


def chunked(records: Sequence[SourceRecord], size: int) -> list[list[SourceRecord]]:
    return [list(records[i : i + size]) for i in range(0, len(records), size)]


def is_synthetic_root(root: Path) -> bool:
    """A database root written by the synthetic demo generator carries a SYNTHETIC.txt marker."""
    root = Path(root)
    folder = root if root.is_dir() else root.parent
    return (folder / SYNTHETIC_MARKER).is_file()


def curate(
    records: Sequence[SourceRecord],
    settings: CurationSettings,
    out_dir: Path,
    split_fractions: dict[str, float],
    seed: int,
    shard_size: int = 4096,
    chunk_size: int = 32,
    mapper: ChunkMapper = map_in_order,
    samples_per_reason: int = 8,
    on_chunk: Callable[[int], None] | None = None,
) -> CurationResult:
    """Curate ``records`` into ``out_dir``: ``shards/shard-*.npy`` and ``manifest.parquet``.

    Live sets (settings.thresholds set) also drop near-duplicates, keeping the first in record order.
    Splits are by subject, so no subject crosses a split.
    """
    out_dir = Path(out_dir)
    split_of = assign_splits(sorted({record.subject for record in records}), split_fractions, seed)
    duplicates = NearDuplicateIndex(settings.thresholds.near_duplicate_max_hamming) if settings.thresholds else None
    rows: list[dict[str, Any]] = []
    result = CurationResult(pd.DataFrame())
    for stale in (out_dir / "shards").glob("shard-*.npy"):  # a rerun may write fewer shards than the last run
        stale.unlink()
    with ShardWriter(out_dir / "shards", settings.crop_size, shard_size) as writer:
        for outcomes in mapper(process_chunk, chunked(records, chunk_size), settings):
            for outcome in outcomes:
                row = outcome.row
                if outcome.accepted and duplicates is not None:
                    first = duplicates.add(int(row["phash"], 16), len(rows))
                    if first is not None:
                        row["reject_reason"] = "near_duplicate"
                        row["reject_detail"] = f"near-duplicate of {rows[first]['record_id']}"
                row["split"] = split_of[row["subject"]]
                if outcome.accepted:
                    row["shard"], row["index_in_shard"] = writer.add(outcome.crop)
                    if len(result.accepted_samples) < samples_per_reason * 4:
                        result.accepted_samples.append(outcome.crop)
                else:
                    row["shard"], row["index_in_shard"] = -1, -1
                    first_reason = row["reject_reason"].split(REASON_SEPARATOR)[0]
                    kept = result.rejected_samples.setdefault(first_reason, [])
                    if outcome.crop is not None and len(kept) < samples_per_reason:
                        kept.append(outcome.crop)
                rows.append(row)
            if on_chunk is not None:
                on_chunk(len(outcomes))
    manifest = _manifest_frame(rows)
    check_disjoint(manifest[manifest["reject_reason"] == ""])
    write_manifest(manifest, out_dir / "manifest.parquet")
    result.manifest = manifest
    return result


def _manifest_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    if "reject_detail" not in frame:
        frame["reject_detail"] = ""
    frame["reject_detail"] = frame["reject_detail"].fillna("")
    frame["converted"] = frame["converted"].fillna("") if "converted" in frame else ""
    return frame
