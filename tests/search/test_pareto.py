"""`pareto_front`: only non-dominated points, whatever mix of min and max objectives."""

from __future__ import annotations

import itertools

import pytest

from search.pareto import dominates, front_trials, pareto_front


def is_dominated(point, others, modes) -> bool:
    """Brute force, independent of the implementation: another point is no worse everywhere, better once."""
    def better_or_equal(a, b, mode):
        return a <= b if mode == "min" else a >= b

    return any(
        all(better_or_equal(o, p, m) for o, p, m in zip(other, point, modes)) and tuple(other) != tuple(point)
        for other in others
    )


@pytest.mark.parametrize(
    ("points", "modes", "expected"),
    [
        pytest.param([(0.1, 0.5), (0.2, 0.2), (0.5, 0.1), (0.3, 0.3)], ["min", "min"], [0, 1, 2], id="min-min"),
        pytest.param([(0.1, 0.5), (0.2, 0.2), (0.5, 0.1), (0.3, 0.3)], ["max", "max"], [0, 2, 3], id="max-max"),
        pytest.param([(0.1, 0.9), (0.1, 0.5), (0.3, 0.95)], ["min", "max"], [0, 2], id="min-max"),
        pytest.param([(0.2, 0.2), (0.2, 0.2), (0.3, 0.3)], ["min", "min"], [0, 1], id="equal-points-both-stay"),
        pytest.param([(1.0, 2.0, 3.0), (1.0, 2.0, 4.0), (0.0, 5.0, 5.0)], ["min", "min", "min"], [0, 2], id="three-objectives"),
        pytest.param([], ["min", "min"], [], id="empty"),
    ],
)
def test_pareto_front_keeps_exactly_the_non_dominated_points(points, modes, expected):
    # the front is the hand-computed set of non-dominated points, in input order
    assert pareto_front(points, modes) == expected


@pytest.mark.parametrize("modes", [["min", "min"], ["min", "max"], ["max", "min"], ["max", "max"]])
def test_pareto_front_agrees_with_brute_force_on_a_grid(modes):
    points = [(x / 4, ((x * 7) % 5) / 4) for x in range(5)] + list(itertools.product([0.0, 0.5, 1.0], repeat=2))
    front = set(pareto_front(points, modes))
    for i, point in enumerate(points):
        # a point is on the front exactly when no other point dominates it
        assert (i in front) == (not is_dominated(point, points, modes))


def test_dominates_needs_strictly_better_somewhere():
    # equal points do not dominate each other; better in one, equal in the other does
    assert not dominates((0.1, 0.2), (0.1, 0.2))
    assert dominates((0.1, 0.2), (0.1, 0.3))
    assert not dominates((0.1, 0.4), (0.2, 0.3))


def test_front_trials_skips_failed_infeasible_and_incomplete_trials():
    def trial(tid, status="DONE", feasible=True, **metrics):
        return {"trial_id": tid, "status": status, "feasible": feasible, "metrics": metrics}

    trials = [
        trial("a", **{"val/miss_rate": 0.1, "val/overkill_rate": 0.3}),
        trial("b", **{"val/miss_rate": 0.2, "val/overkill_rate": 0.1}),
        trial("c", status="FAILED", **{"val/miss_rate": 0.0, "val/overkill_rate": 0.0}),
        trial("d", feasible=False, **{"val/miss_rate": 0.0, "val/overkill_rate": 0.0}),
        trial("e", **{"val/miss_rate": 0.0}),
        trial("f", status="STOPPED", **{"val/miss_rate": 0.3, "val/overkill_rate": 0.4}),
    ]
    objectives = [{"metric": "val/miss_rate", "mode": "min"}, {"metric": "val/overkill_rate", "mode": "min"}]
    # failed, infeasible and trials missing an objective never make the front, even when they would dominate
    assert [t["trial_id"] for t in front_trials(trials, objectives)] == ["a", "b"]
