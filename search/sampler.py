"""The Optuna sampler of a search (Ray-free, so `check` samples exactly what the tuner will)."""

from __future__ import annotations

import warnings

import optuna

from search.spec import SearchPlan


def startup_trials(num_samples: int, baseline: int) -> int:
    """Random trials before TPE models the space: a quarter of the budget, 2..10, after the baselines."""
    return baseline + min(10, max(2, num_samples // 4))


def make_sampler(plan: SearchPlan) -> optuna.samplers.TPESampler:
    """Seeded multivariate TPE; constant liar so concurrent trials count pending ones as bad and do
    not resample them."""
    settings = plan.spec.search
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=settings.seed,
            multivariate=True,
            constant_liar=True,
            n_startup_trials=startup_trials(settings.num_samples, len(plan.baseline)),
        )
