"""`python -m search keys [--task TASK] [PATTERN]`: every training-config key a task reads, with its
type, default, allowed values and one-line description, read from the pydantic models of
`training/config.py` (which keys a task reads: `training/schema/task_keys.py`): the list a space file is
written from. Torch-free, like every check of a space file.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

import annotated_types as at
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from training.config import TrainConfig
from training.schema.errors import ConfigError
from training.schema.task_keys import check_task_name, only_detectors, reads

DEFAULT_TASK = TrainConfig.model_fields["task"].default
GLOB_CHARACTERS = "*?["


@dataclass(frozen=True)
class KeyInfo:
    """One dotted key of the training config, as `keys` shows it."""

    key: str
    type: str
    default: str
    allowed: str  # its range ("> 0", "[0, 1]") or choices ("cpu | gpu"); "" when any value of its type
    description: str
    only: tuple[str, ...] = ()  # the detectors that alone read it (DETECTOR_ONLY); () = every one


def _value_text(value: Any) -> str:
    """A value as a space file writes it."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_value_text(v)}" for k, v in value.items()) + "}"
    return str(value)


def _type_text(annotation: Any) -> str:
    """`float`, `int | 'auto'`, `list[str]`, ...: a choice alone is a `str`, a choice beside other types its values."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return _type_text(args[0])
    if origin is Literal:
        return "str"
    if origin in (Union, types.UnionType):
        return " | ".join(_member_text(member) for member in args)
    if origin is list:
        return f"list[{_type_text(args[0])}]"
    if origin is dict:
        return f"mapping {_type_text(args[0])} -> {_type_text(args[1])}"
    if annotation is type(None):
        return "none"
    return "path" if annotation.__name__.endswith("Path") else annotation.__name__


def _member_text(member: Any) -> str:
    """A member of a union: a choice beside other types shows its values (`int | 'auto'`)."""
    if typing.get_origin(member) is Literal:
        return " | ".join(repr(value) for value in typing.get_args(member))
    return _type_text(member)


def _constraints(field: FieldInfo) -> list[Any]:
    """The field's annotated-types bounds, including those of a member of a union (`int >= 0 | 'auto'`)."""
    found = list(field.metadata)
    for member in typing.get_args(field.annotation):
        if typing.get_origin(member) is Annotated:
            for extra in typing.get_args(member)[1:]:
                found += extra.metadata if isinstance(extra, FieldInfo) else [extra]
    return found


# bound kind -> (its attribute, its interval bracket, its comparison)
LOWER = {at.Ge: ("ge", "[", ">="), at.Gt: ("gt", "(", ">")}
UPPER = {at.Le: ("le", "]", "<="), at.Lt: ("lt", ")", "<")}


def _bound(constraints: list[Any], kinds: dict[type, tuple[str, str, str]]) -> tuple[str, str, str] | None:
    """(value, bracket, comparison) of the bound of one of `kinds`, if any."""
    for constraint in constraints:
        for kind, (attribute, bracket, comparison) in kinds.items():
            if isinstance(constraint, kind):
                return _value_text(getattr(constraint, attribute)), bracket, comparison
    return None


def _range_text(constraints: list[Any]) -> str:
    """`> 0`, `[0, 1]`, `[0, 1)`, `at least 2 items`, or ""."""
    lo, hi = _bound(constraints, LOWER), _bound(constraints, UPPER)
    length = next((c.min_length for c in constraints if isinstance(c, at.MinLen)), None)
    if length is not None:
        return f"at least {length} item{'s' if length > 1 else ''}"
    if lo and hi:
        return f"{lo[1]}{lo[0]}, {hi[0]}{hi[1]}"
    if lo or hi:
        value, _, comparison = lo or hi
        return f"{comparison} {value}"
    return ""


def _choices(annotation: Any) -> list[Any]:
    """The values of a choice (`Literal`), or of the items of a list of choices (`eval.tta`)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return list(args)
    return _choices(args[0]) if origin is list else []


def _default(field: FieldInfo) -> Any:
    return field.default_factory() if field.default is PydanticUndefined and field.default_factory else field.default


def _section(annotation: Any) -> type[BaseModel] | None:
    """The config section a field holds (`optim`), or the item section of a list of them (`phases`)."""
    if typing.get_origin(annotation) is list:
        annotation = typing.get_args(annotation)[0]
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def config_keys(model: type[BaseModel] = TrainConfig, prefix: str = "") -> list[KeyInfo]:
    """Every value key under `model` in declaration order; a list of sections (`phases`) is itself a key
    and gives its items' keys as `phases.<i>.*`."""
    keys = []
    for name, field in model.model_fields.items():
        key, section = prefix + name, _section(field.annotation)
        is_list = typing.get_origin(field.annotation) is list
        if section is None or is_list:
            allowed = _range_text(_constraints(field)) or " | ".join(map(str, _choices(field.annotation)))
            type_text = f"list of {key}.<i>" if section else _type_text(field.annotation)
            description = field.description or ""
            keys.append(KeyInfo(key, type_text, _value_text(_default(field)), allowed, description, only_detectors(key)))
        if section is not None:
            keys += config_keys(section, f"{key}.<i>." if is_list else f"{key}.")
    return keys


def _matches(key: str, pattern: str) -> bool:
    """A glob (`augment.*`) matches the whole key; any other pattern is a part of it (`lr`). An item
    number stands for any item (`phases.1.lr_factor` is `phases.<i>.lr_factor`)."""
    pattern = re.sub(r"(?<=\.)\d+(?=\.|$)", "<i>", pattern.lower())
    if any(c in pattern for c in GLOB_CHARACTERS):
        return fnmatch.fnmatchcase(key, pattern)
    return pattern in key


def task_keys(task: str | None = None, pattern: str | None = None) -> list[KeyInfo]:
    """The keys `task` (default: the config's default task) reads, those matching `pattern` if given."""
    task = task or DEFAULT_TASK
    try:
        check_task_name(task)
    except ConfigError as exc:
        raise ConfigError("--task", exc.message) from None
    keys = [info for info in config_keys() if reads(task, info.key)]
    if pattern is None:
        return keys
    found = [info for info in keys if _matches(info.key, pattern)]
    if not found:
        close = difflib.get_close_matches(pattern, [info.key for info in keys], n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError("PATTERN", f"task '{task}' reads no key matching '{pattern}'" + hint)
    return found


def _description(info: KeyInfo) -> str:
    return info.description + (f" [{', '.join(info.only)} only]" if info.only else "")


def key_line(info: KeyInfo) -> str:
    """`optim.lr (float, default 0.001, > 0): peak learning rate`: one plain line per key."""
    allowed = f", {info.allowed}" if info.allowed else ""
    return f"{info.key} ({info.type}, default {info.default}{allowed}): {_description(info)}"


def print_keys(task: str | None, pattern: str | None, console: Console) -> list[KeyInfo]:
    """A table of the keys on a terminal, plain lines otherwise (for grep and files); returns them."""
    keys = task_keys(task, pattern)
    if not console.is_terminal:
        for info in keys:
            console.print(key_line(info), markup=False, highlight=False, soft_wrap=True)
        return keys
    table = Table(title=escape(f"keys task '{task or DEFAULT_TASK}' reads"), title_justify="left")
    for header in ["key", "type", "default", "allowed", "description"]:
        table.add_column(header, overflow="fold")
    for info in keys:
        cells = (info.key, info.type, info.default, info.allowed, _description(info))
        table.add_row(*(escape(cell) for cell in cells))
    console.print(table)
    return keys
