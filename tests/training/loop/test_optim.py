"""Optimizers and LR schedules: registries match the config, schedules warm up to the peak LR."""

from __future__ import annotations

import math
from typing import get_args

import pytest
import torch
from torch import nn

from training.config import OptimConfig
from training.loop.optim import OPTIMIZERS, SCHEDULES, create_optimizer, create_scheduler

PEAK = 0.1
# 5 epochs x 2 steps = 10 steps: OneCycle peaks exactly at step 0.3 * 10 - 1 = 2
EPOCHS, STEPS_PER_EPOCH = 5, 2
TOTAL = EPOCHS * STEPS_PER_EPOCH


def _lrs(schedule: str, warmup_epochs: float = 2.0) -> list[float]:
    """The LR each of the run's optimizer steps uses, stepping the schedule as `fit` does."""
    model = nn.Linear(2, 2)
    cfg = OptimConfig(name="sgd", lr=PEAK, schedule=schedule, warmup_epochs=warmup_epochs)
    optimizer = create_optimizer(model, cfg)
    scheduler = create_scheduler(optimizer, cfg, EPOCHS, STEPS_PER_EPOCH)
    lrs = []
    for _ in range(TOTAL):
        lrs.append(optimizer.param_groups[0]["lr"])
        model(torch.ones(1, 2)).sum().backward()
        optimizer.step()
        scheduler.step()
    return lrs


def test_optimizer_registry_keys_equal_config_choices():
    # every optimizer the config accepts is registered, and nothing else
    assert set(OPTIMIZERS) == set(get_args(OptimConfig.model_fields["name"].annotation))


def test_schedule_registry_keys_equal_config_choices():
    # every schedule the config accepts is registered, and nothing else
    assert set(SCHEDULES) == set(get_args(OptimConfig.model_fields["schedule"].annotation))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_create_optimizer_uses_configured_lr_and_weight_decay(name):
    optimizer = create_optimizer(nn.Linear(3, 1), OptimConfig(name=name, lr=0.05, weight_decay=0.2))
    group = optimizer.param_groups[0]
    # the optimizer starts from the configured peak LR and weight decay
    assert (group["lr"], group["weight_decay"]) == (0.05, 0.2)


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
def test_schedule_steps_through_total_steps(schedule):
    lrs = _lrs(schedule)
    # one LR per step, all finite and positive, over the whole run without a scheduler error
    assert len(lrs) == TOTAL and all(math.isfinite(lr) and lr > 0 for lr in lrs)


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
def test_schedule_warmup_starts_low_and_reaches_peak(schedule):
    lrs = _lrs(schedule, warmup_epochs=2.0)
    # warm-up starts well below the peak LR
    assert lrs[0] <= 0.25 * PEAK + 1e-12
    # the LR rises during warm-up
    assert lrs[1] > lrs[0]
    # and reaches the configured peak, never exceeding it
    assert max(lrs) == pytest.approx(PEAK)


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_schedule_linear_warmup_length_in_epochs(schedule):
    lrs = _lrs(schedule, warmup_epochs=2.0)
    warmup = 2 * STEPS_PER_EPOCH
    # linear warm-up over warmup_epochs * steps_per_epoch steps: step k uses (k + 1) / warmup of the peak
    assert lrs[:warmup] == pytest.approx([PEAK * (k + 1) / warmup for k in range(warmup)])
    # the step right after warm-up runs at the peak
    assert lrs[warmup] == pytest.approx(PEAK)


def test_constant_schedule_holds_peak_after_warmup():
    lrs = _lrs("constant", warmup_epochs=1.0)
    # after warm-up a constant schedule stays at the peak to the end
    assert lrs[STEPS_PER_EPOCH:] == pytest.approx([PEAK] * (TOTAL - STEPS_PER_EPOCH))


def test_cosine_schedule_decays_after_warmup():
    lrs = _lrs("cosine", warmup_epochs=0.0)
    # without warm-up cosine starts at the peak
    assert lrs[0] == pytest.approx(PEAK)
    # and decays monotonically towards 0
    assert all(a > b for a, b in zip(lrs, lrs[1:])) and lrs[-1] < 0.05 * PEAK


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_schedule_warmup_longer_than_run_is_clamped(schedule):
    lrs = _lrs(schedule, warmup_epochs=100.0)
    # a warm-up longer than the run is cut to total - 1 steps, so the last step still reaches the peak
    assert lrs[-1] == pytest.approx(PEAK)
