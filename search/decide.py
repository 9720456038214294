"""Which config a finished search exports: the confirmed winner, unless its edge is inside the noise.

The runs of one config are its group (search/roles.py). After sampling, the top configs ran again
with fresh seeds (confirmation) and the reference config (the baseline) ran with extra seeds early
(noise seeds). Here, from the summary's trials:

- each compared group's scores: the confirmed configs' fresh-seed runs (their sampled run is left
  out: it was chosen for its score, so it is optimistic), the reference's runs (none was chosen);
- the seed noise: the pooled standard deviation of those scores within groups;
- the candidate: the confirmed config with the best mean; it is exported only if its mean beats the
  reference's by more than `confirm.z` standard errors of the difference, else the reference is
  (the baseline wins ties), and the summary says which happened and why.

Without confirmation (`confirm.top: 0`) the pick is the best sampled trial by score, as before.
"""

from __future__ import annotations

import math
from typing import Any

from search.constraints import is_finite
from search.noise import Curve, describe, mean, pooled_spread, spread
from search.roles import BASELINE, CONFIRM, is_replica_run
from search.spec import ConfirmSettings
from search.summary import pick_best

Trial = dict[str, Any]


def sampled(trials: list[Trial]) -> list[Trial]:
    """The sampler's trials (baselines included): what today's pick chooses among."""
    return [t for t in trials if not is_replica_run(t)]


def reference_group(trials: list[Trial]) -> str | None:
    """The group whose seeds measure the noise: the one the searcher marked, else search.baseline[0]'s."""
    marked = next((t["group"] for t in trials if t.get("reference")), None)
    first_baseline = next((t["group"] for t in trials if t.get("role") == BASELINE and t.get("point") == 0), None)
    return marked or first_baseline


def group_runs(trials: list[Trial], group: str, reference: str | None) -> list[Trial]:
    """The unbiased full-budget runs of a group: every run of the reference, the confirmation runs of others."""
    runs = [t for t in trials if t["group"] == group and t["status"] == "DONE"]
    return runs if group == reference else [t for t in runs if t.get("role") == CONFIRM]


def group_stats(trials: list[Trial], group: str, reference: str | None, metric: str) -> dict[str, Any]:
    runs = group_runs(trials, group, reference)
    scores = [t["metrics"].get(metric, math.nan) for t in runs]
    original = next((t for t in trials if t["trial_id"] == group), None)
    return {
        "group": group,
        "reference": group == reference,
        "params": original["params"] if original else {},
        "runs": [t["trial_id"] for t in runs],
        "scores": scores,
        "mean": mean(scores),
        "sd": spread(scores),
        "n": sum(is_finite(s) for s in scores),
        # a config whose fresh seeds break a constraint is no candidate (the reference is kept regardless)
        "feasible": all(t.get("feasible", True) for t in runs),
    }


def noise_summary(trials: list[Trial], metric: str, groups: list[dict[str, Any]]) -> dict[str, Any]:
    """The seed noise: pooled over the compared groups, and the reference's per-epoch curve."""
    sd, dof = pooled_spread(g["scores"] for g in groups)
    reference = next((g for g in groups if g["reference"]), None)
    curve = Curve()
    for trial in trials:
        if reference and trial["trial_id"] in reference["runs"]:
            for epoch in trial.get("history", []):
                curve.add(trial["trial_id"], epoch["epoch"], epoch.get(metric, math.nan))
    epochs = sorted({e for run in curve.runs.values() for e in run})
    per_epoch = [{"epoch": e, "mean": curve.mean(e), "sd": curve.noise(e), "n": len(curve.values(e))} for e in epochs]
    return {"sd": sd, "dof": dof, "text": describe(sd), "reference": reference["group"] if reference else None, "per_epoch": per_epoch}


def decide(summary: dict[str, Any], confirm: ConfirmSettings) -> tuple[dict[str, Any] | None, dict[str, Any], Trial | None]:
    """(confirmation, noise, exported trial) of a finished search summary."""
    trials, metric, mode = summary["trials"], summary["metric"], summary["mode"]
    reference = reference_group(trials)
    confirmed = list(dict.fromkeys(t["group"] for t in trials if t.get("role") == CONFIRM))
    groups = [group_stats(trials, g, reference, metric) for g in ([reference] if reference else []) + confirmed]
    noise = noise_summary(trials, metric, groups)
    today = pick_best(sampled(trials), metric, mode)
    if not confirmed or confirm.top == 0:
        return None, noise, today
    outcome = compare(groups, noise["sd"], mode, confirm.z)
    chosen = next((t for t in trials if t["trial_id"] == outcome["chosen"]), today)
    return {"groups": groups, **outcome, "today": today["trial_id"] if today else None}, noise, chosen


def compare(groups: list[dict[str, Any]], noise: float, mode: str, z: float) -> dict[str, Any]:
    """The candidate (best mean among the confirmed configs whose fresh seeds meet the constraints)
    against the reference, and the pick."""
    sign = 1.0 if mode == "max" else -1.0
    reference = next((g for g in groups if g["reference"]), None)
    others = [g for g in groups if not g["reference"] and g["n"] > 0]
    infeasible = [g["group"] for g in others if not g.get("feasible", True)]
    candidate = max((g for g in others if g["group"] not in infeasible), key=lambda g: sign * g["mean"], default=None)
    found = {"candidate": candidate and candidate["group"], "edge": math.nan, "threshold": math.nan, "infeasible": infeasible}
    if candidate is None:
        return found | {"chosen": reference and reference["group"], "outcome": "no_candidate"}
    if reference is None or reference["n"] == 0:
        return found | {"chosen": candidate["group"], "outcome": "no_reference"}
    edge = sign * (candidate["mean"] - reference["mean"])
    threshold = z * noise * math.sqrt(1 / candidate["n"] + 1 / reference["n"]) if is_finite(noise) else math.nan
    if edge <= 0:
        outcome, chosen = "reference_best", reference
    elif not is_finite(threshold):
        outcome, chosen = "noise_unmeasured", candidate
    elif edge > threshold:
        outcome, chosen = "wins", candidate
    else:
        outcome, chosen = "inside_noise", reference
    return found | {"chosen": chosen["group"], "outcome": outcome, "edge": edge, "threshold": threshold}


def confirmation_line(confirmation: dict[str, Any], metric: str, label) -> str:
    """One line saying what confirmation found and what is exported (`label(group)` names a group)."""
    left_out = confirmation.get("infeasible") or []
    note = f" ({', '.join(map(label, left_out))} left out: fresh seeds broke a constraint)" if left_out else ""
    return _outcome_line(confirmation, metric, label) + note


def _outcome_line(confirmation: dict[str, Any], metric: str, label) -> str:
    outcome, candidate, chosen = confirmation["outcome"], confirmation["candidate"], confirmation["chosen"]
    if outcome == "no_candidate":
        return f"no top config finished its confirmation runs: {label(chosen)} is exported"
    if outcome == "no_reference":
        return f"no reference runs to compare with: {label(chosen)}, the best confirmed mean, is exported"
    edge = f"{confirmation['edge']:+.3g}"
    if outcome == "reference_best":
        return f"{label(chosen)} has the best mean {metric} over its seeds: it is exported (the best other, {label(candidate)}, by {edge})"
    if outcome == "noise_unmeasured":
        return f"{label(chosen)} leads {label(confirmation_reference(confirmation))} by {edge}, but the seed noise was not measured: cannot tell them apart; {label(chosen)} is exported"
    limit = f"{confirmation['threshold']:.2g}"
    if outcome == "wins":
        return f"{label(chosen)} beats {label(confirmation_reference(confirmation))} by {edge} {metric}, beyond the seed noise ({limit}): it is exported"
    return (
        f"{label(candidate)} leads {label(chosen)} by {edge} {metric}, inside the seed noise ({limit}): "
        f"no evidence it is better, so {label(chosen)} is exported"
    )


def confirmation_reference(confirmation: dict[str, Any]) -> str:
    return next(g["group"] for g in confirmation["groups"] if g["reference"])
