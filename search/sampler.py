"""The Optuna sampler of a search (Ray-free, so `check` samples exactly what the tuner will)."""

from __future__ import annotations

import warnings
from typing import Callable

import optuna

from search.spec import SearchPlan


def startup_trials(num_samples: int, baseline: int) -> int:
    """Random trials before TPE models the space: a quarter of the budget, 2..10, after the baselines."""
    return baseline + min(10, max(2, num_samples // 4))


def objectives(plan: SearchPlan) -> tuple[list[str], list[str]]:
    """(metrics, modes) Optuna optimizes: the objectives, else the one search metric."""
    settings = plan.spec.search
    if settings.objectives:
        return [o.metric for o in settings.objectives], [o.mode for o in settings.objectives]
    return [settings.metric], [settings.mode]


def directions(plan: SearchPlan) -> list[str]:
    """Optuna study directions, one per objective."""
    return ["maximize" if mode == "max" else "minimize" for mode in objectives(plan)[1]]


def tpe_sampler(plan: SearchPlan) -> optuna.samplers.BaseSampler:
    """Seeded multivariate TPE (multi-objective MOTPE with several directions); constant liar so
    concurrent trials count pending ones as bad and do not resample them."""
    settings = plan.spec.search
    return optuna.samplers.TPESampler(
        seed=settings.seed,
        multivariate=True,
        constant_liar=True,
        n_startup_trials=startup_trials(settings.num_samples, len(plan.baseline)),
    )


def nsga2_sampler(plan: SearchPlan) -> optuna.samplers.BaseSampler:
    """Seeded NSGA-II; its first generation (random) is as large as TPE's start-up, so a small budget
    still sees several generations instead of one random population of Optuna's default 50."""
    settings = plan.spec.search
    return optuna.samplers.NSGAIISampler(
        seed=settings.seed, population_size=startup_trials(settings.num_samples, len(plan.baseline))
    )


SAMPLERS: dict[str, Callable[[SearchPlan], optuna.samplers.BaseSampler]] = {
    "tpe": tpe_sampler,
    "nsga2": nsga2_sampler,
}


def make_sampler(plan: SearchPlan) -> optuna.samplers.BaseSampler:
    """The sampler `search.sampler` names. Constraints reach it per trial (`Trial.set_constraint`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return SAMPLERS[plan.spec.search.sampler](plan)
