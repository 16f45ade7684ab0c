"""Curation throughput, old against new detection settings: decode + MTCNN + alignment/crop + quality, one run.

Inputs are real photos written as JPEG files so decoding counts too: scikit-image's astronaut and cameraman
(one face each) and its cat (no human face), each scaled and placed at random (seeded) in a grey frame of
every requested size, so faces of many sizes occur and some images are rightly rejected. ``old`` is the
detection before issue 11 (min_face_size 20, max_side 640); ``new`` is DetectionParams' defaults. Both run on
the same images, interleaved (old new new old), on one core and on a process pool (one torch thread per
worker, as the curate stage runs; the pool is started and warmed once, outside the timings). Prints one JSON
object: images/s per setting, the ratio new / old, how many images are accepted by one setting and rejected
by the other (``outcomes_differ``), and how many got another ``reject_reason`` (``reasons_differ``: a face box
a pixel larger can drop one of several reasons, or a borderline quality check can flip). ``face_side_error``
says whether such a flip is a worse face size or noise at a threshold: each setting's relative error of the face
size against the face's true size in the photo, for faces of 35-70 px (untimed, on more photos).
``outcome_repeatability`` gives the floor for ``outcomes_differ``: on those faces, how often the small_face
decision flips between the old and new settings, and how often it flips for one setting when the same photo is
moved by one pixel or saved as JPEG (untimed).

Target: new at least 2x old on all cores at 640x480, with 0 outcomes differing.

    python bench/curate_throughput.py [--images 48] [--sizes 640x480 1024x1024] [--workers 2]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch
from skimage import data

from liveness.config import DetectionParams
from liveness.data.curate import CurationSettings, chunked, process_chunk
from liveness.data.faces import FaceDetector, choose_face, smallest_face_px
from liveness.config import QualityParams
from liveness.data.records import LIVE, SPECIES_LIVE, SourceRecord

OLD_DETECTION = {"min_face_size": 20, "detect_max_side": 640, "search": "full"}  # before issue 11
TARGET = {"size": "640x480", "min_ratio_all_cores": 2.0, "outcomes_differ": 0}
CHUNK_SIZE = 8


def sources() -> list[np.ndarray]:
    """Real photos: two with one face each, one without a human face."""
    return [data.astronaut(), cv2.cvtColor(data.camera(), cv2.COLOR_GRAY2RGB), data.chelsea()]


def photo_scale(width: int, height: int, index: int) -> float:
    """How much photo ``index % 3`` is scaled in photo ``index``: 35-100% of the largest fit, seeded."""
    source = sources()[index % 3]
    return min(width / source.shape[1], height / source.shape[0]) * np.random.default_rng(index).uniform(0.35, 1.0)


def photo(width: int, height: int, index: int) -> np.ndarray:
    """Photo ``index % 3`` scaled by ``photo_scale`` and placed at a seeded spot in a grey frame."""
    rng = np.random.default_rng(index)
    source = sources()[index % 3]
    fit = min(width / source.shape[1], height / source.shape[0]) * rng.uniform(0.35, 1.0)
    resized = cv2.resize(source, (max(1, round(source.shape[1] * fit)), max(1, round(source.shape[0] * fit))),
                         interpolation=cv2.INTER_AREA if fit < 1 else cv2.INTER_CUBIC)
    canvas = np.full((height, width, 3), 110, np.uint8)
    top = int(rng.integers(0, height - resized.shape[0] + 1))
    left = int(rng.integers(0, width - resized.shape[1] + 1))
    canvas[top : top + resized.shape[0], left : left + resized.shape[1]] = resized
    return canvas


def write_photos(folder: Path, width: int, height: int, count: int) -> list[SourceRecord]:
    records = []
    for index in range(count):
        path = folder / f"{width}x{height}_{index:04d}.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(photo(width, height, index), cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
        records.append(SourceRecord("bench", str(path), f"s{index}", LIVE, SPECIES_LIVE))
    return records


def settings_pair(device: str = "cpu", torch_threads: int = 1) -> dict[str, CurationSettings]:
    new = DetectionParams()
    common = dict(kind="live", crop_size=128, thresholds=QualityParams(near_duplicate_max_hamming=0),
                  detector_device=device, torch_threads=torch_threads)
    return {"old": CurationSettings(**common, **OLD_DETECTION),
            "new": CurationSettings(**common, min_face_size=new.min_face_size, detect_max_side=new.max_side,
                                    search=new.detector_search(), dominance=new.dominance)}


def detectors_for(settings: dict[str, CurationSettings]) -> dict[str, FaceDetector]:
    """The CPU detector each curation setting builds."""
    return {name: FaceDetector("cpu", one.min_face_size, one.detect_max_side, search=one.search,
                               dominance=one.dominance) for name, one in settings.items()}


def _warm(records: list[SourceRecord], settings: list[CurationSettings]) -> None:
    """Pool initializer: load each setting's MTCNN in this worker before anything is timed."""
    for one in settings:
        process_chunk(records, one)


def timed(records: list[SourceRecord], settings: CurationSettings, pool: ProcessPoolExecutor | None,
          chunk_size: int = CHUNK_SIZE) -> tuple[float, list[str]]:
    """(seconds, reject reason per record) for one pass over ``records``."""
    chunks = chunked(records, chunk_size)
    started = time.perf_counter()
    if pool is None:
        outcomes = [outcome for chunk in chunks for outcome in process_chunk(chunk, settings)]
    else:
        outcomes = [outcome for result in pool.map(process_chunk, chunks, [settings] * len(chunks))
                    for outcome in result]
    return time.perf_counter() - started, [outcome.row["reject_reason"] for outcome in outcomes]


def compare(records: list[SourceRecord], settings: dict[str, CurationSettings], pool: ProcessPoolExecutor | None,
            rounds: int, chunk_size: int = CHUNK_SIZE) -> dict:
    """Images/s of each setting over ``rounds`` ABBA-ordered passes, their ratio and the outcome differences."""
    seconds = {name: 0.0 for name in settings}
    reasons: dict[str, list[str]] = {}
    names = list(settings)
    for round_index in range(rounds):
        for name in names if round_index % 2 == 0 else names[::-1]:
            elapsed, reasons[name] = timed(records, settings[name], pool, chunk_size)
            seconds[name] += elapsed
    rates = {name: round(len(records) * rounds / seconds[name], 2) for name in names}
    return {"img_s": rates, "ratio": round(rates["new"] / rates["old"], 3),
            "accepted": {name: sum(not reason for reason in reasons[name]) for name in names},
            "outcomes_differ": sum(bool(a) != bool(b) for a, b in zip(reasons["old"], reasons["new"])),
            "reasons_differ": sum(a != b for a, b in zip(reasons["old"], reasons["new"]))}


@functools.cache
def face_side_in_source(source_index: int) -> float:
    """The short side of the face in source photo ``source_index`` (0 or 1), as MTCNN finds it at full
    resolution (max_side 1024, full search)."""
    return choose_face(FaceDetector("cpu", 20, 1024, search="full").detect(sources()[source_index]))[0].short_side


def face_side_error(width: int, height: int, count: int, settings: dict[str, CurationSettings]) -> dict:
    """How far each setting's face size (the chosen face's shorter side, which the small_face check reads) is from
    the face's size in the photo: the face MTCNN finds in the full-resolution source (max_side 1024, full search)
    times the photo's scale. Over the photos with a human face whose face is 35-70 px (near quality.min_face_px,
    where a size error flips the small_face check) and found by every setting: mean, mean absolute and 90th
    percentile absolute relative error."""
    detectors = detectors_for(settings)
    errors: dict[str, list[float]] = {name: [] for name in settings}
    for index in range(count):
        if index % 3 == 2:  # the cat
            continue
        expected = face_side_in_source(index % 3) * photo_scale(width, height, index)
        if not 35 <= expected <= 70:
            continue
        image = photo(width, height, index)
        found = {name: choose_face(detector.detect(image))[0] for name, detector in detectors.items()}
        if all(face is not None for face in found.values()):
            for name, face in found.items():
                errors[name].append(face.short_side / expected - 1)
    return {name: {"faces": len(values), "mean": round(float(np.mean(values)), 4),
                   "mean_abs": round(float(np.mean(np.abs(values))), 4),
                   "p90_abs": round(float(np.percentile(np.abs(values), 90)), 4)} if values else {"faces": 0}
            for name, values in errors.items()}


SHIFT_GREY = 110  # photo()'s frame colour, for the column a one-pixel shift brings in


def variants(image: np.ndarray) -> dict[str, np.ndarray]:
    """The photo, the photo moved right by one pixel, and the photo after a JPEG save (quality 90)."""
    shifted = np.concatenate([np.full_like(image[:, :1], SHIFT_GREY), image[:, :-1]], axis=1)
    encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
    return {"photo": image, "shifted_1px": shifted,
            "jpeg_saved": cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)}


def outcome_repeatability(width: int, height: int, count: int, detectors: dict[str, FaceDetector],
                          min_face_px: float) -> dict:
    """How repeatable the small_face decision (chosen face's shorter side >= min_face_px) is, on the photos
    face_side_error uses (a human face of 35-70 px, found in every variant by every detector): the decisions
    that differ between ``old`` and ``new`` on the photo, and, per setting, between the photo and the same photo
    moved by one pixel or saved as JPEG. A faster detector cannot be expected to agree with the old one more
    often than the old one agrees with itself. Also the mean absolute relative change of the face size."""
    pairs = {"old_vs_new": (("old", "photo"), ("new", "photo"))}
    for name in detectors:
        for variant in ("shifted_1px", "jpeg_saved"):
            pairs[f"{name}_vs_{name}_{variant}"] = ((name, "photo"), (name, variant))
    flips = dict.fromkeys(pairs, 0)
    changes: dict[str, list[float]] = {pair: [] for pair in pairs}
    faces = 0
    for index in range(count):
        if index % 3 == 2:  # the cat
            continue
        if not 35 <= face_side_in_source(index % 3) * photo_scale(width, height, index) <= 70:
            continue
        sides = {}
        for variant, image in variants(photo(width, height, index)).items():
            for name, detector in detectors.items():
                face = choose_face(detector.detect(image))[0]
                sides[name, variant] = None if face is None else face.short_side
        if any(side is None for side in sides.values()):
            continue
        faces += 1
        for pair, (first, second) in pairs.items():
            flips[pair] += (sides[first] >= min_face_px) != (sides[second] >= min_face_px)
            changes[pair].append(abs(sides[second] / sides[first] - 1))
    return {"faces": faces, "min_face_px": min_face_px, "small_face_flips": flips,
            "side_change_mean_abs": {pair: round(float(np.mean(values)), 4) if values else None
                                     for pair, values in changes.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48, help="photos per size")
    parser.add_argument("--sizes", nargs="+", default=["640x480", "1024x1024"], help="WIDTHxHEIGHT of the photos")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="processes for the all-cores figure")
    parser.add_argument("--rounds", type=int, default=2, help="timed passes per setting (ABBA order)")
    parser.add_argument("--size-error-photos", type=int, default=300,
                        help="photos per size for face_side_error and outcome_repeatability (untimed; 0: leave "
                             "them out)")
    arguments = parser.parse_args()
    cpu = settings_pair()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as folder:
        for size in arguments.sizes:
            width, height = (int(v) for v in size.split("x"))
            records = write_photos(Path(folder), width, height, arguments.images)
            with ProcessPoolExecutor(arguments.workers, initializer=_warm,
                                     initargs=(records[:2], list(cpu.values()))) as pool:
                # the workers start (and warm up) now, before this process runs torch for the one-core figures
                list(pool.map(_warm, [records[:1]] * arguments.workers, [list(cpu.values())] * arguments.workers))
                _warm(records[:2], list(cpu.values()))
                figures = {"one_core": compare(records, cpu, None, arguments.rounds),
                           f"all_cores ({arguments.workers} processes)": compare(records, cpu, pool, arguments.rounds)}
            if torch.cuda.is_available():
                gpu = settings_pair("cuda", 4)
                _warm(records[:8], list(gpu.values()))
                figures["gpu"] = compare(records, gpu, None, arguments.rounds, chunk_size=32)
            if arguments.size_error_photos > 0:
                figures["face_side_error"] = face_side_error(width, height, arguments.size_error_photos, cpu)
                figures["outcome_repeatability"] = outcome_repeatability(
                    width, height, arguments.size_error_photos, detectors_for(cpu), QualityParams().min_face_px)
            figures["smallest_face_px"] = {
                name: round(smallest_face_px(width, height, one.min_face_size, one.detect_max_side), 1)
                for name, one in cpu.items()}
            results[size] = figures
    all_cores = f"all_cores ({arguments.workers} processes)"
    target = results.get(TARGET["size"], {}).get(all_cores)
    print(json.dumps({
        "work": "decode JPEG + MTCNN detect + 5-point alignment + 128 px crop with context + quality metrics",
        "settings": {name: {"min_face_size": one.min_face_size, "max_side": one.detect_max_side,
                            "search": one.search}
                     for name, one in cpu.items()},
        "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "images_per_size": arguments.images,
        "rounds": arguments.rounds,
        "results": results,
        "target": TARGET,
        "target_met": bool(target) and target["ratio"] >= TARGET["min_ratio_all_cores"]
        and target["outcomes_differ"] == TARGET["outcomes_differ"],
    }, indent=1))


if __name__ == "__main__":
    main()
