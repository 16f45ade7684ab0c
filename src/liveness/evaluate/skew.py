"""Skew between the live sets: does anything but liveness tell the live training crops from the spoof set's live ones?

A one-class benchmark is only honest when the bona fide rows it is tested on look like the live rows it was
trained on. If simple statistics separate the two (a different camera, encoder, face scale or padding), every
score can ride that difference instead of the attack (DESIGN §2.3). ``crop_statistics`` measures each crop,
``shortcut_auc`` is the cross-validated AUC of a logistic regression telling the two live sets apart on those
statistics (0.5: no shortcut), and ``skew_markdown`` is the report.
"""

from __future__ import annotations

import math
from pathlib import PurePath

import cv2
import numpy as np
import pandas as pd

CROP_STATISTICS: tuple[str, ...] = ("luminance", "contrast", "sharpness", "saturation", "blockiness")
MANIFEST_STATISTICS: tuple[str, ...] = ("face_scale", "padded_share")
SHORTCUT_FEATURES: tuple[str, ...] = (*CROP_STATISTICS, *MANIFEST_STATISTICS)
SHORTCUT_FOLDS = 5
SHORTCUT_LIMIT = 0.60  # issue 10: above this the benchmark holds a shortcut


def _blockiness(grey: np.ndarray) -> float:
    """Mean jump across 8-px block boundaries over the mean jump elsewhere: JPEG's grid, about 1 without it."""
    dx = np.abs(np.diff(grey, axis=1))
    dy = np.abs(np.diff(grey, axis=0))
    boundary_x, boundary_y = dx[:, 7::8], dy[7::8, :]
    inner = (dx.sum() - boundary_x.sum() + dy.sum() - boundary_y.sum()) / max(1, dx.size - boundary_x.size
                                                                              + dy.size - boundary_y.size)
    boundary = (boundary_x.sum() + boundary_y.sum()) / max(1, boundary_x.size + boundary_y.size)
    return float(boundary / (inner + 1e-6))


def crop_statistics(crops: np.ndarray) -> pd.DataFrame:
    """``CROP_STATISTICS`` of uint8 (N, S, S, 3) RGB crops, one row each."""
    rows = []
    for crop in crops:
        grey = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY).astype(np.float64)
        hsv = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2HSV)
        rows.append({
            "luminance": float(grey.mean()),
            "contrast": float(grey.std()),
            "sharpness": float(cv2.Laplacian(grey, cv2.CV_64F).var()),
            "saturation": float(hsv[..., 1].mean()),
            "blockiness": _blockiness(grey),
        })
    return pd.DataFrame(rows, columns=list(CROP_STATISTICS))


def manifest_statistics(manifest_rows: pd.DataFrame) -> pd.DataFrame:
    """Face scale (the detected face's short side over the source's short side), padded share and file format."""
    def column(name: str) -> np.ndarray:  # a manifest written before the column existed gives NaN
        if name not in manifest_rows:
            return np.full(len(manifest_rows), np.nan)
        return pd.to_numeric(manifest_rows[name], errors="coerce").to_numpy(dtype=float)

    return pd.DataFrame({
        "face_scale": column("face_side_px") / column("source_side_px"),
        "padded_share": column("padded_fraction"),
        "format": [PurePath(str(path).split("#")[0]).suffix.lower().lstrip(".") or "?"
                   for path in manifest_rows["path"]],
    })


def shortcut_auc(first: pd.DataFrame, second: pd.DataFrame, first_groups: np.ndarray, second_groups: np.ndarray,
                 seed: int = 0) -> float:
    """Cross-validated AUC of a standardised logistic regression telling ``first`` from ``second`` on
    ``SHORTCUT_FEATURES``. Folds are grouped by subject, so a subject's look cannot carry across folds. NaN when
    either side has fewer rows or subjects than there are folds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = pd.concat([first, second], ignore_index=True)[list(SHORTCUT_FEATURES)]
    features = features.astype(float).fillna(features.astype(float).median()).fillna(0.0).to_numpy()
    target = np.r_[np.zeros(len(first)), np.ones(len(second))]
    groups = np.r_[np.asarray(first_groups, dtype=str), np.char.add("b:", np.asarray(second_groups, dtype=str))]
    folds = min(SHORTCUT_FOLDS, len(set(first_groups)), len(set(second_groups)))
    if folds < 2:
        return math.nan
    from sklearn.metrics import roc_auc_score

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    probability = cross_val_predict(model, features, target, groups=groups, cv=splitter, method="predict_proba")[:, 1]
    return float(roc_auc_score(target, probability))


def summarise(statistics: pd.DataFrame) -> dict[str, float | dict[str, int]]:
    """Median of each statistic, the row count and the file formats they came from."""
    summary: dict[str, float | dict[str, int]] = {"rows": int(len(statistics))}
    for name in SHORTCUT_FEATURES:
        values = pd.to_numeric(statistics[name], errors="coerce").dropna()
        summary[name] = float(values.median()) if len(values) else math.nan
    summary["formats"] = {str(k): int(v) for k, v in statistics["format"].value_counts().items()}
    return summary


def skew_markdown(groups: dict[str, dict], auc: float, synthetic: bool) -> str:
    """The skew report: medians per live set, then the shortcut AUC against its limit."""
    label = "SYNTHETIC data" if synthetic else "real data"
    lines = [f"# Live-set skew ({label})", "",
             "Medians per live set. The bona fide rows of calibration and test should look like the live training "
             "rows in everything but identity.", "",
             "| set | rows | " + " | ".join(SHORTCUT_FEATURES) + " | formats |",
             "|---|---|" + "---|" * len(SHORTCUT_FEATURES) + "---|"]
    for name, summary in groups.items():
        cells = " | ".join("n/a" if math.isnan(summary[key]) else f"{summary[key]:.3g}" for key in SHORTCUT_FEATURES)
        formats = ", ".join(f"{k}: {v}" for k, v in summary["formats"].items())
        lines.append(f"| {name} | {summary['rows']} | {cells} | {formats} |")
    verdict = "n/a" if math.isnan(auc) else ("within" if auc <= SHORTCUT_LIMIT else "ABOVE")
    lines += ["", f"**Shortcut AUC** (live training crops vs the spoof set's live crops, {SHORTCUT_FOLDS}-fold "
                  f"subject-grouped logistic regression on {', '.join(SHORTCUT_FEATURES)}): "
                  f"{'n/a' if math.isnan(auc) else f'{auc:.3f}'}, {verdict} the limit {SHORTCUT_LIMIT:.2f}."]
    return "\n".join(lines) + "\n"
