import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from liveness.evaluate.metrics import (
    UndefinedMetricWarning,
    _resample,
    acer,
    apcer,
    apcer_at_bpcer,
    apcer_per_species,
    auc,
    bootstrap_ci,
    bpcer,
    bpcer_at_apcer,
    eer,
    hter,
    max_apcer,
    metric_report,
    tpr_at_fpr,
)

# The hand example: bona fide [0.1, 0.2, 0.3, 0.4], attacks [0.35, 0.5, 0.6, 0.7] (one species).
BONA_FIDE = [0.1, 0.2, 0.3, 0.4]
ATTACKS = [0.35, 0.5, 0.6, 0.7]


def presentations(bona_fide, **attacks_by_species):
    """(scores, is_attack, species) with bona fide first, labelled "live"."""
    scores = list(bona_fide) + [s for values in attacks_by_species.values() for s in values]
    species = ["live"] * len(bona_fide) + [name for name, values in attacks_by_species.items() for _ in values]
    return np.array(scores, dtype=float), np.array([name != "live" for name in species]), np.array(species)


HAND = presentations(BONA_FIDE, print=ATTACKS)


def candidate_thresholds(scores):
    """Every distinct decision: each distinct score, and one below the minimum."""
    unique = np.unique(scores)
    return np.append(unique, unique[0] - 1.0)


def brute_force_rates(scores, is_attack, species, threshold):
    """(max-over-species APCER, pooled detection rate, BPCER) by direct counting."""
    attack_species = np.unique(species[is_attack])
    worst = max(np.mean(scores[is_attack & (species == s)] <= threshold) for s in attack_species)
    return worst, np.mean(scores[is_attack] > threshold), np.mean(scores[~is_attack] > threshold)


def random_tied(seed, n=60):
    """Scores rounded to one decimal (many ties), two attack species."""
    rng = np.random.default_rng(seed)
    is_attack = rng.random(n) < 0.5
    is_attack[:2] = [False, True]
    scores = np.round(rng.normal(is_attack * 0.8, 0.5), 1)
    species = np.where(is_attack, np.where(rng.random(n) < 0.5, "print", "replay"), "live")
    species[1] = "print"
    return scores, is_attack, species


class TestApcerBpcer:
    @pytest.mark.parametrize(
        "threshold,expected_apcer,expected_bpcer",
        [
            pytest.param(0.38, 0.25, 0.25, id="hand_example"),
            pytest.param(0.35, 0.25, 0.25, id="attack_tied_with_threshold_is_bona_fide"),
            pytest.param(0.4, 0.25, 0.0, id="bona_fide_tied_with_threshold_is_bona_fide"),
            pytest.param(0.1, 0.0, 0.75, id="lowest_bona_fide_tied"),
            pytest.param(0.05, 0.0, 1.0, id="below_everything"),
            pytest.param(0.7, 1.0, 0.0, id="at_the_maximum_nothing_flagged"),
        ],
    )
    def test_hand_example(self, threshold, expected_apcer, expected_bpcer):
        assert apcer(ATTACKS, threshold) == expected_apcer
        assert bpcer(BONA_FIDE, threshold) == expected_bpcer

    def test_nan_threshold_is_refused(self):
        with pytest.raises(ValueError, match="threshold is NaN"):
            apcer(ATTACKS, float("nan"))


class TestPerSpecies:
    DATA = presentations([0.1, 0.2], print=[0.3, 0.6], replay=[0.4, 0.5, 0.7, 0.8])

    def test_apcer_per_species_and_max(self):
        per_species = apcer_per_species(*self.DATA, threshold=0.45)
        assert per_species == {"print": 0.5, "replay": 0.25}
        assert max_apcer(per_species) == 0.5

    def test_bona_fide_species_labels_are_ignored(self):
        scores, is_attack, species = self.DATA
        relabelled = np.where(is_attack, species, "print")
        assert apcer_per_species(scores, is_attack, relabelled, 0.45) == {"print": 0.5, "replay": 0.25}

    def test_acer_is_labelled_non_iso(self):
        assert acer(0.5, 0.0) == 0.25
        assert "NON-ISO" in acer.__doc__
        report = metric_report(*self.DATA, threshold=0.45)
        assert report["acer_non_iso"] == 0.25
        assert "acer" not in report

    def test_max_apcer_is_not_the_pooled_apcer(self):
        report = metric_report(*self.DATA, threshold=0.45)
        assert report["max_apcer"] == 0.5
        assert report["apcer_pooled"] == pytest.approx(2 / 6)


class TestEer:
    @pytest.mark.parametrize(
        "bona_fide,attacks,expected_eer,low,high",
        [
            pytest.param([0.1, 0.2], [0.8, 0.9], 0.0, 0.2, 0.8, id="separable"),
            pytest.param(BONA_FIDE, ATTACKS, 0.25, 0.35, 0.4, id="hand_example_exact_crossing"),
            pytest.param([0.2, 0.5], [0.5, 0.8], 0.25, 0.2, 0.5, id="tie_straddles_the_crossing"),
            pytest.param([0.1, 0.3, 0.3], [0.3, 0.6, 0.9], 2 / 9, 0.1, 0.3, id="tie_then_interpolation"),
            pytest.param([0.5, 0.5], [0.5, 0.5], 0.5, 0.5 - 1e-9, 0.5, id="all_scores_tied"),
        ],
    )
    def test_rate_and_threshold_between_the_right_scores(self, bona_fide, attacks, expected_eer, low, high):
        rate, threshold = eer(*presentations(bona_fide, print=attacks)[:2])
        assert rate == pytest.approx(expected_eer)
        assert low <= threshold <= high

    @pytest.mark.parametrize("bona_fide,attacks", [([0.1, 0.2], [0.8, 0.9]), (BONA_FIDE, ATTACKS)])
    def test_exact_crossing_threshold_realises_the_eer(self, bona_fide, attacks):
        rate, threshold = eer(*presentations(bona_fide, print=attacks)[:2])
        assert apcer(attacks, threshold) == bpcer(bona_fide, threshold) == rate

    def test_hand_example_threshold_is_the_lowest_realising_score(self):
        assert eer(*HAND[:2]) == (0.25, 0.35)

    def test_order_of_presentations_does_not_matter(self):
        scores, is_attack, _ = random_tied(3)
        order = np.random.default_rng(0).permutation(scores.size)
        assert eer(scores, is_attack) == eer(scores[order], is_attack[order])


class TestHter:
    @pytest.mark.parametrize(
        "threshold,expected",
        [(0.38, 0.25), (0.45, 0.125), (0.15, 0.375), pytest.param(0.35, 0.25, id="tie_at_threshold")],
    )
    def test_at_a_frozen_threshold(self, threshold, expected):
        assert hter(*HAND[:2], threshold) == expected


class TestAuc:
    def test_hand_pair_count(self):
        # 0.35 beats 3 of 4 bona fide scores, the other attacks beat all 4: 15 of 16 pairs
        assert auc(*HAND[:2]) == pytest.approx(15 / 16)

    def test_ties_count_half(self):
        # pairs (attack, bona fide): (0.5, 0.5) tie, (0.5, 0.1), (0.9, 0.5), (0.9, 0.1): 3.5 of 4
        assert auc(*presentations([0.5, 0.1], print=[0.5, 0.9])[:2]) == pytest.approx(3.5 / 4)

    @pytest.mark.parametrize("seed", [0, 1, 2])
    def test_agrees_with_roc_auc_score_on_tied_data(self, seed):
        scores, is_attack, _ = random_tied(seed)
        assert auc(scores, is_attack) == pytest.approx(roc_auc_score(is_attack, scores))


class TestTprAtFpr:
    @pytest.mark.parametrize(
        "fpr,expected",
        [
            pytest.param(0.01, 0.75, id="below_one_bona_fide_step_uses_bpcer_0"),
            pytest.param(0.0, 0.75, id="zero"),
            pytest.param(0.2499, 0.75, id="just_below_the_step"),
            pytest.param(0.25, 1.0, id="exactly_one_step"),
            pytest.param(1.0, 1.0, id="anything_goes"),
        ],
    )
    def test_small_sample_steps(self, fpr, expected):
        assert tpr_at_fpr(*HAND[:2], fpr) == expected

    def test_single_bona_fide_above_an_attack(self):
        # only BPCER 0 (threshold 0.9) or 1 are achievable; at BPCER 0 one of two attacks is caught
        assert tpr_at_fpr(*presentations([0.9], print=[0.1, 0.95])[:2], 0.5) == 0.5

    @pytest.mark.parametrize("seed", [0, 1, 2])
    @pytest.mark.parametrize("fpr", [0.0, 0.05, 0.1, 0.3])
    def test_matches_brute_force_on_tied_data(self, seed, fpr):
        scores, is_attack, species = random_tied(seed)
        rates = [brute_force_rates(scores, is_attack, species, t) for t in candidate_thresholds(scores)]
        assert tpr_at_fpr(scores, is_attack, fpr) == pytest.approx(max(det for _, det, bp in rates if bp <= fpr))

    def test_rate_outside_0_1_is_refused(self):
        with pytest.raises(ValueError, match="fpr must be a rate"):
            tpr_at_fpr(*HAND[:2], 1.5)


class TestBpcerAtApcer:
    # 100 bona fide at 0..99; print attacks 100..149 (never missed below 100); replay 50.5..99.5 overlap.
    # Max APCER <= 5% allows 2 of 50 replays missed (t = 52, BPCER 47/100); pooled APCER would allow 5.
    # Max APCER <= 1% allows none (t = 50, BPCER 49/100).
    COUNTED = presentations(np.arange(100.0), print=np.arange(100.0, 150.0), replay=np.arange(50, 100) + 0.5)

    @pytest.mark.parametrize("target,expected", [(0.05, (0.47, 52.0)), (0.01, (0.49, 50.0))])
    def test_counted_case_uses_max_over_species(self, target, expected):
        assert bpcer_at_apcer(*self.COUNTED, target) == expected

    def test_report_has_bpcer20_and_bpcer100(self):
        report = metric_report(*self.COUNTED, threshold=52.0)
        assert (report["bpcer20"], report["bpcer100"]) == (0.47, 0.49)

    @pytest.mark.parametrize(
        "target,expected",
        [
            pytest.param(0.25, (0.0, 0.6), id="tied_attack_may_be_missed"),
            pytest.param(0.0, (1 / 3, 0.2), id="tie_forces_rejecting_the_tied_bona_fide"),
        ],
    )
    def test_tie_between_bona_fide_and_attack(self, target, expected):
        data = presentations([0.1, 0.2, 0.6], print=[0.6, 0.7, 0.8, 0.9])
        rate, threshold = bpcer_at_apcer(*data, target)
        assert (rate, threshold) == pytest.approx(expected)

    def test_attack_at_the_minimum_needs_a_threshold_below_every_score(self):
        rate, threshold = bpcer_at_apcer(*presentations([0.5], print=[0.1, 0.9]), 0.0)
        assert rate == 1.0
        assert threshold < 0.1 and apcer([0.1, 0.9], threshold) == 0.0

    def test_equal_bpcer_resolved_to_the_lower_apcer(self):
        # thresholds 0.4 and 0.5 both give BPCER 0 with APCER <= 0.5; 0.4 misses fewer attacks
        assert bpcer_at_apcer(*HAND, 0.5) == (0.0, 0.4)

    @pytest.mark.parametrize("seed", [0, 1, 2, 3])
    @pytest.mark.parametrize("target", [0.0, 0.05, 0.2])
    def test_matches_brute_force_on_tied_data(self, seed, target):
        scores, is_attack, species = random_tied(seed)
        rates = [brute_force_rates(scores, is_attack, species, t) for t in candidate_thresholds(scores)]
        rate, threshold = bpcer_at_apcer(scores, is_attack, species, target)
        assert rate == pytest.approx(min(bp for worst, _, bp in rates if worst <= target))
        worst, _, realised = brute_force_rates(scores, is_attack, species, threshold)
        assert worst <= target and realised == pytest.approx(rate)


class TestApcerAtBpcer:
    @pytest.mark.parametrize(
        "target,expected",
        [
            pytest.param(0.25, (0.0, 0.3), id="one_bona_fide_may_be_rejected"),
            pytest.param(0.0, (0.25, 0.4), id="no_bona_fide_rejected"),
            pytest.param(0.5, (0.0, 0.3), id="equal_apcer_resolved_to_the_lower_bpcer"),
        ],
    )
    def test_hand_example(self, target, expected):
        assert apcer_at_bpcer(*HAND, target) == expected


class TestMetricReport:
    def test_hand_example(self):
        report = metric_report(*HAND, threshold=0.38)
        assert report == pytest.approx(
            {
                "threshold": 0.38,
                "n_bona_fide": 4,
                "n_attack/print": 4,
                "apcer/print": 0.25,
                "max_apcer": 0.25,
                "apcer_pooled": 0.25,
                "bpcer": 0.25,
                "acer_non_iso": 0.25,
                "hter": 0.25,
                "eer": 0.25,
                "eer_threshold": 0.35,
                "auc": 15 / 16,
                "bpcer20": 0.25,
                "bpcer100": 0.25,
                "tpr_at_fpr_1pct": 0.75,
                "tpr_at_fpr_0.5pct": 0.75,
                "tpr_at_fpr_0.1pct": 0.75,
            }
        )

    def test_values_are_plain_python_numbers(self):
        assert all(type(value) in (int, float) for value in metric_report(*HAND, threshold=0.38).values())

    def test_boolean_labels_are_required(self):
        scores, is_attack, species = HAND
        with pytest.raises(TypeError, match="boolean"):
            metric_report(scores, is_attack.astype(int), species, 0.38)

    def test_nan_scores_are_refused(self):
        scores, is_attack, species = HAND
        with pytest.raises(ValueError, match="finite"):
            metric_report(np.where(is_attack, scores, np.nan), is_attack, species, 0.38)


class TestDegenerate:
    def test_no_attacks(self):
        with pytest.warns(UndefinedMetricWarning, match="no attack presentations"):
            report = metric_report(*presentations(BONA_FIDE), threshold=0.38)
        assert report["bpcer"] == 0.25
        for name in ("max_apcer", "acer_non_iso", "hter", "eer", "auc", "bpcer20", "tpr_at_fpr_1pct"):
            assert math.isnan(report[name]), name

    def test_no_bona_fide(self):
        with pytest.warns(UndefinedMetricWarning, match="no bona fide presentations"):
            report = metric_report(*presentations([], print=ATTACKS), threshold=0.38)
        assert report["apcer/print"] == 0.25 and report["n_bona_fide"] == 0
        for name in ("bpcer", "acer_non_iso", "hter", "eer", "auc", "bpcer100", "tpr_at_fpr_0.1pct"):
            assert math.isnan(report[name]), name

    def test_no_presentations_at_all(self):
        with pytest.warns(UndefinedMetricWarning):
            report = metric_report([], np.array([], dtype=bool), [], threshold=0.5)
        assert math.isnan(report["eer"]) and math.isnan(report["bpcer"])

    def test_expected_species_missing(self):
        with pytest.warns(UndefinedMetricWarning, match="'replay'"):
            report = metric_report(*HAND, threshold=0.38, expected_species=["print", "replay"])
        assert report["n_attack/replay"] == 0 and math.isnan(report["apcer/replay"])
        assert report["max_apcer"] == report["apcer/print"] == 0.25
        assert report["bpcer20"] == 0.25

    def test_expected_species_missing_in_apcer_per_species(self):
        with pytest.warns(UndefinedMetricWarning, match="'replay'"):
            per_species = apcer_per_species(*HAND, threshold=0.38, expected_species=["replay"])
        assert per_species["print"] == 0.25 and math.isnan(per_species["replay"])

    @pytest.mark.parametrize(
        "call",
        [
            pytest.param(lambda: apcer([], 0.5), id="apcer"),
            pytest.param(lambda: bpcer([], 0.5), id="bpcer"),
            pytest.param(lambda: max_apcer({"print": float("nan")}), id="max_apcer"),
            pytest.param(lambda: hter(*presentations(BONA_FIDE)[:2], 0.5), id="hter"),
            pytest.param(lambda: auc(*presentations(BONA_FIDE)[:2]), id="auc"),
            pytest.param(lambda: tpr_at_fpr(*presentations(BONA_FIDE)[:2], 0.01), id="tpr_at_fpr"),
        ],
    )
    def test_single_metrics_return_nan_and_warn(self, call):
        with pytest.warns(UndefinedMetricWarning, match="undefined"):
            assert math.isnan(call())

    @pytest.mark.parametrize(
        "call",
        [
            pytest.param(lambda: eer(*presentations(BONA_FIDE)[:2]), id="eer_no_attacks"),
            pytest.param(lambda: eer(*presentations([], print=ATTACKS)[:2]), id="eer_no_bona_fide"),
            pytest.param(lambda: bpcer_at_apcer(*presentations(BONA_FIDE), 0.05), id="bpcer_at_apcer"),
            pytest.param(lambda: apcer_at_bpcer(*presentations([], print=ATTACKS), 0.01), id="apcer_at_bpcer"),
        ],
    )
    def test_operating_points_return_nan_pairs_and_warn(self, call):
        with pytest.warns(UndefinedMetricWarning, match="undefined"):
            rate, threshold = call()
        assert math.isnan(rate) and math.isnan(threshold)


def gaussian_presentations(seed=0, n_bona_fide=300, n_per_species=150):
    rng = np.random.default_rng(seed)
    return presentations(
        rng.normal(0.0, 1.0, n_bona_fide),
        print=rng.normal(2.0, 1.0, n_per_species),
        replay=rng.normal(1.5, 1.0, n_per_species),
    )


class TestBootstrap:
    NAMES = ["eer", "auc", "bpcer", "max_apcer", "hter", "bpcer20"]

    def test_deterministic_for_a_seed(self):
        data = gaussian_presentations()
        first = bootstrap_ci(*data, 0.8, self.NAMES, n_resamples=200, seed=7)
        assert bootstrap_ci(*data, 0.8, self.NAMES, n_resamples=200, seed=7) == first
        assert bootstrap_ci(*data, 0.8, self.NAMES, n_resamples=200, seed=8) != first

    def test_interval_contains_the_point_estimate(self):
        data = gaussian_presentations()
        point = metric_report(*data, threshold=0.8)
        intervals = bootstrap_ci(*data, 0.8, self.NAMES, n_resamples=300)
        for name, (low, high) in intervals.items():
            assert low < point[name] < high, name

    def test_strata_sizes_are_kept(self):
        intervals = bootstrap_ci(*gaussian_presentations(), 0.8, ["n_bona_fide", "n_attack/print"], n_resamples=50)
        assert intervals == {"n_bona_fide": (300, 300), "n_attack/print": (150, 150)}

    def test_higher_confidence_is_wider(self):
        data = gaussian_presentations()
        narrow = bootstrap_ci(*data, 0.8, ["hter"], n_resamples=300, confidence=0.5)["hter"]
        wide = bootstrap_ci(*data, 0.8, ["hter"], n_resamples=300, confidence=0.95)["hter"]
        assert wide[0] < narrow[0] and narrow[1] < wide[1]

    def test_cluster_bootstrap_is_wider_on_clustered_data(self):
        # 20 subjects per class, 20 presentations each; the subject effect dominates the score
        rng = np.random.default_rng(0)
        subject_effect = np.repeat(rng.normal(0.0, 1.0, 40), 20)
        is_attack = np.repeat([False, True], 400)
        scores = subject_effect + 1.0 * is_attack + rng.normal(0.0, 0.1, 800)
        species = np.where(is_attack, "print", "live")
        subjects = np.repeat(np.arange(40), 20)

        def width(groups):
            intervals = bootstrap_ci(scores, is_attack, species, 0.5, ["bpcer"], n_resamples=300, groups=groups)
            return intervals["bpcer"][1] - intervals["bpcer"][0]

        assert width(subjects) > 2 * width(None)

    def test_cluster_resample_draws_whole_subjects(self):
        stratum = np.arange(2, 8)  # subjects a (3 presentations), b (1), c (2); "x" lies outside the stratum
        subjects = np.array(["x", "x", "a", "a", "a", "b", "c", "c"])
        for drawn in _resample(stratum, subjects, n_resamples=50, rng=np.random.default_rng(0)):
            assert np.isin(drawn, stratum).all()
            copies = np.bincount(drawn, minlength=8)
            per_subject = [set(copies[subjects == name].tolist()) for name in "abc"]
            assert all(len(counts) == 1 for counts in per_subject)  # a subject comes whole or not at all
            assert sum(counts.pop() for counts in per_subject) == 3  # as many subjects as the stratum has

    def test_undefined_metric_gives_nan_interval(self):
        with pytest.warns(UndefinedMetricWarning, match="no attack presentations"):
            intervals = bootstrap_ci(*presentations(BONA_FIDE), 0.38, ["eer", "bpcer"], n_resamples=20)
        assert all(math.isnan(value) for value in intervals["eer"])
        assert not math.isnan(intervals["bpcer"][0])

    @pytest.mark.parametrize(
        "kwargs,message",
        [
            pytest.param({"metric_names": ["acer"]}, "unknown metric names", id="unknown_metric"),
            pytest.param({"confidence": 1.0}, "confidence", id="confidence"),
            pytest.param({"n_resamples": 0}, "n_resamples", id="n_resamples"),
            pytest.param({"groups": [1, 2]}, "groups", id="groups_length"),
        ],
    )
    def test_bad_arguments_are_refused(self, kwargs, message):
        arguments = {"metric_names": ["eer"], "n_resamples": 10} | kwargs
        with pytest.raises(ValueError, match=message):
            bootstrap_ci(*HAND, 0.38, **arguments)


class TestPairedAucDifference:
    def test_better_score_has_an_interval_above_zero(self):
        from liveness.evaluate.metrics import paired_auc_difference_ci

        rng = np.random.default_rng(0)
        attack = np.r_[np.zeros(200, bool), np.ones(200, bool)]
        good = attack + rng.normal(0, 0.3, 400)
        poor = attack + rng.normal(0, 1.5, 400)
        point, low, high = paired_auc_difference_ci(good, poor, attack, n_resamples=200, seed=1,
                                                    groups=np.arange(400) // 4)
        assert 0 < low <= point <= high
        back, low_back, high_back = paired_auc_difference_ci(poor, good, attack, n_resamples=200, seed=1)
        assert back == pytest.approx(-point) and high_back < 0

    def test_same_score_gives_zero_width_interval(self):
        from liveness.evaluate.metrics import paired_auc_difference_ci

        scores = np.linspace(0, 1, 20)
        attack = np.arange(20) >= 10
        assert paired_auc_difference_ci(scores, scores, attack, n_resamples=50) == (0.0, 0.0, 0.0)
