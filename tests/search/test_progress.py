"""The progress lines of a running search: how each trial ended, in words that are true, and a best
that never gets worse."""

from __future__ import annotations

import io
import re
from types import SimpleNamespace

from rich.console import Console

from search.constraints import parse_constraint
from search.journal import TrialJournal
from search.progress import Progress

METRIC = "val/macro_f1"


def progress(tmp_path, mode="max", constraints=(), scheduler="ASHA") -> Progress:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    view = Progress(
        METRIC, mode, 4, ["optim.lr"], lambda config: dict(config), console, tmp_path / "trials.jsonl",
        max_epochs=2, scheduler=scheduler, constraints=constraints,
    )
    view.setup()
    return view


def play(view: Progress, events: list[tuple[str, str, float | None]]) -> list[str]:
    """Feed (trial, 'result'|'complete', value) events; returns the printed lines."""
    trials: dict[str, SimpleNamespace] = {}
    for trial_id, kind, value in events:
        trial = trials.setdefault(trial_id, SimpleNamespace(trial_id=trial_id, config={"optim.lr": 0.01}))
        if kind == "result":
            epoch = view.rows.get(trial_id, {}).get("epoch", 0) + 1
            view.on_trial_result(0, [], trial, {"epoch": epoch, METRIC: value, "val/miss_rate": value / 10})
        else:
            view.on_trial_complete(0, [], trial)
    return view.console.file.getvalue().splitlines()


def bests(lines: list[str]) -> list[float]:
    return [float(m) for line in lines for m in re.findall(r"best finished ([0-9.]+)", line)]


# a: stopped after 1 epoch at 0.8; b: 0.9 then 0.6 (its last value, the one the pick uses), done after 2
EVENTS = [("a", "result", 0.8), ("a", "complete", None), ("b", "result", 0.9), ("b", "result", 0.6), ("b", "complete", None)]


def test_progress_says_how_each_trial_ended_in_true_words(tmp_path):
    lines = play(progress(tmp_path), EVENTS)
    # one epoch of two: stopped by the scheduler, in the singular; two of two: done
    assert any("a stopped early by ASHA after 1 epoch;" in line for line in lines), lines
    assert any("b done after 2 epochs;" in line for line in lines), lines
    assert not any("1 epochs" in line for line in lines)


def test_progress_names_a_stop_rule_when_one_stopped_the_trial(tmp_path):
    view = progress(tmp_path)
    TrialJournal(tmp_path / "trials.jsonl").record({"trial": "a", "stop": "no improvement for 1 epoch"})
    lines = play(view, EVENTS[:2])
    # the journal's stop reason, not the scheduler, explains the early end
    assert any("a stopped early after 1 epoch: no improvement for 1 epoch" in line for line in lines), lines


def test_progress_best_never_gets_worse_for_max_or_min(tmp_path):
    # mode max: b's 0.9 at epoch 1 is not final and its last value 0.6 is worse: best stays a's 0.8
    shown = bests(play(progress(tmp_path / "max"), EVENTS))
    assert shown and shown == sorted(shown) and shown[-1] == 0.8
    # mode min on the same events: the best (lowest) never rises
    (tmp_path / "min").mkdir()
    shown = bests(play(progress(tmp_path / "min", mode="min"), EVENTS))
    assert shown and shown == sorted(shown, reverse=True) and shown[-1] == 0.6


def test_progress_best_skips_infeasible_trials(tmp_path):
    # val/miss_rate = value / 10: a (0.08) breaks 'val/miss_rate <= 0.07', b (0.06) meets it
    view = progress(tmp_path, constraints=[parse_constraint("val/miss_rate <= 0.07", "c")])
    shown = bests(play(view, EVENTS))
    assert shown == [0.6]
