"""Searches bounded by time: the duration syntax, the deadline in the journal, no trial handed out and
every trial stopped past it, and a search its budget ended resumed with more time."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from ray.tune.search import Searcher

from search.budget import clock_text, parse_duration
from search.journal import TrialJournal
from search.spec import StopSettings, load_plan
from search.state import refuse_finished
from search.stopping import LossRules
from search.tuner import build_searcher, confirming
from training.schema.errors import ConfigError


@pytest.mark.parametrize(
    "text, seconds",
    [("8h", 28800), ("90m", 5400), ("1h30m", 5400), ("45s", 45), ("2d", 172800), ("1.5h", 5400), ("600", 600), (120, 120)],
)
def test_parse_duration_reads_hours_minutes_seconds_or_plain_seconds(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["8 hours", "h", "-5m", "0", "1x", True, ""])
def test_parse_duration_refuses_anything_else(text):
    with pytest.raises(ValueError, match="duration|expected"):
        parse_duration(text)


def test_clock_text_shows_hours_when_there_are_any():
    assert clock_text(5400) == "1:30:00" and clock_text(75) == "01:15" and clock_text(-3) == "00:00"


def test_the_latest_deadline_in_the_journal_counts(tmp_path):
    journal = TrialJournal(tmp_path / "trials.jsonl")
    journal.record({"search": "deadline", "at": time.time() - 1})
    assert journal.past_deadline()
    # a resume with more time writes a later one: it replaces the first
    journal.record({"search": "deadline", "at": time.time() + 3600})
    assert not TrialJournal(tmp_path / "trials.jsonl").past_deadline()


def test_past_the_deadline_every_trial_stops_after_its_epoch_and_none_is_handed_out(minimal_space, write_space, tmp_path):
    path = tmp_path / "trials.jsonl"
    stopper = LossRules(StopSettings(), path)
    plan = load_plan(write_space(minimal_space))
    searcher = confirming(plan, build_searcher(plan), path)
    assert isinstance(searcher.suggest("t1"), dict)
    assert stopper("t1", {"epoch": 1, "train/loss": 1.0}) is False
    TrialJournal(path).record({"search": "deadline", "at": time.time() - 1})
    # the running trial stops after the epoch it reports, and says why
    assert stopper("t1", {"epoch": 2, "train/loss": 0.9}) is True
    assert TrialJournal(path).stop_reasons["t1"] == "the time budget ran out"
    # nothing more starts, yet the searcher is not finished: a resume with more time goes on
    assert searcher.suggest("t2") is None and searcher.suggest("t3") != Searcher.FINISHED
    assert not TrialJournal(path).finished


def test_a_finished_search_is_resumed_only_when_its_budget_ended_it_and_more_time_is_given(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"time_budget": {"deadline": 1.0, "ran_out": True}}))
    refuse_finished(tmp_path, 7200)  # more time: it goes on
    with pytest.raises(ConfigError, match="give it more with --time-budget"):
        refuse_finished(tmp_path, None)
    (tmp_path / "summary.json").write_text(json.dumps({"time_budget": None}))
    with pytest.raises(ConfigError, match="nothing to resume"):
        refuse_finished(tmp_path, 7200)


SPACE = {
    "name": "budget",
    "task": "classification",
    "data": {"kind": "synthetic", "image_size": 32, "batch_size": 16, "synthetic": {"count": 40, "seed": 0}},
    "base": {"model": {"name": "resnet10t"}, "optim": {"schedule": "constant"}},
    "space": {"optim.lr": {"loguniform": [1.0e-4, 1.0e-2]}},
    "search": {"num_samples": 3, "max_concurrent": 1, "noise_seeds": 0, "confirm": False, "time_budget": "2s"},
    "scheduler": {"name": "none", "max_epochs": 2},
}


def cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "search", *args], cwd=root, capture_output=True, text=True, timeout=600)


def test_a_search_its_budget_ended_is_written_up_and_goes_on_with_more_time(tmp_path):
    (tmp_path / "budget.yaml").write_text(yaml.safe_dump(SPACE))
    first = cli(tmp_path, "run", "budget.yaml", "--results", "results")
    folder = tmp_path / "results" / "budget"
    summary = json.loads((folder / "summary.json").read_text())
    # 2 s: Ray alone takes longer to start, so the budget ran out before the 3 trials could run; the
    # search was still written up (and says how to go on when no trial finished)
    assert summary["time_budget"]["ran_out"] and len(summary["trials"]) < 3
    assert first.returncode == 0 or "give it more time" in first.stderr
    assert cli(tmp_path, "resume", "results/budget").returncode == 2
    done = cli(tmp_path, "resume", "results/budget", "--time-budget", "10m")
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((folder / "summary.json").read_text())
    # with more time it ran every trial, each to its full budget unless the first budget stopped it
    assert len(summary["trials"]) == 3 and not summary["time_budget"]["ran_out"]
    assert "budget left" in done.stdout


def test_a_bad_time_budget_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "budget.yaml").write_text(yaml.safe_dump(SPACE))
    proc = cli(tmp_path, "run", "budget.yaml", "--results", "results", "--time-budget", "soon")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--time-budget" in proc.stderr
    assert not (tmp_path / "results" / "budget").exists()
