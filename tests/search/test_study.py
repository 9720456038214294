"""search/study.py: the Optuna study lives in its storage, told every epoch and PRUNED / COMPLETE / FAIL as
trials ended; a restored searcher opens it again. Every check reads the study as a user does: with
`optuna.load_study` on the storage."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import optuna
import optuna_dashboard
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from search.spec import SearchPlan, load_plan
from search.study import TruthfulOptunaSearch, refuse_taken_study
from search.tuner import build_searcher
from training.schema.errors import ConfigError

State = optuna.trial.TrialState
MAX_EPOCHS = 3  # MINIMAL_SPACE's scheduler.max_epochs


def stored(plan: SearchPlan, storage: str) -> optuna.Study:
    """The study as `optuna.load_study` reads it from the search's journal file."""
    return optuna.load_study(study_name=plan.name, storage=JournalStorage(JournalFileBackend(storage)))


@pytest.fixture
def plan(minimal_space, write_space) -> SearchPlan:
    minimal_space["search"] = {"score": "last"}
    return load_plan(write_space(minimal_space))


@pytest.fixture
def storage(tmp_path) -> str:
    return str(tmp_path / "optuna.journal")


@pytest.fixture
def searcher(plan, storage) -> TruthfulOptunaSearch:
    return build_searcher(plan, storage)


def run_trial(searcher: TruthfulOptunaSearch, trial_id: str, values: list[float], **end) -> None:
    """Suggest, report one value per epoch (the last one only at the end, as Tune does for a trial its
    scheduler stops), end the trial."""
    searcher.suggest(trial_id)
    for epoch, value in enumerate(values[:-1], start=1):
        searcher.on_trial_result(trial_id, {"epoch": epoch, "training_iteration": epoch, "val/macro_f1": value})
    last = {"epoch": len(values), "val/macro_f1": values[-1]} if values else None
    searcher.on_trial_complete(trial_id, result=last if not end.get("error") else None, **end)


def restored(plan: SearchPlan, storage: str, snapshot: Path) -> TruthfulOptunaSearch:
    """What Tune's restore makes: the searcher pickled with the tuner when the search began, then its
    snapshot's state."""
    searcher = pickle.loads(pickle.dumps(build_searcher(plan, storage)))
    searcher.restore(str(snapshot))
    return searcher


def test_trial_stopped_before_max_epochs_is_pruned_with_every_epoch(plan, storage, searcher):
    run_trial(searcher, "t1", [0.1, 0.3])
    frozen = stored(plan, storage).trials[0]
    # ASHA stopped it after 2 of 3 epochs: PRUNED, each epoch an intermediate value (step = epoch),
    # the epoch it was stopped on included
    assert frozen.state == State.PRUNED
    assert frozen.intermediate_values == {1: 0.1, 2: 0.3}


def test_trial_that_ran_every_epoch_is_complete_with_its_score(plan, storage, searcher):
    run_trial(searcher, "t1", [0.1, 0.5, 0.4])
    frozen = stored(plan, storage).trials[0]
    # a full trial is COMPLETE, its value the score rule's (here `last`), its epochs intermediate values
    assert frozen.state == State.COMPLETE and frozen.value == 0.4
    assert frozen.intermediate_values == {1: 0.1, 2: 0.5, 3: 0.4}
    # the study names the rule and the Tune trial (as MLflow and trials.jsonl do)
    assert frozen.user_attrs == {"score": "last", "trial_id": "t1"}


@pytest.mark.parametrize(("values", "end"), [([0.1], {"error": True}), ([0.1, math.nan, math.nan], {}), ([], {})])
def test_crashed_diverged_or_silent_trial_fails(plan, storage, searcher, values, end):
    run_trial(searcher, "t1", values, **end)
    # a crash, a non-finite score or no epoch at all: FAIL, which the sampler ignores
    assert stored(plan, storage).trials[0].state == State.FAIL


def test_trial_a_stop_rule_ended_counts_as_complete(plan, storage, searcher):
    searcher.suggest("t1")
    searcher.on_trial_result("t1", {"epoch": 1, "val/macro_f1": 0.2})
    searcher.on_trial_complete("t1", result={"epoch": 2, "val/macro_f1": 0.3, "stop_reason": "plateau"})
    frozen = stored(plan, storage).trials[0]
    # a plateau rule says the trial had finished learning: its value counts (COMPLETE), unlike ASHA's stop
    assert frozen.state == State.COMPLETE and frozen.value == 0.3


def test_trial_the_plateau_rule_stopped_is_told_complete(plan, storage, searcher, tmp_path):
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
    assert stored(plan, storage).trials[0].state == State.COMPLETE


@pytest.mark.parametrize(("rule", "expected"), [("last", 0.4), ("best", 0.6), ("ema", 0.25 * 0.2 + 0.25 * 0.6 + 0.5 * 0.4)])
def test_complete_value_follows_the_score_rule(minimal_space, write_space, storage, rule, expected):
    minimal_space["search"] = {"score": rule}
    plan = load_plan(write_space(minimal_space))
    run_trial(build_searcher(plan, storage), "t1", [0.2, 0.6, 0.4])
    # the value Optuna learns from is the trial's score under search.score
    assert stored(plan, storage).trials[0].value == pytest.approx(expected)


def test_study_goes_on_in_its_storage_after_tunes_save_and_restore(plan, storage, searcher, tmp_path):
    searcher.suggest("t1")
    searcher.on_trial_result("t1", {"epoch": 1, "val/macro_f1": 0.1})
    searcher.save(str(tmp_path / "searcher.pkl"))
    again = restored(plan, storage, tmp_path / "searcher.pkl")
    again.on_trial_result("t1", {"epoch": 1, "val/macro_f1": 0.9})  # resumed from before epoch 1's checkpoint
    again.on_trial_result("t1", {"epoch": 2, "val/macro_f1": 0.2})
    again.on_trial_complete("t1", result={"epoch": 3, "val/macro_f1": 0.3})
    frozen = stored(plan, storage).trials[0]
    # the restored searcher goes on with the same stored trial: epochs before and after the save, then
    # COMPLETE; Optuna keeps a step's first value
    assert len(stored(plan, storage).trials) == 1 and frozen.state == State.COMPLETE
    assert frozen.intermediate_values == {1: 0.1, 2: 0.2, 3: 0.3}
    # a repeated epoch replaces the old one in the trial's record (as the journal does)
    assert again.history("t1")[0]["val/macro_f1"] == 0.9


def test_a_resumed_search_samples_what_an_uninterrupted_one_would(plan, tmp_path):
    straight = build_searcher(plan, str(tmp_path / "straight.journal"))
    resumed = build_searcher(plan, str(tmp_path / "resumed.journal"))
    for searcher in (straight, resumed):
        run_trial(searcher, "t1", [0.1, 0.2, 0.3])
    resumed.save(str(tmp_path / "searcher.pkl"))
    resumed = restored(plan, str(tmp_path / "resumed.journal"), tmp_path / "searcher.pkl")
    # the sampler goes on from the stored trials and its saved random state: the same next (random
    # start-up) config as without the interruption, not the first draw again
    assert resumed.suggest("t2") == straight.suggest("t2") != straight.suggest("t1")


def test_a_trial_ended_after_the_snapshot_is_not_told_twice(plan, storage, searcher, tmp_path):
    searcher.suggest("t1")
    searcher.save(str(tmp_path / "searcher.pkl"))
    run_trial(searcher, "t1", [0.1, 0.2, 0.3])  # ended after Tune's last snapshot, then a hard kill
    again = restored(plan, storage, tmp_path / "searcher.pkl")
    run_trial(again, "t1", [0.5, 0.6, 0.7])  # Tune's snapshot had it running: it runs again
    trials = stored(plan, storage).trials
    # the study keeps the outcome it was told first, and no second trial
    assert len(trials) == 1 and trials[0].state == State.COMPLETE and trials[0].value == 0.3


def test_trials_a_hard_kill_left_running_or_waiting_are_failed_as_orphans(plan, storage, searcher, tmp_path):
    searcher.suggest("t1")
    searcher.save(str(tmp_path / "searcher.pkl"))
    searcher.suggest("t2")  # asked after Tune's last snapshot
    stored(plan, storage).enqueue_trial({"optim.lr": 5.0e-3})  # enqueued, never asked (a kill in between)
    again = restored(plan, storage, tmp_path / "searcher.pkl")
    replacement = again.suggest("t2")  # Tune asks again for the trial its snapshot lacks
    trials = stored(plan, storage).trials
    # the orphans are FAIL (the sampler ignores them), marked so; t1 runs on; the replacement is a new
    # trial, drawn by the sampler rather than taken from the stale queue
    assert [t.state for t in trials] == [State.RUNNING, State.FAIL, State.FAIL, State.RUNNING]
    assert all("orphaned" in t.user_attrs for t in trials[1:3])
    assert replacement["optim.lr"] != 5.0e-3


def test_a_baseline_a_hard_kill_lost_is_handed_out_again(minimal_space, write_space, storage, tmp_path):
    minimal_space["search"] = {"baseline": [{"optim.lr": 1.0e-3}, {"optim.lr": 2.0e-3}]}
    plan = load_plan(write_space(minimal_space))
    searcher = build_searcher(plan, storage)
    searcher.suggest("t0")
    searcher.save(str(tmp_path / "searcher.pkl"))
    searcher.suggest("t1")  # the second baseline, asked after Tune's last snapshot
    again = restored(plan, storage, tmp_path / "searcher.pkl")
    # the baselines come first, in order, whatever the kill lost; each stored trial names its point
    assert again.suggest("t1")["optim.lr"] == 2.0e-3 and again.suggest("t2")["optim.lr"] != 2.0e-3
    trials = stored(plan, storage).trials
    assert [t.user_attrs.get("baseline") for t in trials] == [0, 1, 1, None]
    assert trials[1].state == State.FAIL


def test_study_lives_in_the_database_the_space_file_names(minimal_space, write_space, tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    minimal_space["search"] = {"optuna_storage": url}
    plan = load_plan(write_space(minimal_space))
    refuse_taken_study(url, plan.name)  # a new search's name is free there
    run_trial(build_searcher(plan, plan.spec.search.optuna_storage), "t1", [0.1, 0.2, 0.3])
    # the study is in the database, under the search's name; a new search of that name is refused
    assert optuna.load_study(study_name=plan.name, storage=url).trials[0].state == State.COMPLETE
    with pytest.raises(ConfigError, match="already holds a study"):
        refuse_taken_study(url, plan.name)
    # a path is no RDB URL: refused when the space file is read (the default journal needs no setting)
    minimal_space["search"] = {"optuna_storage": str(tmp_path / "studies.db")}
    with pytest.raises(ConfigError, match="RDB URL") as refused:
        load_plan(write_space(minimal_space))
    assert refused.value.key == "search.optuna_storage"


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
    folder = tmp_path / "results" / "asha"
    study = optuna.load_study(study_name="asha", storage=JournalStorage(JournalFileBackend(str(folder / "optuna.journal"))))
    by_trial = {t.user_attrs["trial_id"]: t for t in study.trials}
    expected = {"DONE": State.COMPLETE, "STOPPED": State.PRUNED}
    # ASHA stopped some trials and let others finish, so both kinds are checked
    assert {t["status"] for t in summary["trials"]} == {"DONE", "STOPPED"}
    assert set(by_trial) == {t["trial_id"] for t in summary["trials"]}
    for trial in summary["trials"]:
        frozen = by_trial[trial["trial_id"]]
        # each epoch the trial ran is an intermediate value at step = epoch; its state is what it was
        assert frozen.intermediate_values == {h["epoch"]: h["val/accuracy"] for h in trial["history"]}
        assert frozen.state == expected[trial["status"]]
        if frozen.state == State.COMPLETE:
            # a finished trial's value is its scored metric, the same the summary ranks by
            assert frozen.value == pytest.approx(trial["metrics"]["val/accuracy"])
    # the summary says which score rule made the trials' metrics
    assert summary["score"] == "ema"
    check_dashboard_shows(folder / "optuna.journal", summary)
    # Tune's snapshot of the searcher maps its trials to the study's, and holds no study of its own
    snapshot = sorted((folder / "tune").glob("searcher-state-*.pkl"))[-1]
    saved = pickle.loads(snapshot.read_bytes())
    assert saved["trials"] == {t.user_attrs["trial_id"]: t.number for t in study.trials}
    assert not any(isinstance(v, optuna.Study) for v in saved.values())


def dashboard_get(app, path: str) -> dict:
    """GET a JSON page of the optuna-dashboard app, as its web page does."""
    environ: dict = {}
    setup_testing_defaults(environ)
    environ["PATH_INFO"] = path
    status: list[str] = []
    body = b"".join(app(environ, lambda code, headers, exc_info=None: status.append(code)))
    assert status == ["200 OK"], (path, status, body[:300])
    return json.loads(body)


def check_dashboard_shows(journal: Path, summary: dict) -> None:
    """`optuna-dashboard results/asha/optuna.journal` (its app, given the path as on its command line)
    lists the search's study with each trial's state and per-epoch values."""
    app = optuna_dashboard.wsgi(str(journal))
    (listed,) = dashboard_get(app, "/api/studies")["study_summaries"]
    assert listed["study_name"] == "asha"
    study = dashboard_get(app, f"/api/studies/{listed['study_id']}")
    shown = {next(a["value"] for a in t["user_attrs"] if a["key"] == "trial_id"): t for t in study["trials"]}
    states = {"DONE": "Complete", "STOPPED": "Pruned"}
    for trial in summary["trials"]:
        row = shown[trial["trial_id"]]
        assert row["state"] == states[trial["status"]]
        assert [(v["step"], v["value"]) for v in row["intermediate_values"]] == [
            (h["epoch"], pytest.approx(h["val/accuracy"])) for h in trial["history"]
        ]
