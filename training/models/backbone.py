"""Model builders: a timm backbone by name, with no download unless asked and possible."""

from __future__ import annotations

import contextlib
import functools
import os
import socket
from pathlib import Path
from typing import Iterator

import timm
import torch
from torch import nn

from timm.models import group_parameters
from torch.nn.modules.batchnorm import _BatchNorm

from training.config import ModelConfig
from training.models.attention import ATTENTION, WithAttention
from training.models.init_from import initialise
from training.schema.config_file import suggestion
from training.schema.errors import ConfigError

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
    """Fail at once, not after minutes of download retries, when the starting weights cannot be had
    (pretrained ones, or the model.init_from file)."""
    if cfg.init_from is not None and not Path(cfg.init_from).is_file():
        raise ConfigError("model.init_from", f"no weights file at {cfg.init_from}")
    if cfg.pretrained and not _cached(cfg.name) and not _hub_reachable():
        raise ConfigError(
            "model.pretrained",
            f"pretrained weights for '{cfg.name}' are not in the local cache and the model hub is unreachable; "
            "put them in the Hugging Face cache or set pretrained: false",
        )


def create_model(cfg: ModelConfig, num_classes: int) -> nn.Module:
    """A timm classifier with `num_classes` outputs, its attention block and its first stages frozen."""
    check_model_name(cfg.name)
    check_pretrained(cfg)
    # drop_path_rate only when asked: not every timm architecture takes the argument
    extra = {"drop_path_rate": cfg.drop_path_rate} if cfg.drop_path_rate else {}
    model = timm.create_model(
        cfg.name, pretrained=cfg.pretrained, num_classes=num_classes, drop_rate=cfg.drop_rate, **extra
    )
    if cfg.attention != "none":
        model = WithAttention(model, ATTENTION[cfg.attention](model.num_features))
    if cfg.init_from is not None:
        # the classifier head may have another number of classes: taken only where its shape matches
        head = backbone_of(model).pretrained_cfg.get("classifier") or "fc"
        initialise(model, cfg.init_from, backbone_of(model), optional=(f"{head}.",))
    set_frozen_stages(model, cfg.freeze_stages)
    return model


@functools.lru_cache(maxsize=None)
def _stages_of(name: str) -> int:
    with torch.device("meta"):  # no memory, no init: only the module structure is needed
        return stage_count(timm.create_model(name, num_classes=2))


def _too_many_stages(model_name: str, has: int, stages: int) -> ConfigError:
    return ConfigError("model.freeze_stages", f"'{model_name}' has {has} stages, got {stages}")


def check_freeze_stages(name: str, stages: int) -> None:
    """Raise a ConfigError when timm model `name` has fewer than `stages` stages."""
    if stages > _stages_of(name):
        raise _too_many_stages(name, _stages_of(name), stages)


def backbone_of(model: nn.Module) -> nn.Module:
    """The timm model inside an attention wrapper (or the model itself)."""
    return model.backbone if isinstance(model, WithAttention) else model


def stage_of_parameters(model: nn.Module) -> dict[str, int]:
    """Parameter name (within the timm model) -> group: 0 = stem, 1..k = stages, k + 1 = head, from
    timm's coarse `group_matcher` (the grouping timm uses for layer-wise LR decay)."""
    return group_parameters(model, model.group_matcher(coarse=True), reverse=True)


def stage_count(model: nn.Module) -> int:
    """Backbone stages between the stem and the head."""
    return max(stage_of_parameters(backbone_of(model)).values()) - 1


@contextlib.contextmanager
def all_trainable(model: nn.Module) -> Iterator[None]:
    """Every parameter requires grad inside the block; the flags are restored after it."""
    flags = [(param, param.requires_grad) for param in model.parameters()]
    for param, _ in flags:
        param.requires_grad_(True)
    try:
        yield
    finally:
        for param, flag in flags:
            param.requires_grad_(flag)


def _keep_eval(module: nn.Module, args: tuple) -> None:
    module.train(False)


def _frozen_parameters(backbone: nn.Module, stages: int) -> set[str]:
    groups = stage_of_parameters(backbone)
    if stages > max(groups.values()) - 1:
        raise _too_many_stages(type(backbone).__name__, max(groups.values()) - 1, stages)
    return {name for name, group in groups.items() if group <= stages}


def set_frozen_stages(model: nn.Module, stages: int) -> None:
    """Freeze the stem and the first `stages` stages (no grad; their BatchNorm stays in eval mode, so
    its running statistics do not move) and unfreeze the rest; 0 unfreezes everything."""
    backbone = backbone_of(model)
    frozen = _frozen_parameters(backbone, stages) if stages else set()
    for name, param in backbone.named_parameters():
        param.requires_grad_(name not in frozen)
    for name, module in backbone.named_modules():
        if isinstance(module, _BatchNorm):
            hook = getattr(module, "_freeze_hook", None)
            if hook is not None:
                hook.remove()
                module._freeze_hook = None
            if f"{name}.weight" in frozen:
                # model.train() would put it back in training mode every epoch: re-assert eval per forward
                module._freeze_hook = module.register_forward_pre_hook(_keep_eval)
