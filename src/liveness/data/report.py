"""The curation report: counts per reject reason, quality histograms, sample grids and a markdown summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from liveness.io import atomic_write_bytes

HISTOGRAM_COLUMNS = (
    "detection_probability", "inter_eye_px", "face_px", "blur_laplacian_var", "mean_luminance",
    "clipped_fraction", "yaw_deg", "roll_deg", "padded_fraction",
)


def sample_grid(crops: list[np.ndarray], columns: int = 8) -> np.ndarray | None:
    """Tile equal-size crops into one image, row by row; None when there is nothing to show."""
    if not crops:
        return None
    size = crops[0].shape[0]
    rows = -(-len(crops) // columns)
    grid = np.full((rows * size, min(columns, len(crops)) * size, 3), 255, dtype=np.uint8)
    for index, crop in enumerate(crops):
        row, column = divmod(index, columns)
        grid[row * size : (row + 1) * size, column * size : (column + 1) * size] = crop
    return grid


def _png_bytes(image: np.ndarray) -> bytes:
    import cv2

    ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("could not encode a report image as PNG")
    return encoded.tobytes()


def _histogram_png(manifest: pd.DataFrame, title: str) -> bytes | None:
    import matplotlib

    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt

    columns = [c for c in HISTOGRAM_COLUMNS if c in manifest and manifest[c].notna().any()]
    if not columns:
        return None
    accepted = manifest["reject_reason"] == ""
    figure, axes = plt.subplots(int(np.ceil(len(columns) / 3)), 3, figsize=(12, 3 * int(np.ceil(len(columns) / 3))))
    for axis, column in zip(np.ravel(axes), columns):
        values = manifest[column].astype(float)
        axis.hist([values[accepted].dropna(), values[~accepted].dropna()], bins=30, stacked=True,
                  label=["accepted", "rejected"], color=["tab:green", "tab:red"])
        axis.set_title(column)
    for axis in np.ravel(axes)[len(columns):]:
        axis.axis("off")
    np.ravel(axes)[0].legend()
    figure.suptitle(title)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


def reason_counts(manifest: pd.DataFrame) -> pd.Series:
    """Rejected rows per reason; a row with several reasons counts once for each."""
    reasons = manifest.loc[manifest["reject_reason"] != "", "reject_reason"].str.split(";").explode()
    return reasons.value_counts().sort_index()


def write_curation_report(manifest: pd.DataFrame, accepted: list[np.ndarray], rejected: dict[str, list[np.ndarray]],
                          out_dir: Path, title: str, synthetic: bool) -> Path:
    """Write ``summary.md``, ``reject_reasons.csv``, ``quality_histograms.png`` and sample grids into out_dir."""
    out_dir = Path(out_dir)
    label = "SYNTHETIC data: " if synthetic else ""
    counts = reason_counts(manifest)
    atomic_write_bytes(out_dir / "reject_reasons.csv", counts.rename_axis("reason").rename("count").to_csv().encode())
    histogram = _histogram_png(manifest, f"{label}{title}: quality values")
    if histogram is not None:
        atomic_write_bytes(out_dir / "quality_histograms.png", histogram)
    accepted_grid = sample_grid(accepted)
    if accepted_grid is not None:
        atomic_write_bytes(out_dir / "accepted_samples.png", _png_bytes(accepted_grid))
    rejected_crops = [crop for crops in rejected.values() for crop in crops]
    rejected_grid = sample_grid(rejected_crops)
    if rejected_grid is not None:
        atomic_write_bytes(out_dir / "rejected_samples.png", _png_bytes(rejected_grid))

    kept = manifest[manifest["reject_reason"] == ""]
    lines = [f"# {title}", ""]
    if synthetic:
        lines += ["**SYNTHETIC data** (procedural faces and simulated attacks): these figures say nothing about "
                  "real faces.", ""]
    lines += [
        f"- rows: {len(manifest)} (images and video frames)",
        f"- accepted: {len(kept)}; rejected: {len(manifest) - len(kept)}",
        f"- subjects accepted: {kept['subject'].nunique()}",
        "",
        "## Accepted per split and species",
        "",
        "| split | species | crops | subjects |",
        "|---|---|---|---|",
    ]
    for (split, species), group in kept.groupby(["split", "species"], sort=True):
        lines.append(f"| {split} | {species} | {len(group)} | {group['subject'].nunique()} |")
    lines += ["", "## Rejections per reason", "", "| reason | rows |", "|---|---|"]
    lines += [f"| {reason} | {count} |" for reason, count in counts.items()] or ["| (none) | 0 |"]
    lines += ["", "Grids: `accepted_samples.png`, `rejected_samples.png` (grouped by first reason: "
              + ", ".join(f"{reason} ({len(crops)})" for reason, crops in rejected.items() if crops) + ")."]
    atomic_write_bytes(out_dir / "summary.md", ("\n".join(lines) + "\n").encode())
    return out_dir / "summary.md"
