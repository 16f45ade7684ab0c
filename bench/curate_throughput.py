"""Curation throughput: decode + MTCNN detection + alignment/crop + quality, on real-size photos.

Inputs are scikit-image's astronaut (a real photo) padded to 640x480 and rescaled to 1024x1024, written as
JPEG files so decoding counts too. Prints one JSON object with images/s on one core, on all cores (a process
pool, one torch thread per worker, as the curate stage runs), and on the GPU when one is present.
Target: at least 20 img/s on 2 CPU cores for 640x480 input.

    python bench/curate_throughput.py [--images 48] [--sizes 640x480 1024x1024]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from skimage import data

from liveness.data.curate import CurationSettings, chunked, process_chunk, process_pool_mapper
from liveness.data.quality import QualityThresholds
from liveness.data.records import LIVE, SPECIES_LIVE, SourceRecord


def photo(width: int, height: int) -> np.ndarray:
    """The astronaut fitted into a width x height frame (letterboxed with a grey border)."""
    face = data.astronaut()
    scale = min(width / face.shape[1], height / face.shape[0])
    resized = cv2.resize(face, (round(face.shape[1] * scale), round(face.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    canvas = np.full((height, width, 3), 110, np.uint8)
    top, left = (height - resized.shape[0]) // 2, (width - resized.shape[1]) // 2
    canvas[top : top + resized.shape[0], left : left + resized.shape[1]] = resized
    return canvas


def write_photos(folder: Path, width: int, height: int, count: int) -> list[SourceRecord]:
    image = cv2.cvtColor(photo(width, height), cv2.COLOR_RGB2BGR)
    records = []
    for index in range(count):
        path = folder / f"{width}x{height}_{index:04d}.jpg"
        cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        records.append(SourceRecord("bench", str(path), f"s{index}", LIVE, SPECIES_LIVE))
    return records


def time_run(records, settings, mapper=None, chunk_size: int = 8) -> float:
    chunks = chunked(records, chunk_size)
    started = time.perf_counter()
    if mapper is None:
        outcomes = [outcome for chunk in chunks for outcome in process_chunk(chunk, settings)]
    else:
        outcomes = [outcome for result in mapper(process_chunk, chunks, settings) for outcome in result]
    seconds = time.perf_counter() - started
    accepted = sum(outcome.accepted for outcome in outcomes)
    if accepted != len(records):
        print(f"warning: {len(records) - accepted} of {len(records)} bench photos were rejected", file=sys.stderr)
    return len(records) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48, help="photos per size and setting")
    parser.add_argument("--sizes", nargs="+", default=["640x480", "1024x1024"], help="WIDTHxHEIGHT of the photos")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="processes for the all-cores figure")
    arguments = parser.parse_args()
    cpu = CurationSettings(kind="live", crop_size=128, thresholds=QualityThresholds(near_duplicate_max_hamming=0),
                           torch_threads=1)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as folder:
        for size in arguments.sizes:
            width, height = (int(v) for v in size.split("x"))
            records = write_photos(Path(folder), width, height, arguments.images)
            time_run(records[:4], cpu)  # warm-up: MTCNN weights, allocator
            figures = {
                "one_core_img_s": round(time_run(records, cpu), 2),
                f"all_cores_img_s ({arguments.workers} processes)": round(
                    time_run(records, cpu, process_pool_mapper(arguments.workers)), 2),
            }
            if torch.cuda.is_available():
                gpu = CurationSettings(kind="live", crop_size=128, thresholds=cpu.thresholds,
                                       detector_device="cuda", torch_threads=4)
                time_run(records[:8], gpu, chunk_size=32)
                figures["gpu_img_s"] = round(time_run(records, gpu, chunk_size=32), 2)
            results[size] = figures
    print(json.dumps({
        "work": "decode JPEG + MTCNN detect + 5-point alignment + 128 px crop with context + quality metrics",
        "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "images_per_setting": arguments.images,
        "results": results,
        "target": "640x480 all cores >= 20 img/s on 2 CPU cores",
    }, indent=1))


if __name__ == "__main__":
    main()
