"""What a dry run finds (`CheckResult`: samples, timings, estimates, data placement, the task's words
on its data) and `check_space_file`, which validates, samples, measures and asks the task."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import RenderableType

from search.check.advice import Curve, data_advice, grace_advice, learning_curve
from search.check.measure import Measurement, measure
from search.check.sample import sample_configs
from search.resources import resolve_resources
from search.space import apply_values
from search.spec import SearchPlan, load_plan
from training.augment.device import describe as describe_augment, device_capable
from training.config import TrainConfig
from training.data import cache
from training.loop.runtime import Runtime
from training.schema.errors import ConfigError
from training.tasks import get_task


@dataclass
class CheckResult:
    plan: SearchPlan
    samples: list[dict[str, Any]]  # decoded values (dotted key -> value), baselines first
    measurement: Measurement
    data: list[RenderableType] = field(default_factory=list)  # Task.describe_data of the base config
    placement: list[str] = field(default_factory=list)  # where the data cache and the augmentation go
    curve: Curve | None = None  # the first config's full-budget run (None with --no-curve)
    advice: list[str] = field(default_factory=list)  # grace period, folds, test split

    @property
    def trial_s(self) -> float:
        return self.measurement.epoch_s * self.plan.epochs

    @property
    def rounds(self) -> int:
        return math.ceil(self.plan.planned_trials / self.plan.spec.search.max_concurrent)

    @property
    def search_s(self) -> float:
        """Every trial runs all epochs, max_concurrent at a time: an upper bound without ASHA."""
        return self.trial_s * self.rounds


def check_space_file(path: Path, curve: bool = True) -> CheckResult:
    """Validate, sample, build and time (and with `curve`, train the first config for its full budget):
    the numbers behind `python -m search check`."""
    plan = load_plan(path)
    samples = sample_configs(plan)
    cfg = apply_values(plan.base, samples[0])
    # resolved as a search resolves it, against this machine's GPUs (run_check notes a share measured on CPU)
    runtime = Runtime.for_trial(cfg, resolve_resources(plan.spec.resources.requested(), torch.cuda.device_count()))
    try:
        measurement = measure(cfg, runtime)
    except ConfigError as exc:
        raise exc.with_file(path) from None
    placement = data_placement(cfg, plan, runtime, measurement.train_images + measurement.val_images)
    data = get_task(plan.base.task).describe_data(plan.base, plan.space)
    result = CheckResult(plan=plan, samples=samples, measurement=measurement, data=data, placement=placement)
    if curve:
        result.curve = learning_curve(cfg, runtime, plan.spec.search.metric)
        result.advice.append(grace_advice(plan, result.curve))
    result.advice += data_advice(plan, measurement.val_images)
    return result


def data_placement(cfg: TrainConfig, plan: SearchPlan, runtime: Runtime, images: int) -> list[str]:
    """Where a trial keeps its decoded images (data.cache) and runs its augmentation (augment.device)."""
    device_ok = get_task(cfg.task).device_batches_ok and device_capable(cfg)
    kept = cache.plan_cache(cfg.data, images, runtime.device, runtime.gpu_fraction, device_ok)
    searched = [key.removeprefix("augment.") for key in plan.space if key.startswith("augment.")]
    where = describe_augment(cfg, searched, runtime.device, kept.mode == "device")
    return [cache.describe(kept, cfg.data), where]
