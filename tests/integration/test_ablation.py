"""Ablation sweeps: real training and calibration per (row, seed), an MLflow run each, a mean ± std table."""

import json

import mlflow
import numpy as np
import pytest
import yaml

from liveness.data.memory import make_smoke_crops
from liveness.evaluate.ablation import ABLATIONS, EXPERIMENT, resolve_overrides, run_ablations, summary_table, RunResult
from liveness.config import parse_params
from tests.fixtures.calibration import SIZE, spoof_rows, write_set

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("ablate")
    live_rows = [("train", "live", "live", f"t{i}") for i in range(8)] + [("val", "live", "live", f"v{s}") for s in range(4)]
    live_rows += [("statistics", "live", "live", f"s{s}") for s in range(4)]
    write_set(root / "live", live_rows, make_smoke_crops(len(live_rows), SIZE, seed=0))
    spoof = spoof_rows("calib", "c") + spoof_rows("test", "x")
    write_set(root / "spoof", spoof, make_smoke_crops(len(spoof), SIZE, seed=1))
    params = {
        "model": {"profile": "tiny", "image_size": SIZE}, "identity": {"backbone": "none"},
        "train": {"data": str(root / "live"), "epochs": 1, "batch_size": 4, "num_workers": 0,
                  "augment": {"enabled": False}, "checkpoint_every_steps": 1000, "log_every_steps": 1},
        "calibrate": {"live_data": str(root / "live"), "spoof_data": str(root / "spoof"), "batch_size": 8,
                      "device": "cpu", "baseline": False},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


@pytest.fixture(scope="module")
def sweep(project, tmp_path_factory):
    import os

    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    try:
        table = run_ablations(project / "params.yaml", ["baseline", "latent_stop_gradient"], [0, 1], project / "out",
                              bootstrap_resamples=5)
        runs = mlflow.search_runs(experiment_names=[EXPERIMENT])
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI")
    return table, runs


def test_table_has_every_row_seed_and_score_with_mean_and_std(sweep, project):
    table, _ = sweep
    assert list(table) == ["baseline", "latent_stop_gradient"]
    for row in table.values():
        assert row["seeds"] == [0, 1]
        assert {"latent_bg", "pixel", "fused"} <= set(row["calibration"])
        mean, std = row["calibration"]["latent_bg"]["worst_species_auc"]
        assert 0 <= mean <= 1 and std >= 0
        assert set(row["test_auc_of_shipped_score"]) == {"print_a4", "replay_pc"}
    written = json.loads((project / "out" / "ablations.json").read_text())
    assert written["data"] == "synthetic" and set(written["rows"]) == set(table)
    text = (project / "out" / "ablations.md").read_text()
    assert "SYNTHETIC" in text and "| latent_stop_gradient | 2 |" in text


def test_each_run_is_an_mlflow_run_with_its_tags_and_metrics(sweep):
    _, runs = sweep
    assert len(runs) == 4
    assert sorted(zip(runs["tags.ablation"], runs["tags.seed"])) == [
        ("baseline", "0"), ("baseline", "1"), ("latent_stop_gradient", "0"), ("latent_stop_gradient", "1")]
    assert set(runs["tags.data"]) == {"synthetic"}
    assert runs["metrics.calibration.latent_bg.worst_species_auc"].notna().all()
    assert (runs.loc[runs["tags.ablation"] == "latent_stop_gradient", "params.override.loss.latent_mode"]
            == "stop_gradient").all()


def test_rows_really_train_differently(sweep, project):
    """Seeds and the stop-gradient change the trained weights (else the table would compare one model)."""
    import torch

    def weights(row, seed):
        return torch.load(project / "out" / row / f"seed{seed}" / "train" / "generator.pt", weights_only=True)

    base0, base1, stop0 = weights("baseline", 0), weights("baseline", 1), weights("latent_stop_gradient", 0)
    name = next(iter(base0))
    assert not torch.equal(base0[name], base1[name])
    assert any(not torch.equal(base0[key], stop0[key]) for key in base0)


def test_epochs_half_and_double_follow_the_base():
    base = parse_params({"train": {"epochs": 10}})
    assert resolve_overrides("half_training", base, None)["train.epochs"] == 5
    assert resolve_overrides("double_training", base, 4)["train.epochs"] == 8
    assert resolve_overrides("latent_relative", base, None) == {"train.epochs": 10, "loss.latent_mode": "relative"}
    with pytest.raises(KeyError, match="unknown ablation"):
        resolve_overrides("nope", base, None)


def test_every_ablation_is_a_valid_params_override():
    base = parse_params({})
    for row in ABLATIONS:
        overrides = resolve_overrides(row, base, 2)
        raw: dict = {}
        for dotted, value in overrides.items():
            section, key = dotted.split(".")
            raw.setdefault(section, {})[key] = value
        parse_params(raw)  # an unknown or mistyped key would raise


def test_summary_mean_and_std_over_seeds():
    runs = [RunResult("baseline", seed, "pixel", {"pixel": {"worst_species_auc": auc, "auc": auc}}, {"print": auc})
            for seed, auc in enumerate([0.5, 0.7, 0.9])]
    row = summary_table(runs)["baseline"]
    mean, std = row["calibration"]["pixel"]["worst_species_auc"]
    assert mean == pytest.approx(0.7) and std == pytest.approx(np.std([0.5, 0.7, 0.9], ddof=1))


def test_recalibrate_reuses_each_runs_model(sweep, project, tmp_path):
    """--recalibrate: the same weights (no training), calibration again, the table rewritten and tagged."""
    import os

    weights = project / "out" / "baseline" / "seed0" / "train" / "generator.pt"
    before = (weights.read_bytes(), weights.stat().st_mtime_ns)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    try:
        table = run_ablations(project / "params.yaml", ["baseline"], [0], project / "out", bootstrap_resamples=5,
                              recalibrate=True)
        runs = mlflow.search_runs(experiment_names=[EXPERIMENT])
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI")
    assert (weights.read_bytes(), weights.stat().st_mtime_ns) == before
    assert table["baseline"]["seeds"] == [0] and set(runs["tags.recalibrated"]) == {"true"}
    assert "--recalibrate" in json.loads((project / "out" / "ablations.json").read_text())["command"]
    with pytest.raises(FileNotFoundError, match="no trained model"):
        run_ablations(project / "params.yaml", ["baseline"], [5], project / "out", recalibrate=True)
