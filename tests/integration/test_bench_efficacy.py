"""bench/efficacy.py end to end at a toy scale: the real stages in a scratch workspace, one JSON line out."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.fixtures.paths import PROJECT_ROOT

pytestmark = pytest.mark.slow
SUMMARY_KEYS = {"shipped_score", "test_auc", "unseen_species", "baseline_test_auc", "shortcut_auc", "psnr_db",
                "images_seen", "wall_s", "bundle", "synthetic"}


TOY = ["--identities", "70", "--images-per-identity", "1", "--spoof-subjects", "4", "--per-species", "1",
       "--live-per-subject", "2", "--profile", "tiny", "--size", "32", "--epochs", "1", "--bootstrap", "10",
       "--set", "train.num_workers=0", "--set", "curate.runner.kind=sequential",
       "--set", "spoof.runner.kind=sequential"]


def _bench(workspace, *extra: str) -> tuple[dict, str]:
    command = [sys.executable, "bench/efficacy.py", "--workspace", str(workspace), *TOY, *extra]
    completed = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.strip().splitlines()
    assert len(lines) == 1, "stdout holds one JSON object on one line"
    return json.loads(lines[0]), completed.stderr


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    workspace = tmp_path_factory.mktemp("efficacy")
    result, stderr = _bench(workspace)
    return workspace, result, stderr


def test_last_line_holds_the_documented_keys(report):
    workspace, result, _ = report
    assert SUMMARY_KEYS <= set(result)
    assert result["synthetic"] is True and result["unseen_species"] == ["replay_pc"]
    assert set(result["test_auc"]) == set(result["baseline_test_auc"]) == {"print_a4", "replay_pc", "mask_region",
                                                                           "mask_face"}
    assert result["images_seen"] > 0 and result["wall_s"] > 0 and 0 <= result["shortcut_auc"] <= 1
    assert json.loads((workspace / "efficacy.json").read_text()) == result


def test_every_score_and_the_baseline_per_species_with_intervals(report):
    _, result, _ = report
    table = result["test_per_score"]
    assert "baseline_iqm_gmm" in table and result["shipped_score"] in table and "latent_bg" in table
    for metrics in table["latent_bg"].values():
        assert set(metrics) >= {"auc", "eer", "bpcer20", "bpcer100", "auc_ci"}
        low, high = metrics["auc_ci"]
        assert low <= high
    assert set(result["contrast_hypothesis"]) == {"bona_fide", "print_a4", "replay_pc", "mask_region", "mask_face"}
    assert result["learning_curve"] and result["learning_curve"][-1]["images_seen"] == result["images_seen"]


def test_the_bundle_scores_with_liveness_predict(report):
    workspace, result, _ = report
    image = next((workspace / "data/raw/demo/celeba_spoof").rglob("*.jpg"))
    completed = subprocess.run([sys.executable, "-m", "liveness", "predict", str(image), "--model", result["bundle"]],
                               cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    row = json.loads(completed.stdout.strip().splitlines()[0])
    assert row["trained_on"] == "synthetic" and row["label"] in ("live", "spoof", "no_face")
    assert "SYNTHETIC" in completed.stderr


def test_recalibrate_keeps_the_trained_model_and_reruns_calibration(report):
    """--recalibrate: no data generation, curation or training; the same weights, calibrated again."""
    workspace, first, _ = report
    weights = workspace / "runs/train/generator.pt"
    before = (weights.read_bytes(), weights.stat().st_mtime_ns)
    second, stderr = _bench(workspace, "--recalibrate")
    assert (weights.read_bytes(), weights.stat().st_mtime_ns) == before
    assert second["training_reused"] is True and first["training_reused"] is False
    assert set(second["timings_s"]) == {"calibrate", "test_table"}, "nothing but calibration ran"
    assert second["images_seen"] == first["images_seen"] and "reusing the training" in stderr
    assert second["test_per_score"].keys() == first["test_per_score"].keys()


def test_recalibrate_refuses_a_workspace_without_a_training(tmp_path):
    completed = subprocess.run([sys.executable, "bench/efficacy.py", "--workspace", str(tmp_path), *TOY,
                                "--recalibrate"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert completed.returncode != 0 and "needs a finished training" in completed.stderr
