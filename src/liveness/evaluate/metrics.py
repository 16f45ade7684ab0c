"""ISO/IEC 30107-3 presentation-attack-detection (PAD) metrics as pure functions on score arrays.

Conventions used throughout ``liveness.evaluate``:

- a score is one float per presentation; HIGHER means MORE LIKELY an attack;
- a presentation is classified as an attack when ``score > threshold`` (strictly), so a score equal to the
  threshold is classified bona fide;
- ``is_attack`` (bool) marks attack presentations; ``species`` names the PAI (presentation attack instrument)
  species of each attack, and its entries for bona fide presentations are ignored (e.g. ``"live"``).

ISO/IEC 30107-3 terms: APCER is the share of attack presentations of ONE PAI species classified as bona fide;
the standard reports it per species and the worst one (``max_apcer``). BPCER is the share of bona fide
presentations classified as attacks. BPCER20 / BPCER100 are the BPCER at the operating point where the max
APCER is at most 5% / 1%. EER, HTER, AUC and TPR@FPR pool all species, as in the PAD literature; ACER is not
an ISO metric and is labelled ``acer_non_iso``.

Every operating point a score set can realise comes from scikit-learn's ROC (``roc_curve``, positive class =
attack): its points are the thresholds "just below each distinct score", which this module represents by the
next lower distinct score (or just below the minimum), so every candidate threshold is exact on ties.

Undefined metrics (no attacks, no bona fide, an expected species without attacks) are NaN and come with an
``UndefinedMetricWarning`` that names what is missing.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import auc as _trapezoid_area
from sklearn.metrics import roc_curve

BPCER_AT_APCER_TARGETS: dict[str, float] = {"bpcer20": 0.05, "bpcer100": 0.01}
"""ISO/IEC 30107-3 BPCERx: BPCER at max APCER <= 1/x."""

TPR_AT_FPR_TARGETS: dict[str, float] = {"tpr_at_fpr_1pct": 0.01, "tpr_at_fpr_0.5pct": 0.005, "tpr_at_fpr_0.1pct": 0.001}
"""Attack detection rate at a bona fide false-alarm rate (BPCER) of at most 1%, 0.5%, 0.1%."""


class UndefinedMetricWarning(UserWarning):
    """A metric is NaN because the presentations it needs are missing."""


def _warn(message: str, stacklevel: int = 3) -> None:
    """Emit an ``UndefinedMetricWarning``; ``stacklevel`` counts frames up from here (3: the caller's caller)."""
    warnings.warn(message, UndefinedMetricWarning, stacklevel=stacklevel)


# --- validated inputs -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Presentations:
    """Validated scores with species as integer codes (-1 for bona fide), so resamples keep the species list."""

    scores: np.ndarray
    is_attack: np.ndarray
    species_code: np.ndarray
    species_names: tuple[str, ...]

    def take(self, index: np.ndarray) -> _Presentations:
        return _Presentations(self.scores[index], self.is_attack[index], self.species_code[index], self.species_names)

    @property
    def n_attack_per_species(self) -> np.ndarray:
        return np.bincount(self.species_code[self.is_attack], minlength=len(self.species_names))


def _check_scores(scores: ArrayLike, is_attack: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    is_attack = np.asarray(is_attack)
    if scores.ndim != 1 or is_attack.shape != scores.shape:
        raise ValueError(
            f"scores and is_attack must be 1-D of equal length, got shapes {scores.shape} and {is_attack.shape}"
        )
    if is_attack.dtype != np.bool_:
        raise TypeError(f"is_attack must be a boolean array (True = attack presentation), got {is_attack.dtype}")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite; found NaN or inf")
    return scores, is_attack


def _presentations(
    scores: ArrayLike, is_attack: ArrayLike, species: ArrayLike, expected_species: Iterable[str] = ()
) -> _Presentations:
    scores, is_attack = _check_scores(scores, is_attack)
    species = np.asarray(species).astype(str)
    if species.shape != scores.shape:
        raise ValueError(f"species must have one entry per score, got shape {species.shape} for {scores.shape}")
    names = np.array(sorted(set(species[is_attack].tolist()) | set(expected_species)), dtype=str)
    code = np.full(scores.shape, -1, dtype=np.intp)
    code[is_attack] = np.searchsorted(names, species[is_attack])
    return _Presentations(scores, is_attack, code, tuple(names.tolist()))


def _check_threshold(threshold: float) -> None:
    """A NaN threshold (e.g. from a failed calibration) would make every comparison False: APCER 0, BPCER 0."""
    if np.isnan(threshold):
        raise ValueError("threshold is NaN; choose it on a calibration split with both classes")


def _check_rate(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a rate in [0, 1], got {value}")


# --- error rates at one threshold -----------------------------------------------------------------------------


def _rate(errors: np.ndarray) -> float:
    return float(np.count_nonzero(errors) / errors.size) if errors.size else float("nan")


def _species_apcer(p: _Presentations, thresholds: np.ndarray) -> np.ndarray:
    """APCER of each species (rows, ``species_names`` order) at each threshold (columns); NaN rows if no attacks."""
    rows = np.full((len(p.species_names), thresholds.size), np.nan)
    for code in range(len(p.species_names)):
        attack_scores = np.sort(p.scores[p.species_code == code])
        if attack_scores.size:
            rows[code] = np.searchsorted(attack_scores, thresholds, side="right") / attack_scores.size
    return rows


def _max_over_species(species_apcer: np.ndarray) -> np.ndarray:
    """Worst APCER over the species with attacks (NaN rows skipped), per threshold."""
    if species_apcer.shape[0] == 0:
        return np.full(species_apcer.shape[1], np.nan)
    return np.fmax.reduce(species_apcer, axis=0)


def apcer(scores_attack: ArrayLike, threshold: float) -> float:
    """APCER: share of attack presentations classified bona fide (``score <= threshold``).

    Pass the scores of one PAI species for the ISO/IEC 30107-3 per-species APCER; pooled over species it is
    the (non-ISO) overall attack miss rate.
    """
    _check_threshold(threshold)
    scores_attack = np.asarray(scores_attack, dtype=np.float64)
    if scores_attack.size == 0:
        _warn("no attack presentations: APCER is undefined (NaN)")
    return _rate(scores_attack <= threshold)


def bpcer(scores_bona_fide: ArrayLike, threshold: float) -> float:
    """BPCER: share of bona fide presentations classified as attacks (``score > threshold``)."""
    _check_threshold(threshold)
    scores_bona_fide = np.asarray(scores_bona_fide, dtype=np.float64)
    if scores_bona_fide.size == 0:
        _warn("no bona fide presentations: BPCER is undefined (NaN)")
    return _rate(scores_bona_fide > threshold)


def _warn_missing_species(p: _Presentations, stacklevel: int) -> None:
    absent = [name for name, n in zip(p.species_names, p.n_attack_per_species, strict=True) if n == 0]
    if absent:
        _warn(
            f"PAI species without attack presentations: {', '.join(map(repr, absent))}: their APCER is undefined"
            " (NaN); max APCER, BPCER20 and BPCER100 are taken over the other species",
            stacklevel,
        )


def apcer_per_species(
    scores: ArrayLike,
    is_attack: ArrayLike,
    species: ArrayLike,
    threshold: float,
    expected_species: Iterable[str] = (),
) -> dict[str, float]:
    """ISO/IEC 30107-3 APCER of each PAI species at ``threshold``.

    Species are those of the attack presentations plus ``expected_species`` (the protocol's list), so a
    species missing from this split shows up as NaN, with a warning, instead of silently leaving the max.
    """
    _check_threshold(threshold)
    p = _presentations(scores, is_attack, species, expected_species)
    if not p.is_attack.any():
        _warn("no attack presentations: APCER per species is undefined (NaN)")
    else:
        _warn_missing_species(p, stacklevel=4)
    values = _species_apcer(p, np.array([threshold], dtype=np.float64))[:, 0]
    return dict(zip(p.species_names, values.tolist(), strict=True))


def max_apcer(apcer_by_species: Mapping[str, float]) -> float:
    """ISO/IEC 30107-3 max APCER: the worst PAI species; species with NaN APCER (no attacks) are skipped."""
    defined = [value for value in apcer_by_species.values() if not np.isnan(value)]
    if not defined:
        _warn("no PAI species with attack presentations: max APCER is undefined (NaN)")
        return float("nan")
    return max(defined)


def acer(apcer_max: float, bpcer: float) -> float:
    """ACER = (max APCER + BPCER) / 2. NON-ISO: ISO/IEC 30107-3 does not define it (it mixes two different
    error types); kept only for comparison with the OULU-NPU / SiW literature, reported as ``acer_non_iso``."""
    return (apcer_max + bpcer) / 2


def _pooled_hter(scores: np.ndarray, is_attack: np.ndarray, threshold: float) -> float:
    return (_rate(scores[is_attack] <= threshold) + _rate(scores[~is_attack] > threshold)) / 2


# --- operating points (the ROC) ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _OperatingPoints:
    """Every distinct operating point of a score set, from the ROC, by decreasing threshold.

    Point k is the decision ``score > thresholds[k]``; ``thresholds[0]`` is the maximum score (nothing flagged)
    and the last is just below the minimum (everything flagged). APCER here is pooled over species.
    """

    thresholds: np.ndarray
    apcer: np.ndarray
    bpcer: np.ndarray
    detection_rate: np.ndarray
    auc: float


def _has_both_classes(is_attack: np.ndarray) -> bool:
    return bool(is_attack.any() and not is_attack.all())


def _operating_points(scores: np.ndarray, is_attack: np.ndarray) -> _OperatingPoints:
    """The ROC with ``drop_intermediate=False`` (one point per distinct score), rates recomputed from counts.

    sklearn returns rates; the integer counts are recovered so that equal rates, e.g. 2/50 and 0.04, compare
    exactly against targets.
    """
    false_alarm_rate, detection, roc_thresholds = roc_curve(is_attack, scores, pos_label=True, drop_intermediate=False)
    n_attack = int(np.count_nonzero(is_attack))
    n_bona_fide = is_attack.size - n_attack
    detected = np.rint(detection * n_attack)
    false_alarms = np.rint(false_alarm_rate * n_bona_fide)
    # ROC point k flags scores >= roc_thresholds[k]; with ">" that is the next lower distinct score.
    thresholds = np.append(roc_thresholds[1:], np.nextafter(roc_thresholds[-1], -np.inf))
    return _OperatingPoints(
        thresholds=thresholds,
        apcer=(n_attack - detected) / n_attack,
        bpcer=false_alarms / n_bona_fide,
        detection_rate=detected / n_attack,
        auc=float(_trapezoid_area(false_alarm_rate, detection)),
    )


def _eer(points: _OperatingPoints) -> tuple[float, float]:
    """Interpolate linearly between the two ROC points that bracket APCER == BPCER.

    APCER - BPCER falls strictly from +1 (top threshold) to -1 (below the minimum), so the bracket is unique.
    """
    gap = points.apcer - points.bpcer
    k = int(np.argmax(gap <= 0))
    weight = gap[k - 1] / (gap[k - 1] - gap[k])
    rate = (1 - weight) * points.bpcer[k - 1] + weight * points.bpcer[k]
    threshold = (1 - weight) * points.thresholds[k - 1] + weight * points.thresholds[k]
    return float(rate), float(threshold)


def _tpr_at_fpr(points: _OperatingPoints, fpr: float) -> float:
    """Detection rate at the largest achievable BPCER <= fpr (point 0, BPCER 0, always qualifies)."""
    k = int(np.flatnonzero(points.bpcer <= fpr)[-1])
    return float(points.detection_rate[k])


def _bpcer_at_apcer(points: _OperatingPoints, worst_apcer: np.ndarray, target: float) -> tuple[float, float]:
    """Lowest BPCER with max APCER <= target; among thresholds with that BPCER, the one with the lowest APCER.

    Max APCER falls as the threshold falls, so the feasible points are a suffix (the last point, everything
    flagged, has APCER 0); BPCER rises along it, so its first point has the lowest BPCER.
    """
    best = points.bpcer[int(np.argmax(worst_apcer <= target))]
    k = int(np.searchsorted(points.bpcer, best, side="right")) - 1
    return float(best), float(points.thresholds[k])


def _apcer_at_bpcer(points: _OperatingPoints, worst_apcer: np.ndarray, target: float) -> tuple[float, float]:
    """Lowest max APCER with BPCER <= target; among thresholds with that APCER, the one with the lowest BPCER.

    BPCER rises as the threshold falls, so the feasible points are a prefix (point 0 has BPCER 0) and its
    last point has the lowest max APCER.
    """
    best = worst_apcer[int(np.flatnonzero(points.bpcer <= target)[-1])]
    k = int(np.argmax(worst_apcer <= best))
    return float(best), float(points.thresholds[k])


def _two_class_points(
    scores: ArrayLike, is_attack: ArrayLike, metric: str, stacklevel: int = 4
) -> _OperatingPoints | None:
    """The operating points, or None (warned) when a class is missing and ``metric`` is undefined."""
    scores, is_attack = _check_scores(scores, is_attack)
    for missing, absent in (("attack", not is_attack.any()), ("bona fide", is_attack.all())):
        if absent:
            _warn(f"no {missing} presentations: {metric} is undefined (NaN)", stacklevel)
            return None
    return _operating_points(scores, is_attack)


def eer(scores: ArrayLike, is_attack: ArrayLike) -> tuple[float, float]:
    """Equal error rate (pooled APCER == BPCER) and its threshold, interpolated on the ROC.

    The rate is interpolated linearly between the two bracketing ROC points (tied scores form one diagonal
    ROC segment, so a tie straddling the crossing gives the expected EER of random tie-breaking). The threshold
    is interpolated the same way between the lowest thresholds realising the two points; it realises the
    first point at which APCER <= BPCER.
    """
    points = _two_class_points(scores, is_attack, "EER")
    return (float("nan"), float("nan")) if points is None else _eer(points)


def hter(scores: ArrayLike, is_attack: ArrayLike, threshold: float) -> float:
    """HTER = (pooled APCER + BPCER) / 2 at a FROZEN threshold, chosen beforehand on the calibration split."""
    _check_threshold(threshold)
    scores, is_attack = _check_scores(scores, is_attack)
    if not _has_both_classes(is_attack):
        _warn("no attack or no bona fide presentations: HTER is undefined (NaN)")
    return _pooled_hter(scores, is_attack, threshold)


def auc(scores: ArrayLike, is_attack: ArrayLike) -> float:
    """Area under the ROC (attack = positive): P(attack score > bona fide score) + P(tie) / 2.

    The trapezoidal area of sklearn's ``roc_curve``, which is how ``roc_auc_score`` computes it; reusing the
    curve keeps ``metric_report`` to one ROC per call (fast bootstrap).
    """
    points = _two_class_points(scores, is_attack, "AUC")
    return float("nan") if points is None else points.auc


def tpr_at_fpr(scores: ArrayLike, is_attack: ArrayLike, fpr: float) -> float:
    """Attack detection rate (1 - pooled APCER) at the threshold whose BPCER is at most ``fpr``.

    Positive = attack, so "FPR" is the bona fide false-alarm rate (BPCER) and "TPR" is 1 - APCER. With few bona
    fide presentations BPCER moves in steps of 1/n; the largest achievable BPCER <= fpr is used (BPCER 0, the
    maximum score as threshold, always is), without interpolation.
    """
    _check_rate("fpr", fpr)
    points = _two_class_points(scores, is_attack, "TPR@FPR")
    return float("nan") if points is None else _tpr_at_fpr(points, fpr)


def _species_points(
    scores: ArrayLike, is_attack: ArrayLike, species: ArrayLike, expected_species: Iterable[str], metric: str
) -> tuple[_OperatingPoints, np.ndarray] | None:
    """Operating points with the max-over-species APCER at each of them, or None (warned) if undefined."""
    p = _presentations(scores, is_attack, species, expected_species)
    points = _two_class_points(p.scores, p.is_attack, metric, stacklevel=5)
    if points is None:
        return None
    _warn_missing_species(p, stacklevel=5)
    return points, _max_over_species(_species_apcer(p, points.thresholds))


def bpcer_at_apcer(
    scores: ArrayLike,
    is_attack: ArrayLike,
    species: ArrayLike,
    max_apcer_target: float,
    expected_species: Iterable[str] = (),
) -> tuple[float, float]:
    """ISO/IEC 30107-3 BPCER at max APCER <= target (BPCER20: 0.05, BPCER100: 0.01); returns (bpcer, threshold).

    Lowering the threshold misses fewer attacks (APCER falls) and rejects more bona fide (BPCER rises), so
    this is the lowest BPCER over all thresholds whose max-over-species APCER is at most the target. The
    candidates are every distinct score and a value just below the minimum, exact on ties. Among thresholds
    with that same BPCER the lowest (fewest attacks missed) is returned.
    """
    _check_rate("max_apcer_target", max_apcer_target)
    found = _species_points(scores, is_attack, species, expected_species, "BPCER at max APCER")
    return (float("nan"), float("nan")) if found is None else _bpcer_at_apcer(*found, max_apcer_target)


def apcer_at_bpcer(
    scores: ArrayLike,
    is_attack: ArrayLike,
    species: ArrayLike,
    max_bpcer_target: float,
    expected_species: Iterable[str] = (),
) -> tuple[float, float]:
    """Max-over-species APCER at BPCER <= target (e.g. 0.01); returns (max_apcer, threshold).

    The mirror of ``bpcer_at_apcer``: the lowest max APCER over thresholds with BPCER at most the target;
    among thresholds with that same max APCER the highest (fewest bona fide rejected) is returned.
    """
    _check_rate("max_bpcer_target", max_bpcer_target)
    found = _species_points(scores, is_attack, species, expected_species, "APCER at BPCER")
    return (float("nan"), float("nan")) if found is None else _apcer_at_bpcer(*found, max_bpcer_target)


# --- report and bootstrap -------------------------------------------------------------------------------------

_CURVE_METRICS = ("eer", "eer_threshold", "auc", *BPCER_AT_APCER_TARGETS, *TPR_AT_FPR_TARGETS)


def _warn_undefined(p: _Presentations, stacklevel: int) -> None:
    """One warning per missing kind of presentation, naming the metrics that become NaN."""
    curve = "EER, AUC, BPCER20, BPCER100 and TPR@FPR are undefined (NaN)"
    if not p.is_attack.any():
        _warn(f"no attack presentations: APCER, max APCER, ACER (non-ISO), HTER, {curve}", stacklevel)
    else:
        _warn_missing_species(p, stacklevel + 1)
    if p.is_attack.all():
        _warn(f"no bona fide presentations: BPCER, ACER (non-ISO), HTER, {curve}", stacklevel)


def _report(p: _Presentations, threshold: float) -> dict[str, float]:
    per_species = _species_apcer(p, np.array([threshold], dtype=np.float64))
    worst = float(_max_over_species(per_species)[0])
    bona_fide_error = _rate(p.scores[~p.is_attack] > threshold)
    report: dict[str, float] = {"threshold": float(threshold), "n_bona_fide": int(np.count_nonzero(~p.is_attack))}
    report |= {f"n_attack/{name}": int(n) for name, n in zip(p.species_names, p.n_attack_per_species, strict=True)}
    report |= {f"apcer/{name}": float(v) for name, v in zip(p.species_names, per_species[:, 0], strict=True)}
    report |= {
        "max_apcer": worst,
        "apcer_pooled": _rate(p.scores[p.is_attack] <= threshold),
        "bpcer": bona_fide_error,
        "acer_non_iso": acer(worst, bona_fide_error),
        "hter": _pooled_hter(p.scores, p.is_attack, threshold),
    }
    if not _has_both_classes(p.is_attack):
        return report | dict.fromkeys(_CURVE_METRICS, float("nan"))
    points = _operating_points(p.scores, p.is_attack)
    report["eer"], report["eer_threshold"] = _eer(points)
    report["auc"] = points.auc
    worst_curve = _max_over_species(_species_apcer(p, points.thresholds))
    report |= {name: _bpcer_at_apcer(points, worst_curve, t)[0] for name, t in BPCER_AT_APCER_TARGETS.items()}
    report |= {name: _tpr_at_fpr(points, t) for name, t in TPR_AT_FPR_TARGETS.items()}
    return report


def metric_report(
    scores: ArrayLike,
    is_attack: ArrayLike,
    species: ArrayLike,
    threshold: float,
    expected_species: Iterable[str] = (),
) -> dict[str, float]:
    """All metrics at a FROZEN threshold (chosen on the calibration split), as one flat dict.

    Keys: ``threshold``, ``n_bona_fide``, ``n_attack/<species>``, ``apcer/<species>`` (ISO, per PAI species),
    ``max_apcer`` (ISO), ``apcer_pooled`` (non-ISO, used by HTER), ``bpcer`` (ISO), ``acer_non_iso``, ``hter``,
    and the threshold-free ``eer``, ``eer_threshold``, ``auc``, ``bpcer20``, ``bpcer100`` (ISO) and
    ``tpr_at_fpr_1pct`` / ``_0.5pct`` / ``_0.1pct``. Flat names log directly as MLflow metrics. Undefined
    metrics are NaN, with one ``UndefinedMetricWarning`` per missing kind of presentation.
    """
    _check_threshold(threshold)
    p = _presentations(scores, is_attack, species, expected_species)
    _warn_undefined(p, stacklevel=4)
    return _report(p, threshold)


def _strata(p: _Presentations) -> list[np.ndarray]:
    """Bona fide, then the attacks of each PAI species: resampled separately so their sizes stay fixed."""
    strata = [np.flatnonzero(~p.is_attack)]
    strata += [np.flatnonzero(p.species_code == code) for code in range(len(p.species_names))]
    return [stratum for stratum in strata if stratum.size]


def _resample(
    stratum: np.ndarray, groups: np.ndarray | None, n_resamples: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Per resample, indices drawn with replacement from ``stratum``: samples, or whole clusters if ``groups``."""
    if groups is None:
        return list(stratum[rng.integers(0, stratum.size, size=(n_resamples, stratum.size))])
    _, cluster = np.unique(groups[stratum], return_inverse=True)
    members = stratum[np.argsort(cluster, kind="stable")]
    sizes = np.bincount(cluster)
    starts = np.cumsum(sizes) - sizes
    draws = rng.integers(0, sizes.size, size=(n_resamples, sizes.size))
    resamples = []
    for drawn in draws:
        lengths = sizes[drawn]
        # position of each output sample in ``members``: its cluster's start plus its rank inside the cluster
        offsets = np.repeat(starts[drawn] - (np.cumsum(lengths) - lengths), lengths)
        resamples.append(members[offsets + np.arange(lengths.sum())])
    return resamples


def bootstrap_ci(
    scores: ArrayLike,
    is_attack: ArrayLike,
    species: ArrayLike,
    threshold: float,
    metric_names: Sequence[str],
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    groups: ArrayLike | None = None,
    expected_species: Iterable[str] = (),
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap confidence intervals of ``metric_report`` values at a frozen threshold.

    Stratified: bona fide presentations and the attacks of each PAI species are resampled separately, so
    every resample has the same class and species make-up (no resample loses a class). With ``groups``
    (subject ids) it is a cluster bootstrap: within each stratum SUBJECTS are drawn with replacement and bring
    all their presentations of that stratum, since presentations of one subject are correlated; ignoring that
    makes intervals too narrow. (A subject's bona fide and attack presentations are thus drawn independently,
    which keeps every resample two-class.) Deterministic for a given ``seed``; 1000 resamples of 2000
    presentations take about a second. Metrics undefined on the data get (NaN, NaN).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    _check_threshold(threshold)
    p = _presentations(scores, is_attack, species, expected_species)
    point = _report(p, threshold)
    unknown = [name for name in metric_names if name not in point]
    if unknown:
        raise ValueError(f"unknown metric names {unknown}; metric_report has {sorted(point)}")
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != p.scores.shape:
            raise ValueError(f"groups must have one entry per score, got shape {groups.shape} for {p.scores.shape}")
    if p.scores.size == 0:
        raise ValueError("no presentations to resample")
    _warn_undefined(p, stacklevel=4)
    rng = np.random.default_rng(seed)
    per_stratum = [_resample(stratum, groups, n_resamples, rng) for stratum in _strata(p)]
    values = np.empty((n_resamples, len(metric_names)))
    for r in range(n_resamples):
        report = _report(p.take(np.concatenate([drawn[r] for drawn in per_stratum])), threshold)
        values[r] = [report[name] for name in metric_names]
    low, high = np.quantile(values, [(1 - confidence) / 2, (1 + confidence) / 2], axis=0)
    return {name: (float(lo), float(hi)) for name, lo, hi in zip(metric_names, low, high, strict=True)}


def paired_auc_difference_ci(
    scores_a: ArrayLike,
    scores_b: ArrayLike,
    is_attack: ArrayLike,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    groups: ArrayLike | None = None,
) -> tuple[float, float, float]:
    """AUC(a) - AUC(b) on the same presentations, with a paired percentile bootstrap CI: (point, low, high).

    Both scores are resampled with the SAME draws (bona fide and attacks separately, whole subjects when
    ``groups`` is given), so the interval is that of the difference, narrower than two separate CIs. A
    difference whose interval lies above 0 says ``a`` ranks attacks better than ``b`` beyond resampling noise.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    a, attack = _check_scores(scores_a, is_attack)
    b, _ = _check_scores(scores_b, is_attack)
    if a.shape != b.shape:
        raise ValueError(f"the two scores must be of the same presentations, got {a.shape} and {b.shape}")
    point = auc(a, attack) - auc(b, attack)
    if math.isnan(point):
        return math.nan, math.nan, math.nan
    if groups is not None:
        groups = np.asarray(groups)
    rng = np.random.default_rng(seed)
    strata = [np.flatnonzero(~attack), np.flatnonzero(attack)]
    drawn = [_resample(stratum, groups, n_resamples, rng) for stratum in strata]
    differences = np.empty(n_resamples)
    for r in range(n_resamples):
        index = np.concatenate([d[r] for d in drawn])
        differences[r] = auc(a[index], attack[index]) - auc(b[index], attack[index])
    low, high = np.quantile(differences, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(point), float(low), float(high)
