"""Every registry (name -> builder) offers exactly the choices its config field accepts, so a value the
schema allows always has a builder and a builder is always reachable from a config."""

from __future__ import annotations

import typing
from typing import Any

import pytest
from pydantic import BaseModel

from search.sampler import SAMPLERS
from search.score import DESCRIPTIONS, SCORES
from search.spec import SearchSettings
from training.augment.crop_pad import PAD_MODES
from training.augment.tta import TTA_VIEWS
from training.config import AugmentConfig, DataConfig, DetectionLossPart, EvalConfig, LossConfig, ModelConfig, OptimConfig
from training.data.registry import DATA_KINDS
from training.detection.models import DETECTORS
from training.loop.optim import OPTIMIZERS, SCHEDULES
from training.losses.classification import LOSSES
from training.losses.detection import STAGE_LOSSES
from training.losses.multilabel import MULTILABEL_LOSSES


def literal_choices(model: type[BaseModel], field: str) -> set[Any]:
    """The Literal values a field accepts, also inside a list[...] or an optional."""
    choices: set[Any] = set()
    pending = [model.model_fields[field].annotation]
    while pending:
        annotation = pending.pop()
        if typing.get_origin(annotation) is typing.Literal:
            choices.update(typing.get_args(annotation))
        else:
            pending.extend(typing.get_args(annotation))
    return choices


REGISTRIES = [
    ("DATA_KINDS", DATA_KINDS, DataConfig, "kind"),
    ("DETECTORS", DETECTORS, ModelConfig, "detector"),
    ("OPTIMIZERS", OPTIMIZERS, OptimConfig, "name"),
    ("SCHEDULES", SCHEDULES, OptimConfig, "schedule"),
    ("LOSSES", LOSSES, LossConfig, "name"),
    ("MULTILABEL_LOSSES", MULTILABEL_LOSSES, LossConfig, "name"),
    ("STAGE_LOSSES", STAGE_LOSSES, DetectionLossPart, "name"),
    ("TTA_VIEWS", TTA_VIEWS, EvalConfig, "tta"),
    ("PAD_MODES", PAD_MODES, AugmentConfig, "shrink_pad"),
    ("SAMPLERS", SAMPLERS, SearchSettings, "sampler"),
    ("SCORES", SCORES, SearchSettings, "score"),
    ("score DESCRIPTIONS", DESCRIPTIONS, SearchSettings, "score"),  # describe(rule) for the summary and exports
]


@pytest.mark.parametrize("name, registry, model, field", REGISTRIES, ids=[r[0] for r in REGISTRIES])
def test_registry_keys_equal_config_choices(name, registry, model, field):
    # rule: the registry's names and the field's Literal choices are the same set
    assert set(registry) == literal_choices(model, field), f"{name} vs {model.__name__}.{field}"
