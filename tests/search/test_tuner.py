"""Tuner pieces: resources on the cluster, ASHA/FIFO choice, the seeded Optuna searcher, start-up trials."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import ray
from ray.tune.schedulers import FIFOScheduler

from search.spec import load_plan
from search.sampler import startup_trials
from search.resources import resolve_resources
from search.rungs import NoiseAwareHyperband
from search.tuner import build_scheduler, build_searcher, cluster_gpus, ray_temp_dir, resourced_trainable
from training.resources import TrialResources


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=1, num_gpus=0, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def plan(tmp_path, minimal_space, write_space):
    return load_plan(write_space(minimal_space))


def test_a_gpu_share_on_a_cluster_without_gpus_is_reserved_as_cpu_only(local_ray, plan):
    resources = resolve_resources(TrialResources(cpu=1, gpu=0.5), cluster_gpus())
    # the local cluster has no GPU: the share resolves to 0
    assert cluster_gpus() == 0 and resources == TrialResources(cpu=1, gpu=0.0)
    # and Ray reserves what was resolved: one CPU, no GPU
    assert resourced_trainable(plan, resources)._resources.required_resources == {"CPU": 1.0}


def test_resourced_trainable_reserves_the_resolved_resources(plan):
    # Ray places the trial on the one resolved value (CPUs and GPU share), whatever the plan asked
    placed = resourced_trainable(plan, TrialResources(cpu=2, gpu=0.5))._resources.required_resources
    assert placed == {"CPU": 2.0, "GPU": 0.5}


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


def test_build_searcher_uses_a_seeded_multivariate_tpe(plan):
    searcher = build_searcher(plan)
    sampler = searcher._sampler
    # TPE, seeded from the space file, modelling parameters jointly
    assert type(sampler).__name__ == "TPESampler"
    assert sampler._multivariate is True
    # the space is the Optuna form of the file's distributions
    assert set(searcher._space) == set(plan.space)


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
def test_build_searcher_multi_objective_gets_metric_and_mode_lists(minimal_space, write_space, sampler, cls):
    minimal_space["search"] = {**MULTI_OBJECTIVE, "sampler": sampler}
    searcher = build_searcher(load_plan(write_space(minimal_space)))
    # Optuna optimizes every objective, each in its own direction, with the sampler the file names
    assert searcher.metric == ["val/miss_rate", "val/overkill_rate"] and searcher.mode == ["min", "min"]
    assert len(searcher._ot_study.directions) == 2
    assert type(searcher._sampler).__name__ == cls


@pytest.mark.parametrize(
    ("result", "infeasible"),
    [
        ({"val/miss_rate": 0.05, "val/overkill_rate": 0.3, "epoch": 3}, False),
        ({"val/miss_rate": 0.25, "val/overkill_rate": 0.1, "epoch": 3}, True),
        ({"val/miss_rate": 0.25, "val/overkill_rate": 0.1, "epoch": 2}, True),
    ],
)
def test_constrained_searcher_tells_optuna_which_trials_violate(minimal_space, write_space, result, infeasible):
    minimal_space["search"] = MULTI_OBJECTIVE
    searcher = build_searcher(load_plan(write_space(minimal_space)))
    searcher.suggest("t1")
    searcher.on_trial_complete("t1", result=result)
    frozen = searcher._ot_study.trials[0]
    # a finished or stopped Optuna trial carries the constraint: > 0 (infeasible) exactly when it is violated
    assert list(frozen.constraints) == ["val/miss_rate <= 0.1"]
    assert (frozen.constraints["val/miss_rate <= 0.1"] > 0) == infeasible


def test_searcher_fails_a_trial_whose_objective_is_nan(minimal_space, write_space):
    minimal_space["search"] = MULTI_OBJECTIVE
    searcher = build_searcher(load_plan(write_space(minimal_space)))
    searcher.suggest("t1")
    searcher.on_trial_complete("t1", result={"val/miss_rate": float("nan"), "val/overkill_rate": 0.1, "epoch": 3})
    # a non-finite objective is no value to learn from: FAIL, which the sampler ignores
    assert searcher._ot_study.trials[0].state == optuna.trial.TrialState.FAIL
