"""Which training-config keys each task reads, declared without importing torch: a space file that
searches a key its task ignores (`loss.focal_gamma` on detection) is refused before anything heavy loads.

A declared entry is a dotted prefix: `augment` covers every `augment.*` key, `loss.rpn` the RPN loss
part. Each task module registers under a name declared here (`training.tasks.register_task` checks).
"""

from __future__ import annotations

from training.config_file import suggestion
from training.errors import ConfigError

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
    return any(key == prefix or key.startswith(prefix + ".") for prefix in TASK_KEYS[task])


def check_reads(task: str, key: str, where: str) -> None:
    """Raise a ConfigError on `where` when `task` never reads `key`, naming what it reads instead."""
    if reads(task, key):
        return
    section = key.split(".")[0]
    same_section = [p for p in TASK_KEYS[task] if p.split(".")[0] == section]
    if same_section:
        message = f"task '{task}' does not read '{key}'; of {section} it reads: {', '.join(same_section)}"
    else:
        message = f"task '{task}' reads no {section}.* key; it reads: {', '.join(TASK_KEYS[task])}"
    raise ConfigError(where, message)
