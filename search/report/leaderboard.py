"""leaderboard.csv, leaderboard.md and the console table: the top trials by the search metric."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from search.console import short_keys
from search.report.inputs import Search
from search.report.output import ReportDir, console_table, markdown_table, write_csv
from search.summary import ranked


def status_text(trial: dict[str, Any]) -> str:
    if trial["status"] == "FAILED":
        return f"failed: {trial.get('error') or 'unknown error'}"
    if trial["status"] == "STOPPED":
        return f"stopped early ({trial.get('stop_reason') or 'ASHA'})"
    return "done"


def leaderboard_metrics(search: Search) -> list[str]:
    """The search metric, then every other `val/<name>` metric (per-class ones go to best_per_class)."""
    names = {k for t in search.trials for k in t["metrics"] if k.startswith("val/") and k.count("/") == 1}
    return [search.metric] + sorted(names - {search.metric})


def leaderboard_trials(search: Search, top: int) -> list[dict[str, Any]]:
    """Best first by the metric and mode; infeasible trials after feasible ones, failed trials last."""
    order = ranked(search.trials, search.metric, search.mode)
    return sorted(order, key=lambda t: t["status"] == "FAILED")[:top]


def leaderboard_rows(search: Search, top: int) -> tuple[list[str], list[list[Any]]]:
    """One row per trial; a `feasible` column (yes/no) when the search had constraints."""
    keys, metrics = list(search.summary["space_keys"]), leaderboard_metrics(search)
    constrained = bool(search.summary.get("constraints"))
    headers = ["rank", "trial", "status", *(["feasible"] if constrained else []), "epochs", *keys, *metrics]
    rows = [
        [rank, t["trial_id"], status_text(t), *([feasible_text(t)] if constrained else []), t["epochs"],
         *(t["params"].get(k, "") for k in keys), *(t["metrics"].get(m, "") for m in metrics)]
        for rank, t in enumerate(leaderboard_trials(search, top), start=1)
    ]
    return headers, rows


def feasible_text(trial: dict[str, Any]) -> str:
    return "yes" if trial.get("feasible", True) else "no"


def write_leaderboard(search: Search, out: ReportDir, console: Console, top: int) -> None:
    headers, rows = leaderboard_rows(search, top)
    title = f"top {len(rows)} of {len(search.trials)} trials of '{search.summary['name']}' by {search.metric} ({search.mode})"
    write_csv(out.path("leaderboard.csv", "leaderboard (CSV)"), headers, rows)
    shown = [[f"{v:.6g}" if isinstance(v, float) else v for v in row] for row in rows]
    out.path("leaderboard.md", "leaderboard (table)").write_text(f"# {title}\n\n" + markdown_table(headers, shown))
    space_keys = [h for h in headers if h in search.summary["space_keys"]]
    shorts = dict(zip(space_keys, short_keys(space_keys)))
    short = [shorts.get(h, h) for h in headers]
    console.print(console_table(title, short, rows))
