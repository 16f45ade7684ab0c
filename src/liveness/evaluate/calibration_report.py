"""What calibration writes besides ``metrics.json``: the score table (``calibration_scores.md``), the ROC, DET and
score plots of the shipped score on test, and the decomposition figure of a few test samples."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from liveness.data.records import SPOOF
from liveness.data.shards import ShardDataset
from liveness.evaluate import plots
from liveness.evaluate.scoring import SCORE_NAMES, decompose
from liveness.io import atomic_write_bytes, atomic_write_json
from liveness.model.generator import Generator
from liveness.runtime import Runtime

ROW_COLUMNS = ("dataset", "split", "record_id", "path", "subject", "label", "species")
SKEW_FILE = "skew.md"
BASELINE_FILE = "baseline.json"
STATISTICS_FILE = "score_statistics.json"
BASELINE = "baseline_iqm_gmm"
"""The classical peer's column in every table: reported beside the scores, never a candidate for shipping."""
CALIBRATION_PER_SPECIES = ("auc", "eer", "bpcer20", "bpcer100")
DECOMPOSITION_SAMPLES = 3  # rows per species in plots/decomposition.png


def attack_mask(frame: pd.DataFrame) -> np.ndarray:
    """True on presentation-attack rows."""
    return (frame["label"] == SPOOF).to_numpy()


def attack_species(frame: pd.DataFrame) -> list[str]:
    return sorted(frame.loc[attack_mask(frame), "species"].unique())


SCORE_TABLE_FILE = "calibration_scores.md"


def _cell(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def score_table_markdown(metrics: dict[str, Any]) -> str:
    """Every score on the CALIBRATION split (AUC, EER, BPCER100 per species), then the shipped score on test."""
    table = metrics["calibration"]
    species = sorted({key.split("/")[0] for row in table.values() for key in row if key.endswith("/auc")})
    label = "SYNTHETIC data" if metrics.get("data") == "synthetic" else "real data"
    held_out = ", ".join(metrics.get("holdout_species") or []) or "none"
    lines = [f"# Scores on the calibration split ({label})", "",
             f"Held out of calibration (unseen attacks): {held_out}. Shipped: `{metrics['score']}`. "
             f"{(metrics.get('selection') or {}).get('reason', '')}", "",
             "| score | pooled AUC | " + " | ".join(f"{s} AUC / EER / BPCER20 / BPCER100" for s in species) + " |",
             "|---|---|" + "---|" * len(species)]
    for score, row in table.items():
        cells = [" / ".join(_cell(row.get(f"{name}/{metric}")) for metric in CALIBRATION_PER_SPECIES) for name in species]
        lines.append(f"| `{score}` | {_cell(row.get('auc'))} | " + " | ".join(cells) + " |")
    comparison = metrics.get("comparison") or {}
    lines += ["", f"## Test split, shipped score `{metrics['score']}` only", "",
              f"`{BASELINE}` is the classical one-class peer (IQM + GMM, Nikisins et al. 2018) on the same rows; it "
              "never ships. *Beats* means the paired subject-bootstrap CI of the AUC difference lies above 0.", "",
              "| species | AUC | EER | BPCER20 | BPCER100 | unseen | baseline AUC | AUC − baseline [95% CI] | beats |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, row in (metrics.get("test_per_species") or {}).items():
        versus = comparison.get(name) or {}
        interval = (f"{_cell(versus.get('difference'))} [{_cell(versus.get('ci_low'))}, {_cell(versus.get('ci_high'))}]"
                    if versus else "n/a")
        beats = "n/a" if not versus else ("yes" if versus.get("beats") else "no")
        lines.append(f"| {name} | {_cell(row.get('auc'))} | {_cell(row.get('eer'))} | {_cell(row.get('bpcer20'))} "
                     f"| {_cell(row.get('bpcer100'))} | {'yes' if row.get('unseen') else 'no'} "
                     f"| {_cell(versus.get('baseline_auc'))} | {interval} | {beats} |")
    return "\n".join(lines) + "\n"


def decomposition_rows(test: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Up to ``DECOMPOSITION_SAMPLES`` random test rows of bona fide, then of each attack species."""
    rng = np.random.default_rng(seed)
    groups = [test[~attack_mask(test)]] + [test[attack_mask(test) & (test["species"] == s)] for s in attack_species(test)]
    picked = [group.iloc[np.sort(rng.choice(len(group), min(len(group), DECOMPOSITION_SAMPLES), replace=False))]
              for group in groups if len(group)]
    return pd.concat(picked)


def decomposition_png(generator: Generator, dataset: ShardDataset, test: pd.DataFrame, runtime: Runtime,
                       score: str, seed: int, title: str) -> bytes:
    """The decomposition figure of a few test samples per species (``test`` rows are ``dataset`` items)."""
    rows = decomposition_rows(test, seed)
    crops = torch.stack([dataset[int(position)] for position in rows.index])
    parts = decompose(generator, crops, runtime)
    vmax = float(parts["latent_bg_map"].max())
    grid = plots.decomposition_grid(parts["image"], parts["clear_face"], parts["reconstruction"],
                                    parts["latent_bg_map"], vmax)
    labels = [f"{species}\n{score}={value:.3g}" for species, value in zip(rows["species"], rows[score], strict=True)]
    return plots.decomposition_png(grid, labels, vmax, title)


def write_plots(out: Path, test: pd.DataFrame, score: str, threshold: float, prefix: str) -> None:
    """ROC, DET and score data (CSV, for DVC) and figures (PNG) of the shipped score on the test split."""
    scores, is_attack, species = test[score].to_numpy(), attack_mask(test), test["species"].to_numpy()
    roc, det = plots.roc_points(scores, is_attack), plots.det_points(scores, is_attack)
    roc_curves, det_curves = {"all attacks (pooled)": roc}, {"all attacks (pooled)": det}
    for name in attack_species(test):
        keep = ~is_attack | (species == name)
        roc_curves[name] = plots.roc_points(scores[keep], is_attack[keep])
        det_curves[name] = plots.det_points(scores[keep], is_attack[keep])
    atomic_write_bytes(out / "roc.csv", roc.to_csv(index=False).encode())
    atomic_write_bytes(out / "det.csv", det.to_csv(index=False).encode())
    atomic_write_bytes(out / "scores.csv", plots.score_points(scores, species).to_csv(index=False).encode())
    atomic_write_bytes(out / "roc.png", plots.roc_png(roc_curves, f"{prefix}ROC, test split, score {score}"))
    atomic_write_bytes(out / "det.png", plots.det_png(det_curves, f"{prefix}DET, test split, score {score}"))
    atomic_write_bytes(out / "score_hist.png", plots.score_histogram_png(
        scores, species, threshold, f"{prefix}scores by species, test split, frozen threshold", score))


def write_reports(out: Path, metrics: dict[str, Any], generator: Generator, runtime: Runtime,
                  calibration: pd.DataFrame, test: pd.DataFrame, test_dataset: ShardDataset,
                  statistics: dict[str, Any], baseline: dict[str, Any], skew_report: str, seed: int) -> None:
    """Everything calibration writes into ``out``: plots of the shipped score on test, the decomposition figure,
    every row's scores (``scores.csv``: the calibration rows, then the test rows, which are ``test_dataset``'s
    items), the statistics, the score table, the skew report, the baseline and, last, ``metrics.json``."""
    score, threshold = metrics["score"], metrics["threshold"]
    rows = pd.concat([calibration, test], ignore_index=True)
    prefix = plots.title_prefix(metrics.get("data") == "synthetic")
    write_plots(out / "plots", test, score, threshold, prefix)
    atomic_write_bytes(out / "plots" / "decomposition.png", decomposition_png(
        generator, test_dataset, test, runtime, score, seed, f"{prefix}decomposition of test samples (shared map scale)"))
    every = rows[[*ROW_COLUMNS, *(name for name in (*SCORE_NAMES, BASELINE) if name in rows)]]
    atomic_write_bytes(out / "scores.csv", every.to_csv(index=False).encode())
    atomic_write_json(out / STATISTICS_FILE, statistics)
    atomic_write_bytes(out / SCORE_TABLE_FILE, score_table_markdown(metrics).encode())
    atomic_write_bytes(out / SKEW_FILE, skew_report.encode())
    # Always written (a declared DVC output): the fitted mixture, or why there is none.
    atomic_write_json(out / BASELINE_FILE, baseline)
    atomic_write_json(out / "metrics.json", metrics)
