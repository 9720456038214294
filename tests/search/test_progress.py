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
from search.score import scored_metrics
from search.summary import pick_best

METRIC = "val/macro_f1"


def progress(tmp_path, mode="max", constraints=(), scheduler="ASHA", score="last") -> Progress:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    view = Progress(
        METRIC, mode, 4, ["optim.lr"], lambda config: dict(config), console, tmp_path / "trials.jsonl",
        max_epochs=2, score=score, scheduler=scheduler, constraints=constraints,
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


def test_progress_best_follows_the_search_score_rule_and_names_it(tmp_path):
    # b: 0.9 then 0.6; a: 0.8 (one epoch). last: b=0.6 -> a's 0.8; best: b=0.9; ema (0.5): b=0.75 -> a's 0.8
    expected = {"last": (0.8, "a"), "best": (0.9, "b"), "ema": (0.8, "a")}
    for rule, best in expected.items():
        (tmp_path / rule).mkdir()
        view = progress(tmp_path / rule, score=rule)
        lines = play(view, EVENTS)
        assert view.best == best, rule
        assert f"best finished {best[0]} by {best[1]}, {rule} score" in lines[-1], lines


def test_progress_best_is_the_final_pick(tmp_path):
    # the live view's best and the summary's pick_best agree on the same epochs, under every rule
    histories = {"a": [0.5, 0.7, 0.6], "b": [0.8, 0.4, 0.65], "c": [0.3, 0.62, 0.66]}
    for rule in ("last", "best", "ema"):
        (tmp_path / rule).mkdir()
        view = progress(tmp_path / rule, score=rule)
        events = [(t, "result", v) for t, values in histories.items() for v in values]
        play(view, events + [(t, "complete", None) for t in histories])
        trials = [
            {"trial_id": t, "status": "DONE", "metrics": scored_metrics([{"epoch": i + 1, METRIC: v} for i, v in enumerate(values)], rule, METRIC, "max")}
            for t, values in histories.items()
        ]
        assert view.best[1] == pick_best(trials, METRIC, "max")["trial_id"], rule
