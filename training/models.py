"""Model builders: a timm backbone by name, with no download unless asked and possible."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import timm
import torch
from torch import nn

from training.config import ModelConfig
from training.config_file import suggestion
from training.errors import ConfigError

HUB_HOST = ("huggingface.co", 443)


def check_model_name(name: str) -> None:
    """Raise a ConfigError naming close timm models when `name` is not one."""
    if not timm.is_model(name):
        known = timm.list_models(f"*{name[:4]}*") or timm.list_models()
        raise ConfigError("model.name", f"unknown timm model '{name}'" + suggestion(name, known))


def _cached(name: str) -> bool:
    """Whether timm's weights for `name` already lie in the Hugging Face or torch hub cache."""
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(name) or timm.models.get_pretrained_cfg(timm.models.get_arch_name(name))
    if cfg is None:
        return False
    hub_id = (cfg.hf_hub_id or "").split("/", 2)
    if len(hub_id) >= 2:
        repo = "/".join(hub_id[:2])
        for filename in ("model.safetensors", "pytorch_model.bin"):
            if isinstance(try_to_load_from_cache(repo, filename), str):
                return True
    url = cfg.url or ""
    return bool(url) and (Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]).is_file()


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    try:
        socket.create_connection(HUB_HOST, timeout=timeout).close()
        return True
    except OSError:
        return False


def check_pretrained(cfg: ModelConfig) -> None:
    """Fail at once, not after minutes of download retries, when pretrained weights cannot be had."""
    if cfg.pretrained and not _cached(cfg.name) and not _hub_reachable():
        raise ConfigError(
            "model.pretrained",
            f"pretrained weights for '{cfg.name}' are not in the local cache and the model hub is unreachable; "
            "put them in the Hugging Face cache or set pretrained: false",
        )


def create_model(cfg: ModelConfig, num_classes: int) -> nn.Module:
    """A timm classifier with `num_classes` outputs."""
    check_model_name(cfg.name)
    check_pretrained(cfg)
    return timm.create_model(cfg.name, pretrained=cfg.pretrained, num_classes=num_classes, drop_rate=cfg.drop_rate)
