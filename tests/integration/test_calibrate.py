"""The calibration stage end to end on tiny shard sets and a random-init tiny generator (32 px)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from liveness.config import parse_params
from liveness.data.memory import make_smoke_crops
from liveness.data.shards import write_manifest
from liveness.evaluate import calibrate as calibrate_module
from liveness.evaluate.calibrate import calibrate
from liveness.evaluate.calibration_report import BASELINE, SKEW_FILE
from liveness.evaluate.scoring import SCORE_NAMES
from liveness.evaluate.thresholds import choose_threshold
from liveness.model.factory import build_generator
from tests.fixtures.calibration import ATTACKS, SIZE, spoof_rows, write_set

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLOT_FILES = ("roc.csv", "det.csv", "scores.csv", "roc.png", "det.png", "score_hist.png", "decomposition.png")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _make_data(root, test_seed=2, live_synthetic=True):
    """Live folder (train + statistics + val) and spoof folder (calib + test); the test crops come from
    ``test_seed``. Enough training crops for the baseline's mixture (one component on its 42 features)."""
    live_rows = [("train", "live", "live", f"t{s}") for s in range(44)]
    live_rows += [("statistics", "live", "live", f"s{s}") for s in range(4)]
    live_rows += [("val", "live", "live", f"v{s}") for s in range(6)]
    write_set(root / "live", live_rows, make_smoke_crops(len(live_rows), SIZE, seed=0), live_synthetic)
    calib, test = spoof_rows("calib", "c"), spoof_rows("test", "x")
    crops = np.concatenate([make_smoke_crops(len(calib), SIZE, seed=1), make_smoke_crops(len(test), SIZE, test_seed)])
    write_set(root / "spoof", calib + test, crops)


def _params(root, model_dir, **calibrate):
    return parse_params({
        "model": {"profile": "tiny", "image_size": SIZE},
        "calibrate": {"model_dir": str(model_dir), "live_data": str(root / "live"), "spoof_data": str(root / "spoof"),
                      "report_dir": str(root / "reports"), "bootstrap_resamples": 20, "batch_size": 5,
                      "device": "cpu", **calibrate},
    })


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    params = parse_params({"model": {"profile": "tiny", "image_size": SIZE}})
    torch.save(build_generator(params.model.width_profile()).state_dict(), folder / "generator.pt")
    return folder


@pytest.fixture(scope="module")
def run(tmp_path_factory, model_dir):
    """One calibration run: (root folder, returned metrics)."""
    root = tmp_path_factory.mktemp("calibrate")
    _make_data(root)
    return root, calibrate(_params(root, model_dir))


def _read_scores(root):
    return pd.read_csv(root / "reports" / "scores.csv")


class TestOutputs:
    def test_writes_every_output(self, run):
        root, _ = run
        reports = root / "reports"
        assert (reports / "metrics.json").is_file() and (reports / "scores.csv").is_file()
        for name in PLOT_FILES:
            assert (reports / "plots" / name).stat().st_size > 0, name
            if name.endswith(".png"):
                assert (reports / "plots" / name).read_bytes().startswith(PNG_SIGNATURE), name
        assert list(pd.read_csv(reports / "plots" / "roc.csv").columns) == ["fpr", "tpr"]
        assert list(pd.read_csv(reports / "plots" / "det.csv").columns) == ["apcer", "bpcer"]
        assert list(pd.read_csv(reports / "plots" / "scores.csv").columns) == ["score", "species"]

    def test_scores_csv_has_one_row_per_scored_sample(self, run):
        root, _ = run
        scores = _read_scores(root)
        assert len(scores) == 6 + 12 + 12  # live val + spoof calib + spoof test; train and rejected rows skipped
        assert scores.groupby("split").size().to_dict() == {"val": 6, "calib": 12, "test": 12}
        assert {"record_id", "path", "subject", "label", "species", *SCORE_NAMES} <= set(scores.columns)

    def test_metrics_json_matches_the_return_value_and_says_synthetic(self, run):
        root, metrics = run
        written = json.loads((root / "reports" / "metrics.json").read_text())
        assert written == metrics
        assert metrics["data"] == "synthetic"
        assert (metrics["score"], metrics["policy"], metrics["target"]) == ("latent_bg", "bpcer_at_apcer", 0.05)
        assert set(metrics["calibration"]) == {*SCORE_NAMES, BASELINE}
        assert {"auc", "eer", "bpcer100", "print_a4/auc", "replay_pc/bpcer100"} <= set(metrics["calibration"]["pixel"])
        test = metrics["test"]
        assert test["threshold"] == metrics["threshold"]
        for name in ("bpcer", "max_apcer", "hter", "auc", "apcer/print_a4"):
            assert test[f"{name}_ci_low"] <= test[f"{name}_ci_high"], name
        assert metrics["counts"] == {
            "calibration/bona_fide": 10, "calibration/attack/print_a4": 4, "calibration/attack/replay_pc": 4,
            "test/bona_fide": 4, "test/attack/print_a4": 4, "test/attack/replay_pc": 4,
        }


class TestThresholdIsFrozenOnCalibration:
    def test_threshold_is_choose_threshold_on_calibration_scores_alone(self, run):
        root, metrics = run
        scores = _read_scores(root)
        calibration = scores[scores["split"].isin(["val", "calib"])]
        expected = choose_threshold("bpcer_at_apcer", calibration["latent_bg"].to_numpy(),
                                    (calibration["label"] == "spoof").to_numpy(), calibration["species"].to_numpy(), 0.05)
        assert metrics["threshold"] == expected

    def test_other_test_data_leave_the_threshold_unchanged(self, run, model_dir, tmp_path):
        root, metrics = run
        _make_data(tmp_path, test_seed=99)
        perturbed = calibrate(_params(tmp_path, model_dir))
        old_test, new_test = _read_scores(root), _read_scores(tmp_path)
        assert not np.allclose(old_test.loc[old_test["split"] == "test", "latent_bg"],
                               new_test.loc[new_test["split"] == "test", "latent_bg"]), "the test data must differ"
        assert perturbed["threshold"] == metrics["threshold"]
        assert perturbed["calibration"] == metrics["calibration"]

    def test_test_split_is_opened_only_after_the_threshold_is_frozen(self, model_dir, tmp_path, monkeypatch):
        events = []
        score_dataset, choose = calibrate_module.score_dataset, calibrate_module.choose_threshold

        def spy_score(generator, dataset, runtime, batch_size, statistics=None):
            events.append(f"score {dataset.split}")
            return score_dataset(generator, dataset, runtime, batch_size, statistics)

        def spy_choose(*args, **kwargs):
            events.append("threshold")
            return choose(*args, **kwargs)

        monkeypatch.setattr(calibrate_module, "score_dataset", spy_score)
        monkeypatch.setattr(calibrate_module, "choose_threshold", spy_choose)
        _make_data(tmp_path, live_synthetic=False)
        metrics = calibrate(_params(tmp_path, model_dir))
        assert events[:3] == ["score val", "score calib", "threshold"]
        assert events.index("score test") > max(i for i, event in enumerate(events) if event == "threshold")
        assert metrics["data"] == "real"  # one manifest not synthetic: the report must not claim it is


def test_unknown_split_names_the_key_to_fix(run, model_dir):
    root, _ = run
    with pytest.raises(ValueError, match=r"no split 'nope'.*set calibrate\.live_split"):
        calibrate(_params(root, model_dir, live_split="nope"))


@pytest.fixture(scope="module")
def auto_run(tmp_path_factory, model_dir):
    root = tmp_path_factory.mktemp("auto")
    _make_data(root)
    return root, calibrate(_params(root, model_dir, score="auto", holdout_species=["replay_pc"]))


class TestScoresSelectionAndHoldout:
    """Issue "scoring that works": every score on calibration, selection and statistics without leakage."""

    def test_every_score_is_reported_and_the_shipped_one_won_on_calibration(self, auto_run):
        root, metrics = auto_run
        assert set(metrics["calibration"]) == {*SCORE_NAMES, BASELINE}
        chosen = metrics["score"]
        assert chosen != BASELINE and BASELINE not in metrics["selection"]["values"]
        selection = metrics["selection"]
        assert selection["chosen"] == chosen and selection["rule"] == "worst_species_auc_1se"
        best = max(value for value in selection["values"].values() if value is not None)
        assert selection["values"][selection["best_worst_species"]] == best
        # one standard error below the best worst species at most, and the best mean per-species AUC of those
        assert chosen in selection["eligible"] and selection["values"][chosen] >= best - selection["standard_error"]
        assert all(selection["values"][name] >= best - selection["standard_error"] for name in selection["eligible"])
        assert selection["mean_species_auc"][chosen] == max(selection["mean_species_auc"].values())
        assert 0 < selection["standard_error"] < 0.5
        assert (root / "reports" / "calibration_scores.md").read_text().count("| `") == len(SCORE_NAMES) + 1

    def test_held_out_species_never_reaches_calibration_but_is_reported_on_test(self, auto_run):
        _, metrics = auto_run
        assert "calibration/attack/replay_pc" not in metrics["counts"]
        assert not any(key.startswith("replay_pc/") for key in metrics["calibration"]["pixel"])
        assert metrics["test_per_species"]["replay_pc"]["unseen"] is True
        assert metrics["test_per_species"]["print_a4"]["unseen"] is False
        assert metrics["test"]["apcer/replay_pc"] is not None  # the frozen threshold is still applied to it

    def test_threshold_is_the_policy_on_the_chosen_score_without_the_held_out_species(self, auto_run):
        root, metrics = auto_run
        scores = _read_scores(root)
        calibration = scores[scores["split"].isin(["val", "calib"]) & (scores["species"] != "replay_pc")]
        expected = choose_threshold("bpcer_at_apcer", calibration[metrics["score"]].to_numpy(),
                                    (calibration["label"] == "spoof").to_numpy(), calibration["species"].to_numpy(), 0.05)
        assert metrics["threshold"] == expected

    def test_selection_never_reads_the_test_split(self, auto_run, model_dir, tmp_path):
        _, metrics = auto_run
        _make_data(tmp_path, test_seed=99)
        perturbed = calibrate(_params(tmp_path, model_dir, score="auto", holdout_species=["replay_pc"]))
        assert perturbed["selection"] == metrics["selection"] and perturbed["threshold"] == metrics["threshold"]
        assert perturbed["test"] != metrics["test"]

    def test_statistics_come_from_their_own_live_split_only(self, auto_run, model_dir, tmp_path):
        root, _ = auto_run
        statistics = json.loads((root / "reports" / "score_statistics.json").read_text())
        assert statistics["samples"] == 4  # the four live `statistics` crops, nothing else
        assert statistics["feature_precision"]  # feature_gaussian's Gaussian is fitted there too
        # other calibration and test data: the same statistics
        _make_data(tmp_path, test_seed=99)
        calibrate(_params(tmp_path, model_dir, score="auto", holdout_species=["replay_pc"]))
        assert json.loads((tmp_path / "reports" / "score_statistics.json").read_text()) == statistics

    def test_statistics_split_may_not_be_the_calibration_split(self, auto_run, model_dir):
        root, _ = auto_run
        with pytest.raises(ValueError, match="statistics_split 'val' is also the calibration split"):
            calibrate(_params(root, model_dir, statistics_split="val"))

    def test_statistics_split_may_not_be_the_training_split(self, auto_run, model_dir):
        root, _ = auto_run
        with pytest.raises(ValueError, match="statistics_split 'train' is the split the generator trained on"):
            calibrate(_params(root, model_dir, statistics_split="train"))

    def test_unknown_held_out_species_is_named(self, auto_run, model_dir):
        root, _ = auto_run
        with pytest.raises(ValueError, match=r"holdout_species \['mask'\]"):
            calibrate(_params(root, model_dir, holdout_species=["mask"]))


class TestBaselineSkewAndReconstruction:
    """Issue 10: the classical peer on the same rows, the live-set skew report and reconstruction quality."""

    def test_baseline_is_fitted_on_live_train_and_scored_on_every_row(self, auto_run):
        root, metrics = auto_run
        scores = _read_scores(root)
        assert scores[BASELINE].notna().all() and scores[BASELINE].std() > 0
        assert metrics["baseline"]["fitted_on"] == "live train (44 crops)"
        assert set(metrics["baseline"]["test_per_species"]) == set(ATTACKS)
        assert json.loads((root / "reports" / "baseline.json").read_text())["samples"] == 44

    def test_comparison_per_test_species_with_a_paired_interval(self, auto_run):
        _, metrics = auto_run
        assert set(metrics["comparison"]) == set(ATTACKS)
        for row in metrics["comparison"].values():
            assert row["ci_low"] <= row["difference"] <= row["ci_high"]
            assert row["difference"] == pytest.approx(row["model_auc"] - row["baseline_auc"])
            assert row["beats"] == (row["ci_low"] > 0)

    def test_too_few_training_crops_skip_the_baseline_and_say_why(self, model_dir, tmp_path):
        _make_data(tmp_path)
        manifest = pd.read_parquet(tmp_path / "live" / "manifest.parquet")
        dropped = manifest["subject"].isin([f"t{s}" for s in range(4, 44)])
        manifest.loc[dropped, ["reject_reason", "shard", "index_in_shard"]] = ["blur", -1, -1]
        write_manifest(manifest, tmp_path / "live" / "manifest.parquet")
        with pytest.warns(UserWarning, match="baseline not fitted"):
            metrics = calibrate(_params(tmp_path, model_dir))
        assert "needs at least" in metrics["baseline"]["skipped"] and metrics["comparison"] == {}
        assert "needs at least" in json.loads((tmp_path / "reports" / "baseline.json").read_text())["skipped"]
        assert BASELINE not in metrics["calibration"]

    def test_skew_report_and_shortcut_auc(self, auto_run):
        root, metrics = auto_run
        assert 0.0 <= metrics["shortcut_auc"] <= 1.0 and metrics["skew"]["shortcut_auc"] == metrics["shortcut_auc"]
        groups = metrics["skew"]["groups"]
        assert set(groups) == {"live train", "live statistics", "live val", "spoof-set live calib", "spoof-set live test"}
        assert groups["live train"]["rows"] == 44 and groups["spoof-set live test"]["rows"] == 4  # live rows only
        assert groups["live val"]["formats"] == {"png": 6}
        assert "Shortcut AUC" in (root / "reports" / SKEW_FILE).read_text()

    def test_reconstruction_quality_on_live_val(self, auto_run):
        _, metrics = auto_run
        reconstruction = metrics["reconstruction"]
        assert reconstruction["split"] == "val" and reconstruction["samples"] == 6
        assert 0 < reconstruction["psnr_db"] < 100 and -1 <= reconstruction["ssim"] <= 1

    def test_the_baseline_can_never_be_a_candidate(self, auto_run, model_dir):
        root, _ = auto_run
        with pytest.raises(Exception, match="candidates"):
            _params(root, model_dir, candidates=[BASELINE])
