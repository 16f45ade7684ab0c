"""The calibration stage: freeze a threshold on calibration data, then report ISO/IEC 30107-3 metrics on test.

Order matters and the code keeps it (DESIGN §2.3): the calibration data (live ``live_split`` as bona fide, plus
the spoof set's ``calib_split``) are scored and the threshold is chosen from them alone; only then is the test
split opened, scored and reported at that frozen threshold. Every score is reported on calibration (DESIGN
§1.4); with ``calibrate.score: auto`` the shipped score is picked from that calibration table by a documented
rule (``select_score``). The test split is reported for the shipped score only, so it cannot steer the choice.

Two more guards against leakage: the statistics scores are fitted on a live split of their own
(``calibrate.statistics_split``, identity-disjoint from training and from calibration), and
``calibrate.holdout_species`` are removed from calibration entirely, so their test numbers say how the model
does on attacks that neither selection nor threshold saw.

Beside the network's scores, the classical one-class baseline (``liveness.evaluate.baseline``, fitted on the
live training crops) is scored on the same rows, calibrated the same way and compared per species on test
with a paired subject bootstrap. It is a peer to measure against and never ships. The skew report
(``liveness.evaluate.skew``) says whether simple statistics tell the live training crops from the spoof set's
live crops, which would make the benchmark easier than real data.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from liveness.bundle.files import load_generator
from liveness.config import CalibrateParams, Params
from liveness.data.records import SPOOF
from liveness.data.shards import ShardDataset, read_manifest
from liveness.evaluate import skew
from liveness.evaluate.baseline import fit_baseline, score_baseline
from liveness.evaluate.calibration_report import (
    BASELINE,
    CALIBRATION_PER_SPECIES,
    STATISTICS_FILE,
    attack_mask,
    attack_species,
    write_reports,
)
from liveness.evaluate.metrics import bootstrap_ci, metric_report, paired_auc_difference_ci
from liveness.evaluate.scoring import (
    SCORE_NAMES,
    fit_score_statistics,
    reconstruction_quality,
    score_dataset,
)
from liveness.evaluate.selection import select_score
from liveness.evaluate.thresholds import choose_threshold
from liveness.io import json_safe
from liveness.model.generator import Generator
from liveness.model.score import ScoreStatistics
from liveness.runtime import Runtime, resolve_runtime

CONFIDENCE = 0.95
CI_METRICS = ("max_apcer", "bpcer", "hter", "acer_non_iso", "eer", "auc", "bpcer20", "bpcer100")
"""Test metrics that get subject-grouped bootstrap CIs, besides the APCER of each species."""
CALIBRATION_POOLED = ("auc", "eer", "bpcer20", "bpcer100", "max_apcer", "bpcer")


def _runtime(device: str) -> Runtime:
    """fp32 always: bf16 would round scores to ~3 digits and tie many of them around the threshold."""
    return resolve_runtime(device, "fp32", key="calibrate.device")


class _ShardFolder:
    """A curated folder (``manifest.parquet`` + ``shards/``), its manifest read once for every split."""

    def __init__(self, folder: Path, name: str, image_size: int) -> None:
        self.folder = Path(folder)
        self.name = name
        self.image_size = image_size
        self.manifest = read_manifest(self.folder / "manifest.parquet")

    @property
    def synthetic(self) -> bool:
        return bool(self.manifest["synthetic"].all())

    def split(self, split: str, key: str) -> ShardDataset:
        """The accepted crops of ``split`` (set by ``calibrate.<key>``); their size must be the model's."""
        if split not in set(self.manifest["split"]):
            raise ValueError(f"{self.folder / 'manifest.parquet'} has no split {split!r} (it has "
                             f"{sorted(set(self.manifest['split']))}); set {key} to one of them")
        dataset = ShardDataset(self.manifest, self.folder / "shards", split)
        if dataset.crop_size is not None and dataset.crop_size != self.image_size:
            raise ValueError(
                f"{self.folder} split {split!r} holds {dataset.crop_size} px crops but model.image_size is "
                f"{self.image_size}; set model.image_size to the size the model was trained on and curate at it"
            )
        return dataset

    def rows(self, dataset: ShardDataset) -> pd.DataFrame:
        """One row per item of ``dataset`` (a split of this folder): where it comes from and what it is."""
        paths = dict(zip(self.manifest["record_id"], self.manifest["path"], strict=True))
        return pd.DataFrame({
            "dataset": self.name, "split": dataset.split, "record_id": dataset.record_ids,
            "path": [paths[record] for record in dataset.record_ids], "subject": dataset.subjects,
            "label": dataset.labels, "species": dataset.species,
        })


def crops_of(dataset: ShardDataset) -> np.ndarray:
    """Every crop of ``dataset`` as one uint8 (N, S, S, 3) array."""
    if not len(dataset):
        size = dataset.crop_size or 0
        return np.zeros((0, size, size, 3), np.uint8)
    return np.stack([dataset[index].numpy() for index in range(len(dataset))])


def _scored(generator: Generator, source: _ShardFolder, dataset: ShardDataset, runtime: Runtime,
            batch_size: int, statistics: ScoreStatistics, baseline=None) -> pd.DataFrame:
    """``source.rows`` plus one column per score (``SCORE_NAMES``) and, with a fitted ``baseline``, its column."""
    scores = score_dataset(generator, dataset, runtime, batch_size, statistics)
    if baseline is not None:
        scores[BASELINE] = score_baseline(baseline, crops_of(dataset))
    return source.rows(dataset).assign(**scores)


def species_counts(calibration: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """Per attack species: (bona fide rows, that species' rows), the two sample sizes of its AUC."""
    is_attack = attack_mask(calibration)
    bona_fide = int((~is_attack).sum())
    return {name: (bona_fide, int((calibration.loc[is_attack, "species"] == name).sum()))
            for name in attack_species(calibration)}




def freeze_threshold(calibration: pd.DataFrame, settings: CalibrateParams, score: str) -> float:
    """The policy's threshold for ``score`` on the calibration rows ALONE."""
    try:
        return choose_threshold(settings.policy, calibration[score].to_numpy(), attack_mask(calibration),
                                calibration["species"].to_numpy(), settings.target, attack_species(calibration))
    except ValueError as error:
        raise ValueError(
            f"cannot calibrate (calibrate.policy={settings.policy!r}, calibrate.target={settings.target}, "
            f"{len(calibration)} calibration presentations): {error}"
        ) from None


def _calibration_table(calibration: pd.DataFrame, settings: CalibrateParams) -> dict[str, dict[str, float]]:
    """Per score (and the baseline, when scored): its own calibrated threshold, pooled metrics, and per-species
    ``CALIBRATION_PER_SPECIES``."""
    is_attack, species = attack_mask(calibration), calibration["species"].to_numpy()
    table = {}
    for score in [name for name in (*SCORE_NAMES, BASELINE) if name in calibration]:
        threshold = freeze_threshold(calibration, settings, score)
        pooled = metric_report(calibration[score].to_numpy(), is_attack, species, threshold)
        row = {"threshold": threshold, **{name: pooled[name] for name in CALIBRATION_POOLED}}
        row |= {key: value for key, value in pooled.items() if key.startswith("apcer/")}
        for name, metrics in _per_species(calibration, score, threshold).items():
            row |= {f"{name}/{metric}": value for metric, value in metrics.items()}
        table[score] = row
    return table


def _per_species(frame: pd.DataFrame, score: str, threshold: float) -> dict[str, dict[str, float]]:
    """AUC, EER and BPCER100 of ``score`` per attack species (each species against all bona fide rows)."""
    is_attack, species = attack_mask(frame), frame["species"].to_numpy()
    scores = frame[score].to_numpy()
    table = {}
    for name in attack_species(frame):
        keep = ~is_attack | (species == name)
        report = metric_report(scores[keep], is_attack[keep], species[keep], threshold)
        table[name] = {metric: report[metric] for metric in CALIBRATION_PER_SPECIES}
    return table


def _test_metrics(test: pd.DataFrame, settings: CalibrateParams, score: str, threshold: float, expected: list[str],
                  seed: int) -> dict[str, float]:
    """``metric_report`` at the frozen threshold, with ``<metric>_ci_low``/``_ci_high`` subject-grouped CIs."""
    arrays = (test[score].to_numpy(), attack_mask(test), test["species"].to_numpy())
    report = metric_report(*arrays, threshold, expected_species=expected)
    names = [*CI_METRICS, *(key for key in report if key.startswith("apcer/"))]
    intervals = bootstrap_ci(*arrays, threshold, names, n_resamples=settings.bootstrap_resamples, seed=seed,
                             confidence=CONFIDENCE, groups=test["subject"].to_numpy(), expected_species=expected)
    for name, (low, high) in intervals.items():
        report[f"{name}_ci_low"], report[f"{name}_ci_high"] = low, high
    return report


def _counts(frame: pd.DataFrame, prefix: str) -> dict[str, int]:
    is_attack = attack_mask(frame)
    counts = {f"{prefix}/bona_fide": int((~is_attack).sum())}
    counts |= {f"{prefix}/attack/{name}": int(n) for name, n in frame.loc[is_attack, "species"].value_counts().items()}
    return dict(sorted(counts.items()))


def _fit_statistics(generator: Generator, live: _ShardFolder, settings: CalibrateParams, runtime: Runtime,
                    train_split: str) -> tuple[ShardDataset, ScoreStatistics]:
    """Statistics of the statistics scores, from a live split that neither trains nor calibrates."""
    if settings.statistics_split == settings.live_split:
        raise ValueError(f"calibrate.statistics_split {settings.statistics_split!r} is also the calibration split "
                         f"(calibrate.live_split); fit statistics on a live split of their own, e.g. `statistics` "
                         f"(curate.splits)")
    if settings.statistics_split == train_split:
        raise ValueError(f"calibrate.statistics_split {settings.statistics_split!r} is the split the generator "
                         f"trained on (train.split), whose crops it has memorised; give the statistics a live split "
                         f"of their own, e.g. `statistics` in curate.splits")
    dataset = live.split(settings.statistics_split, "calibrate.statistics_split")
    return dataset, fit_score_statistics(generator, dataset, runtime, settings.batch_size, tuple(settings.fusion))


def _check_holdout(settings: CalibrateParams, spoof: _ShardFolder) -> None:
    known = set(spoof.manifest.loc[spoof.manifest["label"] == SPOOF, "species"])
    unknown = sorted(set(settings.holdout_species) - known)
    if unknown:
        raise ValueError(f"calibrate.holdout_species {unknown} are not attack species of {spoof.folder} "
                         f"(it has {sorted(known)})")


def _fit_baseline(live_train: ShardDataset, settings: CalibrateParams, seed: int):
    """The classical baseline fitted on the live training crops, or None and why not."""
    if not settings.baseline:
        return None, "calibrate.baseline is false"
    try:
        return fit_baseline(crops_of(live_train), seed=seed), ""
    except ValueError as error:  # too few live training crops for the mixture: say so in every table
        warnings.warn(f"classical baseline not fitted: {error}", stacklevel=2)
        return None, str(error)


def _comparison(test: pd.DataFrame, score: str, settings: CalibrateParams, seed: int) -> dict[str, dict[str, Any]]:
    """Per test species: the shipped score's AUC against the baseline's, with a paired subject-bootstrap CI."""
    if BASELINE not in test:
        return {}
    is_attack, species = attack_mask(test), test["species"].to_numpy()
    table = {}
    for name in attack_species(test):
        keep = ~is_attack | (species == name)
        difference, low, high = paired_auc_difference_ci(
            test.loc[keep, score].to_numpy(), test.loc[keep, BASELINE].to_numpy(), is_attack[keep],
            n_resamples=settings.bootstrap_resamples, seed=seed, confidence=CONFIDENCE,
            groups=test.loc[keep, "subject"].to_numpy())
        table[name] = {"model_auc": metric_report(test.loc[keep, score].to_numpy(), is_attack[keep], species[keep],
                                                  0.0)["auc"],
                       "baseline_auc": metric_report(test.loc[keep, BASELINE].to_numpy(), is_attack[keep],
                                                     species[keep], 0.0)["auc"],
                       "difference": difference, "ci_low": low, "ci_high": high, "beats": bool(low > 0)}
    return table


def _skew(live: _ShardFolder, spoof: _ShardFolder, live_sets: dict[str, ShardDataset],
          spoof_sets: dict[str, ShardDataset], seed: int) -> tuple[dict[str, Any], str]:
    """Statistics of each live set, and the shortcut AUC of the live training crops against the spoof set's
    live crops; returns the metrics entry and the markdown report."""
    def measured(source: _ShardFolder, dataset: ShardDataset, keep_live: bool) -> tuple[pd.DataFrame, np.ndarray]:
        rows = source.manifest.set_index("record_id").loc[dataset.record_ids].reset_index()
        frame = pd.concat([skew.crop_statistics(crops_of(dataset)), skew.manifest_statistics(rows)], axis=1)
        live_rows = dataset.labels != SPOOF if keep_live else np.ones(len(dataset), bool)
        return frame[live_rows].reset_index(drop=True), dataset.subjects[live_rows]

    groups, frames = {}, {}
    for name, dataset in live_sets.items():
        frames[f"live {name}"] = measured(live, dataset, False)
    for name, dataset in spoof_sets.items():
        frames[f"spoof-set live {name}"] = measured(spoof, dataset, True)
    for name, (frame, _) in frames.items():
        groups[name] = skew.summarise(frame)
    train_name = next(iter(live_sets))
    spoof_frames = [frames[f"spoof-set live {name}"] for name in spoof_sets]
    spoof_live = pd.concat([frame for frame, _ in spoof_frames], ignore_index=True)
    spoof_subjects = np.concatenate([subjects for _, subjects in spoof_frames])
    train_frame, train_subjects = frames[f"live {train_name}"]
    auc_value = skew.shortcut_auc(train_frame, spoof_live, train_subjects, spoof_subjects, seed)
    synthetic = live.synthetic and spoof.synthetic
    return {"shortcut_auc": auc_value, "limit": skew.SHORTCUT_LIMIT, "groups": groups}, \
        skew.skew_markdown(groups, auc_value, synthetic)


def calibrate(params: Params) -> dict[str, Any]:
    """Run the calibration stage (reads ``params.calibrate``, ``params.model``, ``params.base``); returns the
    metrics also written to ``report_dir/metrics.json``, beside ``scores.csv``, ``score_statistics.json`` and
    ``plots/``."""
    settings, model, seed = params.calibrate, params.model, params.base.seed
    runtime = _runtime(settings.device)
    generator = load_generator(settings.model_dir, model).to(runtime.device, memory_format=runtime.memory_format)
    live = _ShardFolder(settings.live_data, "live_data", model.image_size)
    spoof = _ShardFolder(settings.spoof_data, "spoof_data", model.image_size)
    synthetic = live.synthetic and spoof.synthetic
    _check_holdout(settings, spoof)
    train_split = params.train.split
    statistics_set, statistics = _fit_statistics(generator, live, settings, runtime, train_split)
    live_train = live.split(train_split, "train.split")
    baseline, baseline_note = _fit_baseline(live_train, settings, seed)

    live_calibration = live.split(settings.live_split, "calibrate.live_split")
    spoof_calibration = spoof.split(settings.calib_split, "calibrate.calib_split")
    scored = pd.concat([
        _scored(generator, live, live_calibration, runtime, settings.batch_size, statistics, baseline),
        _scored(generator, spoof, spoof_calibration, runtime, settings.batch_size, statistics, baseline),
    ], ignore_index=True)
    # Held-out species never reach selection or the threshold: they stand for attacks nobody has seen.
    calibration = scored[~scored["species"].isin(settings.holdout_species)].reset_index(drop=True)
    calibration_table = _calibration_table(calibration, settings)
    score, selection = select_score(calibration_table, settings, attack_species(calibration),
                                    species_counts(calibration))
    threshold = freeze_threshold(calibration, settings, score)
    baseline_threshold = freeze_threshold(calibration, settings, BASELINE) if baseline is not None else math.nan

    # Score and threshold are frozen: only now is the test split opened.
    test_dataset = spoof.split(settings.test_split, "calibrate.test_split")
    test = _scored(generator, spoof, test_dataset, runtime, settings.batch_size, statistics, baseline)
    expected = sorted(set(attack_species(calibration)) | set(attack_species(test)))
    per_species = _per_species(test, score, threshold)
    for name, row in per_species.items():
        row["unseen"] = name in settings.holdout_species
    baseline_report = {"name": BASELINE, "skipped": baseline_note}
    if baseline is not None:
        baseline_report = {"name": BASELINE, "fitted_on": f"live {train_split} ({baseline.samples} crops)",
                           "threshold": baseline_threshold,
                           "test_per_species": _per_species(test, BASELINE, baseline_threshold)}
    comparison = _comparison(test, score, settings, seed)
    skew_entry, skew_report = _skew(live, spoof, {train_split: live_train, settings.statistics_split: statistics_set,
                                                  settings.live_split: live_calibration},
                                    {settings.calib_split: spoof_calibration, settings.test_split: test_dataset}, seed)
    reconstruction = reconstruction_quality(generator, live_calibration, settings.batch_size)
    metrics = json_safe({
        "data": "synthetic" if synthetic else "real",
        "score": score,
        "selection": selection,
        "holdout_species": list(settings.holdout_species),
        "policy": settings.policy,
        "target": settings.target,
        "threshold": threshold,
        "test": _test_metrics(test, settings, score, threshold, expected, seed),
        "test_per_species": per_species,
        "calibration": calibration_table,
        "baseline": baseline_report,
        "comparison": comparison,
        "shortcut_auc": skew_entry["shortcut_auc"],
        "skew": skew_entry,
        "reconstruction": {"split": settings.live_split, **reconstruction},
        "counts": _counts(calibration, "calibration") | _counts(test, "test"),
        "bootstrap": {"resamples": settings.bootstrap_resamples, "confidence": CONFIDENCE, "groups": "subject"},
        "statistics": {"file": STATISTICS_FILE, "split": settings.statistics_split, "samples": statistics.samples},
    })

    write_reports(Path(settings.report_dir), metrics, generator, runtime, scored, test, test_dataset,
                  statistics.to_json(), baseline.to_json() if baseline is not None else {"skipped": baseline_note},
                  skew_report, seed)
    return metrics
