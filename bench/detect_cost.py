"""Where one face detection's time goes, and what the levers left for serving (issue 11, item 4) would buy.

Runs ``FaceDetector`` with DetectionParams' defaults on one core (one torch thread, as a serving worker) over
scikit-image's astronaut (512x512, the serve_load payload) and prints one JSON object:

- ``ms_per_detection``: each variant's mean, timed interleaved call by call in this one process (the machine's
  speed drifts by up to 15% within minutes, so only these ratios are worth comparing):
  ``default`` (the coarse-first search, which stops at the coarse levels on the astronaut's dominant face);
  ``full_search``, the default settings with search="full" (every pyramid level, as before the coarse-first
  search; the same face here); ``max_side_<N>``, a smaller detection copy (faces down to
  min_face_size * 512 / N source px: fewer faces looked for, so not the same search); ``min_face_size_<M>``, a
  pyramid that starts at faces of M px of the copy (other scales than the default's, so the box moves); and,
  with ``--onnx``, ``onnxruntime_nets``, P-Net, R-Net and O-Net exported to ONNX (legacy exporter) and run by
  onnxruntime with one thread, everything else equal.
- ``ratio_to_default`` for each variant, and whether it found the same face (``same_faces``: equal boxes
  after the detector's 1/8 px rounding).
- ``cost_share``: the default's time split by cProfile into the networks' convolutions, pooling, PReLU and
  linear layers, OpenCV resizes (detection copy, pyramid levels, refining crops), NMS, and the rest (Python
  box arithmetic and tensor glue).

    .venv/bin/python bench/detect_cost.py [--repeats 150] [--max-side 244] [--min-face-size 40] [--onnx]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from skimage.data import astronaut

from liveness.config import DetectionParams
from liveness.data.faces import FaceDetector

COST_GROUPS = {"conv2d": "convolution", "max_pool2d": "pooling", "prelu": "prelu", "linear": "linear",
               "resize": "opencv_resize", "nms": "nms"}


def default_detector(**overrides) -> FaceDetector:
    params = DetectionParams()
    settings = {"min_face_size": params.min_face_size, "max_side": params.max_side,
                "search": params.detector_search(), "dominance": params.dominance} | overrides
    return FaceDetector("cpu", **settings)


class OnnxNet:
    """One MTCNN network exported to ONNX and run by onnxruntime; called like the torch module."""

    def __init__(self, net: torch.nn.Module, example: tuple[int, ...], outputs: int, folder: Path, name: str,
                 spatial: bool) -> None:
        import onnxruntime

        path = folder / f"{name}.onnx"
        names = [f"out{k}" for k in range(outputs)]
        axes = {0: "n", 2: "h", 3: "w"} if spatial else {0: "n"}
        torch.onnx.export(net, torch.zeros(example), str(path), dynamo=False, input_names=["x"],
                          output_names=names, dynamic_axes={"x": axes}, opset_version=17)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.session.run(None, {"x": np.ascontiguousarray(pixels.numpy())})
        return tuple(torch.from_numpy(output) for output in outputs)


def onnx_detector(folder: Path) -> FaceDetector:
    detector = default_detector()
    mtcnn = detector._mtcnn
    mtcnn.pnet = OnnxNet(mtcnn.pnet, (1, 3, 50, 50), 2, folder, "pnet", spatial=True)
    mtcnn.rnet = OnnxNet(mtcnn.rnet, (2, 3, 24, 24), 2, folder, "rnet", spatial=False)
    mtcnn.onet = OnnxNet(mtcnn.onet, (2, 3, 48, 48), 3, folder, "onet", spatial=False)
    return detector


def cost_share(detector: FaceDetector, image: np.ndarray, repeats: int) -> dict[str, float]:
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(repeats):
        detector.detect(image)
    profile.disable()
    stats = pstats.Stats(profile).stats  # {(file, line, name): (calls, primitive, tottime, cumtime, callers)}
    seconds: dict[str, float] = defaultdict(float)
    for (_, _, name), (_, _, own_time, _, _) in stats.items():
        group = next((label for key, label in COST_GROUPS.items() if key in name), "other")
        seconds[group] += own_time
    total = sum(seconds.values())
    return {group: round(value / total, 4) for group, value in sorted(seconds.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=150, help="timed detections per variant")
    parser.add_argument("--max-side", type=int, default=244, help="the smaller detection copy's longer side")
    parser.add_argument("--min-face-size", type=int, default=40, help="the coarser search's smallest face (copy px)")
    parser.add_argument("--onnx", action="store_true", help="also time the networks in onnxruntime")
    args = parser.parse_args()
    torch.set_num_threads(1)
    image = astronaut()
    with tempfile.TemporaryDirectory() as folder:
        variants = {"default": default_detector(), "full_search": default_detector(search="full"),
                    f"max_side_{args.max_side}": default_detector(max_side=args.max_side),
                    f"min_face_size_{args.min_face_size}": default_detector(min_face_size=args.min_face_size)}
        if args.onnx:
            variants["onnxruntime_nets"] = onnx_detector(Path(folder))
        found = {name: [face.box for face in detector.detect(image)] for name, detector in variants.items()}
        seconds = dict.fromkeys(variants, 0.0)
        for _ in range(args.repeats):
            for name, detector in variants.items():
                start = time.perf_counter()
                detector.detect(image)
                seconds[name] += time.perf_counter() - start
        shares = cost_share(variants["default"], image, max(1, args.repeats // 3))
    defaults = DetectionParams()
    ms = {name: round(value / args.repeats * 1000, 3) for name, value in seconds.items()}
    print(json.dumps({
        "image": "astronaut 512x512", "torch_threads": 1, "repeats": args.repeats,
        "default_settings": {"min_face_size": defaults.min_face_size, "max_side": defaults.max_side,
                             "search": defaults.detector_search()},
        "ms_per_detection": ms,
        "ratio_to_default": {name: round(seconds[name] / seconds["default"], 3) for name in variants},
        "same_faces": {name: boxes == found["default"] for name, boxes in found.items()},
        "faces": {name: len(boxes) for name, boxes in found.items()},
        "cost_share": shares,
    }))


if __name__ == "__main__":
    main()
