"""Reading config files: safe YAML in, typed config out, errors as one `file: key: expected` line."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from training.config import TrainConfig
from training.errors import ConfigError


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML file; never evaluates tags (`yaml.safe_load`)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(None, "file not found", path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where else ""
        problem = getattr(exc, "problem", None) or exc.__class__.__name__
        raise ConfigError(None, f"invalid YAML{line}: {problem}", path) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(None, f"expected a mapping of keys at the top, got {type(data).__name__}", path)
    return data


def validate_model(model_cls: type[BaseModel], data: dict[str, Any], prefix: str = "") -> BaseModel:
    """`model_cls(**data)`, with the first validation error turned into a ConfigError."""
    try:
        return model_cls.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, model_cls, prefix) from None


def validation_error(exc: ValidationError, model_cls: type[BaseModel], prefix: str = "") -> ConfigError:
    """The first error of a pydantic ValidationError as a ConfigError with a dotted key."""
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    key = ".".join(([prefix] if prefix else []) + loc)
    if err["type"] == "extra_forbidden":
        known = field_names_at(model_cls, [p for p in err["loc"][:-1]])
        return ConfigError(key, "unknown key" + suggestion(str(err["loc"][-1]), known))
    message = err["msg"].removeprefix("Value error, ")
    shown = err["type"] not in ("missing", "value_error") and not isinstance(err.get("input"), (dict, list))
    if shown and "input" in err:
        message += f" (got {err['input']!r})"
    return ConfigError(key, message[0].lower() + message[1:])


def suggestion(word: str, candidates: list[str]) -> str:
    """`; did you mean 'x'?` for the closest candidate, or the list of valid names."""
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.5)
    if close:
        return f"; did you mean '{close[0]}'?"
    return f"; expected one of: {', '.join(sorted(candidates))}" if candidates else ""


def field_names_at(model_cls: type[BaseModel], loc: list[Any]) -> list[str]:
    """Field names of the sub-model reached by following `loc` from `model_cls`."""
    current: Any = model_cls
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        current = field.annotation
    return list(getattr(current, "model_fields", {}))


def load_config(path: str | Path) -> TrainConfig:
    """The training config in a YAML file."""
    try:
        return validate_model(TrainConfig, read_yaml(path))
    except ConfigError as exc:
        raise exc.with_file(path) from None
