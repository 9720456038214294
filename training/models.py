"""Model builders: a timm backbone by name, with no download unless asked and possible."""

from __future__ import annotations

import timm
from torch import nn

from training.config import ModelConfig
from training.config_file import suggestion
from training.errors import ConfigError


def check_model_name(name: str) -> None:
    """Raise a ConfigError naming close timm models when `name` is not one."""
    if not timm.is_model(name):
        known = timm.list_models(f"*{name[:4]}*") or timm.list_models()
        raise ConfigError("model.name", f"unknown timm model '{name}'" + suggestion(name, known))


def create_model(cfg: ModelConfig, num_classes: int) -> nn.Module:
    """A timm classifier with `num_classes` outputs."""
    check_model_name(cfg.name)
    try:
        return timm.create_model(
            cfg.name, pretrained=cfg.pretrained, num_classes=num_classes, drop_rate=cfg.drop_rate
        )
    except Exception as exc:  # timm raises many kinds when weights cannot be fetched
        if not cfg.pretrained:
            raise
        raise ConfigError(
            "model.pretrained",
            f"pretrained weights for '{cfg.name}' are not available offline ({exc.__class__.__name__}); "
            "put them in the Hugging Face cache or set pretrained: false",
        ) from None
