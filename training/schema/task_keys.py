"""Which training-config keys each task reads, declared without importing torch: a space file that
searches a key its task ignores (`loss.focal_gamma` on detection) is refused before anything heavy loads.

A declared entry is a dotted prefix: `augment` covers every `augment.*` key, `loss.rpn` the RPN loss
part. Each task module registers under a name declared here (`training.tasks.register_task` checks).
"""

from __future__ import annotations

from training.config import TrainConfig
from training.schema.config_file import flatten, suggestion
from training.schema.errors import ConfigError

# read by the fit loop whatever the task: seeding, data loading, optimizer, epochs, phases
COMMON = ("seed", "data", "optim", "train", "phases", "tracking")
IMAGE_MODEL = (
    "model.name",
    "model.pretrained",
    "model.init_from",
    "model.drop_rate",
    "model.drop_path_rate",
    "model.freeze_stages",
    "model.attention",
)
IMAGE_LOSS = ("loss.name", "loss.focal_gamma", "loss.focal_alpha", "loss.label_smoothing")
DETECTOR = (
    "model.name", "model.pretrained", "model.init_from", "model.detector", "model.anchor_ratios", "model.anchor_sizes",
)  # fmt: skip
DETECTION = (
    *COMMON,
    *DETECTOR,
    "loss.rpn",
    "loss.roi",
    "augment",
    "eval.good_class",
    "eval.score_threshold",
    "eval.iou_threshold",
)

# Keys of the detection tasks that only some detectors read: RetinaNet has no RPN and no ROI heads to
# refine jittered boxes or weigh background proposals with (its classifier reads loss.roi).
DETECTOR_ONLY: dict[str, tuple[str, ...]] = {
    "loss.rpn": ("faster_rcnn",),
    "semi.thresholds.rpn": ("faster_rcnn",),
    "semi.thresholds.reg": ("faster_rcnn",),
    "semi.thresholds.ignore": ("faster_rcnn",),
    "semi.jitter": ("faster_rcnn",),
    "semi.soft_background": ("faster_rcnn",),
}

TASK_KEYS: dict[str, tuple[str, ...]] = {
    "classification": (
        *COMMON,
        *IMAGE_MODEL,
        *IMAGE_LOSS,
        "augment",
        "eval.good_class",
        "eval.tta",
        "eval.target_miss_rate",
    ),
    "multilabel": (*COMMON, *IMAGE_MODEL, *IMAGE_LOSS, "augment", "eval.tta", "eval.target_miss_rate"),
    "detection": DETECTION,
    "semi_supervised_detection": (*DETECTION, "semi"),
    "probe": ("seed", "data.batch_size", "optim", "train", "tracking"),
}


def check_task_name(name: str) -> None:
    """Raise a ConfigError on `task` unless `name` is a declared task."""
    if name not in TASK_KEYS:
        raise ConfigError("task", f"unknown task '{name}'" + suggestion(name, list(TASK_KEYS)))


def reads(task: str, key: str) -> bool:
    """Whether `task` reads the dotted config `key` (a declared prefix of it, or the prefix itself)."""
    return any(_covers(prefix, key) for prefix in TASK_KEYS[task])


def _covers(prefix: str, key: str) -> bool:
    return key == prefix or key.startswith(prefix + ".")


def check_reads(task: str, key: str, where: str, detector: str | None = None) -> None:
    """Raise a ConfigError on `where` when `task` never reads `key`, naming what it reads instead;
    with `detector` (the one every trial uses), also when that detector does not read it."""
    if reads(task, key):
        _check_detector_reads(key, where, detector)
        return
    section = key.split(".")[0]
    same_section = [p for p in TASK_KEYS[task] if p.split(".")[0] == section]
    if same_section:
        message = f"task '{task}' does not read '{key}'; of {section} it reads: {', '.join(same_section)}"
    else:
        message = f"task '{task}' reads no {section}.* key; it reads: {', '.join(TASK_KEYS[task])}"
    raise ConfigError(where, message)


def unread_settings(cfg: TrainConfig, detector: str | None = None) -> list[ConfigError]:
    """One error per key set away from its default that `cfg.task` never reads, e.g. `loss.focal_gamma`
    in a detection config (a value that silently changes nothing); with `detector`, also the keys only
    other detectors read."""
    defaults = flatten(TrainConfig().model_dump(mode="json"))
    unread = []
    for key, value in flatten(cfg.model_dump(mode="json")).items():
        if key == "task" or defaults.get(key) == value:
            continue
        try:
            check_reads(cfg.task, key, key, detector)
        except ConfigError as exc:
            unread.append(exc)
    return unread


def only_detectors(key: str) -> tuple[str, ...]:
    """The detectors that alone read `key` (`DETECTOR_ONLY`); () when any detector would."""
    return next((detectors for prefix, detectors in DETECTOR_ONLY.items() if _covers(prefix, key)), ())


def _check_detector_reads(key: str, where: str, detector: str | None) -> None:
    detectors = only_detectors(key)
    if detector is not None and detectors and detector not in detectors:
        raise ConfigError(
            where, f"model.detector '{detector}' does not read '{key}' (only {', '.join(detectors)} does); "
            "drop the key or set model.detector",
        )
