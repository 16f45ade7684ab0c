"""Which score ships: a rule applied to the CALIBRATION table alone (``calibrate.selection``); the test split is not
an argument. ``calibrate`` builds the table and the per-species sample sizes, then calls ``select_score``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from liveness.config import CalibrateParams


def _selection_value(row: dict[str, float], rule: str, species: list[str]) -> float:
    """What ``rule`` maximises for one score's calibration row (NaN counts as the worst)."""
    values = [row[f"{name}/auc"] for name in species] if rule != "pooled_auc" else [row["auc"]]
    value = min(values) if values else math.nan
    return -math.inf if math.isnan(value) else value


def _worst_species(row: dict[str, float], species: list[str]) -> str | None:
    finite = [name for name in species if not math.isnan(row.get(f"{name}/auc", math.nan))]
    return min(finite, key=lambda name: row[f"{name}/auc"]) if finite else None


def _mean_species_auc(row: dict[str, float], species: list[str]) -> float:
    values = [row.get(f"{name}/auc", math.nan) for name in species]
    return -math.inf if not values or any(math.isnan(v) for v in values) else float(np.mean(values))


def auc_standard_error(auc: float, bona_fide: int, attacks: int) -> float:
    """Hanley & McNeil (1982): the standard error of an AUC from ``bona_fide`` and ``attacks`` samples."""
    if bona_fide < 1 or attacks < 1 or math.isnan(auc):
        return 0.0
    q1, q2 = auc / (2.0 - auc), 2.0 * auc * auc / (1.0 + auc)
    variance = (auc * (1.0 - auc) + (attacks - 1) * (q1 - auc * auc) + (bona_fide - 1) * (q2 - auc * auc))
    return math.sqrt(max(variance, 0.0) / (bona_fide * attacks))


def select_score(table: dict[str, dict[str, float]], settings: CalibrateParams, species: list[str],
                 counts: dict[str, tuple[int, int]] | None = None) -> tuple[str, dict[str, Any]]:
    """The shipped score and why, from the CALIBRATION table alone (the test split is not an argument).

    ``worst_species_auc_1se`` is the one-standard-error rule (Breiman et al. 1984) on the worst species: every
    candidate whose worst-species AUC is within one standard error (``auc_standard_error`` with ``counts``) of
    the best one is as good as the data can tell, and among those the highest mean per-species AUC ships. When
    one species defeats every score, its AUCs sit near 0.5 and differ by noise; the plain worst-species rule then
    lets that noise pick the score, whatever it does on the species it does detect.
    """
    if settings.score != "auto":
        return settings.score, {"rule": "fixed", "chosen": settings.score,
                                "reason": f"calibrate.score is set to {settings.score!r}"}
    candidates = [name for name in settings.candidates if name in table]
    if not candidates:
        raise ValueError(f"none of calibrate.candidates {settings.candidates} was scored; scored: {sorted(table)}")
    values = {name: _selection_value(table[name], settings.selection, species) for name in candidates}

    def rank(name: str) -> tuple[float, float, int]:
        pooled = table[name]["auc"]
        return values[name], -math.inf if math.isnan(pooled) else pooled, -candidates.index(name)

    best = max(candidates, key=rank)
    what = {"worst_species_auc": "lowest per-species AUC", "pooled_auc": "pooled AUC"}.get(settings.selection)
    details: dict[str, Any] = {}
    if settings.selection == "worst_species_auc_1se":
        worst = _worst_species(table[best], species)
        bona_fide, attacks = (counts or {}).get(worst, (0, 0)) if worst else (0, 0)
        error = auc_standard_error(values[best], bona_fide, attacks) if not math.isinf(values[best]) else 0.0
        eligible = [name for name in candidates if values[name] >= values[best] - error]
        means = {name: _mean_species_auc(table[name], species) for name in eligible}
        chosen = max(eligible, key=lambda name: (means[name], *rank(name)[1:]))
        reason = (f"score: auto with selection worst_species_auc_1se: the best lowest per-species AUC on the "
                  f"calibration split is `{best}`'s ({values[best]:.4f}, on {worst}); within one standard error "
                  f"({error:.4f}, Hanley-McNeil, {bona_fide} bona fide, {attacks} attacks) of it are {eligible}, and "
                  f"`{chosen}` has the highest mean per-species AUC among them ({means[chosen]:.4f}); candidates: "
                  f"{candidates}")
        details = {"best_worst_species": best, "standard_error": error, "eligible": eligible,
                   "mean_species_auc": {name: (None if math.isinf(v) else v) for name, v in means.items()}}
    else:
        chosen = best
        reason = (f"score: auto with selection {settings.selection}: `{chosen}` has the highest {what} on the "
                  f"calibration split ({values[chosen]:.4f}) among {candidates}")
    return chosen, {"rule": settings.selection, "chosen": chosen, "reason": reason,
                    "values": {name: (None if math.isinf(v) else v) for name, v in values.items()}, **details}
