"""The probe task: milliseconds per epoch, real fit loop, the metrics it declares."""

from __future__ import annotations

from training.config import TrainConfig
from training.loop.fit import fit
from training.tasks import get_task


def test_probe_task_trains_and_reports_its_declared_metrics():
    cfg = TrainConfig.model_validate({"task": "probe", "data": {"batch_size": 16}, "train": {"epochs": 2}, "optim": {"lr": 0.05}})
    metrics = fit(cfg)
    # fit reports every metric the task declares (what the search checks space files against)
    assert set(get_task("probe").metric_names(cfg)) <= metrics.keys()
    # the classes are linearly separable: two epochs of a linear model beat chance
    assert metrics["val/accuracy"] > 0.6
