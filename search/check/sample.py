"""The first trial configs of a search, sampled as the search samples them."""

from __future__ import annotations

from typing import Any

import optuna

from search.sampler import directions, make_sampler
from search.space import decode_trial, encode_point, optuna_space
from search.spec import SearchPlan

SAMPLES = 3


def sample_configs(plan: SearchPlan, count: int = SAMPLES) -> list[dict[str, Any]]:
    """The first `count` trials' values, as Ray's OptunaSearch asks them (baselines enqueued first)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=make_sampler(plan), directions=directions(plan))
    for point in plan.baseline:
        study.enqueue_trial(encode_point(plan.space, point))
    distributions = optuna_space(plan.space)
    trials = [study.ask(fixed_distributions=distributions) for _ in range(count)]
    return [decode_trial(plan.space, trial.params) for trial in trials]
