"""What a finished search leaves behind: summary.json (read by export) and the console summary."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from search.console import format_value, short_keys
from search.constraints import Constraint, feasible, is_finite
from search.layout import SUMMARY_FILE
from search.pareto import front_trials
from search.state import write_atomic
from search.roles import is_replica_run
from search.score import describe, scored_metrics


def trial_status(error: Any, epochs: int, max_epochs: int) -> str:
    if error is not None:
        return "FAILED"
    return "STOPPED" if epochs < max_epochs else "DONE"


def numeric_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The reported metrics (keys with a '/') that are finite numbers."""
    return {
        k: float(v)
        for k, v in metrics.items()
        if "/" in k and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }


def trial_metrics(last: dict[str, Any], history: list[dict[str, Any]], rule: str, metric: str, mode: str) -> dict[str, float]:
    """The metrics that stand for a trial under the score rule `rule`, from its epochs in the journal
    (its last reported metrics when the journal has none)."""
    return scored_metrics(history, rule, metric, mode) or numeric_metrics(last)


def score_text(summary: dict[str, Any]) -> str:
    """Which epochs a trial's metrics come from, e.g. 'ema (moving average over epochs, weight 0.5)'."""
    return describe(summary.get("score", "last"))


def is_feasible(status: str, metrics: dict[str, Any], constraints: list[Constraint]) -> bool:
    """A trial that did not fail and whose last reported metrics meet every constraint."""
    return status != "FAILED" and feasible(metrics, constraints)


def pick_best(trials: list[dict[str, Any]], metric: str, mode: str) -> dict[str, Any] | None:
    """The trial whose `metric` (under the search's score rule) is best; failed and infeasible trials
    and missing values never win."""
    sign = 1 if mode == "max" else -1
    scored = [t for t in trials if t["status"] != "FAILED" and t.get("feasible", True) and metric in t["metrics"]]
    return max(scored, key=lambda t: sign * t["metrics"][metric], default=None)


def ranked(trials: list[dict[str, Any]], metric: str, mode: str) -> list[dict[str, Any]]:
    """Best first; infeasible trials after feasible ones, failed trials last whatever they reported."""
    sign = 1 if mode == "max" else -1
    return sorted(
        trials,
        key=lambda t: (t["status"] == "FAILED", not t.get("feasible", True), -sign * t["metrics"].get(metric, -sign * math.inf)),
    )


def print_front(summary: dict[str, Any], console: Console) -> None:
    """One line per Pareto-front trial of a multi-objective search."""
    objectives = summary.get("objectives") or []
    if not objectives:
        return
    front = front_trials(summary["trials"], objectives)
    names = ", ".join(f"{o['metric']} ({o['mode']})" for o in objectives)
    console.print(f"Pareto front over {names}: {len(front)} feasible trials (pareto.csv, pareto.png)")
    for trial in front:
        values = "  ".join(f"{o['metric']}={format_value(trial['metrics'][o['metric']])}" for o in objectives)
        console.print(f"  {trial['trial_id']}  {values}")


def write_summary(out_dir: Path, summary: dict[str, Any]) -> Path:
    # atomic: summary.json marks a finished search, so a kill while writing it must not leave half of one
    return write_atomic(out_dir / SUMMARY_FILE, json.dumps(summary, indent=2, default=str))


def read_summary(result_dir: Path) -> dict[str, Any]:
    return json.loads((result_dir / SUMMARY_FILE).read_text())


def mlflow_view_hint(uri: str) -> str:
    """How to look at the runs: a tracking server is opened in a browser; a local store needs `mlflow ui`."""
    if uri.startswith(("http://", "https://")):
        return f"open {uri}"
    return f"mlflow ui --backend-store-uri {uri}"


MAX_TABLE_KEYS = 6  # searched keys shown as columns of the end-of-search table


def label(summary: dict[str, Any], group: str) -> str:
    """How the console names a config: `t01 (baseline)`, `t05`, `t03 (reference)`."""
    trial = next((t for t in summary["trials"] if t["trial_id"] == group), {})
    if trial.get("role") == "baseline":
        return f"{group} (baseline)"
    return f"{group} (reference)" if trial.get("reference") or group == (summary.get("noise") or {}).get("reference") else group


def confirmation_table(summary: dict[str, Any]) -> Table | None:
    """Mean and spread over fresh seeds of each confirmed config and of the reference."""
    confirmation = summary.get("confirmation")
    if not confirmation:
        return None
    metric = summary["metric"]
    table = Table(title=f"confirmed configs: {metric} ({summary['score']} score) over seeds at the full budget", title_justify="left")
    for header in ["config", "seeds", "mean", "+-sd", "runs", "exported"]:
        table.add_column(header)
    for group in confirmation["groups"]:
        sd = format_value(group["sd"]) if is_finite(group["sd"]) else "-"
        runs = " ".join(format_value(v) for v in group["scores"])
        mark = "yes" if group["group"] == confirmation["chosen"] else ""
        table.add_row(label(summary, group["group"]), str(group["n"]), format_value(group["mean"]), sd, runs, mark)
    return table


def print_confirmation(summary: dict[str, Any], console: Console) -> None:
    """The seed noise and what confirmation decided."""
    from search.decide import confirmation_line  # decide imports this module's pick_best

    noise = summary.get("noise") or {}
    if noise.get("reference"):
        dof = f"{noise['dof']} degree{'s' if noise['dof'] != 1 else ''} of freedom"
        console.print(f"seed noise: {noise['text']} ({summary['metric']}, pooled over {dof})")
    table = confirmation_table(summary)
    if table is not None:
        console.print(table)
        console.print(confirmation_line(summary["confirmation"], summary["metric"], lambda g: label(summary, g)))


def seed_spread(group: dict[str, Any] | None) -> str:
    """`0.7412 +-0.029 (3)`: a confirmed config's mean and spread over its unbiased seeds, else ''."""
    if not group or not group["n"]:
        return ""
    sd = f" +-{format_value(group['sd'])}" if is_finite(group["sd"]) else ""
    return f"{format_value(group['mean'])}{sd} ({group['n']})"


def print_summary(summary: dict[str, Any], console: Console, stopper: str, top: int = 5) -> None:
    """The top trials, how many ended which way and the pick; `stopper` names what stops trials early
    (`SchedulerSettings.stopper`)."""
    metric, mode = summary["metric"], summary["mode"]
    # a wide space would squeeze every column to an ellipsis: its values are on the `best:` line instead
    keys = list(summary["space_keys"]) if len(summary["space_keys"]) <= MAX_TABLE_KEYS else []
    constrained = bool(summary.get("constraints"))
    title = f"top trials of '{summary['name']}' by {metric} ({mode}), score: {score_text(summary)}"
    table = Table(title=title, title_justify="left")
    groups = {g["group"]: g for g in (summary.get("confirmation") or {}).get("groups", [])}
    seeds = ["mean over seeds (n)"] if groups else []
    for header in ["trial", "status", "epochs", *short_keys(keys), metric, *seeds, *(["feasible"] if constrained else [])]:
        table.add_column(header)
    for trial in ranked([t for t in summary["trials"] if not is_replica_run(t)], metric, mode)[:top]:
        values = [format_value(trial["params"].get(k, "")) for k in keys]
        score = format_value(trial["metrics"].get(metric, float("nan")))
        spread = [seed_spread(groups.get(trial["trial_id"]))] if groups else []
        mark = ["yes" if trial.get("feasible", True) else "no"] if constrained else []
        table.add_row(trial["trial_id"], trial["status"], str(trial["epochs"]), *values, score, *spread, *mark)
    console.print(table)
    print_front(summary, console)
    counts = {s: sum(t["status"] == s for t in summary["trials"]) for s in ("DONE", "STOPPED", "FAILED")}
    replicas = sum(is_replica_run(t) for t in summary["trials"])
    stopped = "stopped early" if stopper == "none" else f"stopped early by {stopper}"
    console.print(
        f"{len(summary['trials'])} trials in {summary['duration_s']:.0f}s: {counts['DONE']} full, "
        f"{counts['STOPPED']} {stopped}, {counts['FAILED']} failed"
        + (f" ({replicas} of them extra seeds: noise and confirmation)" if replicas else "")
    )
    budget = summary.get("time_budget") or {}
    if budget.get("ran_out"):
        console.print("the time budget ran out: no trial started after it, running ones stopped after their epoch")
    best = summary["best"]
    if best is None:
        console.print("[red]no trial produced the metric" + (" and met the constraints" if constrained else "") + "[/]")
        return
    print_confirmation(summary, console)
    values = ", ".join(f"{k}={format_value(v)}" for k, v in best["params"].items())
    score = f"{metric}={format_value(best['metrics'][metric])} (score: {summary.get('score', 'last')})"
    exported = "exported" if summary.get("confirmation") else "best"
    console.print(f"{exported}: {best['trial_id']} {score} with {values}")
    console.print(f"results: {summary['out_dir']}  (best config: {summary['out_dir']}/best.yaml)")
    tracking = summary["tracking"]
    console.print(f"MLflow:  {mlflow_view_hint(tracking['uri'])}  (experiment '{tracking['experiment']}')")
    console.print(f"retrain: python -m search export {summary['out_dir']} -o best.yaml && python -m training train best.yaml")
    if summary.get("verdict"):
        console.print(summary["verdict"]["text"])
