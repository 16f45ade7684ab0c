"""Promotion: move @champion to @challenger only when a gate on the same test metrics passes.

A gate is a comma-separated list of ``metric<op>`` rules comparing challenger to champion: ``bpcer100<=``
means the challenger's BPCER100 must not exceed the champion's, ``auc>=`` that its AUC must not fall below.
The decision, promoted or refused, is recorded on the challenger version (tags and description).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

DEFAULT_GATE = "bpcer100<=,auc>="
CHALLENGER, CHAMPION = "challenger", "champion"
_RULE = re.compile(r"^\s*([\w/.-]+?)\s*(<=|>=)\s*$")


@dataclass(frozen=True)
class Rule:
    metric: str
    op: str  # "<=": lower is better; ">=": higher is better

    def passes(self, challenger: float, champion: float) -> bool:
        return challenger <= champion if self.op == "<=" else challenger >= champion


@dataclass(frozen=True)
class Comparison:
    rule: Rule
    challenger: float  # NaN when the run lacks the metric
    champion: float  # NaN when there is no champion or it lacks the metric
    passed: bool


@dataclass(frozen=True)
class Decision:
    promoted: bool
    reason: str
    name: str
    challenger: str | None  # version numbers
    champion_before: str | None
    comparisons: tuple[Comparison, ...]


def parse_gate(text: str) -> tuple[Rule, ...]:
    """``"bpcer100<=,auc>="`` -> rules; ValueError names the bad part."""
    rules = []
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        match = _RULE.match(part)
        if not match:
            raise ValueError(f"gate rule {part!r} is not METRIC<= or METRIC>= (e.g. {DEFAULT_GATE!r})")
        rules.append(Rule(match[1], match[2]))
    if not rules:
        raise ValueError(f"the gate {text!r} has no rule; pass e.g. {DEFAULT_GATE!r}")
    return tuple(rules)


def _by_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def _metrics(client: MlflowClient, version: ModelVersion | None) -> dict[str, float]:
    return {} if version is None or not version.run_id else dict(client.get_run(version.run_id).data.metrics)


def _compare(rules: tuple[Rule, ...], challenger: dict[str, float], champion: dict[str, float] | None,
             ) -> tuple[Comparison, ...]:
    rows = []
    for rule in rules:
        new, old = challenger.get(rule.metric, math.nan), math.nan if champion is None else champion.get(rule.metric, math.nan)
        finite = math.isfinite(new) and (champion is None or math.isfinite(old))
        rows.append(Comparison(rule, new, old, finite and (champion is None or rule.passes(new, old))))
    return tuple(rows)


def _reason(comparisons: tuple[Comparison, ...], has_champion: bool) -> str:
    failed = [c for c in comparisons if not c.passed]
    if not failed:
        return "gate passed" if has_champion else "no @champion yet; the challenger has finite gate metrics"
    parts = []
    for c in failed:
        if not math.isfinite(c.challenger) or (has_champion and not math.isfinite(c.champion)):
            parts.append(f"{c.rule.metric} missing or not finite (challenger {c.challenger}, champion {c.champion})")
        else:
            parts.append(f"{c.rule.metric} {c.challenger:.6g} is not {c.rule.op} champion's {c.champion:.6g}")
    return "; ".join(parts)


def _record(client: MlflowClient, decision: Decision, gate: str) -> None:
    """Tags and a description on the challenger version: what was decided, against whom, and why."""
    verdict = "promoted" if decision.promoted else "refused"
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for key, value in {"promotion.decision": verdict, "promotion.reason": decision.reason, "promotion.gate": gate,
                       "promotion.champion_before": decision.champion_before or "none", "promotion.at": when}.items():
        client.set_model_version_tag(decision.name, decision.challenger, key, value)
    client.update_model_version(decision.name, decision.challenger,
                                description=f"{when}: promotion {verdict} (gate {gate!r}; champion before: "
                                            f"{decision.champion_before or 'none'}): {decision.reason}")


def promote(client: MlflowClient, name: str, gate: str = DEFAULT_GATE) -> Decision:
    """Compare @challenger with @champion through ``gate``; move @champion only if it passes."""
    rules = parse_gate(gate)
    challenger = _by_alias(client, name, CHALLENGER)
    champion = _by_alias(client, name, CHAMPION)
    before = None if champion is None else str(champion.version)
    if challenger is None:
        return Decision(False, f"model {name!r} has no @{CHALLENGER}; run the register stage first", name, None,
                        before, ())
    if before == str(challenger.version):
        return Decision(False, f"version {before} is already @{CHAMPION}", name, before, before, ())
    comparisons = _compare(rules, _metrics(client, challenger), None if champion is None else _metrics(client, champion))
    promoted = all(c.passed for c in comparisons)
    decision = Decision(promoted, _reason(comparisons, champion is not None), name, str(challenger.version), before,
                        comparisons)
    if promoted:
        client.set_registered_model_alias(name, CHAMPION, decision.challenger)
    _record(client, decision, gate)
    return decision
