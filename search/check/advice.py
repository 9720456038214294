"""What a dry run advises before a search spends its budget: a grace period from the first config's
learning curve, k-fold on a small validation split, a test split for the verdict.

The curve is one full-budget run of the first sampled config (search.baseline[0] when there is one):
the epoch at which its search metric leaves chance level (a constant prediction's score) is the
first epoch where a rung can tell configs apart; earlier rungs would stop trials on noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from search.constraints import is_finite
from search.noise import MIN_GAP
from search.spec import SearchPlan
from training.config import TrainConfig
from training.data import has_test
from training.loop.fit import EpochReport, fit
from training.loop.runtime import Runtime

SMALL_VAL = 200  # validation images below which one split's score is mostly seed and split noise
SUGGESTED_FOLDS = 5


@dataclass
class Curve:
    """The search metric of one run, epoch by epoch, and a constant prediction's score."""

    metric: str
    values: list[float] = field(default_factory=list)  # epoch 1, 2, ...
    chance: float | None = None

    def left_chance_at(self, sign: float) -> int | None:
        """The first epoch that beats chance by at least MIN_GAP; None if none does (or no chance known)."""
        if self.chance is None:
            return None
        for epoch, value in enumerate(self.values, start=1):
            if is_finite(value) and sign * (value - self.chance) >= MIN_GAP:
                return epoch
        return None


def learning_curve(cfg: TrainConfig, runtime: Runtime, metric: str) -> Curve:
    """Train `cfg` for its full budget on the trial's runtime; its metric each epoch."""
    curve = Curve(metric)

    def on_epoch(report: EpochReport) -> None:
        curve.values.append(report.metrics.get(metric, math.nan))
        if curve.chance is None and is_finite(report.chance.get(metric)):
            curve.chance = float(report.chance[metric])

    fit(cfg, runtime, on_epoch=on_epoch)
    return curve


def grace_advice(plan: SearchPlan, curve: Curve) -> str:
    """The grace period the curve supports, against the space file's."""
    sign = 1.0 if plan.spec.search.mode == "max" else -1.0
    grace = plan.spec.scheduler.grace_period
    left = curve.left_chance_at(sign)
    if curve.chance is None:
        return f"grace period: the task reports no chance level for {curve.metric}; keep scheduler.grace_period {grace}"
    if left is None:
        return (
            f"grace period: the first config never left chance ({curve.chance:.3g}) in {len(curve.values)} epochs: "
            "no rung can tell configs apart; give more epochs, or a baseline that learns"
        )
    where = f"the first config leaves chance ({curve.chance:.3g}) at epoch {left}"
    if left > grace:
        return f"grace period: {where}; propose scheduler.grace_period: {left} (now {grace}: earlier rungs cut on noise)"
    return f"grace period: {where}; scheduler.grace_period {grace} is fine"


def data_advice(plan: SearchPlan, val_images: int) -> list[str]:
    """k-fold for a small validation split; a test split for the verdict."""
    data, lines = plan.base.data, []
    if val_images < SMALL_VAL and data.folds == 1:
        lines.append(
            f"the validation split holds {val_images} images (< {SMALL_VAL}): a config's score moves by several "
            f"hundredths from seed to seed; keep search.confirm on (more seeds: search.confirm.seeds), or try "
            f"data.folds: {SUGGESTED_FOLDS} (every image validated once, {SUGGESTED_FOLDS}x the epochs; on the "
            "synthetic benchmark it picked no better configs: benchmarks/README.md, overtuning)"
        )
    if not has_test(data):
        lines.append(
            "no test split: the verdict will be made on validation and labelled optimistic; hold one out with "
            "data.test_fraction (or ROOT/test, data.coco.test_annotations, data.csv.test_file)"
        )
    return lines
