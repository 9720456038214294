"""Reading config files: safe YAML in, typed config out, errors as one `file: key: expected` line."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from training.config import TrainConfig
from training.schema.errors import ConfigError


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML file; never evaluates tags (`yaml.safe_load`)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(None, "file not found", path)
    text = path.read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.constructor.ConstructorError as exc:  # a tag such as !!python/object: never constructed
        raise tag_error(text, exc, path) from None
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


YAML_TAG_PREFIX = "tag:yaml.org,2002:"
# the standard tags yaml.safe_load constructs; any other tag is refused
SAFE_TAGS = {"map", "seq", "str", "int", "float", "bool", "null", "timestamp", "binary", "set", "omap", "pairs", "merge", "value"}


def _tagged_key(node: yaml.Node, line: int, path: list[str]) -> list[str] | None:
    """The dotted path to the node starting at `line` whose tag the safe loader refused, if any."""
    if node.start_mark.line == line and node.tag.removeprefix(YAML_TAG_PREFIX) not in SAFE_TAGS:
        return path
    pairs = node.value if isinstance(node, yaml.MappingNode) else []
    items = [(str(k.value), v) for k, v in pairs] + [
        (str(i), v) for i, v in enumerate(node.value if isinstance(node, yaml.SequenceNode) else [])
    ]
    for name, child in items:
        found = _tagged_key(child, line, [*path, name])
        if found is not None:
            return found
    return None


def tag_error(text: str, exc: yaml.constructor.ConstructorError, path: Path) -> ConfigError:
    """`KEY: YAML tag !!python/... is not allowed (line N)`: config files hold plain values, never objects."""
    mark = exc.problem_mark
    tag = (exc.problem or "").rpartition("tag ")[2].strip("'")
    shown = "!!" + tag.removeprefix(YAML_TAG_PREFIX) if tag.startswith(YAML_TAG_PREFIX) else tag
    key = None
    if mark is not None:
        found = _tagged_key(yaml.compose(text), mark.line, [])
        key = ".".join(found) if found else None
    line = f" (line {mark.line + 1})" if mark else ""
    return ConfigError(key, f"YAML tag {shown} is not allowed{line}: write a plain value (number, string, list, mapping)", path)


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


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'optim': {'lr': 1}} -> {'optim.lr': 1}: the dotted keys of space files and MLflow params."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def load_config(path: str | Path) -> TrainConfig:
    """The training config in a YAML file."""
    try:
        return validate_model(TrainConfig, read_yaml(path))
    except ConfigError as exc:
        raise exc.with_file(path) from None
