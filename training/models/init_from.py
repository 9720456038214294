"""`model.init_from`: start a model from a local weights file, with no network.

The file is a `model.pt` written by `python -m training train` (any task: a classifier, a detector,
a semi-supervised student/teacher pair, whose EMA teacher is taken) or a timm weights file (a state
dict, `.pth`/`.bin`, or `.safetensors`). The backbone must be found whole, every tensor with the
model's shape; the rest of the model (heads, FPN, ...) is taken where names and shapes match.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from training.schema.errors import ConfigError

KEY = "model.init_from"
# the model a semi-supervised run deploys (and evaluates) is its EMA teacher
SEMI_PREFIXES = ("teacher.", "student.")


def _normal(key: str) -> str:
    # timm's FeatureListNet flattens nested module names ("stages.0" -> "stages_0"): compare both alike
    return key.replace("_", ".")


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a model.pt or timm weights file, semi-supervised pairs unwrapped to the teacher."""
    if not Path(path).is_file():
        raise ConfigError(KEY, f"no weights file at {path}")
    try:
        state = timm.models.load_state_dict(str(path), use_ema=True, weights_only=True)
    except Exception as exc:  # a pickle, zip or safetensors error: all mean "not a weights file"
        raise ConfigError(KEY, f"{path} is not a readable weights file ({type(exc).__name__}: {exc})") from None
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    for prefix in SEMI_PREFIXES:
        if any(k.startswith(prefix) for k in tensors):
            return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    return tensors


def _source_prefix(wanted: list[str], source: dict[str, torch.Tensor]) -> str:
    """The key prefix under which `source` holds the most of the `wanted` keys ("" included)."""
    candidates = {""} | {k[: i + 1] for k in source for i, c in enumerate(k) if c == "." and k.count(".", 0, i) < 2}
    return max(sorted(candidates), key=lambda p: sum(_normal(p + k) in source for k in wanted))


def initialise(model: nn.Module, path: Path, backbone: nn.Module, optional: tuple[str, ...] = ()) -> int:
    """Load `path` into `model`: every tensor of `backbone` (a submodule; keys starting with one of
    `optional`, e.g. a classifier head, only where shapes match), then the rest of `model` where
    names and shapes match. Returns the number of tensors loaded; raises a ConfigError naming the
    first backbone key that is missing or shaped differently."""
    source = {_normal(k): v for k, v in read_weights(path).items()}
    inside = next(name for name, module in model.named_modules() if module is backbone)
    inside = f"{inside}." if inside else ""
    wanted = list(backbone.state_dict())
    prefix = _source_prefix(wanted, source)
    target = model.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    for key in wanted:
        tensor, shape = source.get(_normal(prefix + key)), target[inside + key].shape
        if tensor is None or tensor.shape != shape:
            if key.startswith(optional):
                continue
            found = "missing" if tensor is None else f"shaped {tuple(tensor.shape)}"
            raise ConfigError(KEY, f"{path}: backbone key '{key}' is {found} in the file, the model needs {tuple(shape)}")
        loaded[inside + key] = tensor
    for key, value in target.items():
        tensor = source.get(_normal(key))
        if key not in loaded and tensor is not None and tensor.shape == value.shape:
            loaded[key] = tensor
    model.load_state_dict(loaded, strict=False)
    return len(loaded)
