"""Ablations of the training choices DESIGN §1.4 suspects, each scored with every score on calibration data.

One ablation row is a set of param overrides on top of a params file; each row runs for several seeds. A run
trains with the real ``Trainer`` and calibrates with the real ``calibrate`` (``score: auto``), so a row is
exactly what ``dvc exp run -S <overrides>`` would produce, only smaller. Every run is an MLflow run (tags
``ablation``, ``seed``, ``data``) in the experiment ``liveness-ablations``. The table reports, per row and
score, the worst-species and pooled AUC on the CALIBRATION split (mean ± std over seeds), and the shipped
score's test AUC per species.
"""

from __future__ import annotations

import math
import shutil
import statistics as stats
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from liveness.config import Params, load_params
from liveness.io import atomic_write_bytes, atomic_write_json, json_safe

EXPERIMENT = "liveness-ablations"

# Name -> param overrides (dotted keys, as ``dvc exp run -S`` takes them).
ABLATIONS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "no_identity": {"identity.backbone": "none"},
    # Issue 13: the identity network f (the default is dlib_resnet, the real one that installs offline).
    "identity_onet": {"identity.backbone": "onet"},
    "identity_dlib_resnet": {"identity.backbone": "dlib_resnet"},
    "latent_stop_gradient": {"loss.latent_mode": "stop_gradient"},
    "latent_relative": {"loss.latent_mode": "relative"},
    "latent_weight_10": {"loss.latent": 10.0},
    "pixel_weight_10": {"loss.pixel": 10.0},
    "no_adversarial": {"loss.adversarial": 0.0},
    "half_training": {"train.epochs": "half"},
    "double_training": {"train.epochs": "double"},
    "profile_tiny": {"model.profile": "tiny"},
    "profile_deploy": {"model.profile": "deploy"},
    "profile_patent": {"model.profile": "patent"},
    # Issue 10: each convergence choice of the training recipe, switched back to the patent's literal form.
    "patent_recipe": {"train.lr": 1e-4, "train.warmup_steps": 0, "train.adversarial_start_step": 0, "train.d_every": 1,
                      "train.identity_every": 1, "train.ema_decay": 0.0},
    "no_warmup": {"train.warmup_steps": 0},
    "adversarial_from_start": {"train.adversarial_start_step": 0},
    "d_every_step": {"train.d_every": 1},
    "identity_every_step": {"train.identity_every": 1},
    "no_ema": {"train.ema_decay": 0.0},
}
MAIN_ROWS = ("baseline", "latent_stop_gradient", "latent_relative")


@dataclass(frozen=True)
class RunResult:
    row: str
    seed: int
    shipped_score: str
    calibration: dict[str, dict[str, float]]  # score -> {"worst_species_auc", "auc"}
    test_per_species: dict[str, float]  # shipped score's test AUC per species


def resolve_overrides(row: str, base: Params, epochs: int | None) -> dict[str, Any]:
    """The row's overrides with ``half``/``double`` epochs made concrete (relative to ``epochs`` or the base)."""
    if row not in ABLATIONS:
        raise KeyError(f"unknown ablation {row!r}; choose from {sorted(ABLATIONS)}")
    base_epochs = epochs or base.train.epochs
    resolved = {"train.epochs": base_epochs}
    for key, value in ABLATIONS[row].items():
        if value == "half":
            value = max(1, base_epochs // 2)
        elif value == "double":
            value = base_epochs * 2
        resolved[key] = value
    return resolved


def _worst_species_auc(row: dict[str, float]) -> float:
    values = [value for key, value in row.items() if key.endswith("/auc") and value is not None]
    return min(values) if values else math.nan


def _summarise(metrics: dict[str, Any]) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    calibration = {score: {"worst_species_auc": _worst_species_auc(row), "auc": row.get("auc") or math.nan}
                   for score, row in metrics["calibration"].items()}
    test = {species: row.get("auc") or math.nan for species, row in metrics.get("test_per_species", {}).items()}
    return calibration, test


def run_one(params_path: Path, row: str, seed: int, out_dir: Path, epochs: int | None,
            bootstrap_resamples: int, progress: bool = False, recalibrate: bool = False) -> RunResult:
    """Train and calibrate one (row, seed) under ``out_dir/row/seed<seed>``; an MLflow run records it.
    ``recalibrate``: keep that folder's trained model and only calibrate again (after a change of the scores)."""
    import mlflow

    from liveness.evaluate.calibrate import calibrate
    from liveness.mlflow_store import tracking_uri, use_experiment
    from liveness.train.stage import training_dataset
    from liveness.train.trainer import Trainer

    base = load_params(params_path)
    overrides = resolve_overrides(row, base, epochs)
    folder = Path(out_dir) / row / f"seed{seed}"
    run_dir, report_dir = folder / "train", folder / "reports"
    overrides |= {"base.seed": seed, "calibrate.model_dir": str(run_dir), "calibrate.report_dir": str(report_dir),
                  "calibrate.score": "auto", "calibrate.bootstrap_resamples": bootstrap_resamples}
    params = load_params(params_path, overrides)
    if recalibrate and not (run_dir / "generator.pt").is_file():
        raise FileNotFoundError(f"--recalibrate: no trained model in {run_dir}; run {row} seed {seed} without it "
                                "first")
    mlflow.set_tracking_uri(tracking_uri(None))
    use_experiment(EXPERIMENT, mlflow.get_tracking_uri())
    synthetic = _is_synthetic(params)
    tags = {"ablation": row, "seed": str(seed), "data": "synthetic" if synthetic else "real", "stage": "ablation",
            "recalibrated": str(recalibrate).lower()}
    with mlflow.start_run(run_name=f"{row}-seed{seed}", tags=tags):
        mlflow.log_params({f"override.{key}": value for key, value in overrides.items()
                           if not key.startswith("calibrate.")})
        if not recalibrate:
            if run_dir.exists():
                shutil.rmtree(run_dir)  # an ablation run always trains from scratch
            dataset, _ = training_dataset(params)
            Trainer(params, run_dir, progress=progress).fit(dataset, resume=False)
        metrics = calibrate(params)
        calibration, test = _summarise(metrics)
        for score, values in calibration.items():
            for name, value in values.items():
                if math.isfinite(value):
                    mlflow.log_metric(f"calibration.{score}.{name}", value)
        for species, value in test.items():
            if math.isfinite(value):
                mlflow.log_metric(f"test.{metrics['score']}.{species}.auc", value)
        mlflow.set_tag("shipped_score", metrics["score"])
        mlflow.log_artifact(str(report_dir / "metrics.json"))
    return RunResult(row, seed, metrics["score"], calibration, test)


def _is_synthetic(params: Params) -> bool:
    from liveness.data.shards import read_manifest

    manifest = Path(params.train.data) / "manifest.parquet"
    return manifest.is_file() and bool(read_manifest(manifest)["synthetic"].all())


def _mean_std(values: list[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    return stats.fmean(finite), (stats.stdev(finite) if len(finite) > 1 else 0.0)


def summary_table(results: list[RunResult]) -> dict[str, Any]:
    """Per row: seeds, and for each score the mean and std over seeds of the calibration AUCs; the shipped
    scores; and the shipped score's mean test AUC per species."""
    table: dict[str, Any] = {}
    for row in dict.fromkeys(result.row for result in results):
        runs = [result for result in results if result.row == row]
        scores = sorted({score for run in runs for score in run.calibration})
        species = sorted({name for run in runs for name in run.test_per_species})
        table[row] = {
            "overrides": ABLATIONS[row], "seeds": [run.seed for run in runs],
            "calibration": {score: {metric: _mean_std([run.calibration[score][metric] for run in runs])
                                    for metric in ("worst_species_auc", "auc")} for score in scores},
            "shipped_scores": [run.shipped_score for run in runs],
            "test_auc_of_shipped_score": {name: _mean_std([run.test_per_species.get(name, math.nan) for run in runs])
                                          for name in species},
        }
    return table


def _cell(pair: tuple[float, float], seeds: int) -> str:
    mean, std = pair
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean:.3f} ± {std:.3f}" if seeds > 1 else f"{mean:.3f}"


def markdown(table: dict[str, Any], synthetic: bool, command: str) -> str:
    """The ablation table as markdown: worst-species calibration AUC per score, then test AUC per species."""
    scores = sorted({score for row in table.values() for score in row["calibration"]})
    species = sorted({name for row in table.values() for name in row["test_auc_of_shipped_score"]})
    label = "SYNTHETIC data: " if synthetic else ""
    lines = [f"# Ablations ({label}mean ± std over seeds)", "", f"Command: `{command}`", "",
             "## Worst attack species AUC on the calibration split, per score", "",
             "| ablation | seeds | " + " | ".join(f"`{s}`" for s in scores) + " |",
             "|---|---|" + "---|" * len(scores)]
    for name, row in table.items():
        n = len(row["seeds"])
        lines.append(f"| {name} | {n} | " + " | ".join(_cell(row["calibration"][s]["worst_species_auc"], n)
                                                   for s in scores) + " |")
    lines += ["", "## Test AUC per species of the score each run shipped (chosen on calibration only)", "",
              "| ablation | shipped | " + " | ".join(species) + " |", "|---|---|" + "---|" * len(species)]
    for name, row in table.items():
        n = len(row["seeds"])
        shipped = ", ".join(sorted(set(row["shipped_scores"])))
        lines.append(f"| {name} | {shipped} | " + " | ".join(_cell(row["test_auc_of_shipped_score"][s], n)
                                                            for s in species) + " |")
    return "\n".join(lines) + "\n"


def run_ablations(params_path: Path, rows: list[str], seeds: list[int], out_dir: Path, epochs: int | None = None,
                  bootstrap_resamples: int = 50,
                  on_run: Callable[[RunResult], None] | None = None, recalibrate: bool = False) -> dict[str, Any]:
    """Every (row, seed), seed by seed; writes ``out_dir/ablations.json`` and ``ablations.md`` after each run (so
    an interrupted sweep keeps what it finished, every row at the same seeds) and returns the summary table."""
    out_dir = Path(out_dir)
    results: list[RunResult] = []
    unknown = [row for row in rows if row not in ABLATIONS]
    if unknown:
        raise KeyError(f"unknown ablations {unknown}; choose from {sorted(ABLATIONS)}")
    synthetic = _is_synthetic(load_params(params_path))
    command = (f"liveness ablate --params {params_path} --rows {','.join(rows)} "
               f"--seeds {','.join(map(str, seeds))}" + (f" --epochs {epochs}" if epochs else "")
               + (" --recalibrate" if recalibrate else ""))
    table: dict[str, Any] = {}
    for seed in seeds:  # seed by seed: an interrupted sweep holds every row at the seeds it finished
        for row in rows:
            result = run_one(params_path, row, seed, out_dir, epochs, bootstrap_resamples, recalibrate=recalibrate)
            results.append(result)
            if on_run is not None:
                on_run(result)
            table = summary_table(results)
            atomic_write_json(out_dir / "ablations.json", {"data": "synthetic" if synthetic else "real",
                                                           "command": command, "rows": json_safe(table)})
            atomic_write_bytes(out_dir / "ablations.md", markdown(table, synthetic, command).encode())
    return table
