"""Tuner pieces: resources on the cluster, ASHA/FIFO choice, the seeded Optuna searcher, start-up trials.
Checked through public APIs: the resources Tune reserves for the trainable, the study as
`optuna.load_study` reads it from the searcher's storage, the scheduler's rungs."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import ray
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from ray.tune.schedulers import FIFOScheduler
from ray.tune.trainable import wrap_function

from search.check.sample import sample_configs
from search.resources import resolve_resources
from search.rungs import NoiseAwareHyperband
from search.sampler import make_sampler, startup_trials
from search.space import optuna_space
from search.spec import load_plan
from search.tuner import build_scheduler, build_searcher, cluster_gpus, ray_temp_dir, resourced_trainable
from training.schema.resources import TrialResources


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=1, num_gpus=0, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def plan(tmp_path, minimal_space, write_space):
    return load_plan(write_space(minimal_space))


def reserved(trainable) -> dict[str, float]:
    """What Tune reserves for each trial of a function trainable (as it wraps one to run it)."""
    return wrap_function(trainable).default_resource_request({}).required_resources


def stored(plan, storage: str) -> optuna.Study:
    return optuna.load_study(study_name=plan.name, storage=JournalStorage(JournalFileBackend(storage)))


def test_a_gpu_share_on_a_cluster_without_gpus_is_reserved_as_cpu_only(local_ray, plan):
    resources = resolve_resources(TrialResources(cpu=1, gpu=0.5), cluster_gpus())
    # the local cluster has no GPU: the share resolves to 0
    assert cluster_gpus() == 0 and resources == TrialResources(cpu=1, gpu=0.0)
    # and Ray reserves what was resolved: one CPU, no GPU
    assert reserved(resourced_trainable(plan, resources)) == {"CPU": 1.0}


def test_resourced_trainable_reserves_the_resolved_resources(plan):
    # Ray places the trial on the one resolved value (CPUs and GPU share), whatever the plan asked
    assert reserved(resourced_trainable(plan, TrialResources(cpu=2, gpu=0.5))) == {"CPU": 2.0, "GPU": 0.5}


@pytest.mark.parametrize("name, cls", [("asha", NoiseAwareHyperband), ("none", FIFOScheduler)])
def test_build_scheduler_follows_the_space_file(plan, name, cls):
    plan.spec.scheduler.name = name
    scheduler = build_scheduler(plan)
    # the scheduler named in the file is built
    assert type(scheduler) is cls
    if name == "asha":
        # ASHA cuts on epochs, with the full budget as max_t
        assert scheduler.max_t == plan.epochs


def test_asha_brackets_make_asynchronous_hyperband(plan):
    plan.spec.scheduler.name, plan.spec.scheduler.brackets = "asha", 3
    plan.spec.scheduler.grace_period, plan.spec.scheduler.reduction_factor = 1, 2
    plan.base.train.epochs = 8
    brackets = build_scheduler(plan).rungs
    # bracket s: the first stop can come after grace * rf**s epochs, then at every rf-fold epoch up to max_t
    assert [sorted(b) for b in brackets] == [[1, 2, 4, 8], [2, 4, 8], [4, 8]]


def test_build_searcher_samples_what_search_check_shows(minimal_space, write_space):
    minimal_space["search"] = {"baseline": [{"optim.lr": 1.0e-3}], "seed": 3}
    plan = load_plan(write_space(minimal_space))
    first, second = build_searcher(plan), build_searcher(plan)
    handed = [first.suggest(f"t{i}") for i in range(3)]
    # the baseline first, then the seeded sampler's draws: the configs `search check` prints, search after search
    assert handed == sample_configs(plan, 3) == [second.suggest(f"t{i}") for i in range(3)]
    assert handed[0]["optim.lr"] == 1.0e-3 and set(handed[1]) == set(plan.space)
    minimal_space["search"]["seed"] = 4
    # another seed draws other configs
    assert sample_configs(load_plan(write_space(minimal_space)), 3)[1:] != handed[1:]


def test_make_sampler_is_a_multivariate_tpe(plan):
    sampler = make_sampler(plan)
    study = optuna.create_study(sampler=sampler)
    study.add_trial(optuna.trial.create_trial(params={"optim.lr": 1.0e-3}, distributions=optuna_space(plan.space), value=0.5))
    # TPE, modelling the parameters jointly: it infers a relative (joint) search space from the trials
    assert type(sampler).__name__ == "TPESampler"
    assert set(sampler.infer_relative_search_space(study, study.trials[0])) == set(plan.space)


@pytest.mark.parametrize("samples, baseline, expected", [(8, 0, 2), (40, 0, 10), (100, 0, 10), (12, 1, 4)])
def test_startup_trials_is_a_quarter_of_the_budget_within_bounds(samples, baseline, expected):
    # random start-up: a quarter of the trials, at least 2 and at most 10, after the baselines
    assert startup_trials(samples, baseline) == expected


def test_ray_temp_dir_under_results_when_short_enough():
    # Ray's session logs live under RESULTS/ray when the path fits Ray's socket-path limit
    assert ray_temp_dir(Path("/r")) == "/r/ray"
    # a path too long for Ray's Unix sockets falls back to Ray's default
    assert ray_temp_dir(Path("/" + "x" * 60)) is None


MULTI_OBJECTIVE = {
    "objectives": [{"metric": "val/miss_rate", "mode": "min"}, {"metric": "val/overkill_rate", "mode": "min"}],
    "constraints": ["val/miss_rate <= 0.1"],
    "num_samples": 8,
}


@pytest.mark.parametrize(("sampler", "cls"), [("tpe", "TPESampler"), ("nsga2", "NSGAIISampler")])
def test_build_searcher_multi_objective_gets_metric_and_mode_lists(minimal_space, write_space, tmp_path, sampler, cls):
    minimal_space["search"] = {**MULTI_OBJECTIVE, "sampler": sampler}
    plan = load_plan(write_space(minimal_space))
    searcher = build_searcher(plan, str(tmp_path / "optuna.journal"))
    searcher.suggest("t1")
    # Optuna optimizes every objective, each in its own direction, with the sampler the file names
    assert searcher.metric == ["val/miss_rate", "val/overkill_rate"] and searcher.mode == ["min", "min"]
    assert stored(plan, str(tmp_path / "optuna.journal")).directions == [optuna.study.StudyDirection.MINIMIZE] * 2
    assert type(make_sampler(plan)).__name__ == cls


@pytest.mark.parametrize(
    ("result", "infeasible"),
    [
        ({"val/miss_rate": 0.05, "val/overkill_rate": 0.3, "epoch": 3}, False),
        ({"val/miss_rate": 0.25, "val/overkill_rate": 0.1, "epoch": 3}, True),
        ({"val/miss_rate": 0.25, "val/overkill_rate": 0.1, "epoch": 2}, True),
    ],
)
def test_constrained_searcher_tells_optuna_which_trials_violate(minimal_space, write_space, tmp_path, result, infeasible):
    minimal_space["search"] = MULTI_OBJECTIVE
    plan = load_plan(write_space(minimal_space))
    searcher = build_searcher(plan, str(tmp_path / "optuna.journal"))
    searcher.suggest("t1")
    searcher.on_trial_complete("t1", result=result)
    frozen = stored(plan, str(tmp_path / "optuna.journal")).trials[0]
    # a finished or stopped Optuna trial carries the constraint: > 0 (infeasible) exactly when it is violated
    assert list(frozen.constraints) == ["val/miss_rate <= 0.1"]
    assert (frozen.constraints["val/miss_rate <= 0.1"] > 0) == infeasible


def test_searcher_fails_a_trial_whose_objective_is_nan(minimal_space, write_space, tmp_path):
    minimal_space["search"] = MULTI_OBJECTIVE
    plan = load_plan(write_space(minimal_space))
    searcher = build_searcher(plan, str(tmp_path / "optuna.journal"))
    searcher.suggest("t1")
    searcher.on_trial_complete("t1", result={"val/miss_rate": float("nan"), "val/overkill_rate": 0.1, "epoch": 3})
    # a non-finite objective is no value to learn from: FAIL, which the sampler ignores
    assert stored(plan, str(tmp_path / "optuna.journal")).trials[0].state == optuna.trial.TrialState.FAIL
