"""Choosing the shipped score from the calibration table alone."""

import math

import pytest

from liveness.config import SCORE_CHOICES, parse_params
from liveness.evaluate.calibrate import select_score
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


def test_config_and_model_name_the_same_scores():
    assert tuple(SCORE_CHOICES) == SCORE_NAMES


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
