"""The metric keys each task reports, and the config values its metrics decide, declared without torch:
a space file's `search.metric`, `stop.metric`, objectives and constraints are checked against them
before anything heavy loads, and `search export` reads a trial's exported settings without a task.

The tasks' `metric_names` and `exported_settings` return these (`training.tasks.base.Task`); the metric
functions of `training/metrics/` key their results by the same names. A new task declares its names in
`METRIC_NAMES` (`training.tasks.register_task` checks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

from training.config import TrainConfig
from training.data import class_names

OVERKILL_METRIC = "overkill_at_target_miss"  # good images called defective at the calibrated threshold
THRESHOLD_METRIC = "threshold_at_target_miss"  # the calibrated P(defect) threshold
CALIBRATION_METRICS = [OVERKILL_METRIC, THRESHOLD_METRIC]


class PseudoStages(NamedTuple):
    """How a detector's student learns from pseudo labels, as far as its metrics show."""

    stages: tuple[str, ...]  # the target sets it learns from
    refines: bool  # has ROI heads: box jitter and background weights apply


# training/detection/semi.py builds each detector's pseudo-label learner (PSEUDO_LOSSES) on these
PSEUDO_STAGES: dict[str, PseudoStages] = {
    "faster_rcnn": PseudoStages(("cls", "rpn", "reg"), refines=True),
    "retinanet": PseudoStages(("cls",), refines=False),
}
SCORE_STAGES = ("initial", "cls", "rpn")  # the stages that keep pseudo boxes by score; "reg" filters on box uncertainty


@dataclass
class ExportedSetting:
    """A config value a trial's metrics decide for deployment (e.g. a calibrated threshold)."""

    key: str  # dotted training-config key, e.g. `eval.decision_threshold`
    value: Any
    note: str  # one line for the exported file's header: what the value means in deployment


def classification_metric_names(names: list[str], good_class: str) -> list[str]:
    """The keys `training.metrics.classification.classification_metrics` returns for these classes."""
    keys = ["accuracy", "macro_f1", "auroc"] + [f"f1/{c}" for c in names]
    return keys + (["miss_rate", "overkill_rate"] if good_class in names else [])


def multilabel_metric_names(names: list[str]) -> list[str]:
    """The keys `training.metrics.multilabel.multilabel_metrics` returns for these classes."""
    per_class = [f"{kind}/{name}" for kind in ("f1", "auroc", "threshold") for name in names]
    return ["macro_f1", "micro_f1", "auroc", "macro_f1_tuned", "miss_rate", "overkill_rate", *per_class]


def detection_metric_names(names: list[str]) -> list[str]:
    """The keys `training.metrics.detection.detection_metrics` returns, for the defect classes `names`."""
    return ["mAP50", "mAP", *(f"AP50/{name}" for name in names), "miss_rate", "overkill_rate"]


def score_stages(detector: str) -> tuple[str, ...]:
    """The stages of `detector`'s semi-supervised loss that keep pseudo boxes by teacher score."""
    return tuple(stage for stage in ("initial", *PSEUDO_STAGES[detector].stages) if stage in SCORE_STAGES)


def pseudo_metric_names(names: list[str], detector: str) -> list[str]:
    """The pseudo-label metric keys a semi-supervised run reports (after burn-in), for the defect classes `names`."""
    learner = PSEUDO_STAGES[detector]
    keys = (
        ["train/pseudo_boxes_per_image", "train/pseudo_kept_ratio"]
        + [f"train/pseudo_kept_ratio_{stage}" for stage in learner.stages]
        + [f"train/pseudo_kept_ratio/{name}" for name in names]
    )
    if learner.refines:
        keys += ["train/pseudo_bg_weight", "train/pseudo_box_uncertainty_p50", "train/pseudo_box_uncertainty_p25"]
        keys += [f"train/pseudo_kept_ratio_reg/{name}" for name in names]
    return keys


def defect_names(cfg: TrainConfig) -> list[str]:
    """The detection tasks' classes: every class but the good one (which has no boxes)."""
    return [name for name in class_names(cfg.data) if name != cfg.eval.good_class]


def _classification(cfg: TrainConfig) -> list[str]:
    keys = classification_metric_names(class_names(cfg.data), cfg.eval.good_class)
    keys += CALIBRATION_METRICS if cfg.eval.target_miss_rate is not None else []
    return ["train/loss", "val/loss"] + [f"val/{key}" for key in keys]


def _multilabel(cfg: TrainConfig) -> list[str]:
    return ["train/loss", "val/loss"] + [f"val/{key}" for key in multilabel_metric_names(class_names(cfg.data))]


def _detection(cfg: TrainConfig) -> list[str]:
    return ["train/loss"] + [f"val/{key}" for key in detection_metric_names(defect_names(cfg))]


def _semi_supervised_detection(cfg: TrainConfig) -> list[str]:
    detector = cfg.model.detector
    extra = ["val/student_mAP50", "train/sup_loss", "train/unsup_loss", "train/unsup_weight"]
    quality = [f"val/pseudo_{m}_{stage}" for stage in score_stages(detector) for m in ("precision", "recall")]
    return _detection(cfg) + extra + quality + pseudo_metric_names(defect_names(cfg), detector)


def _probe(cfg: TrainConfig) -> list[str]:
    return ["train/loss", "val/loss", "val/accuracy"]


METRIC_NAMES: dict[str, Callable[[TrainConfig], list[str]]] = {
    "classification": _classification,
    "multilabel": _multilabel,
    "detection": _detection,
    "semi_supervised_detection": _semi_supervised_detection,
    "probe": _probe,
}


def metric_names(task: str, cfg: TrainConfig) -> list[str]:
    """Every metric key `task` reports per epoch (`train/...`, `val/...`) when it trains `cfg`."""
    return METRIC_NAMES[task](cfg)


def _decision_threshold(metrics: dict[str, float]) -> list[ExportedSetting]:
    """The calibrated decision threshold, when the trial reported one (eval.target_miss_rate set)."""
    threshold = metrics.get(f"val/{THRESHOLD_METRIC}")
    if threshold is None:
        return []
    note = (
        f"eval.decision_threshold = {threshold:.6g}: in deployment call an image defective when "
        "1 - P(good) >= it (the validation threshold that met eval.target_miss_rate)"
    )
    return [ExportedSetting("eval.decision_threshold", threshold, note)]


# tasks whose metrics decide config values for deployment; the others export none
EXPORTED_SETTINGS: dict[str, Callable[[dict[str, float]], list[ExportedSetting]]] = {
    "classification": _decision_threshold,
}


def exported_settings(task: str, metrics: dict[str, float]) -> list[ExportedSetting]:
    """The config values that a trial of `task` with these (last) metrics sets in its exported config."""
    decide = EXPORTED_SETTINGS.get(task)
    return decide(metrics) if decide else []
