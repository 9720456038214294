"""Task registry: name -> Task class. Add a task by decorating it with `@register_task`."""

from __future__ import annotations

from typing import Callable

from training.config import TrainConfig
from training.loop.runtime import Runtime
from training.schema.config_file import suggestion
from training.schema.errors import ConfigError
from training.schema.metric_names import METRIC_NAMES
from training.schema.task_keys import TASK_KEYS
from training.tasks.base import ExportedSetting, ReportTable, Task

TASKS: dict[str, type[Task]] = {}


def register_task(name: str) -> Callable[[type[Task]], type[Task]]:
    # a programming error: the task's keys and metrics must be declared where torch is not needed
    if name not in TASK_KEYS:
        raise KeyError(f"task '{name}' declares no config keys in training.schema.task_keys.TASK_KEYS")
    if name not in METRIC_NAMES:
        raise KeyError(f"task '{name}' declares no metric names in training.schema.metric_names.METRIC_NAMES")

    def add(cls: type[Task]) -> type[Task]:
        cls.name = name
        TASKS[name] = cls
        return cls

    return add


def get_task(name: str) -> type[Task]:
    if name not in TASKS:
        raise ConfigError("task", f"unknown task '{name}'" + suggestion(name, list(TASKS)))
    return TASKS[name]


def create_task(cfg: TrainConfig, runtime: Runtime) -> Task:
    return get_task(cfg.task)(cfg, runtime)


# Tasks register themselves on import.
from training.tasks import classification  # noqa: E402,F401
from training.tasks import multilabel  # noqa: E402,F401
from training.tasks import detection  # noqa: E402,F401
from training.tasks import semi_detection  # noqa: E402,F401
from training.tasks import probe  # noqa: E402,F401

__all__ = ["TASKS", "ExportedSetting", "ReportTable", "Task", "create_task", "get_task", "register_task"]
