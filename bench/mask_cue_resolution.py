"""Where the worn paper mask's cue goes: its print texture against the crop size the model sees (SYNTHETIC).

Issue 10 measured `mask_face` test AUC 0.60 (shipped) and 0.56 (the IQM baseline) at 64 px crops, while the
recapture attacks reach 0.98. This bench tests one cause: the mask differs from the live face only inside the
face, by print texture (dots 2-3.2 px apart in the source), which the aligned crop's downscaling removes. For
the same identity and the same scene draws, it renders the live capture and the masked one, crops both the way
curation does (MTCNN-free: the generator's exact landmarks, the same aligner), and measures one texture
statistic (mean |I - blur(I)| of the central face region, grey) at each crop size, and one colour statistic
(the cheeks' HSV saturation minus the forehead's, which survives downscaling). The AUC of that one
statistic, mask vs live, says how much of the cue survives each size; at the source resolution it is read
from the mask's own region.

    python bench/mask_cue_resolution.py [--identities 80] [--source-size 160] [--crop-sizes 32 64 128]

Prints one JSON object. Cheap: seconds on one core.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score


def texture(image: np.ndarray) -> float:
    """Mean absolute high-pass of the grey image: what print dots and paper fibres add."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.abs(grey - cv2.GaussianBlur(grey, (0, 0), 1.0)).mean())


def saturation_contrast(crop: np.ndarray) -> float:
    """HSV saturation of the cheeks minus that of the forehead, in an aligned crop (the regions of
    ``liveness.model.score.FACE_PARTS`` and ``FOREHEAD``): ink on paper is paler than the live skin above the cut."""
    from liveness.model.score import FACE_PARTS, FOREHEAD

    saturation = cv2.cvtColor(crop, cv2.COLOR_RGB2HSV)[..., 1].astype(np.float32)
    side = crop.shape[0]

    def mean(box: tuple[float, float, float, float]) -> float:
        top, bottom, left, right = (round(v * side) for v in box)
        return float(saturation[top:max(bottom, top + 1), left:max(right, left + 1)].mean())

    return mean(FACE_PARTS["cheeks"]) - mean(FOREHEAD)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--identities", type=int, default=80, help="Identities (one live and one masked capture each).")
    parser.add_argument("--source-size", type=int, default=160, help="Rendered image side (the demo's demo.size).")
    parser.add_argument("--crop-sizes", type=int, nargs="+", default=[32, 64, 128], help="Aligned crop sides to test.")
    parser.add_argument("--context", type=float, default=2.0, help="Crop side / face size (curate.crop.context).")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    from liveness.data.faces import Face, align_and_crop
    from liveness.data.synthetic.attacks import mask_face_capture
    from liveness.data.synthetic.faces import identity_traits, render_face

    start = time.perf_counter()
    size = (args.source_size, args.source_size)
    live_stats: dict[str, list[float]] = {"source": [], **{str(s): [] for s in args.crop_sizes}}
    mask_stats: dict[str, list[float]] = {key: [] for key in live_stats}
    live_colour: dict[str, list[float]] = {str(s): [] for s in args.crop_sizes}
    mask_colour: dict[str, list[float]] = {key: [] for key in live_colour}
    face_sides = []
    for index in range(args.identities):
        traits = identity_traits(args.seed, index)
        live, landmarks = render_face(traits, np.random.default_rng(index), size)
        masked, _, touched = mask_face_capture(traits, np.random.default_rng(index), size)
        ys, xs = np.where(touched > 0.5)
        if len(ys) == 0:
            continue
        region = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
        live_stats["source"].append(texture(live[region]))
        mask_stats["source"].append(texture(masked[region]))
        face = Face((0.0, 0.0, 1.0, 1.0), 1.0, np.asarray(landmarks, np.float64))
        face_sides.append(float(np.ptp(landmarks[:, 0])))
        for side in args.crop_sizes:
            centre = slice(side // 4, side - side // 4)  # the face, inside the background context
            live_crop = align_and_crop(live, face, side, args.context).image
            mask_crop = align_and_crop(masked, face, side, args.context).image
            live_stats[str(side)].append(texture(live_crop[centre, centre]))
            mask_stats[str(side)].append(texture(mask_crop[centre, centre]))
            live_colour[str(side)].append(saturation_contrast(live_crop))
            mask_colour[str(side)].append(saturation_contrast(mask_crop))

    def auc(key: str, live_values=live_stats, mask_values=mask_stats) -> float:
        labels = [0] * len(live_values[key]) + [1] * len(mask_values[key])
        return round(float(roc_auc_score(labels, live_values[key] + mask_values[key])), 3)

    result = {
        "synthetic": True,
        "identities": len(live_stats["source"]),
        "source_size": args.source_size,
        "context": args.context,
        "median_landmark_span_px": round(float(np.median(face_sides)), 1),
        "texture_auc_mask_vs_live": {key: auc(key) for key in live_stats},
        # masks are paler in the cheeks: the AUC of the negated contrast, i.e. "less saturated than the forehead"
        "saturation_contrast_auc_mask_vs_live": {key: round(1 - auc(key, live_colour, mask_colour), 3)
                                                 for key in live_colour},
        "texture_median": {key: {"live": round(float(np.median(live_stats[key])), 3),
                                 "mask": round(float(np.median(mask_stats[key])), 3)} for key in live_stats},
        "wall_s": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
