"""Efficacy benchmark: the real stages at a scale that means something, the classical baseline beside the model.

In a scratch workspace it runs demo data at benchmark scale, curate, prepare_spoof, train and calibrate (the
same library functions the DVC stages call), writes a model bundle that ``liveness predict --model <folder>``
loads, and prints one JSON object. Everything it measures is on SYNTHETIC data and says so.

    .venv/bin/python bench/efficacy.py                     # CPU: small profile, 64 px, whole run <= --budget-min
    .venv/bin/python bench/efficacy.py --device cuda       # GPU: patent profile, 128 px, in 10 minutes
    .venv/bin/python bench/efficacy.py --identities 200 --spoof-subjects 20 --budget-min 10   # a quick look
    .venv/bin/python bench/efficacy.py --recalibrate      # same workspace and options: new scores, same training

The training length is set from a measured throughput so the whole run fits the budget: a short probe run
times the training step, and the epochs are what the time left after data and before calibration allows.
Progress goes to stderr; stdout is one JSON object on one line (also written to ``<workspace>/efficacy.json``).
``summary_keys`` below lists the keys other tools read.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

PROJECT = Path(__file__).resolve().parents[1]
CALIBRATION_RESERVE_S = {"cpu": 300.0, "cuda": 90.0}  # scoring, baseline, bootstrap and plots after training
PROBE_STEPS = 12
TEST_METRICS = ("auc", "eer", "bpcer20", "bpcer100")


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--workspace", type=Path, default=PROJECT / "runs" / "efficacy",
                        help="scratch folder; data, model, reports and the bundle go here (default runs/efficacy)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cpu: small profile at 64 px; cuda: patent profile at 128 px")
    parser.add_argument("--profile", default=None, help="width profile (default: small on cpu, patent on cuda)")
    parser.add_argument("--size", type=int, default=None, help="crop size (default: 64 on cpu, 128 on cuda)")
    parser.add_argument("--budget-min", type=float, default=None,
                        help="wall-time budget of the whole run in minutes (default: 60 on cpu, 10 on cuda)")
    parser.add_argument("--identities", type=int, default=2500,
                        help="live identities (80%% train: 2500 gives 2000 training identities)")
    parser.add_argument("--images-per-identity", type=int, default=2)
    parser.add_argument("--spoof-subjects", type=int, default=100, help="spoof-set subjects (half calib, half test)")
    parser.add_argument("--per-species", type=int, default=6,
                        help="attacks per species per subject (100 subjects x 6 / 2 gives 300 test samples a species)")
    parser.add_argument("--live-per-subject", type=int, default=6, help="live captures per spoof-set subject")
    parser.add_argument("--epochs", type=int, default=None,
                        help="train this many epochs instead of what the measured throughput and budget allow")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bootstrap", type=int, default=500, help="bootstrap resamples of every CI")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="extra params override (dotted key, YAML value), e.g. --set train.lr=0.001; repeatable")
    parser.add_argument("--fresh", action="store_true", help="delete the workspace first (default: reuse its data)")
    parser.add_argument("--recalibrate", action="store_true",
                        help="keep the workspace's trained model (runs/train) and rerun only calibration and the "
                             "tables: for a change of the scores, not of training. The JSON's train figures are "
                             "that training's, and training_reused says so")
    return parser.parse_args(argv)


def _log(message: str) -> None:
    print(f"[efficacy {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def workspace_params(arguments: argparse.Namespace, workspace: Path) -> dict[str, Any]:
    """The project's params.yaml with the benchmark's scale, device and every path inside ``workspace``."""
    raw = yaml.safe_load((PROJECT / "params.yaml").read_text())
    cuda = arguments.device == "cuda"
    size = arguments.size or (128 if cuda else 64)
    raw["base"]["seed"] = arguments.seed
    raw["demo"] |= {"out_dir": str(workspace / "data/raw/demo"), "identities_live": arguments.identities,
                    "images_per_identity": arguments.images_per_identity,
                    "identities_spoof": arguments.spoof_subjects,
                    "live_per_spoof_subject": arguments.live_per_subject,
                    "attacks_per_species": arguments.per_species}
    for section, out, source in (("curate", "data/curated", "celeba"), ("spoof", "data/spoof", "celeba_spoof")):
        raw[section] = {**raw[section], "out_dir": str(workspace / out),
                        "sources": [{"name": source, "root": str(workspace / "data/raw/demo" / source)}],
                        "crop": {**raw[section]["crop"], "size": size},
                        "detection": {**raw[section]["detection"], "device": arguments.device}}
    raw["model"] |= {"profile": arguments.profile or ("patent" if cuda else "small"), "image_size": size}
    raw["train"] |= {"data": str(workspace / "data/curated"), "device": arguments.device}
    raw["calibrate"] |= {"model_dir": str(workspace / "runs/train"), "live_data": str(workspace / "data/curated"),
                         "spoof_data": str(workspace / "data/spoof"), "report_dir": str(workspace / "reports"),
                         "bootstrap_resamples": arguments.bootstrap, "device": arguments.device}
    for override in arguments.overrides:
        key, _, value = override.partition("=")
        section, _, name = key.partition(".")
        if not name or section not in raw:
            raise SystemExit(f"--set {override!r}: give section.key=value with a params.yaml section")
        target = raw[section]
        *parents, leaf = name.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = yaml.safe_load(value)
    return raw


def _throughput(params, dataset, workspace: Path) -> float:
    """Images per second of full training steps, from a short probe run on the first crops (the trainer's own
    rate over its steps, so set-up and the end-of-run evaluation do not count)."""
    import torch

    from liveness.config import parse_params
    from liveness.data.memory import CropArrayDataset
    from liveness.train.trainer import Trainer

    count = min(len(dataset), params.train.batch_size * PROBE_STEPS)
    crops = np.stack([dataset[index].numpy() if isinstance(dataset[index], torch.Tensor) else dataset[index]
                      for index in range(count)])
    # The probe's steps run every loss at the run's cadence: D and the adversarial term from the first step (the
    # run itself switches them on at train.adversarial_start_step, long before most of its steps), so the
    # measured rate is the steady one and the epochs fit the budget.
    probe = parse_params(params.model_dump(mode="json") | {
        "train": params.train.model_dump(mode="json") | {"epochs": 1, "val_split": None, "adversarial_start_step": 0}})
    folder = workspace / "runs/probe"
    shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    result = Trainer(probe, folder, progress=False).fit(CropArrayDataset(crops), resume=False)
    elapsed = time.perf_counter() - started
    shutil.rmtree(folder, ignore_errors=True)
    return result.images_per_second or count / elapsed


def per_score_test_metrics(scores: pd.DataFrame, score_names: list[str], resamples: int,
                           seed: int) -> dict[str, dict[str, dict[str, float]]]:
    """For each score and attack species of the TEST rows: AUC, EER, BPCER20, BPCER100 with subject-grouped
    bootstrap CIs. Reported, never used to choose anything."""
    from liveness.evaluate.metrics import bootstrap_ci, metric_report

    test = scores[scores["split"] == "test"]
    is_attack = (test["label"] == "spoof").to_numpy()
    species = test["species"].to_numpy()
    table: dict[str, dict[str, dict[str, float]]] = {}
    for score in score_names:
        values = test[score].to_numpy()
        table[score] = {}
        for name in sorted(set(species[is_attack])):
            keep = ~is_attack | (species == name)
            report = metric_report(values[keep], is_attack[keep], species[keep], 0.0)
            intervals = bootstrap_ci(values[keep], is_attack[keep], species[keep], 0.0, TEST_METRICS,
                                     n_resamples=resamples, seed=seed, groups=test["subject"].to_numpy()[keep])
            table[score][name] = {metric: report[metric] for metric in TEST_METRICS}
            table[score][name] |= {f"{metric}_ci": list(intervals[metric]) for metric in TEST_METRICS}
    return table


def learning_curve(metrics_log: Path) -> list[dict[str, float]]:
    """Per epoch end: images seen, L_pix (the epoch's mean), and PSNR/SSIM of the held-out crops when logged."""
    curve = []
    if not metrics_log.is_file():
        return curve
    for line in metrics_log.read_text().splitlines():
        row = json.loads(line)
        if "epoch_loss_pixel" in row:
            curve.append({key: row[key] for key in ("epoch", "images_seen", "epoch_loss_pixel", "psnr_db", "ssim")
                          if key in row})
    return curve


def contrast_hypothesis(scores: pd.DataFrame) -> dict[str, Any]:
    """Issue 10's hypothesis: recaptures compress gamut and contrast, and |z_bg - z_bg'| grows with the
    activations, so Δ ranks attacks as live. Per test group: medians of Δ, of the code magnitude mean |z_bg|
    (= Δ / latent_bg_rel) and of the scale-free Δ / mean |z_bg|, and the AUC of each against bona fide. If the
    hypothesis holds, attacks have smaller mean |z_bg| and Δ, and dividing by the magnitude lifts the AUC."""
    from liveness.evaluate.metrics import auc

    test = scores[scores["split"] == "test"].copy()
    test["code_magnitude"] = test["latent_bg"] / test["latent_bg_rel"].clip(lower=1e-12)
    is_attack = (test["label"] == "spoof").to_numpy()
    groups = {"bona_fide": ~is_attack} | {name: (test["species"] == name).to_numpy()
                                          for name in sorted(set(test.loc[is_attack, "species"]))}
    result: dict[str, Any] = {}
    for name, rows in groups.items():
        entry = {f"median_{column}": float(test.loc[rows, column].median())
                 for column in ("latent_bg", "code_magnitude", "latent_bg_rel")}
        if name != "bona_fide":
            keep = ~is_attack | rows
            entry |= {f"auc_{column}": auc(test.loc[keep, column].to_numpy(), is_attack[keep])
                      for column in ("latent_bg", "code_magnitude", "latent_bg_rel")}
        result[name] = entry
    return result


def summary_keys(metrics: dict[str, Any], table: dict, train: dict, wall_s: float, bundle: Path,
                 arguments: argparse.Namespace, params) -> dict[str, Any]:
    """The last line's keys: what other tools read."""
    from liveness.evaluate.calibrate import BASELINE

    shipped = metrics["score"]
    unseen = sorted(name for name, row in metrics["test_per_species"].items() if row.get("unseen"))
    return {
        "synthetic": metrics["data"] == "synthetic",
        "shipped_score": shipped,
        "test_auc": {name: row["auc"] for name, row in metrics["test_per_species"].items()},
        "test_bpcer20": {name: row["bpcer20"] for name, row in metrics["test_per_species"].items()},
        "unseen_species": unseen,
        "baseline_test_auc": {name: row["auc"] for name, row in table.get(BASELINE, {}).items()},
        "beats_baseline": {name: row["beats"] for name, row in (metrics.get("comparison") or {}).items()},
        "shortcut_auc": metrics.get("shortcut_auc"),
        "psnr_db": (metrics.get("reconstruction") or {}).get("psnr_db"),
        "ssim": (metrics.get("reconstruction") or {}).get("ssim"),
        "images_seen": train.get("images_seen"),
        "images_per_second": train.get("images_per_second"),
        "train_s": train.get("seconds"),
        "wall_s": wall_s,
        "profile": params.model.profile,
        "image_size": params.model.image_size,
        "device": arguments.device,
        "bundle": str(bundle),
    }


def _train(params, arguments: argparse.Namespace, workspace: Path, run_dir: Path, budget_s: float, started: float,
           timed) -> tuple[Any, dict]:
    """Train from scratch for the epochs the budget allows (or ``--epochs``); (params with those epochs, summary)."""
    from liveness.config import parse_params
    from liveness.train.stage import training_dataset, validation_crops
    from liveness.train.trainer import Trainer

    dataset, description = training_dataset(params)
    validation, validation_description = validation_crops(params)
    _log(f"training data: {description}; reconstruction logged on {validation_description}")
    if arguments.epochs:
        epochs = arguments.epochs
    else:
        images_per_second = timed("probe", lambda: _throughput(params, dataset, workspace))
        left = budget_s - (time.perf_counter() - started) - CALIBRATION_RESERVE_S[arguments.device]
        epochs = max(1, math.floor(left * images_per_second / len(dataset)))
        _log(f"{images_per_second:.1f} img/s measured; {left:.0f} s left for training: {epochs} epochs")
    params = parse_params(params.model_dump(mode="json") | {
        "train": params.train.model_dump(mode="json") | {"epochs": epochs}}, "benchmark params")
    shutil.rmtree(run_dir, ignore_errors=True)
    result = timed("train", lambda: Trainer(params, run_dir, progress=False).fit(dataset, resume=False,
                                                                              validation=validation))
    train_summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").is_file() else {}
    train_summary |= {"images_seen": result.images_seen, "images_per_second": result.images_per_second,
                      "seconds": result.seconds, "epochs": result.epochs, "steps": result.steps}
    return params, train_summary


def _trained(run_dir: Path, params) -> tuple[Any, dict]:
    """``--recalibrate``: the workspace's finished training and its summary, checked against this run's params."""
    from liveness.config import parse_params

    summary = json.loads((run_dir / "summary.json").read_text())
    trained = summary.get("params", {})
    for section in ("model", "identity", "loss"):
        if section in trained and trained[section] != params.model_dump(mode="json")[section]:
            raise SystemExit(f"--recalibrate: {run_dir} was trained with other {section} params than this run's; "
                             "pass the same options as that run, or train again")
    if "train" in trained:  # the epochs the budget chose then, so the card and JSON say what was trained
        params = parse_params(params.model_dump(mode="json") | {"train": trained["train"]}, "benchmark params")
    _log(f"reusing the training in {run_dir}: {summary.get('epochs')} epochs, {summary.get('images_seen')} images")
    return params, summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    arguments = _arguments(argv)
    budget_s = 60 * (arguments.budget_min or (10.0 if arguments.device == "cuda" else 60.0))
    started = time.perf_counter()
    workspace = arguments.workspace.resolve()
    if arguments.fresh and arguments.recalibrate:
        raise SystemExit("--fresh deletes the training that --recalibrate reuses: pass one of them")
    if arguments.fresh:
        shutil.rmtree(workspace, ignore_errors=True)
    workspace.mkdir(parents=True, exist_ok=True)
    run_dir = workspace / "runs/train"
    if arguments.recalibrate and not ((run_dir / "summary.json").is_file() and (run_dir / "generator.pt").is_file()):
        raise SystemExit(f"--recalibrate needs a finished training in {run_dir} (summary.json and generator.pt); "
                         "run the benchmark once without it")

    from liveness.config import parse_params
    from liveness.data.stage import LIVE_KIND, SPOOF_KIND, generate_demo, run_curation
    from liveness.evaluate.calibrate import BASELINE, calibrate
    from liveness.bundle import GENERATOR_WEIGHTS, write_bundle
    from liveness.io import json_safe
    from liveness.model.score import SCORE_NAMES
    from liveness.registry.register import bundle_config

    raw = workspace_params(arguments, workspace)
    params = parse_params(raw, "benchmark params")
    (workspace / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    timings: dict[str, float] = {}

    def timed(name: str, work):
        start = time.perf_counter()
        _log(f"{name} ...")
        value = work()
        timings[name] = time.perf_counter() - start
        _log(f"{name} done in {timings[name]:.0f} s")
        return value

    curated = workspace / "data/curated/manifest.parquet"
    spoof_manifest = workspace / "data/spoof/manifest.parquet"
    stamp = workspace / "data/curated.params.json"
    wanted = json.dumps({"curate": raw["curate"], "spoof": raw["spoof"], "demo": raw["demo"]}, sort_keys=True)
    if not (curated.is_file() and spoof_manifest.is_file() and stamp.is_file() and stamp.read_text() == wanted):
        # the raw images only feed curation: a workspace curated with these params skips both
        timed("demo_data", lambda: generate_demo(params, progress=False, workers=os.cpu_count() or 1))
        timed("curate", lambda: run_curation(params.curate, LIVE_KIND, params.base.seed, workspace / "reports/curation",
                                             progress=False))
        timed("prepare_spoof", lambda: run_curation(params.spoof, SPOOF_KIND, params.base.seed,
                                                    workspace / "reports/spoof", progress=False))
        stamp.write_text(wanted)

    if arguments.recalibrate:
        params, train_summary = _trained(run_dir, params)
    else:
        params, train_summary = _train(params, arguments, workspace, run_dir, budget_s, started, timed)

    metrics = timed("calibrate", lambda: calibrate(params))
    bundle = write_bundle(workspace / "bundle", run_dir / GENERATOR_WEIGHTS,
                          bundle_config(params, workspace / "reports/metrics.json"))
    scores = pd.read_csv(workspace / "reports/scores.csv")
    names = [name for name in (*SCORE_NAMES, BASELINE) if name in scores]
    table = timed("test_table", lambda: per_score_test_metrics(scores, names, arguments.bootstrap, params.base.seed))
    wall_s = time.perf_counter() - started
    report = json_safe({
        "what": "efficacy benchmark on SYNTHETIC data (procedural faces, simulated attacks)",
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "scale": {"live_identities": arguments.identities, "images_per_identity": arguments.images_per_identity,
                  "spoof_subjects": arguments.spoof_subjects, "per_species_per_subject": arguments.per_species,
                  "counts": metrics["counts"]},
        "timings_s": timings,
        "train": {key: train_summary.get(key) for key in ("epochs", "steps", "images_seen", "images_per_second",
                                                          "seconds", "losses_used", "reconstruction")},
        "training_reused": bool(arguments.recalibrate),
        "calibration": metrics["calibration"],
        "selection": metrics["selection"],
        "threshold": metrics["threshold"],
        "test_per_score": table,
        "comparison": metrics.get("comparison"),
        "skew": metrics.get("skew"),
        "reconstruction": metrics.get("reconstruction"),
        "contrast_hypothesis": contrast_hypothesis(scores),
        "learning_curve": learning_curve(run_dir / "metrics.jsonl"),
    })
    summary = json_safe(summary_keys(metrics, table, train_summary, wall_s, bundle, arguments, params))
    report |= summary
    (workspace / "efficacy.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(json.dumps(report, sort_keys=True))  # one object on one line: the last line holds every key
    _log(f"bundle: {bundle}  (liveness predict --model {bundle} <images>)")
    return report


if __name__ == "__main__":
    main()
