import numpy as np
import pytest

from liveness.evaluate.metrics import UndefinedMetricWarning, apcer, bpcer
from liveness.evaluate.thresholds import POLICIES, choose_threshold

# Hand example: bona fide [0.1, 0.2, 0.3, 0.4], attacks (species "print") [0.35, 0.5, 0.6, 0.7].
BONA_FIDE = [0.1, 0.2, 0.3, 0.4]
ATTACKS = [0.35, 0.5, 0.6, 0.7]
SCORES = np.array(BONA_FIDE + ATTACKS)
IS_ATTACK = np.array([False] * 4 + [True] * 4)
SPECIES = np.array(["live"] * 4 + ["print"] * 4)


class TestPolicies:
    @pytest.mark.parametrize(
        "policy,target,expected,expected_apcer,expected_bpcer",
        [
            pytest.param("eer", None, 0.35, 0.25, 0.25, id="eer"),
            pytest.param("bpcer_at_apcer", 0.25, 0.4, 0.25, 0.0, id="bpcer_at_apcer_one_miss_allowed"),
            pytest.param("bpcer_at_apcer", 0.0, 0.3, 0.0, 0.25, id="bpcer_at_apcer_no_miss_allowed"),
            pytest.param("apcer_at_bpcer", 0.25, 0.3, 0.0, 0.25, id="apcer_at_bpcer_one_rejection_allowed"),
            pytest.param("apcer_at_bpcer", 0.0, 0.4, 0.25, 0.0, id="apcer_at_bpcer_no_rejection_allowed"),
        ],
    )
    def test_hand_example(self, policy, target, expected, expected_apcer, expected_bpcer):
        threshold = choose_threshold(policy, SCORES, IS_ATTACK, SPECIES, target)
        assert threshold == expected
        assert (apcer(ATTACKS, threshold), bpcer(BONA_FIDE, threshold)) == (expected_apcer, expected_bpcer)

    def test_bpcer_at_apcer_constrains_the_worst_species(self):
        scores = np.array([0.1, 0.2, 0.4, 0.9, 0.95, 0.3, 0.5])
        is_attack = np.array([False, False, False, True, True, True, True])
        species = np.array(["live"] * 3 + ["print", "print", "replay", "replay"])
        # replay APCER <= 0.25 with 2 replays means none missed: threshold below 0.3 (0.2, BPCER 1/3);
        # pooled APCER would have allowed missing 0.3 (1/4) and picked 0.4 (BPCER 0)
        assert choose_threshold("bpcer_at_apcer", scores, is_attack, species, 0.25) == 0.2

    def test_every_documented_policy_is_handled(self):
        for policy in POLICIES:
            target = None if policy == "eer" else 0.05
            assert np.isfinite(choose_threshold(policy, SCORES, IS_ATTACK, SPECIES, target))


class TestErrors:
    def test_unknown_policy_names_it_and_the_choices(self):
        with pytest.raises(ValueError, match=r"unknown threshold policy 'hter'.*eer, bpcer_at_apcer, apcer_at_bpcer"):
            choose_threshold("hter", SCORES, IS_ATTACK, SPECIES, 0.05)

    @pytest.mark.parametrize("policy", ["bpcer_at_apcer", "apcer_at_bpcer"])
    def test_missing_target_says_what_to_set(self, policy):
        with pytest.raises(ValueError, match=rf"'{policy}' needs a target"):
            choose_threshold(policy, SCORES, IS_ATTACK, SPECIES)

    def test_eer_refuses_a_target(self):
        with pytest.raises(ValueError, match="takes no target"):
            choose_threshold("eer", SCORES, IS_ATTACK, SPECIES, 0.05)

    def test_target_outside_0_1_is_refused(self):
        with pytest.raises(ValueError, match="must be a rate"):
            choose_threshold("bpcer_at_apcer", SCORES, IS_ATTACK, SPECIES, 5.0)

    @pytest.mark.parametrize("policy,target", [("eer", None), ("bpcer_at_apcer", 0.05), ("apcer_at_bpcer", 0.01)])
    def test_calibration_without_attacks_cannot_choose(self, policy, target):
        live = ~IS_ATTACK
        with pytest.warns(UndefinedMetricWarning), pytest.raises(ValueError, match="both bona fide and attack"):
            choose_threshold(policy, SCORES[live], IS_ATTACK[live], SPECIES[live], target)
