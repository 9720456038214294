"""The Pareto front of a multi-objective search: trials no other feasible trial beats on every objective."""

from __future__ import annotations

from typing import Any, Sequence

from search.constraints import is_finite
from search.roles import is_replica_run


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """a is at least as good as b everywhere and better somewhere (both as values to minimize)."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def pareto_front(points: Sequence[Sequence[float]], modes: Sequence[str]) -> list[int]:
    """Indices (in order) of the points no other point dominates; modes[i] is 'min' or 'max' for
    coordinate i. Equal points do not dominate each other, so all copies of a front point stay."""
    signs = [1.0 if mode == "min" else -1.0 for mode in modes]  # max turned into min once
    costs = [[sign * value for sign, value in zip(signs, point)] for point in points]
    return [i for i, cost in enumerate(costs) if not any(dominates(other, cost) for other in costs)]


def candidates(trials: list[dict[str, Any]], metrics: list[str]) -> list[dict[str, Any]]:
    """Trials that can be on the front: not failed, feasible, every objective reported and finite."""
    return [
        t
        for t in trials
        if t["status"] != "FAILED"
        and t.get("feasible", True)
        and not is_replica_run(t)
        and all(is_finite(t["metrics"].get(m)) for m in metrics)
    ]


def front_trials(trials: list[dict[str, Any]], objectives: list[dict[str, str]]) -> list[dict[str, Any]]:
    """The summary's trials on the Pareto front of `objectives` ([{metric, mode}, ...]), each judged by
    its last reported metrics."""
    metrics = [o["metric"] for o in objectives]
    pool = candidates(trials, metrics)
    points = [[t["metrics"][m] for m in metrics] for t in pool]
    return [pool[i] for i in pareto_front(points, [o["mode"] for o in objectives])]
