"""Threshold policies: where to put the decision threshold (attack iff ``score > threshold``).

Choose the threshold on the CALIBRATION split only, then freeze it and report the test split at it
(``metrics.metric_report(..., threshold)``). A threshold tuned on the test split itself makes the test error
rates optimistically biased, and the reported operating point is then not one the deployed system would reach.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numpy.typing import ArrayLike

from liveness.evaluate.metrics import apcer_at_bpcer, bpcer_at_apcer, eer

POLICIES: dict[str, str] = {
    "eer": "the equal-error-rate threshold (pooled APCER == BPCER); takes no target",
    "bpcer_at_apcer": "lowest BPCER with max-over-species APCER <= target (ISO BPCER20: target 0.05)",
    "apcer_at_bpcer": "lowest max-over-species APCER with BPCER <= target (e.g. 0.01: at most 1% bona fide rejected)",
}
"""Policy name -> what it picks; ``target`` is a rate in [0, 1]."""


def choose_threshold(
    policy: str,
    scores: ArrayLike,
    is_attack: ArrayLike,
    species: ArrayLike,
    target: float | None = None,
    expected_species: Iterable[str] = (),
) -> float:
    """The threshold ``policy`` picks on calibration scores (see ``POLICIES``); raises ValueError if it can't.

    Candidates are the distinct calibration scores and one just below the minimum (exact on ties). Where several
    thresholds give the same optimum, the one with the lower other error rate is returned (see
    ``metrics.bpcer_at_apcer`` and ``metrics.apcer_at_bpcer``); ``eer`` interpolates (see ``metrics.eer``).
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown threshold policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if policy == "eer":
        if target is not None:
            raise ValueError("threshold policy 'eer' takes no target; set target to None")
        _, threshold = eer(scores, is_attack)
    elif target is None:
        raise ValueError(f"threshold policy {policy!r} needs a target: {POLICIES[policy]}")
    elif policy == "bpcer_at_apcer":
        _, threshold = bpcer_at_apcer(scores, is_attack, species, target, expected_species)
    else:
        _, threshold = apcer_at_bpcer(scores, is_attack, species, target, expected_species)
    if np.isnan(threshold):
        raise ValueError(
            f"threshold policy {policy!r} needs both bona fide and attack presentations in the calibration split"
        )
    return threshold
