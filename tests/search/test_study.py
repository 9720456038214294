"""search/study.py: the Optuna study is told every epoch, and PRUNED / COMPLETE / FAIL as trials ended."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import optuna
import pytest
from ray.tune.search.optuna import OptunaSearch

from search.spec import load_plan
from search.study import TruthfulOptunaSearch
from search.tuner import build_searcher

State = optuna.trial.TrialState
MAX_EPOCHS = 3  # MINIMAL_SPACE's scheduler.max_epochs


@pytest.fixture
def searcher(minimal_space, write_space) -> TruthfulOptunaSearch:
    minimal_space["search"] = {"score": "last"}
    return build_searcher(load_plan(write_space(minimal_space)))


def run_trial(searcher: TruthfulOptunaSearch, trial_id: str, values: list[float], **end) -> optuna.trial.FrozenTrial:
    """Suggest, report one value per epoch (the last one only at the end, as Tune does for a trial its
    scheduler stops), end the trial; the study's record of it."""
    searcher.suggest(trial_id)
    for epoch, value in enumerate(values[:-1], start=1):
        searcher.on_trial_result(trial_id, {"epoch": epoch, "training_iteration": epoch, "val/macro_f1": value})
    last = {"epoch": len(values), "val/macro_f1": values[-1]} if values else None
    searcher.on_trial_complete(trial_id, result=last if not end.get("error") else None, **end)
    return searcher._ot_study.trials[-1]


def test_trial_stopped_before_max_epochs_is_pruned_with_every_epoch(searcher):
    frozen = run_trial(searcher, "t1", [0.1, 0.3])
    # ASHA stopped it after 2 of 3 epochs: PRUNED, each epoch an intermediate value (step = epoch),
    # the epoch it was stopped on included
    assert frozen.state == State.PRUNED
    assert frozen.intermediate_values == {1: 0.1, 2: 0.3}


def test_trial_that_ran_every_epoch_is_complete_with_its_score(searcher):
    frozen = run_trial(searcher, "t1", [0.1, 0.5, 0.4])
    # a full trial is COMPLETE, its value the score rule's (here `last`), its epochs intermediate values
    assert frozen.state == State.COMPLETE and frozen.value == 0.4
    assert frozen.intermediate_values == {1: 0.1, 2: 0.5, 3: 0.4}
    assert frozen.user_attrs["score"] == "last"


@pytest.mark.parametrize(("values", "end"), [([0.1], {"error": True}), ([0.1, math.nan, math.nan], {}), ([], {})])
def test_crashed_diverged_or_silent_trial_fails(searcher, values, end):
    # a crash, a non-finite score or no epoch at all: FAIL, which the sampler ignores
    assert run_trial(searcher, "t1", values, **end).state == State.FAIL


def test_trial_a_stop_rule_ended_counts_as_complete(searcher):
    searcher.suggest("t1")
    searcher.on_trial_result("t1", {"epoch": 1, "val/macro_f1": 0.2})
    searcher.on_trial_complete("t1", result={"epoch": 2, "val/macro_f1": 0.3, "stop_reason": "plateau"})
    frozen = searcher._ot_study.trials[0]
    # a plateau rule says the trial had finished learning: its value counts (COMPLETE), unlike ASHA's stop
    assert frozen.state == State.COMPLETE and frozen.value == 0.3


def test_trial_the_plateau_rule_stopped_is_told_complete(searcher, tmp_path):
    from search.spec import StopSettings
    from search.stopping import LossRules

    rules = LossRules(StopSettings(patience_epochs=1), tmp_path / "trials.jsonl")
    searcher.suggest("t1")
    # the loss does not improve at epoch 2 of MAX_EPOCHS (3): the rule ends the trial early
    results = [{"epoch": 1, "train/loss": 1.0, "val/macro_f1": 0.1}, {"epoch": 2, "train/loss": 1.2, "val/macro_f1": 0.2}]
    for result in results:
        stop = rules("t1", result)
        if not stop:
            searcher.on_trial_result("t1", result)
    searcher.on_trial_complete("t1", result=results[-1])
    # the rule marks the trial's last result, so the study counts it finished, not pruned
    assert stop and results[-1]["stop_reason"]
    assert searcher._ot_study.trials[0].state == State.COMPLETE


@pytest.mark.parametrize(("rule", "expected"), [("last", 0.4), ("best", 0.6), ("ema", 0.25 * 0.2 + 0.25 * 0.6 + 0.5 * 0.4)])
def test_complete_value_follows_the_score_rule(minimal_space, write_space, rule, expected):
    minimal_space["search"] = {"score": rule}
    searcher = build_searcher(load_plan(write_space(minimal_space)))
    # the value Optuna learns from is the trial's score under search.score
    assert run_trial(searcher, "t1", [0.2, 0.6, 0.4]).value == pytest.approx(expected)


def test_legacy_tell_reproduces_rays_truncated_complete(searcher, monkeypatch):
    monkeypatch.setattr(TruthfulOptunaSearch, "legacy_tell", True)
    frozen = run_trial(searcher, "t1", [0.1, 0.3])
    # the benchmarks' "as it was": a stopped trial COMPLETE with its last (truncated) value
    assert frozen.state == State.COMPLETE and frozen.value == 0.3


def test_study_survives_tunes_save_and_restore(searcher, tmp_path):
    searcher.suggest("t1")
    searcher.on_trial_result("t1", {"epoch": 1, "val/macro_f1": 0.1})
    searcher.save(str(tmp_path / "searcher.pkl"))
    restored = copy.copy(searcher)
    restored.restore(str(tmp_path / "searcher.pkl"))
    restored.on_trial_result("t1", {"epoch": 1, "val/macro_f1": 0.9})  # resumed from before epoch 1's checkpoint
    restored.on_trial_result("t1", {"epoch": 2, "val/macro_f1": 0.2})
    restored.on_trial_complete("t1", result={"epoch": 3, "val/macro_f1": 0.3})
    frozen = restored._ot_study.trials[0]
    # the restored searcher goes on with the same trial: epochs before and after the save, then COMPLETE
    assert frozen.state == State.COMPLETE
    assert sorted(frozen.intermediate_values) == [1, 2, 3] and frozen.intermediate_values[1] == 0.1
    # a repeated epoch replaces the old one in the trial's record (as the journal does)
    assert restored.history("t1")[0]["val/macro_f1"] == 0.9


PROBE_SPACE = {
    "name": "asha",
    "task": "probe",
    "data": {"batch_size": 16},
    "space": {"optim.lr": {"loguniform": [1.0e-4, 1.0]}},
    "search": {"metric": "val/accuracy", "mode": "max", "noise_seeds": 0, "confirm": False, "num_samples": 6, "max_concurrent": 1, "seed": 3},
    "scheduler": {"name": "asha", "max_epochs": 4, "grace_period": 1, "reduction_factor": 3, "brackets": 1},
    "resources": {"cpu": 1, "gpu": 0},
}


def test_real_asha_search_leaves_a_truthful_study(run_search_cli, tmp_path):
    summary = run_search_cli(PROBE_SPACE)
    state = sorted(Path(tmp_path, "results", "asha", "tune").glob("searcher-state-*.pkl"))[-1]
    searcher = OptunaSearch()
    searcher.restore(str(state))
    by_epochs = {tuple(t.intermediate_values.items()): t for t in searcher._ot_study.trials}
    expected = {"DONE": State.COMPLETE, "STOPPED": State.PRUNED}
    # ASHA stopped some trials and let others finish, so both kinds are checked
    assert {t["status"] for t in summary["trials"]} == {"DONE", "STOPPED"}
    for trial in summary["trials"]:
        frozen = by_epochs[tuple((h["epoch"], h["val/accuracy"]) for h in trial["history"])]
        # each epoch the trial ran is an intermediate value at step = epoch; its state is what it was
        assert frozen.state == expected[trial["status"]]
        if frozen.state == State.COMPLETE:
            # a finished trial's value is its scored metric, the same the summary ranks by
            assert frozen.value == pytest.approx(trial["metrics"]["val/accuracy"])
    # the summary says which score rule made the trials' metrics
    assert summary["score"] == "ema"
