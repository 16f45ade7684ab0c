"""Calibration plots as pure functions: curve points as DataFrames (DVC plot data) and figures as PNG bytes.

Figures are drawn on a bare ``matplotlib.figure.Figure`` (Agg canvas, no pyplot), so nothing here touches
global backend state or needs a display, and PNGs carry no timestamp. Scores follow ``liveness.evaluate``:
higher = more likely an attack; the positive class of every curve is the attack.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import cv2
import matplotlib
import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from numpy.typing import ArrayLike
from scipy.special import ndtri
from sklearn.metrics import roc_curve

SYNTHETIC_PREFIX = "SYNTHETIC data: "
LATENT_COLORMAP = "inferno"
DECOMPOSITION_COLUMNS = ("input I", "clear face I_c", "reconstruction I_real", "|z_bg - z_bg'|")
_DET_TICKS = (0.001, 0.005, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.95, 0.99)
_DET_CLIP = 5e-4  # rates of 0 and 1 have no probit; they are drawn at the plot's edge


def title_prefix(synthetic: bool) -> str:
    """The prefix every title carries, so a figure of synthetic data is never mistaken for a real result."""
    return SYNTHETIC_PREFIX if synthetic else ""


def _roc(scores: ArrayLike, is_attack: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """sklearn's ROC (attack = positive): (false alarm rate = BPCER, detection rate = 1 - APCER)."""
    scores = np.asarray(scores, dtype=np.float64)
    is_attack = np.asarray(is_attack, dtype=bool)
    if not is_attack.any() or is_attack.all():
        missing = "attack" if not is_attack.any() else "bona fide"
        raise ValueError(f"a ROC/DET curve needs attack and bona fide presentations; there are no {missing} ones")
    fpr, tpr, _ = roc_curve(is_attack, scores, pos_label=True)
    return fpr, tpr


def roc_points(scores: ArrayLike, is_attack: ArrayLike) -> pd.DataFrame:
    """ROC points ``fpr`` (BPCER) and ``tpr`` (attacks detected), both non-decreasing, from (0, 0) to (1, 1)."""
    fpr, tpr = _roc(scores, is_attack)
    return pd.DataFrame({"fpr": fpr, "tpr": tpr})


def det_points(scores: ArrayLike, is_attack: ArrayLike) -> pd.DataFrame:
    """DET points ``apcer`` (pooled, non-increasing) against ``bpcer`` (non-decreasing): the ROC's error rates."""
    fpr, tpr = _roc(scores, is_attack)
    return pd.DataFrame({"apcer": 1.0 - tpr, "bpcer": fpr})


def score_points(scores: ArrayLike, species: ArrayLike) -> pd.DataFrame:
    """One row per presentation: ``score`` and ``species`` (``live`` for bona fide), for a DVC score plot."""
    return pd.DataFrame({"score": np.asarray(scores, dtype=np.float64), "species": np.asarray(species).astype(str)})


def _png(figure: Figure) -> bytes:
    """The figure as PNG bytes, cropped to its content, without the metadata that would make identical plots differ."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def roc_png(curves: Mapping[str, pd.DataFrame], title: str) -> bytes:
    """ROC curves (``roc_points`` frames, by legend label) on linear axes with the chance diagonal."""
    figure = Figure(figsize=(5.5, 5))
    axis = figure.subplots()
    for label, points in curves.items():
        axis.plot(points["fpr"], points["tpr"], drawstyle="steps-post", label=label)
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    axis.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="BPCER (bona fide rejected)", ylabel="1 - APCER (attacks detected)")
    axis.set_title(title, fontsize=9)
    axis.legend(loc="lower right", fontsize=8)
    axis.grid(alpha=0.3)
    return _png(figure)


def _probit(rates: ArrayLike) -> np.ndarray:
    return ndtri(np.clip(np.asarray(rates, dtype=np.float64), _DET_CLIP, 1 - _DET_CLIP))


def det_png(curves: Mapping[str, pd.DataFrame], title: str) -> bytes:
    """DET curves (``det_points`` frames, by legend label) on probit axes, ticks labelled in percent."""
    figure = Figure(figsize=(5.5, 5))
    axis = figure.subplots()
    for label, points in curves.items():
        axis.plot(_probit(points["bpcer"]), _probit(points["apcer"]), drawstyle="steps-post", label=label)
    ticks = _probit(_DET_TICKS)
    labels = [f"{100 * t:g}" for t in _DET_TICKS]
    axis.set_xticks(ticks, labels, fontsize=7)
    axis.set_yticks(ticks, labels, fontsize=7)
    edge = _probit([0.0, 1.0])
    axis.set(xlim=edge, ylim=edge, xlabel="BPCER (%)", ylabel="APCER (%)")
    axis.set_title(title, fontsize=9)
    axis.legend(loc="upper right", fontsize=8)
    axis.grid(alpha=0.3)
    return _png(figure)


def score_histogram_png(scores: ArrayLike, species: ArrayLike, threshold: float, title: str,
                        score_name: str = "score") -> bytes:
    """Score histogram per species (bona fide ``live`` first) on shared bins, with the threshold as a line."""
    frame = score_points(scores, species)
    edges = np.histogram_bin_edges(frame["score"], bins=30)
    names = sorted(frame["species"].unique(), key=lambda name: (name != "live", name))
    figure = Figure(figsize=(7, 4))
    axis = figure.subplots()
    for name in names:
        axis.hist(frame.loc[frame["species"] == name, "score"], bins=edges, histtype="step", linewidth=1.5,
                  label=f"{name} (n={int((frame['species'] == name).sum())})")
    axis.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.4g}")
    axis.set(xlabel=f"{score_name} (higher = attack)", ylabel="presentations")
    axis.set_title(title, fontsize=9)
    axis.legend(fontsize=8)
    return _png(figure)


def colorize(maps: np.ndarray, vmax: float) -> np.ndarray:
    """Non-negative float maps (N, H, W) -> uint8 (N, H, W, 3) through ``LATENT_COLORMAP`` over [0, vmax]."""
    scale = vmax if vmax > 0 else 1.0
    rgba = matplotlib.colormaps[LATENT_COLORMAP](np.clip(maps / scale, 0.0, 1.0))
    return np.round(rgba[..., :3] * 255).astype(np.uint8)


def decomposition_grid(image: np.ndarray, clear_face: np.ndarray, reconstruction: np.ndarray,
                       latent_map: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """One row per sample: I, I_c, I_real (uint8 (N, S, S, 3)) and the |z_bg - z_bg'| map, as one uint8 image.

    ``latent_map`` (N, h, w) is upsampled (nearest: one block per latent cell) to S x S and colour-mapped over
    [0, vmax], the same range for every row so that rows compare; ``vmax`` defaults to the largest map value.
    Returns (N * S, 4 * S, 3).
    """
    count, size = image.shape[0], image.shape[1]
    if count == 0:
        raise ValueError("decomposition_grid needs at least one sample")
    for name, array in (("clear_face", clear_face), ("reconstruction", reconstruction)):
        if array.shape != image.shape:
            raise ValueError(f"{name} has shape {array.shape}, expected the image's {image.shape}")
    if latent_map.ndim != 3 or latent_map.shape[0] != count:
        raise ValueError(f"latent_map must be (N, h, w) with N = {count}, got shape {latent_map.shape}")
    vmax = float(latent_map.max(initial=0.0)) if vmax is None else vmax
    upsampled = np.stack([cv2.resize(m.astype(np.float32), (size, size), interpolation=cv2.INTER_NEAREST)
                          for m in latent_map])
    panels = (image, clear_face, reconstruction, colorize(upsampled, vmax))
    return np.concatenate([np.concatenate(row, axis=1) for row in zip(*panels)], axis=0)


def decomposition_png(grid: np.ndarray, row_labels: Sequence[str], vmax: float, title: str) -> bytes:
    """``decomposition_grid`` output with column titles, row labels and the shared colour scale of the maps."""
    rows = len(row_labels)
    size = grid.shape[0] // max(rows, 1)
    figure = Figure(figsize=(6.5, 1.2 + 1.2 * rows))
    axis = figure.subplots()
    axis.imshow(grid, interpolation="nearest")
    axis.set_xticks([size * (k + 0.5) for k in range(len(DECOMPOSITION_COLUMNS))], DECOMPOSITION_COLUMNS, fontsize=7)
    axis.xaxis.tick_top()
    axis.set_yticks([size * (k + 0.5) for k in range(rows)], row_labels, fontsize=7)
    axis.tick_params(length=0)
    figure.colorbar(ScalarMappable(Normalize(0.0, vmax if vmax > 0 else 1.0), LATENT_COLORMAP), ax=axis,
                    fraction=0.04, label="|z_bg - z_bg'|, channel mean")
    axis.set_title(title, fontsize=9, pad=18)  # above the column titles
    return _png(figure)
