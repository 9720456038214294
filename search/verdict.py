"""The verdict: the winner against the baseline on images no trial read, with its uncertainty.

At the end of a search, the candidate (the confirmed config with the best mean; without confirmation
the best trial) and the reference config (the baseline) are compared:

- **on the test split** when the data has one: every kept model of both (one per seed; each fold
  model with `data.folds`) scores the test images, and a paired bootstrap over the images and the
  models (training/metrics/bootstrap.py) gives the difference of the search metric and of the miss
  and overkill rates at each model's calibrated decision threshold, with a 95 % interval;
- **on validation** otherwise: the difference of the groups' mean scores with a bootstrap interval
  over their seeds, labelled optimistic (the same images chose the configs).

The search metric's interval also holds the seed noise the search measured (`with_seed_noise`): a
bootstrap over 2-3 models a side understates how far a config's score moves from seed to seed
(benchmarks/overtuning: without the noise, the interval missed the test gain of fresh seeds in 4 of
11 searches; with it, in 1 of 15).

"winner vs baseline on test: +0.031 [-0.012, +0.074]"; where the interval holds 0, "no evidence the
winner beats the baseline". The candidate's and the reference's sampled runs are left out where they
were chosen for their validation score (the candidate's), as in search/decide.py.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from search.constraints import is_finite
from search.decide import group_runs, reference_group
from search.spec import SearchPlan
from training.config import TrainConfig
from training.data import has_test, load_test
from training.loop.fit import CHECKPOINT_FILE
from training.loop.runtime import Runtime
from training.metrics.bootstrap import Estimate, paired_difference
from training.schema.config_file import validate_model
from training.tasks import get_task

RESAMPLES = 1000  # bootstrap resamples of the test images (and models) per verdict
RATES = ("miss_rate", "overkill_rate")  # reported beside the search metric, at the calibrated threshold
SEED = 0  # the bootstrap's generator: a verdict repeats
Z = 1.96  # the normal quantile of the bootstrap's 95 % interval: the seed noise's share of it
SEED_NOISE_NOTE = "(test images and seed noise)"  # follows the metric's interval when it holds the noise


def contenders(summary: dict[str, Any]) -> tuple[str, str] | None:
    """(candidate group, reference group) to compare, or None when there is no pair."""
    reference = reference_group(summary["trials"])
    confirmation = summary.get("confirmation")
    if confirmation is not None:
        candidate = confirmation.get("candidate")
    else:
        best = summary.get("best") or {}
        candidate = best.get("group", best.get("trial_id"))
    if reference is None or candidate is None or candidate == reference:
        return None
    return candidate, reference


def runs_of(summary: dict[str, Any], group: str, reference: str) -> list[dict[str, Any]]:
    """The group's runs a verdict scores: its unbiased runs, else (no confirmation) its one run."""
    runs = group_runs(summary["trials"], group, reference)
    if runs or summary.get("confirmation") is not None:
        return runs
    return [t for t in summary["trials"] if t["trial_id"] == group and t["status"] != "FAILED"]


def verdict(summary: dict[str, Any], plan: SearchPlan, console: Console | None = None) -> dict[str, Any] | None:
    """The verdict dict for summary.json (None without a candidate and a reference to compare)."""
    pair = contenders(summary)
    if pair is None:
        return None
    candidate, reference = (runs_of(summary, group, pair[1]) for group in pair)
    if not candidate or not reference:
        return None
    metric = summary["metric"].removeprefix("val/")
    sign = 1.0 if summary["mode"] == "max" else -1.0
    names = [metric, *(r for r in RATES if r != metric)]
    if has_test(plan.base.data) and all(_checkpoint(t) for t in candidate + reference):
        if console is not None:
            console.print(f"verdict: scoring {len(candidate)} + {len(reference)} models on the test split ...")
        differences, images, models = test_differences(candidate, reference, plan.base, names)
        split, optimistic = "test", False
    else:
        differences, images = validation_differences(candidate, reference, names, summary["metric"]), None
        split, optimistic, models = "validation", True, [len(candidate), len(reference)]
    # a test split, but a compared run saved no model to score it with
    unscored_test = split == "validation" and has_test(plan.base.data)
    noise_sd = (summary.get("noise") or {}).get("sd", math.nan)
    half = seed_half_width(noise_sd, len(candidate), len(reference))
    if metric in differences:
        differences[metric] = with_seed_noise(differences[metric], half, split)
    gain = differences.get(metric)
    evidence = gain is not None and is_finite(gain.lo) and (gain.lo > 0 if sign > 0 else gain.hi < 0)
    result = {
        "split": split,
        "optimistic": optimistic,
        "candidate": pair[0],
        "reference": pair[1],
        "trials": [t["trial_id"] for t in candidate + reference],
        "models": {"candidate": models[0], "reference": models[1]},  # one per seed (per fold with data.folds)
        "images": images,
        "metric": metric,
        "differences": {k: v.to_dict() for k, v in differences.items()},
        "seed_noise": {"sd": noise_sd, "half_width": half},  # what with_seed_noise added to the metric's interval
        "evidence": evidence,
        "unscored_test": unscored_test,
        # confirmation may have kept the baseline while the test favours the winner: the test never
        # changes the pick (then it would no longer be a test), the text says so instead
        "exported_baseline": (summary.get("confirmation") or {}).get("chosen") == pair[1],
    }
    result["text"] = verdict_text(result, sign)
    return result


def seed_half_width(sd: float, n_a: int, n_b: int) -> float:
    """z x the standard error seed noise alone gives the difference of two means over n_a and n_b
    seeds (NaN where the noise was not measured)."""
    return Z * sd * math.sqrt(1 / n_a + 1 / n_b) if is_finite(sd) and n_a and n_b else math.nan


def with_seed_noise(estimate: Estimate, half: float, split: str) -> Estimate:
    """The estimate with an interval that holds the measured seed noise (`half`: seed_half_width).

    On test the bootstrap draws each group's 2-3 models with replacement, which understates their
    spread (by (n-1)/n, and by chance: two seeds say little of a third); the search measured the noise
    on more runs (the reference's and every confirmed config's, pooled). Images and seeds are
    independent sources, so the half-widths add in quadrature, each side apart. On validation the
    bootstrap over runs is a seed term alone: the wider of the two is kept."""
    if not is_finite(half):
        return estimate
    value = estimate.value
    below = value - estimate.lo if is_finite(estimate.lo) else 0.0  # one run a side: no bootstrap term
    above = estimate.hi - value if is_finite(estimate.hi) else 0.0
    if split == "test":
        below, above = math.hypot(below, half), math.hypot(above, half)
    else:
        below, above = max(below, half), max(above, half)
    return Estimate(value, value - below, value + above)


def verdict_text(result: dict[str, Any], sign: float) -> str:
    """'winner vs baseline on test: val/macro_f1 +0.031 [-0.012, +0.074]; ...' (+ 'no evidence ...')."""
    why = ["these images chose the configs"]
    if result.get("unscored_test"):
        why.append("the baseline's or the winner's run stopped early and kept no model to score the test split with")
    where = "on test" if result["split"] == "test" else f"on validation (optimistic: {'; '.join(why)})"
    seeds = result["split"] == "test" and is_finite((result.get("seed_noise") or {}).get("half_width"))
    parts = [
        f"{name} {Estimate(d['value'], d['lo'], d['hi']):+.3f}" + (f" {SEED_NOISE_NOTE}" if seeds and name == result["metric"] else "")
        for name, d in result["differences"].items()
    ]
    rates = " (rates: lower is better)" if any(name in RATES for name in result["differences"]) else ""
    text = f"winner vs baseline {where}: " + "; ".join(parts) + rates
    gain = result["differences"].get(result["metric"], {})
    if not result["evidence"] and math.isnan(gain.get("lo", math.nan)):
        text += ". No evidence either way: one run a side has no interval (search.noise_seeds and search.confirm give one)"
    elif not result["evidence"]:
        better = "higher" if sign > 0 else "lower"
        text += f". No evidence the winner beats the baseline (its {result['metric']} interval is not all {better})"
    elif result.get("exported_baseline"):
        text += (". The test favours the winner, but the baseline was exported (on validation its edge was "
                 "inside the seed noise): more confirmation seeds (search.confirm.seeds) would tell them apart")
    return text


def _checkpoint(trial: dict[str, Any]) -> Path | None:
    folder = trial.get("checkpoint")
    path = Path(folder) / CHECKPOINT_FILE if folder else None
    return path if path is not None and path.is_file() else None


def models_of(trial: dict[str, Any]) -> tuple[TrainConfig, list[dict[str, Any]]]:
    """(config, model states) of a trial's last checkpoint: one model, or one per fold."""
    state = torch.load(_checkpoint(trial), map_location="cpu", weights_only=False)
    cfg = validate_model(TrainConfig, {k: v for k, v in trial["config"].items() if k != "tracking"})
    threshold = trial.get("last_metrics", {}).get("val/threshold_at_target_miss")
    if is_finite(threshold):  # deployed at the threshold its validation calibrated (search/export.py writes it)
        cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"decision_threshold": float(threshold)})})
    return cfg, [s["model"] for s in state.get("folds") or [state]]


def test_differences(
    candidate: list[dict[str, Any]], reference: list[dict[str, Any]], base: TrainConfig, names: list[str]
) -> tuple[dict[str, Estimate], int, list[int]]:
    """The paired bootstrap on the test images of every model of the two groups; (differences, test
    images, models per group)."""
    images = load_test(base.data)
    groups = []
    for runs in (candidate, reference):
        outputs = []
        for trial in runs:
            cfg, states = models_of(trial)
            runtime = Runtime.from_config(cfg.train)
            outputs += [get_task(cfg.task).outputs(cfg, runtime, state, images) for state in states]
        groups.append(outputs)
    with warnings.catch_warnings():  # torchmetrics warns of resamples without a positive of some class
        warnings.simplefilter("ignore", UserWarning)
        compared = paired_difference(groups[0], groups[1], resamples=RESAMPLES, seed=SEED)
    return {k: compared[k].difference for k in names if k in compared}, len(images), [len(g) for g in groups]


def validation_differences(
    candidate: list[dict[str, Any]], reference: list[dict[str, Any]], names: list[str], metric: str
) -> dict[str, Estimate]:
    """Differences of the groups' mean scores (the search metric's score; the rates at the last
    epoch), with a bootstrap interval over the runs of each group."""
    rng = np.random.default_rng(SEED)
    out = {}
    for name in names:
        key = f"val/{name}"
        values = [
            np.array([(t["metrics"] if key == metric else t["last_metrics"]).get(key, math.nan) for t in runs], float)
            for runs in (candidate, reference)
        ]
        if any(np.isnan(v).all() for v in values):
            continue
        values = [v[~np.isnan(v)] for v in values]
        difference = float(values[0].mean() - values[1].mean())
        if min(len(v) for v in values) < 2:
            # one run a side: resampling it gives [d, d], which would read as certainty
            out[name] = Estimate(difference, math.nan, math.nan)
            continue
        draws = [rng.choice(v, size=(RESAMPLES, len(v))).mean(axis=1) for v in values]
        lo, hi = np.percentile(draws[0] - draws[1], [2.5, 97.5])
        out[name] = Estimate(difference, float(lo), float(hi))
    return out
