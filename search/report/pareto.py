"""pareto.csv, pareto.png: the Pareto front of a multi-objective search, beside its summary."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from search.constraints import is_finite
from search.report.output import save_figure, write_csv
from search.pareto import front_trials

PARETO_CSV = "pareto.csv"
PARETO_PNG = "pareto.png"


def pareto_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """(headers, rows): one row per front trial with its objectives and searched values."""
    metrics = [o["metric"] for o in summary["objectives"]]
    keys = list(summary["space_keys"])
    rows = [
        [t["trial_id"], *(t["metrics"][m] for m in metrics), *(t["params"].get(k, "") for k in keys)]
        for t in front_trials(summary["trials"], summary["objectives"])
    ]
    return ["trial", *metrics, *keys], rows


def point_groups(summary: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Trials that reported every objective, as front / dominated (feasible) / infeasible."""
    metrics = [o["metric"] for o in summary["objectives"]]
    reported = [t for t in summary["trials"] if t["status"] != "FAILED" and all(is_finite(t["metrics"].get(m)) for m in metrics)]
    front = front_trials(summary["trials"], summary["objectives"])
    on_front = {t["trial_id"] for t in front}
    return {
        "Pareto front": front,
        "dominated": [t for t in reported if t.get("feasible", True) and t["trial_id"] not in on_front],
        "infeasible": [t for t in reported if not t.get("feasible", True)],
    }


STYLE = {  # group -> scatter keywords
    "Pareto front": {"color": "tab:red", "marker": "o", "s": 60, "zorder": 3},
    "dominated": {"color": "tab:gray", "marker": "o", "s": 30, "alpha": 0.7},
    "infeasible": {"color": "black", "marker": "x", "s": 40},
}


def draw_pair(ax, groups: dict[str, list[dict[str, Any]]], x: dict[str, str], y: dict[str, str], join: bool) -> None:
    """One objective against another; `join` (2 objectives only: a projection of a 3-objective front is
    no curve) links the front points so it reads as a trade-off curve."""
    for name, trials in groups.items():
        xs = [t["metrics"][x["metric"]] for t in trials]
        ax.scatter(xs, [t["metrics"][y["metric"]] for t in trials], label=f"{name} ({len(trials)})", **STYLE[name])
    front = sorted((t["metrics"][x["metric"]], t["metrics"][y["metric"]]) for t in groups["Pareto front"])
    if join and len(front) > 1:
        ax.plot(*zip(*front), color="tab:red", linewidth=1)
    ax.set(xlabel=f"{x['metric']} ({x['mode']})", ylabel=f"{y['metric']} ({y['mode']})")


def pareto_figure(summary: dict[str, Any]) -> Figure:
    """2 objectives: one scatter; 3 or more: one scatter per pair of objectives."""
    pairs = list(itertools.combinations(summary["objectives"], 2))
    cols = min(len(pairs), 3)
    rows = math.ceil(len(pairs) / cols)
    fig = Figure(figsize=(6 * cols, 5 * rows))
    groups = point_groups(summary)
    for i, (x, y) in enumerate(pairs):
        ax = fig.add_subplot(rows, cols, i + 1)
        draw_pair(ax, groups, x, y, join=len(pairs) == 1)
        ax.legend(fontsize=8)
    fig.suptitle(f"Pareto front of '{summary['name']}' (each trial's last reported metrics)")
    return fig


def write_pareto(out_dir: Path, summary: dict[str, Any]) -> list[Path]:
    """pareto.csv (and, with 2 or more objectives, pareto.png) under `out_dir`; the paths written."""
    headers, rows = pareto_rows(summary)
    write_csv(out_dir / PARETO_CSV, headers, rows)
    if len(summary["objectives"]) < 2:
        return [out_dir / PARETO_CSV]
    save_figure(pareto_figure(summary), out_dir / PARETO_PNG)
    return [out_dir / PARETO_CSV, out_dir / PARETO_PNG]
