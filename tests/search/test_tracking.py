"""TrialTracking on a real SQLite MLflow store: trial runs named by what was searched, with the searched
keys as params and the resolved config as config.yaml; epochs reach MLflow batched, none lost."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import pytest
import yaml

from search import tracking
from search.runner import close_orphans
from search.spec import load_plan
from search.roles import REPLICA_KEY
from search.tracking import TrialTracking, run_name, short_value
from training.config import TrainConfig
from training.tracking import EXPERIMENT_KIND_TAG, MODEL_TRAINING, Tracker


@pytest.fixture
def plan(minimal_space, write_space):
    minimal_space["space"]["loss.focal_gamma"] = {"uniform": [0.0, 3.0]}
    minimal_space["search"] = {"num_samples": 3, "baseline": [{"optim.lr": 1.0e-3, "loss.focal_gamma": 2.0}]}
    return load_plan(write_space(minimal_space))


@pytest.fixture
def callback(tmp_path, plan) -> TrialTracking:
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "tracking-test", tmp_path / "artifacts")
    parent = tracker.start_run("search")
    return TrialTracking(tracker, parent, plan, journal=tmp_path / "trials.jsonl")


def make_trial(trial_id: str, index: int, lr: float = 3.1e-4, gamma: float = 2.5, replica: dict | None = None) -> SimpleNamespace:
    # Tune's trial: a hex id, an experiment tag starting with its creation counter, the searcher's values
    # (with what the trial is for, search/roles.py, when it is a baseline point or an extra seed)
    config = {"optim.lr": lr, "loss.focal_gamma": gamma, **({REPLICA_KEY: replica} if replica else {})}
    return SimpleNamespace(trial_id=trial_id, experiment_tag=f"{index}_lr={lr}", config=config)


BASELINE_0 = {"role": "baseline", "group": "b0", "point": 0, "reference": True}


def run_epochs(callback: TrialTracking, trial, epochs: int) -> str:
    callback.on_trial_start(0, [], trial)
    for epoch in range(1, epochs + 1):
        callback.on_trial_result(0, [], trial, {"epoch": epoch, "val/f1": epoch / 10})
    return callback.journal.run_ids[trial.trial_id]


def history(callback: TrialTracking, run_id: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in callback.tracker.client.get_metric_history(run_id, "val/f1")]


def test_a_finished_trial_has_every_epoch_and_its_tags(callback):
    trial = make_trial("a1b2c3d4", 2)
    run_id = run_epochs(callback, trial, 3)
    callback.on_trial_complete(0, [], trial)
    run = callback.tracker.client.get_run(run_id)
    # one metric point per epoch, at step = epoch
    assert sorted(history(callback, run_id)) == [(1, 0.1), (2, 0.2), (3, 0.3)]
    assert run.data.tags["epochs_run"] == "3" and run.info.status == "FINISHED"


def test_a_trial_run_is_named_by_its_index_and_searched_values(callback):
    run_id = run_epochs(callback, make_trial("a1b2c3d4", 2), 1)
    run = callback.tracker.client.get_run(run_id)
    # not the hex trial id: its creation index, then each searched key's last part and short value
    assert run.info.run_name == "t02 lr=3.1e-4 focal_gamma=2.5"
    # the trial id stays findable as a tag
    assert run.data.tags["trial_id"] == "a1b2c3d4" and run.data.tags["baseline"] == "false"


def test_a_trial_run_logs_only_the_searched_keys_and_the_task_and_model(callback):
    run = callback.tracker.client.get_run(run_epochs(callback, make_trial("a1b2c3d4", 2), 1))
    # the searched keys with the trial's values, plus what every trial trains: no constant config dump
    assert run.data.params == {
        "optim.lr": "0.00031",
        "loss.focal_gamma": "2.5",
        "task": "classification",
        "model.name": "resnet10t",
    }


def test_a_trial_run_holds_its_resolved_config_as_config_yaml(callback, tmp_path):
    run_id = run_epochs(callback, make_trial("a1b2c3d4", 2), 1)
    client = callback.tracker.client
    # one artifact: config.yaml
    assert [a.path for a in client.list_artifacts(run_id)] == ["config.yaml"]
    config = yaml.safe_load(open(client.download_artifacts(run_id, "config.yaml", str(tmp_path))))
    # it is a whole training config, valid as it is, with the trial's values and the base's settings
    resolved = TrainConfig.model_validate(config)
    assert resolved.optim.lr == 3.1e-4 and resolved.loss.focal_gamma == 2.5
    assert resolved.model.name == "resnet10t" and resolved.data.image_size == 32
    # a retrain of it logs where the search logged
    assert config["tracking"] == {"uri": callback.tracker.uri, "experiment": "tracking-test"}


def test_the_baseline_trials_are_tagged_and_named_so(callback):
    baseline = callback.tracker.client.get_run(run_epochs(callback, make_trial("b0", 1, 1.0e-3, 2.0, BASELINE_0), 1))
    sampled = callback.tracker.client.get_run(run_epochs(callback, make_trial("s0", 2, 1.0e-3, 2.0), 1))
    # the searcher marks the baseline points (search/confirm.py): tagged, and named so
    assert baseline.data.tags["baseline"] == "true" and baseline.data.tags["baseline_point"] == "search.baseline[0]"
    assert baseline.info.run_name == "t01 baseline lr=1e-3 focal_gamma=2"
    # a later trial with the same values is not a baseline
    assert sampled.data.tags["baseline"] == "false" and "baseline" not in sampled.info.run_name


def test_an_extra_seed_is_named_by_its_role_and_seed_and_tagged_with_its_config(callback):
    noise = {"role": "noise", "group": "b0", "seed": 2, "reference": True}
    run = callback.tracker.client.get_run(run_epochs(callback, make_trial("n2", 3, 1.0e-3, 2.0, noise), 1))
    # which config it repeats, with which seed, and what for: in its name, tags and params
    assert run.info.run_name == "t03 noise seed=2 lr=1e-3 focal_gamma=2"
    assert run.data.tags["role"] == "noise" and run.data.tags["replica_of"] == "b0"
    assert run.data.tags["confirmation"] == "false" and run.data.params["seed"] == "2"
    # its config retrains that seed
    config = yaml.safe_load(open(callback.tracker.client.download_artifacts(run.info.run_id, "config.yaml")))
    assert config["seed"] == 2


def test_a_resumed_trial_continues_its_own_run_under_the_same_name(callback):
    trial = make_trial("a1b2c3d4", 2)
    run_id = run_epochs(callback, trial, 1)
    callback.flush()
    # Tune restores the callback from its pickled experiment state; the journal is its memory
    restored = pickle.loads(pickle.dumps(callback))
    restored.setup()
    restored.on_trial_start(0, [], trial)
    restored.on_trial_result(0, [], trial, {"epoch": 2, "val/f1": 0.2})
    restored.on_trial_complete(0, [], trial)
    client = callback.tracker.client
    runs = client.search_runs([callback.tracker.experiment_id], "tags.trial_id = 'a1b2c3d4'")
    # still one run for the trial, same id and name, with both epochs
    assert [r.info.run_id for r in runs] == [run_id]
    assert runs[0].info.run_name == "t02 lr=3.1e-4 focal_gamma=2.5"
    assert sorted(history(callback, run_id)) == [(1, 0.1), (2, 0.2)]


def test_the_experiment_is_marked_as_model_training(callback):
    experiment = callback.tracker.client.get_experiment(callback.tracker.experiment_id)
    # MLflow 3's experiment kind: model training, not GenAI
    assert experiment.tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING == "custom_model_development"


@pytest.mark.parametrize(
    "value, shown",
    [(3.1e-4, "3.1e-4"), (0.0031, "3.1e-3"), (0.25, "0.25"), (0.123456, "0.123"), (1.0e6, "1e6"), (0.0, "0"),
     (128, "128"), (True, "true"), ([0.5, 1.0, 2.0], "[0.5,1,2]"), ("a_very_long_model_name", "a_very_long_m…")],
)  # fmt: skip
def test_short_value_keeps_run_names_short(value, shown):
    assert short_value(value) == shown


def test_run_name_tells_apart_keys_with_the_same_last_part():
    values = {"loss.rpn.focal_gamma": 1.0, "loss.roi.focal_gamma": 2.0, "optim.lr": 0.01}
    # clashing last parts keep one more part each; the others their last part
    assert run_name(7, 3, values, False) == "t007 rpn.focal_gamma=1 roi.focal_gamma=2 lr=0.01"


def test_a_running_trials_epochs_reach_mlflow_within_the_flush_interval(callback, monkeypatch):
    trial = make_trial("t2", 1)
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
    run_epochs(callback, make_trial("t3", 1), 1)
    assert callback._pending and callback.__getstate__()["_pending"] == {}


def test_an_orphaned_trial_run_is_renamed_and_closed(callback):
    run_id = run_epochs(callback, make_trial("lost", 1, replica=BASELINE_0), 1)
    summary = {"trials": [], "tracking": {"parent_run_id": callback.parent_run_id}}
    close_orphans(callback.tracker, callback.journal, summary)
    run = callback.tracker.client.get_run(run_id)
    # a trial the restored search never knew: KILLED, and its name no longer doubles the new t01's
    assert run.info.status == "KILLED" and run.info.run_name == "t01 baseline lr=3.1e-4 focal_gamma=2.5 (orphaned)"
