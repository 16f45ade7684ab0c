"""The shipped score travels with the model: its statistics, why it was chosen, and the card's blind spots."""

from __future__ import annotations

import json

import pytest
import torch

from liveness.config import CropParams, DetectionParams
from liveness.model.factory import build_generator
from liveness.model.score import ScoreStatistics
from liveness.bundle import BundleConfig, Predictor, write_config
from liveness.registry.register import model_card, read_statistics
from tests.fixtures.bundles import TINY, astronaut, png_bytes

STATISTICS = ScoreStatistics(tuple([0.5] * 8), {"pixel": 0.3, "latent_bg_std": 1.0},
                             {"pixel": 0.1, "latent_bg_std": 0.5}, ("pixel", "latent_bg_std"), 10)


def _config(score: str, statistics: ScoreStatistics | None = STATISTICS) -> BundleConfig:
    return BundleConfig(TINY, CropParams(size=32), DetectionParams(device="cpu"), 0.5, score, "synthetic", statistics,
                        "score: auto with selection worst_species_auc: `deviation` has the highest ...")


def _bundle(folder, config):
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(build_generator(TINY.width_profile()).state_dict(), folder / "generator.pt")
    write_config(folder, config)
    return folder


def test_config_round_trips_statistics_and_selection(tmp_path):
    config = _config("deviation")
    write_config(tmp_path, config)
    assert BundleConfig.from_json(json.loads((tmp_path / "config.json").read_text())) == config


@pytest.mark.parametrize("score", ["fused", "deviation", "latent_bg_std"])
def test_a_statistics_score_without_statistics_is_refused(tmp_path, score):
    write_config(tmp_path, _config(score, statistics=None))
    with pytest.raises(ValueError, match=f"score '{score}' needs live-train statistics"):
        BundleConfig.from_json(json.loads((tmp_path / "config.json").read_text()))


def test_predictor_scores_with_the_bundled_statistics(tmp_path):
    predictor = Predictor(_bundle(tmp_path / "bundle", _config("deviation")))
    image = png_bytes(astronaut())
    (alone,) = predictor.predict([image])
    in_batch = predictor.predict([image, png_bytes(astronaut()[::-1].copy())])[0]
    assert alone.face_found and alone.score == pytest.approx(in_batch.score, rel=1e-5)
    other = Predictor(_bundle(tmp_path / "other", _config("deviation", ScoreStatistics(
        STATISTICS.background_std, {"pixel": 0.0, "latent_bg_std": 0.0}, {"pixel": 1.0, "latent_bg_std": 1.0},
        STATISTICS.fusion, 10))))
    assert other.predict([image])[0].score != pytest.approx(alone.score)  # the statistics are really used


def test_read_statistics_follows_the_metrics_file(tmp_path):
    (tmp_path / "score_statistics.json").write_text(json.dumps(STATISTICS.to_json()))
    metrics = {"statistics": {"file": "score_statistics.json"}}
    assert read_statistics(tmp_path / "metrics.json", metrics) == STATISTICS
    assert read_statistics(tmp_path / "metrics.json", {}) is None
    with pytest.raises(FileNotFoundError, match="re-run calibrate"):
        read_statistics(tmp_path / "metrics.json", {"statistics": {"file": "gone.json"}})


def test_model_card_says_why_and_lists_blind_spots_with_numbers():
    metrics = {
        "policy": "bpcer_at_apcer", "target": 0.05, "score": "deviation",
        "test": {"auc": 0.8, "bpcer100": 0.9},
        "test_per_species": {"print_a4": {"auc": 0.95, "eer": 0.05, "bpcer100": 0.2, "unseen": False},
                             "replay_pc": {"auc": 0.62, "eer": 0.4, "bpcer100": 0.97, "unseen": True}},
        "calibration": {"deviation": {"auc": 0.8, "print_a4/auc": 0.9}, "latent_bg": {"auc": 0.3, "print_a4/auc": 0.2}},
    }
    card = model_card("liveness", metrics, _config("deviation"), "abc")
    assert "## Why this score" in card and "worst_species_auc" in card
    assert "| replay_pc | 0.62 | 0.4 | 0.97 | **unseen** (held out of calibration) |" in card
    blind = card.split("## Known blind spots")[1].split("## Known limits")[0]
    assert "`replay_pc`: test AUC 0.62" in blind and "print_a4" not in blind  # 0.95 is above the bar
    assert "background live" in blind and "masks" in blind
    assert "| `latent_bg` | 0.3 | 0.2 |" in card
    assert "The patent's Δ (`latent_bg`) is **not** shipped: on the calibration split its pooled AUC was 0.3 against 0.8" in card
    assert "n/a (baseline not run)" in card and "Training" in card and "not recorded" in card


def test_model_card_puts_the_baseline_shortcut_and_losses_beside_the_model():
    metrics = {
        "policy": "bpcer_at_apcer", "target": 0.05, "score": "feature_gaussian", "test": {"auc": 0.9},
        "test_per_species": {"print_a4": {"auc": 0.99, "eer": 0.02, "bpcer100": 0.1, "unseen": False},
                             "mask_face": {"auc": 0.6, "eer": 0.4, "bpcer100": 0.99, "unseen": False}},
        "comparison": {"print_a4": {"baseline_auc": 0.97, "difference": 0.02, "ci_low": 0.005, "ci_high": 0.03,
                                    "beats": True},
                       "mask_face": {"baseline_auc": 0.56, "difference": 0.04, "ci_low": -0.02, "ci_high": 0.1,
                                     "beats": False}},
        "shortcut_auc": 0.531, "calibration": {},
    }
    training = {"losses_used": {"pixel": {"weight": 50.0, "used": True}, "identity": {"backbone": "onet"}},
                "reconstruction": {"psnr_db": 24.9, "ssim": 0.86}}
    card = model_card("liveness", metrics, _config("deviation"), "abc", training)
    assert "| print_a4 | 0.99 |" in card and "0.97; **yes** (Δ AUC 0.02, 95% CI 0.005 – 0.03)" in card
    assert "0.56; **no** (Δ AUC 0.04, 95% CI -0.02 – 0.1)" in card
    assert "Shortcut AUC" in card and "0.531" in card
    assert "- pixel: {'weight': 50.0, 'used': True}" in card and "PSNR 24.9 dB" in card
    assert "- identity network f: `onet`, MTCNN's ONet" in card


def test_model_card_names_the_identity_network_and_flags_a_stand_in():
    metrics = {"policy": "bpcer_at_apcer", "target": 0.05, "score": "ssim", "test": {}, "calibration": {}}
    for backbone, stand_in, expected in [("dlib_resnet", False, "dlib's ResNet face descriptor"),
                                         ("onet", True, "STAND-IN")]:
        training = {"losses_used": {"identity": {"backbone": backbone, "stand_in": stand_in, "used": True}}}
        card = model_card("liveness", metrics, _config("ssim"), "abc", training)
        assert f"- identity network f: `{backbone}`" in card and expected in card
        assert ("STAND-IN" in card) is stand_in
