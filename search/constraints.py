"""Metric constraints such as `val/miss_rate <= 0.02`: parsed without eval, checked on a trial's metrics.

Shared by the space file (`search.constraints`), the sampler (Optuna's infeasible trials), the
summary (which trials may be best) and `export --pick` (its `where` clause).
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from typing import Any, Callable

from training.schema.errors import ConfigError

# Longest operators first, so `<=` is not read as `<` followed by `= 0.02`.
OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}
NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
CONSTRAINT = re.compile(rf"^\s*(?P<metric>[A-Za-z0-9_./-]+)\s*(?P<op><=|>=|<|>)\s*(?P<bound>{NUMBER})\s*$")
# A violated constraint always counts as violated for Optuna (> 0), even when the value sits on a
# strict bound (`x < 0.02` with x == 0.02, where the distance is 0).
MIN_VIOLATION = 1e-12


@dataclass(frozen=True)
class Constraint:
    """`metric op bound`, e.g. val/miss_rate <= 0.02."""

    metric: str
    op: str
    bound: float

    @property
    def text(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"

    def satisfied(self, metrics: dict[str, Any]) -> bool:
        """True when the metric is reported, finite and on the right side of the bound."""
        value = metrics.get(self.metric)
        return is_finite(value) and OPS[self.op](value, self.bound)

    def violation(self, metrics: dict[str, Any]) -> float:
        """0 when satisfied, else how far the metric is past the bound (inf when it is missing or NaN):
        Optuna's convention for a constraint value."""
        value = metrics.get(self.metric)
        if not is_finite(value):
            return math.inf
        return 0.0 if OPS[self.op](value, self.bound) else max(abs(value - self.bound), MIN_VIOLATION)


def is_finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_constraint(text: Any, key: str) -> Constraint:
    """`<metric> <op> <number>` with op one of <=, <, >=, >; a ConfigError naming `key` otherwise."""
    match = CONSTRAINT.match(text) if isinstance(text, str) else None
    if match is None:
        raise ConfigError(key, f"expected '<metric> <op> <number>' with op one of {', '.join(OPS)}, got {text!r}")
    return Constraint(match["metric"], match["op"], float(match["bound"]))


def feasible(metrics: dict[str, Any], constraints: list[Constraint]) -> bool:
    return all(c.satisfied(metrics) for c in constraints)
