"""`python -m search list`: the searches under a results folder, finished or not, as one table.

A sub-folder with summary.json is a finished search; one with a Tune folder (`tune/`) or the driver's
`search.json` but no summary is unfinished (still running, or killed: `python -m search resume` it).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from search.console import format_value
from search.journal import TrialJournal
from search.layout import JOURNAL_FILE, SPACE_FILE, STATE_FILE, SUMMARY_FILE, TUNE_DIR



def read_json(path: Path) -> dict[str, Any] | None:
    """The mapping in a JSON file, or None when it is missing or unreadable (a half-written file)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def finished_row(folder: Path, summary: dict[str, Any]) -> dict[str, Any]:
    trials, best, metric = summary.get("trials") or [], summary.get("best"), summary.get("metric")
    return {
        "name": summary.get("name", folder.name),
        "path": str(folder),
        "status": "finished",
        "trials": len(trials),
        "failed": sum(t.get("status") == "FAILED" for t in trials),
        "metric": metric,
        "best": (best or {}).get("metrics", {}).get(metric),
        "experiment": (summary.get("tracking") or {}).get("experiment"),
        "started_at": summary.get("started_at"),
    }


def journal_counts(folder: Path) -> tuple[int | None, int | None]:
    """(trials started, trials failed) so far by the trial journal; (None, None) when it is unreadable."""
    try:
        journal = TrialJournal(folder / JOURNAL_FILE)
    except (OSError, ValueError, KeyError):
        return None, None
    return len(journal.run_ids), sum(end == "FAILED" for end in journal.ended.values())


def unfinished_row(folder: Path) -> dict[str, Any]:
    """What the driver wrote when the search began (search.json) and the trials its journal saw start."""
    state = read_json(folder / STATE_FILE) or {}
    started, failed = journal_counts(folder)
    return {
        "name": state.get("name", folder.name),
        "path": str(folder),
        "status": "unfinished",
        "trials": started,
        "failed": failed,
        "metric": None,
        "best": None,
        "experiment": (state.get("tracking") or {}).get("experiment"),
        "started_at": state.get("started_at"),
    }


def search_row(folder: Path) -> dict[str, Any] | None:
    """One search's row, or None when the folder holds no search."""
    if (folder / SUMMARY_FILE).is_file():
        summary = read_json(folder / SUMMARY_FILE)
        return finished_row(folder, summary) if summary is not None else {**unfinished_row(folder), "status": "unreadable"}
    if (folder / TUNE_DIR).is_dir() or (folder / STATE_FILE).is_file():
        return unfinished_row(folder)
    if (folder / SPACE_FILE).is_file():  # killed before it started: `run` takes the folder again
        return {**unfinished_row(folder), "status": "not started"}
    return None


def find_searches(results_dir: Path) -> list[dict[str, Any]]:
    if not results_dir.is_dir():
        return []
    rows = (search_row(folder) for folder in sorted(results_dir.iterdir()) if folder.is_dir())
    return [row for row in rows if row is not None]


def shown_time(started_at: str | None) -> str:
    try:
        return datetime.fromisoformat(started_at).strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    except (TypeError, ValueError):
        return started_at or "-"


def cells(row: dict[str, Any]) -> list[str]:
    trials = "-" if row["trials"] is None else f"{row['trials']} ({row['failed']} failed)"
    best = "-" if row["best"] is None else f"{format_value(row['best'])} {row['metric']}"
    values = [row["name"], row["status"], trials, best, row["experiment"] or "-", shown_time(row["started_at"])]
    return [escape(str(v)) for v in values]


def list_searches(results_dir: Path, console: Console) -> list[dict[str, Any]]:
    """Print the searches under `results_dir` as a table; returns their rows (dicts), [] when none."""
    rows = find_searches(Path(results_dir))
    if not rows:
        console.print(f"no searches under {escape(str(results_dir))}")
        return []
    table = Table(title=escape(f"searches under {results_dir}"), title_justify="left")
    for header in ["name", "status", "trials", "best", "experiment", "started at"]:
        table.add_column(header)
    for row in rows:
        table.add_row(*cells(row))
    console.print(table)
    return rows
