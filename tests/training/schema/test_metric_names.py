"""`training.schema.metric_names`: each task's metric keys declared without torch are the keys its metric
functions compute and its `metric_names` returns, on real configs (calibration and pseudo-label
metrics included), and the exported settings are the task's."""

from __future__ import annotations

from typing import get_args

import pytest
import torch

from training.config import ModelConfig, TrainConfig
from training.data import class_names
from training.detection.semi import PSEUDO_LOSSES, PseudoStats
from training.metrics.detection import detection_metrics
from training.metrics.multilabel import multilabel_metrics
from training.schema.metric_names import (
    METRIC_NAMES,
    PSEUDO_STAGES,
    THRESHOLD_METRIC,
    defect_names,
    exported_settings,
    metric_names,
    pseudo_metric_names,
    score_stages,
)
from training.schema.task_keys import TASK_KEYS
from training.tasks import TASKS, get_task
from training.tasks.classification import validation_metrics

DETECTORS = list(get_args(ModelConfig.model_fields["detector"].annotation))


def config(task: str, **sections) -> TrainConfig:
    return TrainConfig.model_validate({"task": task, **sections})


def val_keys(metrics: dict[str, float]) -> list[str]:
    """The keys of metric functions' results as a task reports them (the order is no part of the rule)."""
    return [f"val/{key}" for key in metrics]


def test_every_task_declares_its_metric_names():
    # a registered task has its metrics declared torch-free, as it has its keys
    assert set(METRIC_NAMES) == set(TASKS) == set(TASK_KEYS)


@pytest.mark.parametrize("task", list(METRIC_NAMES))
def test_task_metric_names_are_the_declared_ones(task):
    cfg = config(task, data={"kind": "synthetic_multilabel"} if task == "multilabel" else {})
    # the task's own method returns the declaration: the search's early check and the trials agree
    assert get_task(task).metric_names(cfg) == metric_names(task, cfg)


@pytest.mark.parametrize(
    "evaluation", [{}, {"target_miss_rate": 0.05}, {"good_class": "none-such"}], ids=["plain", "calibrated", "no-good-class"]
)
def test_classification_names_are_the_computed_keys(evaluation):
    cfg = config("classification", eval=evaluation)
    names = class_names(cfg.data)
    logits, targets = torch.randn(40, len(names)), torch.arange(40) % len(names)
    computed = val_keys(validation_metrics(logits, targets, names, cfg.eval))
    # accuracy, F1s, AUROC, miss/overkill when there is a good class, and the calibration pair when asked
    assert sorted(metric_names("classification", cfg)) == sorted(["train/loss", "val/loss", *computed])
    assert (f"val/{THRESHOLD_METRIC}" in computed) == ("target_miss_rate" in evaluation)


def test_multilabel_names_are_the_computed_keys():
    cfg = config("multilabel", data={"kind": "synthetic_multilabel"})
    names = class_names(cfg.data)
    probs, targets = torch.rand(30, len(names)), (torch.rand(30, len(names)) > 0.5).int()
    computed = val_keys(multilabel_metrics(probs, targets, names))
    # per-class F1, AUROC and tuned thresholds, besides the image-level rates
    assert sorted(metric_names("multilabel", cfg)) == sorted(["train/loss", "val/loss", *computed])


def test_detection_names_are_the_computed_keys():
    cfg = config("detection")
    defects = defect_names(cfg)
    boxes = torch.tensor([[2.0, 2.0, 10.0, 10.0]])
    preds = [{"boxes": boxes, "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}]
    targets = [{"boxes": boxes, "labels": torch.tensor([1])}]
    computed = detection_metrics(preds, targets, defects, 0.5, 0.5)
    # mAP, AP50 per defect class (the good class has no boxes) and the image-level rates
    assert sorted(metric_names("detection", cfg)) == sorted(["train/loss", *val_keys(computed)])


@pytest.mark.parametrize("detector", DETECTORS)
def test_semi_names_hold_every_pseudo_metric_the_stats_compute(detector):
    cfg = config("semi_supervised_detection", model={"detector": detector})
    defects, learner = defect_names(cfg), PSEUDO_LOSSES[detector]
    stats = PseudoStats(defects, learner.stages)
    # one image with a box of every defect class, kept at every stage (and refined, by a detector that refines)
    labels = torch.arange(1, len(defects) + 1)
    uncertainty = torch.ones(len(defects)) if learner.refines else None
    stats.add(labels, torch.full((len(defects),), 0.9), {stage: {"labels": labels} for stage in stats.stages}, uncertainty)
    if learner.refines:
        stats.add_background(torch.tensor([0.5]))
    declared = metric_names("semi_supervised_detection", cfg)
    # every pseudo-label metric the teacher's statistics report is declared, and no other
    assert sorted(stats.metrics()) == sorted(pseudo_metric_names(defects, detector))
    assert set(pseudo_metric_names(defects, detector)) <= set(declared)
    # the teacher's box precision and recall at each score threshold, and the detection task's own names
    assert {f"val/pseudo_{m}_{stage}" for stage in score_stages(detector) for m in ("precision", "recall")} <= set(declared)
    assert declared[: len(metric_names("detection", cfg))] == metric_names("detection", cfg)


def test_pseudo_learners_are_built_on_the_declared_stages():
    # every detector learns from pseudo labels with the stages the metric names are declared from
    assert set(PSEUDO_STAGES) == set(PSEUDO_LOSSES) == set(DETECTORS)
    for detector, declared in PSEUDO_STAGES.items():
        assert (PSEUDO_LOSSES[detector].stages, PSEUDO_LOSSES[detector].refines) == tuple(declared)


@pytest.mark.parametrize("task", list(METRIC_NAMES))
def test_exported_settings_are_the_tasks(task):
    metrics = {f"val/{THRESHOLD_METRIC}": 0.37, "val/loss": 0.2}
    # the declaration is what the task exports (classification: its calibrated threshold; others: nothing)
    assert exported_settings(task, metrics) == get_task(task).exported_settings(metrics)
    assert [s.key for s in exported_settings(task, metrics)] == (["eval.decision_threshold"] if task == "classification" else [])
