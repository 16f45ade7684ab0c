"""Identity-disjoint splits: every subject goes to exactly one split, so no face is both trained on and tested.

Assignment is a pure function of (subject set, fractions, seed): subjects are ordered by
``sha256(f"{seed}:{subject}")`` and the ordered list is cut into consecutive runs whose lengths are the
largest-remainder quotas of the fractions, so the counts match the fractions as closely as whole subjects allow.
"""

from __future__ import annotations

import hashlib
import math
import numbers
from collections.abc import Iterable, Mapping

import pandas as pd

FRACTION_TOLERANCE = 1e-6


def _is_positive_number(value: object) -> bool:
    is_real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    return is_real and math.isfinite(value) and value > 0


def validate_fractions(fractions: Mapping[str, float]) -> None:
    """Raise ValueError unless every fraction is positive and finite and together they sum to 1."""
    if not fractions:
        raise ValueError("split fractions are empty; give at least one split, e.g. {'train': 0.9, 'val': 0.1}")
    for name, fraction in fractions.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"split name {name!r} must be a non-empty string")
        if not _is_positive_number(fraction):
            raise ValueError(f"split {name!r} has fraction {fraction!r}; each fraction must be a number > 0")
    total = math.fsum(fractions.values())
    if abs(total - 1.0) > FRACTION_TOLERANCE:
        raise ValueError(f"split fractions {dict(fractions)} sum to {total!r}, not 1; rescale them")


def split_quotas(count: int, fractions: Mapping[str, float]) -> dict[str, int]:
    """Whole-subject counts per split: largest-remainder rounding of ``count * fraction``.

    When there are at least as many subjects as splits, every split gets at least one, taken from the split
    furthest above its exact share. Ties break by split name, so the result does not depend on mapping order.
    """
    validate_fractions(fractions)
    names = sorted(fractions)
    exact = {name: count * fractions[name] for name in names}
    quotas = {name: math.floor(exact[name]) for name in names}
    by_remainder = sorted(names, key=lambda name: (-(exact[name] - quotas[name]), name))
    for name in by_remainder[: count - sum(quotas.values())]:
        quotas[name] += 1
    if count >= len(names):
        for name in names:
            if quotas[name] == 0:
                donor = max((n for n in names if quotas[n] > 1), key=lambda n: (quotas[n] - exact[n], n))
                quotas[donor] -= 1
                quotas[name] = 1
    return quotas


def _subject_order_key(seed: int, subject: str) -> tuple[str, str]:
    return hashlib.sha256(f"{seed}:{subject}".encode()).hexdigest(), subject


def assign_splits(subjects: Iterable[str], fractions: Mapping[str, float], seed: int) -> dict[str, str]:
    """Map each distinct subject to one split name; deterministic from ``seed``, independent of input order."""
    ordered = sorted(set(subjects), key=lambda subject: _subject_order_key(seed, subject))
    assignment: dict[str, str] = {}
    start = 0
    for name, quota in split_quotas(len(ordered), fractions).items():
        for subject in ordered[start : start + quota]:
            assignment[subject] = name
        start += quota
    return assignment


def check_disjoint(frame: pd.DataFrame, subject_col: str = "subject", split_col: str = "split") -> None:
    """Raise ValueError naming every subject that appears in more than one split (an identity leak)."""
    missing = [column for column in (subject_col, split_col) if column not in frame.columns]
    if missing:
        raise ValueError(f"cannot check split disjointness: column(s) {missing} missing from the frame")
    splits_per_subject = frame.groupby(subject_col, sort=True)[split_col].unique()
    crossing = splits_per_subject[splits_per_subject.map(len) > 1]
    if len(crossing):
        shown = "; ".join(f"{subject!r} in {sorted(map(str, splits))}" for subject, splits in crossing.head(20).items())
        more = f" (and {len(crossing) - 20} more)" if len(crossing) > 20 else ""
        raise ValueError(
            f"{len(crossing)} subject(s) appear in more than one split: {shown}{more}; "
            f"assign splits per subject (assign_splits), not per image"
        )
