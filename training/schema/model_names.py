"""timm's model names without importing timm or torch: a misspelled `model.name` is refused in well
under a second, from the list `python -m training.schema.write_timm_models` wrote beside this module.

The list holds the names of one timm version. With another version installed (a newer timm may know
new models), or without the list, nothing is decided here: the task's own check (`training.models.backbone.
check_model_name`, after torch loads) answers as before.
"""

from __future__ import annotations

import fnmatch
import functools
import json
from importlib import metadata
from pathlib import Path

from training.schema.config_file import suggestion
from training.schema.errors import ConfigError

TIMM_MODELS_FILE = Path(__file__).with_name("timm_models.json")


def installed_timm() -> str | None:
    """The installed timm's version, read from its package metadata (no import), or None."""
    try:
        return metadata.version("timm")
    except metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def listed_models() -> tuple[list[str], set[str]] | None:
    """(the names `timm.list_models()` gives, every name `timm.is_model` accepts) of the installed timm,
    or None when the list is missing or was written from another timm version."""
    try:
        listed = json.loads(TIMM_MODELS_FILE.read_text())
    except (OSError, ValueError):
        return None
    if listed.get("timm") != installed_timm():
        return None
    return listed["models"], set(listed["models"]) | set(listed["deprecated"])


def check_listed_model_name(name: str) -> None:
    """Raise the ConfigError of `training.models.backbone.check_model_name` when the list shows that `name` is
    no timm model; pass when it is one, or when the list cannot tell (see the module docstring)."""
    listed = listed_models()
    if listed is None:
        return
    models, accepted = listed
    if name.split(".", 1)[0] in accepted:  # `resnet18.a1_in1k`: a pretrained tag after the architecture
        return
    known = fnmatch.filter(models, f"*{name[:4]}*") or models
    raise ConfigError("model.name", f"unknown timm model '{name}'" + suggestion(name, known))
