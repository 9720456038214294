"""`python -m search list`: finished and unfinished searches under a results folder, with counts."""

from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console

from search.listing import list_searches


def quiet_console() -> Console:
    return Console(file=io.StringIO(), width=200, color_system=None)


def write_finished(folder: Path) -> None:
    """A finished search: 4 trials, one failed, best val/macro_f1 0.75."""
    folder.mkdir(parents=True)
    trials = [{"trial_id": f"t{i}", "status": s} for i, s in enumerate(["DONE", "STOPPED", "FAILED", "DONE"])]
    summary = {
        "name": "done-search", "metric": "val/macro_f1", "started_at": "2025-01-02T03:04:05+00:00",
        "tracking": {"uri": "sqlite:///x.db", "experiment": "exp-a", "parent_run_id": "r"},
        "trials": trials, "best": {"trial_id": "t0", "metrics": {"val/macro_f1": 0.75}},
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "tune").mkdir()


def write_unfinished(folder: Path) -> None:
    """A killed search: its driver state, a Tune folder and a journal with 3 started trials, one failed."""
    (folder / "tune").mkdir(parents=True)
    state = {"name": "killed-search", "started_at": "2025-02-03T04:05:06+00:00", "tracking": {"experiment": "exp-b"}}
    (folder / "search.json").write_text(json.dumps(state))
    events = [{"trial": t, "run": f"run-{t}"} for t in ("a", "b", "c")] + [{"trial": "b", "end": "FAILED"}, {"trial": "a", "end": "FINISHED"}]
    (folder / "trials.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))


def test_list_searches_shows_finished_and_unfinished_with_counts(tmp_path):
    write_finished(tmp_path / "done")
    write_unfinished(tmp_path / "killed")
    (tmp_path / "mlartifacts" / "0").mkdir(parents=True)  # not a search: no summary, no tune/
    console = quiet_console()
    rows = list_searches(tmp_path, console)
    by_name = {row["name"]: row for row in rows}
    # every search folder is listed, the MLflow artifact folder is not
    assert sorted(by_name) == ["done-search", "killed-search"]
    # a summary means finished: its trials, failures, best value with the metric and experiment
    done = by_name["done-search"]
    assert (done["status"], done["trials"], done["failed"]) == ("finished", 4, 1)
    assert (done["best"], done["metric"], done["experiment"]) == (0.75, "val/macro_f1", "exp-a")
    # a Tune folder without summary means unfinished: trials started and failed so far, by the journal
    killed = by_name["killed-search"]
    assert (killed["status"], killed["trials"], killed["failed"], killed["best"]) == ("unfinished", 3, 1, None)
    assert killed["experiment"] == "exp-b" and killed["started_at"] == "2025-02-03T04:05:06+00:00"
    # the console table shows both with their counts and best value
    out = console.file.getvalue()
    assert "4 (1 failed)" in out and "0.75 val/macro_f1" in out and "3 (1 failed)" in out and "unfinished" in out


def test_list_searches_unfinished_without_journal_still_listed(tmp_path):
    (tmp_path / "fresh" / "tune").mkdir(parents=True)
    rows = list_searches(tmp_path, quiet_console())
    # a bare tune/ folder is an unfinished search named after its folder, with no trials yet
    assert [(r["name"], r["status"], r["trials"]) for r in rows] == [("fresh", "unfinished", 0)]


def test_list_searches_half_written_summary_is_unreadable_not_a_crash(tmp_path):
    write_finished(tmp_path / "broken")
    (tmp_path / "broken" / "summary.json").write_text('{"name": "bro')
    rows = list_searches(tmp_path, quiet_console())
    # a summary that cannot be parsed is shown as unreadable instead of stopping the listing
    assert [(r["name"], r["status"]) for r in rows] == [("broken", "unreadable")]


def test_list_searches_empty_or_missing_folder_says_so(tmp_path):
    for folder in (tmp_path, tmp_path / "missing"):
        console = quiet_console()
        # no searches is not an error: an empty list and one clear line
        assert list_searches(folder, console) == []
        assert console.file.getvalue().strip() == f"no searches under {folder}"


def test_list_searches_shows_a_search_killed_before_it_started(tmp_path):
    folder = tmp_path / "results" / "early"
    folder.mkdir(parents=True)
    (folder / "space.yaml").write_text("space: {}\n")
    rows = list_searches(tmp_path / "results", quiet_console())
    # a folder holding only its space file is listed as not started (run takes it over), not hidden
    assert [(r["name"], r["status"]) for r in rows] == [("early", "not started")]
