"""Bootstrap intervals for the metrics of trained models on a fixed image set.

A group is one config's models (one per seed); its estimate of a metric is the mean over its models.
Each resample draws the test images with replacement and, hierarchically, the group's models with
replacement, so that the interval holds both the images' sampling noise and the seed-to-seed spread
(a lucky seed does not make a narrow interval). `paired_difference` draws one set of images per
resample for both groups: what both get wrong or right cancels out of the difference.

Each resample scores every model it draws once (`metrics(indices)`): cost = resamples x distinct
models drawn x one metric call (about 2 ms for a classifier on 300 images, far more for detection's
pycocotools mAP).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np

RESAMPLES, LEVEL = 1000, 0.95  # the defaults of every caller


class Scored(Protocol):
    """A model's outputs on a fixed list of images (`training.tasks.base.ModelOutputs`)."""

    def __len__(self) -> int: ...

    def metrics(self, indices: np.ndarray | None = None) -> dict[str, float]: ...


@dataclass(frozen=True)
class Estimate:
    """A value and its bootstrap interval [lo, hi]; `f"{e:+.3f}"` gives `+0.031 [-0.012, +0.074]`."""

    value: float
    lo: float
    hi: float

    def __format__(self, spec: str) -> str:
        spec = spec or ".3f"
        if math.isnan(self.lo) or math.isnan(self.hi):
            return f"{self.value:{spec}} (no interval)"  # nothing to resample: one run a side
        return f"{self.value:{spec}} [{self.lo:{spec}}, {self.hi:{spec}}]"

    def holds(self, x: float) -> bool:
        """Whether `x` lies in the interval (bounds included)."""
        return self.lo <= x <= self.hi

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class Comparison:
    """One metric of two groups on the same images: each, and their paired difference a - b."""

    a: Estimate
    b: Estimate
    difference: Estimate
    a_above: float  # share of the resamples (where the metric is defined) with a > b

    def to_dict(self) -> dict[str, object]:
        return {"a": self.a.to_dict(), "b": self.b.to_dict(), "difference": self.difference.to_dict(), "a_above": self.a_above}


def interval(
    models: Sequence[Scored], resamples: int = RESAMPLES, level: float = LEVEL, seed: int = 0
) -> dict[str, Estimate]:
    """Per metric, the group's mean over its models with a percentile bootstrap interval at `level`."""
    (point,), (draws,) = _bootstrap([models], resamples, level, seed)
    return {k: _estimate(point[k], draws[k], level) for k in point}


def paired_difference(
    a_models: Sequence[Scored], b_models: Sequence[Scored], resamples: int = RESAMPLES, level: float = LEVEL, seed: int = 0
) -> dict[str, Comparison]:
    """Per metric both groups report, each group's estimate and the paired bootstrap of a - b: each
    resample draws one set of images for both groups, and the models of each group."""
    (point_a, point_b), (draws_a, draws_b) = _bootstrap([a_models, b_models], resamples, level, seed)
    out = {}
    for k in point_a.keys() & point_b.keys():
        difference = draws_a[k] - draws_b[k]
        defined = difference[~np.isnan(difference)]
        above = float((defined > 0).mean()) if len(defined) else math.nan
        out[k] = Comparison(
            _estimate(point_a[k], draws_a[k], level),
            _estimate(point_b[k], draws_b[k], level),
            _estimate(point_a[k] - point_b[k], difference, level),
            above,
        )
    return {k: out[k] for k in point_a if k in out}  # in the order the models report them


def _bootstrap(
    groups: list[Sequence[Scored]], resamples: int, level: float, seed: int
) -> tuple[list[dict[str, float]], list[dict[str, np.ndarray]]]:
    """Per group, its mean metrics on all the images and its mean metrics on each resample."""
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if any(len(g) == 0 for g in groups):
        raise ValueError("every group needs at least one model")
    n = len(groups[0][0])
    if n == 0 or any(len(m) != n for g in groups for m in g):
        raise ValueError("every model must be scored on the same, non-empty list of images")
    rng = np.random.default_rng(seed)
    points = [_mean([m.metrics() for m in g]) for g in groups]
    draws: list[dict[str, list[float]]] = [{k: [] for k in p} for p in points]
    with _quiet_single_thread():
        for _ in range(resamples):
            indices = rng.integers(n, size=n)
            scored: dict[int, dict[str, float]] = {}  # a model in both groups (a run against itself) is scored once
            for group, out in zip(groups, draws):
                picks = rng.integers(len(group), size=len(group))
                means = _mean([_scores(group[i], indices, scored) for i in picks])
                for k, values in out.items():
                    values.append(means.get(k, math.nan))
    return points, [{k: np.asarray(v, dtype=float) for k, v in d.items()} for d in draws]


@contextlib.contextmanager
def _quiet_single_thread() -> Iterator[None]:
    """One torch thread, library warnings off: handing a few hundred rows to a thread pool costs more
    than the work (30x on a busy machine), and a resample missing a class makes torchmetrics warn.
    torch loads here, not with the module: `python -m training evaluate` reads it before checking its input."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        torch.set_num_threads(threads)


def _scores(model: Scored, indices: np.ndarray, scored: dict[int, dict[str, float]]) -> dict[str, float]:
    if id(model) not in scored:
        scored[id(model)] = model.metrics(indices)
    return scored[id(model)]


def _mean(metrics: list[dict[str, float]]) -> dict[str, float]:
    """The mean of each metric over models (NaN where one of them is NaN: left out of a distribution)."""
    return {k: math.fsum(m[k] for m in metrics) / len(metrics) for k in metrics[0]}


def _estimate(value: float, draws: np.ndarray, level: float) -> Estimate:
    defined = draws[~np.isnan(draws)]
    if not len(defined):
        return Estimate(value, math.nan, math.nan)
    lo, hi = np.percentile(defined, [50 * (1 - level), 50 * (1 + level)])
    return Estimate(value, float(lo), float(hi))
