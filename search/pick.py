"""`export --pick "min val/overkill_rate where val/miss_rate <= 0.02"`: which trial a rule chooses."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from search.constraints import Constraint, is_finite, parse_constraint
from search.pareto import front_trials
from search.roles import is_replica_run
from training.schema.errors import ConfigError

RULE = re.compile(r"^\s*(?P<mode>min|max)\s+(?P<metric>[A-Za-z0-9_./-]+)(?:\s+where\s+(?P<where>.+?))?\s*$")
RULE_FORM = "'min|max METRIC [where METRIC OP NUMBER [and ...]]'"


@dataclass(frozen=True)
class PickRule:
    """Best `metric` by `mode` among the trials meeting every `where` constraint."""

    mode: str
    metric: str
    where: tuple[Constraint, ...] = ()

    @property
    def text(self) -> str:
        clause = " and ".join(c.text for c in self.where)
        return f"{self.mode} {self.metric}" + (f" where {clause}" if clause else "")


def parse_rule(text: str, key: str = "--pick") -> PickRule:
    """`min|max METRIC [where CONSTRAINT [and CONSTRAINT ...]]`; a ConfigError naming `key` otherwise."""
    match = RULE.match(text)
    if match is None:
        raise ConfigError(key, f"expected {RULE_FORM}, got {text!r}")
    clauses = re.split(r"\s+and\s+", match["where"]) if match["where"] else []
    return PickRule(match["mode"], match["metric"], tuple(parse_constraint(c, key) for c in clauses))


def pick_pool(summary: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """(trials a rule chooses among, what they are): the Pareto front when the search had
    objectives, else every finished feasible trial (sampled: the extra seeds of a config are no choice of theirs)."""
    if summary.get("objectives"):
        return front_trials(summary["trials"], summary["objectives"]), "the Pareto front"
    pool = [t for t in summary["trials"] if t["status"] != "FAILED" and t.get("feasible", True) and not is_replica_run(t)]
    return pool, "the finished feasible trials"


def pick_trial(summary: dict[str, Any], rule: PickRule, key: str = "--pick") -> tuple[dict[str, Any], str]:
    """(the trial `rule` chooses, where it was chosen from); ties go to the first trial id."""
    pool, origin = pick_pool(summary)
    if not any(rule.metric in t["metrics"] for t in summary["trials"]):
        known = sorted({m for t in summary["trials"] for m in t["metrics"]})
        raise ConfigError(key, f"no trial reports '{rule.metric}'; reported: {', '.join(known)}")
    meeting = [t for t in pool if is_finite(t["metrics"].get(rule.metric)) and all(c.satisfied(t["metrics"]) for c in rule.where)]
    if not meeting:
        raise ConfigError(key, f"no trial of {origin} ({len(pool)} trials) satisfies '{rule.text}'")
    sign = 1.0 if rule.mode == "min" else -1.0
    best = min(meeting, key=lambda t: (sign * t["metrics"][rule.metric], t["trial_id"]))
    return best, f"{origin} ({len(pool)} trials)"


def default_rule_text(summary: dict[str, Any]) -> str:
    """How the search itself chose its best trial."""
    constraints = summary.get("constraints") or []
    where = f" where {' and '.join(constraints)}" if constraints else ""
    return f"{summary['mode']} {summary['metric']}{where} (the search's best trial)"

