"""benchmarks/search_efficiency.py's ours_legacy: the tuner builds Ray's own OptunaSearch, which tells
every ended trial COMPLETE with its last value; search/ is left as it is."""

from __future__ import annotations

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

import search.tuner
from benchmarks.search_efficiency import legacy_searcher
from search.spec import load_plan
from search.study import TruthfulOptunaSearch


def test_legacy_searcher_tells_a_stopped_trial_complete_with_its_last_value(minimal_space, write_space, tmp_path):
    plan = load_plan(write_space(minimal_space))
    storage = str(tmp_path / "optuna.journal")
    with legacy_searcher(True):
        searcher = search.tuner.build_searcher(plan, storage)
    searcher.suggest("t1")
    searcher.on_trial_result("t1", {"epoch": 1, "training_iteration": 1, "val/macro_f1": 0.1})
    searcher.on_trial_complete("t1", result={"epoch": 2, "training_iteration": 2, "val/macro_f1": 0.3})
    frozen = optuna.load_study(study_name=plan.name, storage=JournalStorage(JournalFileBackend(storage))).trials[0]
    # the benchmarks' "as it was": a trial stopped after 2 of 3 epochs is COMPLETE with its last (truncated) value
    assert frozen.state == optuna.trial.TrialState.COMPLETE and frozen.value == 0.3
    # outside the benchmark's variant, the tuner builds ours again
    assert isinstance(search.tuner.build_searcher(plan), TruthfulOptunaSearch)
