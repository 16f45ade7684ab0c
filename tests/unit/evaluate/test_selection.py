"""Choosing the shipped score from the calibration table alone."""

import math

import pytest

from liveness.config import CalibrateParams, parse_params
from liveness.evaluate.selection import select_score
from liveness.model.score import SCORE_NAMES

SPECIES = ["print", "replay"]


def _settings(**calibrate):
    return parse_params({"calibrate": calibrate}).calibrate


def _row(auc, print_auc, replay_auc):
    return {"auc": auc, "print/auc": print_auc, "replay/auc": replay_auc}


TABLE = {
    "latent_bg": _row(0.80, 0.95, 0.40),  # best pooled, terrible on replay
    "pixel": _row(0.75, 0.76, 0.74),  # best worst-species
    "fused": _row(0.70, 0.74, 0.74),
}


def test_params_accept_exactly_the_scores_the_model_computes():
    assert CalibrateParams().candidates == list(SCORE_NAMES)
    for name in SCORE_NAMES:
        assert _settings(score=name).score == name
    with pytest.raises(Exception, match="score"):
        _settings(score="not_a_score")


def test_fixed_score_is_kept_whatever_the_table_says():
    chosen, selection = select_score(TABLE, _settings(score="latent_bg"), SPECIES)
    assert chosen == "latent_bg" and selection["rule"] == "fixed"


def test_worst_species_rule_picks_the_score_that_is_good_on_every_species():
    chosen, selection = select_score(TABLE, _settings(score="auto", selection="worst_species_auc"), SPECIES)
    assert chosen == "pixel"
    assert selection["values"] == {"latent_bg": 0.40, "pixel": 0.74, "fused": 0.74}
    assert "pixel" in selection["reason"] and "calibration" in selection["reason"]


def test_pooled_rule_picks_the_best_pooled_auc():
    chosen, _ = select_score(TABLE, _settings(score="auto", selection="pooled_auc"), SPECIES)
    assert chosen == "latent_bg"


def test_ties_go_to_pooled_auc_then_candidate_order():
    table = {"fused": _row(0.70, 0.74, 0.74), "pixel": _row(0.75, 0.74, 0.80)}
    chosen, _ = select_score(table, _settings(score="auto", candidates=["fused", "pixel"]), SPECIES)
    assert chosen == "pixel"  # same worst species AUC, better pooled
    table = {"fused": _row(0.7, 0.7, 0.7), "pixel": _row(0.7, 0.7, 0.7)}
    chosen, _ = select_score(table, _settings(score="auto", candidates=["fused", "pixel"]), SPECIES)
    assert chosen == "fused"


def test_only_candidates_are_considered_and_nan_loses():
    table = dict(TABLE, latent_face=_row(math.nan, math.nan, math.nan))
    chosen, _ = select_score(table, _settings(score="auto", candidates=["latent_bg", "latent_face"]), SPECIES)
    assert chosen == "latent_bg"


def test_fusion_cannot_contain_itself_and_candidates_cannot_be_empty():
    with pytest.raises(Exception, match="fusion"):
        _settings(fusion=["fused"])
    with pytest.raises(Exception, match="candidates"):
        _settings(candidates=[])


MASKED = {  # one species ("mask") that nothing detects: its AUCs are noise around 0.5
    "deviation": {"auc": 0.62, "print/auc": 0.70, "mask/auc": 0.54},  # best on the noise
    "ssim": {"auc": 0.80, "print/auc": 0.95, "mask/auc": 0.52},  # best where there is a signal
    "latent_bg": {"auc": 0.50, "print/auc": 0.60, "mask/auc": 0.40},
}


def test_one_standard_error_rule_lets_the_detected_species_decide_within_the_noise():
    species, counts = ["mask", "print"], {"mask": (47, 24), "print": (47, 24)}
    chosen, selection = select_score(MASKED, _settings(score="auto"), species, counts)
    # The default rule: 0.52 is within one SE (about 0.073 at 47 bona fide and 24 attacks) of 0.54.
    assert chosen == "ssim" and selection["rule"] == "worst_species_auc_1se"
    assert selection["best_worst_species"] == "deviation" and set(selection["eligible"]) == {"deviation", "ssim"}
    assert selection["standard_error"] == pytest.approx(0.0733, abs=0.001)
    assert "within one standard error" in selection["reason"] and "mask" in selection["reason"]
    # With many samples the SE is small and 0.52 is no longer as good as 0.54.
    chosen, selection = select_score(MASKED, _settings(score="auto"), species, {"mask": (5000, 5000)})
    assert chosen == "deviation" and selection["eligible"] == ["deviation"]
    # The plain rule takes the noise at face value.
    chosen, _ = select_score(MASKED, _settings(score="auto", selection="worst_species_auc"), species, counts)
    assert chosen == "deviation"


def test_auc_standard_error_matches_the_spread_of_simulated_aucs():
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from liveness.evaluate.selection import auc_standard_error

    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(50), np.ones(30)]
    aucs = [roc_auc_score(labels, np.r_[rng.normal(0, 1, 50), rng.normal(1.19, 1, 30)]) for _ in range(2000)]
    assert np.mean(aucs) == pytest.approx(0.8, abs=0.01)  # binormal, d' = 1.19
    assert auc_standard_error(0.8, 50, 30) == pytest.approx(np.std(aucs), rel=0.1)
    assert auc_standard_error(1.0, 50, 50) == 0.0
    assert auc_standard_error(0.8, 0, 50) == 0.0 and auc_standard_error(math.nan, 10, 10) == 0.0
    assert auc_standard_error(0.5, 10, 10) > auc_standard_error(0.5, 100, 100)
