"""Writes the SYNTHETIC demo dataset in the on-disk layouts of CelebA (live) and CelebA-Spoof (live + attacks).

The real adapters read it as they would the real databases, so the whole pipeline runs with no download.
Every root carries a ``SYNTHETIC.txt`` marker whose first line is ``SYNTHETIC`` so that manifests, reports
and model cards built from it say so. Output is a pure function of the parameters: each identity and each
image has its own random stream, and the folder is built aside and renamed into place in one step.

Live captures of both databases come from ONE process (``_live_capture``: the same renderer, camera, size
and stream layout) and every image of both is written by ONE encoder call (``_encode``: JPEG quality 95), so
nothing but the attacks tells the CelebA-Spoof live images from the CelebA ones: no format or pipeline
shortcut. ``workers`` renders identities in a process pool; the bytes written are the same as sequentially.
They are the same on another machine with the same packages too: rendering keeps off the code paths whose
rounding depends on the CPU (see ``portable``), and ``tests/fixtures/demo_digest.json`` holds the digest of the
default demo set that a test checks.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import cv2
import numpy as np
from rich.progress import Progress

from liveness.data.records import CELEBA_SPOOF_SPECIES
from liveness.data.synthetic.attacks import (
    Attack,
    simulate_cut_photo,
    simulate_mask_face,
    simulate_print,
    simulate_replay,
)
from liveness.data.synthetic.faces import Box, IdentityTraits, clip_box, face_box, identity_traits, render_face
from liveness.data.synthetic.portable import baseline_opencv

GENERATOR_VERSION = 3  # bump when the bytes written change, so existing folders are regenerated
MARKER = "SYNTHETIC.txt"
LANDMARK_HEADER = (
    "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y"
)
SPOOF_LABEL_LENGTH = 44
SPOOF_TYPE_INDEX = 40
LIVENESS_INDEX = 43
BB_SIZE = 224  # CelebA-Spoof's *_BB.txt boxes are in the image resized to 224 x 224
JPEG_QUALITY = 95  # every image of both databases, live and attack, is written with this one encoder setting
_STREAM_LIVE, _STREAM_SPOOF_LIVE, _STREAM_ATTACK = 1, 2, 3
_PARTITIONS = ("train", "val", "test")
Species = Callable[[IdentityTraits, np.random.Generator, tuple[int, int]], tuple[np.ndarray, Box]]


def _recaptured(attack: Attack, traits: IdentityTraits, rng: np.random.Generator,
                size: tuple[int, int]) -> tuple[np.ndarray, Box]:
    """A recapture attack on a live capture drawn from the same ``rng``, over a new scene."""
    live, points = render_face(traits, rng, size)
    return attack(live, points, rng, None)


# CelebA-Spoof type codes of the simulated species, and what makes one attack image of each from an identity.
ATTACK_SPECIES: tuple[tuple[int, Species], ...] = (
    (3, partial(_recaptured, simulate_print)),
    (7, partial(_recaptured, simulate_replay)),
    (6, partial(_recaptured, simulate_cut_photo)),
    (4, simulate_mask_face),
)


def generate_demo_dataset(out_dir: Path, *, seed: int = 0, identities_live: int = 40, images_per_identity: int = 6,
                          identities_spoof: int = 12, live_per_spoof_subject: int = 4, attacks_per_species: int = 4,
                          size: int = 128, progress: bool = False, workers: int = 1) -> dict:
    """Write (or find already written) the demo set under ``out_dir``; returns a summary with counts.

    ``out_dir/celeba`` holds ``identities_live`` identities in CelebA's aligned layout; ``out_dir/celeba_spoof``
    holds ``identities_spoof`` other identities, each with live captures and ``attacks_per_species`` print,
    screen-replay, cut-photo and paper-mask attacks, in CelebA-Spoof's layout. Rerunning with the same
    parameters is a no-op. ``workers`` > 1 renders identities in that many processes; the files are
    byte-identical to a sequential run, so it is not a generation parameter (not in the marker). The pool
    spawns fresh interpreters, so a script calling this with ``workers`` > 1 needs the usual
    ``if __name__ == "__main__":`` guard (console scripts and ``python -m`` entry points have one).
    """
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    out_dir = Path(out_dir)
    params = {
        "generator_version": GENERATOR_VERSION, "seed": seed, "identities_live": identities_live,
        "images_per_identity": images_per_identity, "identities_spoof": identities_spoof,
        "live_per_spoof_subject": live_per_spoof_subject, "attacks_per_species": attacks_per_species, "size": size,
    }
    _validate(params)
    summary = _summary(params, out_dir)
    found = read_marker(out_dir)
    if found == params:
        return {**summary, "skipped": True}
    if found is None and out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} exists, is not empty and has no {MARKER}; refusing to overwrite it")
    staging = out_dir.with_suffix(f".tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with _progress(progress, summary["images"]) as advance, baseline_opencv():
            _write_celeba(staging / "celeba", params, advance, workers)
            _write_celeba_spoof(staging / "celeba_spoof", params, advance, workers)
        for root in (staging, staging / "celeba", staging / "celeba_spoof"):
            (root / MARKER).write_text(_marker_text(params))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # an interrupted run leaves nothing half-written behind
        raise
    _swap_into_place(staging, out_dir)
    return {**summary, "skipped": False}


def read_marker(root: Path) -> dict | None:
    """The generation params recorded in ``root/SYNTHETIC.txt``, or None when there is no valid marker."""
    path = Path(root) / MARKER
    if not path.is_file():
        return None
    lines = path.read_text().splitlines()
    if not lines or lines[0] != "SYNTHETIC":
        return None
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError:
        return None


def tree_digest(root: Path) -> dict:
    """File count, total bytes and one sha256 of a folder, over its sorted (relative path, file sha256) pairs.

    Two folders with the same bytes at the same paths have the same digest, on any machine.
    """
    root = Path(root)
    files = sorted((path.relative_to(root).as_posix(), path) for path in root.rglob("*") if path.is_file())
    summary, size = hashlib.sha256(), 0
    for name, path in files:
        data = path.read_bytes()
        size += len(data)
        summary.update(f"{name} {hashlib.sha256(data).hexdigest()}\n".encode())
    return {"files": len(files), "bytes": size, "sha256": summary.hexdigest()}


def _validate(params: dict) -> None:
    for key, value in params.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{key} must be a non-negative integer, got {value!r}")
    if params["size"] < 32:
        raise ValueError(f"size must be at least 32 pixels, got {params['size']}")


def _summary(params: dict, out_dir: Path) -> dict:
    """Counts implied by the params (the same whether the folder was just written or found)."""
    live_ids, spoof_ids = params["identities_live"], params["identities_spoof"]
    partitions = [_partition(index) for index in range(live_ids)]
    celeba_images = live_ids * params["images_per_identity"]
    spoof_live = spoof_ids * params["live_per_spoof_subject"]
    per_species = spoof_ids * params["attacks_per_species"]
    return {
        "out_dir": str(out_dir),
        "synthetic": True,
        "params": dict(params),
        "celeba": {
            "root": str(out_dir / "celeba"),
            "identities": live_ids,
            "images": celeba_images,
            "partition_identities": {name: partitions.count(code) for code, name in enumerate(_PARTITIONS)},
        },
        "celeba_spoof": {
            "root": str(out_dir / "celeba_spoof"),
            "subjects": spoof_ids,
            "live": spoof_live,
            "spoof": per_species * len(ATTACK_SPECIES),
            "species": {CELEBA_SPOOF_SPECIES[code]: per_species for code, _ in ATTACK_SPECIES},
        },
        "images": celeba_images + spoof_live + per_species * len(ATTACK_SPECIES),
    }


def _partition(identity_index: int) -> int:
    """0 train / 1 val / 2 test by identity, 80/10/10, stable however many identities there are."""
    return {8: 1, 9: 2}.get(identity_index % 10, 0)


def _marker_text(params: dict) -> str:
    return (
        "SYNTHETIC\n"
        "Procedurally generated demo data from liveness.data.synthetic: drawn faces of invented identities and\n"
        "simulated presentation attacks (print, screen replay, cut photo, paper face mask). No real person is\n"
        "depicted. Results computed on this data are synthetic and must be labelled so; they say nothing about\n"
        "real faces.\n"
        "generation params (JSON):\n"
        f"{json.dumps(params, sort_keys=True)}\n"
    )


@contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Callable[[int], None]]:
    """A callback that advances a rich progress bar by a number of images (a no-op bar when disabled)."""
    with Progress(disable=not enabled) as bar:
        task = bar.add_task("synthetic demo images", total=total)
        yield lambda count: bar.advance(task, count)


def _image_rng(seed: int, stream: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream, *keys])


def _live_capture(seed: int, stream: int, identity: int, shot: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The one live capture process of BOTH databases: renderer, camera, size; only the stream key differs."""
    return render_face(identity_traits(seed, identity), _image_rng(seed, stream, identity, shot), (size, size))


def _in_order(render: Callable[[int], list], identities: Iterable[int], workers: int) -> Iterator[list]:
    """``render(identity)`` for each identity, in order; in a pool of ``workers`` spawned processes if > 1."""
    if workers == 1:
        yield from map(render, identities)
        return
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_pool_worker_setup)
    try:
        yield from pool.map(render, identities)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _pool_worker_setup() -> None:
    """Pool workers keep OpenCV to one thread each (the pool is the parallelism; results do not depend on it)
    and on its plain code paths for good, as ``baseline_opencv`` does in the calling process."""
    cv2.setNumThreads(1)
    cv2.setUseOptimized(False)


# --------------------------------------------------------------------------------------------------------- CelebA


def _celeba_identity(params: dict, identity: int) -> list[tuple[bytes, np.ndarray]]:
    """(encoded image, landmarks) of each shot of one live-database identity."""
    shots = []
    for shot in range(params["images_per_identity"]):
        image, points = _live_capture(params["seed"], _STREAM_LIVE, identity, shot, params["size"])
        shots.append((_encode(image), points))
    return shots


def _write_celeba(root: Path, params: dict, advance: Callable[[int], None], workers: int = 1) -> None:
    """img_align_celeba/NNNNNN.jpg plus identity, landmark and partition lists, numbered from 1."""
    images = root / "img_align_celeba"
    images.mkdir(parents=True)
    identities, landmarks, partitions = [], [], []
    number = 0
    rendered = _in_order(partial(_celeba_identity, params), range(params["identities_live"]), workers)
    for identity, shots in enumerate(rendered):
        for encoded, points in shots:
            number += 1
            name = f"{number:06d}.jpg"
            (images / name).write_bytes(encoded)
            identities.append(f"{name} {identity + 1}")
            landmarks.append(name + " " + "".join(f"{v:5d}" for v in np.rint(points).astype(int).ravel()))
            partitions.append(f"{name} {_partition(identity)}")
        advance(len(shots))
    (root / "identity_CelebA.txt").write_text(_lines(identities))
    (root / "list_landmarks_align_celeba.txt").write_text(_lines([str(number), LANDMARK_HEADER, *landmarks]))
    (root / "list_eval_partition.txt").write_text(_lines(partitions))


# ---------------------------------------------------------------------------------------------------- CelebA-Spoof


def _celeba_spoof_identity(params: dict, identity: int) -> list[tuple[int, bytes, str]]:
    """(spoof type code, encoded image, _BB.txt line) of each live capture, then each attack, of one subject."""
    seed, size = params["seed"], params["size"]
    images = []
    for shot in range(params["live_per_spoof_subject"]):
        image, points = _live_capture(seed, _STREAM_SPOOF_LIVE, identity, shot, size)
        images.append((0, _encode(image), _bb_line(clip_box(face_box(points), size, size), size, size)))
    traits = identity_traits(seed, identity)
    for code, make in ATTACK_SPECIES:
        for shot in range(params["attacks_per_species"]):
            image, box = make(traits, _image_rng(seed, _STREAM_ATTACK, code, identity, shot), (size, size))
            images.append((code, _encode(image), _bb_line(box, image.shape[1], image.shape[0])))
    return images


def _write_celeba_spoof(root: Path, params: dict, advance: Callable[[int], None], workers: int = 1) -> None:
    """Data/test/<subject>/{live,spoof}/NNNNNN.jpg with NNNNNN_BB.txt beside each, and the label JSON."""
    labels: dict[str, list[int]] = {}
    number = 0
    first = params["identities_live"]  # spoof subjects take the indices after the live ones: disjoint identities
    subjects = range(first, first + params["identities_spoof"])
    for identity, images in zip(subjects, _in_order(partial(_celeba_spoof_identity, params), subjects, workers)):
        subject = root / "Data" / "test" / str(identity + 1)
        for code, encoded, bb_line in images:
            number += 1
            key = _write_spoof_image(subject / ("spoof" if code else "live"), number, encoded, bb_line, root)
            labels[key] = _label(code)
        advance(len(images))
    metas = root / "metas" / "intra_test"
    metas.mkdir(parents=True)
    (metas / "test_label.json").write_text(json.dumps(labels, sort_keys=True) + "\n")
    (metas / "train_label.json").write_text("{}\n")


def _write_spoof_image(folder: Path, number: int, encoded: bytes, bb_line: str, root: Path) -> str:
    """Write NNNNNN.jpg and NNNNNN_BB.txt; return the image path relative to ``root`` (the label key)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{number:06d}.jpg"
    path.write_bytes(encoded)
    (folder / f"{number:06d}_BB.txt").write_text(bb_line)
    return path.relative_to(root).as_posix()


def _bb_line(box: tuple[float, ...], width: int, height: int) -> str:
    """``x y w h score`` with the box rescaled to the 224 x 224 frame CelebA-Spoof's boxes refer to."""
    x1, y1, x2, y2 = box
    sx, sy = BB_SIZE / width, BB_SIZE / height
    x, y = round(x1 * sx), round(y1 * sy)
    return f"{x} {y} {round(x2 * sx) - x} {round(y2 * sy) - y} 0.99\n"


def _label(spoof_type: int) -> list[int]:
    label = [0] * SPOOF_LABEL_LENGTH
    label[SPOOF_TYPE_INDEX] = spoof_type
    label[LIVENESS_INDEX] = int(spoof_type != 0)
    return label


# ---------------------------------------------------------------------------------------------------------- files


def _encode(image: np.ndarray) -> bytes:
    """The one encoder call of both databases: a uint8 RGB image as JPEG at ``JPEG_QUALITY`` (OpenCV's 4:2:0)."""
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("could not encode a JPEG image")
    return encoded.tobytes()


def _lines(lines: list[str]) -> str:
    return "".join(f"{line}\n" for line in lines)


def _swap_into_place(staging: Path, out_dir: Path) -> None:
    """Rename the finished folder into place; a stale generated folder is moved aside first, then removed."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    if out_dir.exists():
        stale = out_dir.with_suffix(f".old-{os.getpid()}")
        os.replace(out_dir, stale)
        os.replace(staging, out_dir)
        shutil.rmtree(stale)
    else:
        os.replace(staging, out_dir)
