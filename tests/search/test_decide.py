"""search/decide.py: the confirmed winner is exported only if it beats the baseline beyond the seed noise."""

from __future__ import annotations

import math

import pytest

from search.decide import confirmation_line, decide, group_runs
from search.spec import ConfirmSettings

METRIC = "val/macro_f1"


def trial(trial_id: str, score: float, role: str | None = None, group: str | None = None, **extra) -> dict:
    return {
        "trial_id": trial_id,
        "role": role,
        "group": group or trial_id,
        "status": extra.pop("status", "DONE"),
        "feasible": True,
        "metrics": {METRIC: score},
        "params": {"optim.lr": extra.pop("lr", 1e-3)},
        "history": [{"epoch": 1, METRIC: score}],
        **extra,
    }


def summary(baseline: list[float], candidate: list[float], sampled_candidate: float = 0.95) -> dict:
    """A baseline (reference) with its noise seeds and one confirmed config, as a search leaves them."""
    trials = [trial("b", baseline[0], "baseline", point=0, reference=True)]
    trials += [trial(f"b{i}", s, "noise", "b", reference=True) for i, s in enumerate(baseline[1:], start=1)]
    trials += [trial("c", sampled_candidate, lr=3e-3), trial("x", 0.2, lr=1e-2)]
    trials += [trial(f"c{i}", s, "confirm", "c") for i, s in enumerate(candidate, start=1)]
    return {"trials": trials, "metric": METRIC, "mode": "max"}


def test_the_confirmed_runs_of_a_candidate_leave_out_its_sampled_run():
    s = summary([0.70, 0.72, 0.74], [0.80, 0.82])
    # the sampled run (0.95) was chosen for its score: only the fresh seeds count
    assert [t["trial_id"] for t in group_runs(s["trials"], "c", "b")] == ["c1", "c2"]
    # every run of the reference counts: none was chosen
    assert [t["trial_id"] for t in group_runs(s["trials"], "b", "b")] == ["b", "b1", "b2"]


def test_a_candidate_beyond_the_noise_is_exported():
    confirmation, noise, chosen = decide(summary([0.70, 0.72, 0.74], [0.90, 0.92]), ConfirmSettings(z=2.0))
    # edge 0.19, noise sd 0.02 (pooled), 2 SE = 0.037: a win
    assert confirmation["outcome"] == "wins" and chosen["trial_id"] == "c"
    assert confirmation["edge"] == pytest.approx(0.19)
    assert noise["sd"] == pytest.approx(math.sqrt((0.0008 + 0.0002) / 3))


def test_an_edge_inside_the_noise_exports_the_baseline():
    confirmation, _, chosen = decide(summary([0.70, 0.76, 0.64], [0.74, 0.70]), ConfirmSettings(z=2.0))
    # the candidate's mean leads by 0.02, well inside 2 SE of the noise: the baseline wins the tie
    assert confirmation["outcome"] == "inside_noise" and chosen["trial_id"] == "b"
    line = confirmation_line(confirmation, METRIC, str)
    assert "inside the seed noise" in line and "b is exported" in line


def test_a_baseline_with_the_best_mean_is_exported():
    confirmation, _, chosen = decide(summary([0.80, 0.82, 0.81], [0.70, 0.72]), ConfirmSettings())
    assert confirmation["outcome"] == "reference_best" and chosen["trial_id"] == "b"


def test_without_confirmation_the_best_sampled_trial_is_exported():
    s = summary([0.70, 0.72, 0.74], [0.99, 0.99])
    s["trials"] = [t for t in s["trials"] if t["role"] != "confirm"]
    confirmation, noise, chosen = decide(s, ConfirmSettings(top=0))
    # today's pick: the best sampled trial (replicas are no candidates), and the noise is still reported
    assert confirmation is None and chosen["trial_id"] == "c"
    assert noise["reference"] == "b" and noise["sd"] == pytest.approx(0.02)


def test_noise_seeds_alone_measure_the_noise_curve_per_epoch():
    _, noise, _ = decide(summary([0.70, 0.72, 0.74], [0.9, 0.9]), ConfirmSettings())
    # the reference's runs at epoch 1: three seeds
    assert noise["per_epoch"] == [{"epoch": 1, "mean": pytest.approx(0.72), "sd": pytest.approx(0.02), "n": 3}]


def test_a_config_whose_fresh_seeds_break_a_constraint_is_no_candidate():
    s = summary([0.70, 0.72, 0.74], [0.90, 0.92])
    for t in s["trials"]:
        if t["trial_id"] == "c2":
            t["feasible"] = False  # e.g. val/miss_rate above its bound on one fresh seed
    confirmation, _, chosen = decide(s, ConfirmSettings(z=2.0))
    # the best mean breaks a constraint on a fresh seed: the baseline stays, and the line says why
    assert confirmation["infeasible"] == ["c"] and confirmation["outcome"] == "no_candidate" and chosen["trial_id"] == "b"
    line = confirmation_line(confirmation, METRIC, str)
    assert line.endswith("b is exported (c left out: fresh seeds broke a constraint)")
