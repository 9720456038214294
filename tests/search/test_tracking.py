"""TrialTracking on a real SQLite MLflow store: epochs reach MLflow batched, none lost, tags with them."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from search import tracking
from search.tracking import TrialTracking
from training.tracking import Tracker


@pytest.fixture
def callback(tmp_path) -> TrialTracking:
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "tracking-test", tmp_path / "artifacts")
    parent = tracker.start_run("search")
    return TrialTracking(tracker, parent, lambda config: dict(config), max_epochs=3, journal=tmp_path / "trials.jsonl")


def run_epochs(callback: TrialTracking, trial, epochs: int) -> str:
    callback.on_trial_start(0, [], trial)
    for epoch in range(1, epochs + 1):
        callback.on_trial_result(0, [], trial, {"epoch": epoch, "val/f1": epoch / 10})
    return callback.journal.run_ids[trial.trial_id]


def history(callback: TrialTracking, run_id: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in callback.tracker.client.get_metric_history(run_id, "val/f1")]


def test_a_finished_trial_has_every_epoch_and_its_tags(callback):
    trial = SimpleNamespace(trial_id="t1", config={"optim.lr": 0.1})
    run_id = run_epochs(callback, trial, 3)
    callback.on_trial_complete(0, [], trial)
    run = callback.tracker.client.get_run(run_id)
    assert sorted(history(callback, run_id)) == [(1, 0.1), (2, 0.2), (3, 0.3)]
    assert run.data.tags["epochs_run"] == "3" and run.info.status == "FINISHED"
    assert run.data.params["optim.lr"] == "0.1"


def test_a_running_trials_epochs_reach_mlflow_within_the_flush_interval(callback, monkeypatch):
    trial = SimpleNamespace(trial_id="t2", config={})
    run_id = run_epochs(callback, trial, 2)
    # the journal has them at once (it is what a resume reads); MLflow once the interval has passed
    assert callback.journal.epochs("t2") == 2
    monkeypatch.setattr(tracking, "FLUSH_EVERY_S", 0.0)
    callback.on_step_end(0, [])
    assert sorted(history(callback, run_id)) == [(1, 0.1), (2, 0.2)]
    callback.on_trial_result(0, [], trial, {"epoch": 3, "val/f1": 0.3})
    callback.on_experiment_end([])  # the end of the search writes whatever is left
    assert len(history(callback, run_id)) == 3


def test_pending_epochs_are_not_pickled_into_tunes_snapshot(callback):
    trial = SimpleNamespace(trial_id="t3", config={})
    run_epochs(callback, trial, 1)
    assert callback._pending and callback.__getstate__()["_pending"] == {}
