"""Search-space distributions: parsed from the space file, turned into Optuna distributions,
and trial values merged back into a training config by dotted key."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from typing import Any, Callable

import optuna.distributions as od
from pydantic import BaseModel

from training.config import TrainConfig
from training.config_file import suggestion, validate_model
from training.errors import ConfigError

SCALAR = (type(None), bool, int, float, str)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Uniform:
    lo: float
    hi: float

    def to_optuna(self) -> od.BaseDistribution:
        return od.FloatDistribution(self.lo, self.hi)

    def probe_values(self) -> list[Any]:
        """The ends and a non-integral inner value: an integer-only key must refuse a float range."""
        return [self.lo, self.hi, self.lo + (self.hi - self.lo) / math.pi]

    def contains(self, value: Any) -> bool:
        return _is_number(value) and self.lo <= value <= self.hi

    def encode(self, value: Any) -> Any:
        return value

    def decode(self, value: Any) -> Any:
        return value


@dataclass(frozen=True)
class LogUniform(Uniform):
    def to_optuna(self) -> od.BaseDistribution:
        return od.FloatDistribution(self.lo, self.hi, log=True)


@dataclass(frozen=True)
class IntRange(Uniform):
    step: int = 1

    def to_optuna(self) -> od.BaseDistribution:
        return od.IntDistribution(int(self.lo), int(self.hi), step=self.step)

    def probe_values(self) -> list[Any]:
        return [int(self.lo), int(self.hi)]

    def contains(self, value: Any) -> bool:
        return isinstance(value, int) and super().contains(value) and (value - self.lo) % self.step == 0


@dataclass(frozen=True)
class Choice:
    """A categorical choice; non-scalar values (lists such as anchor ratios) travel as JSON strings,
    because Optuna categoricals hold scalars only."""

    values: tuple[Any, ...]

    @property
    def encoded(self) -> bool:
        return not all(isinstance(v, SCALAR) for v in self.values)

    def to_optuna(self) -> od.BaseDistribution:
        return od.CategoricalDistribution([self.encode(v) for v in self.values])

    def probe_values(self) -> list[Any]:
        return list(self.values)

    def _index(self, value: Any) -> int | None:
        """Position of `value` among the choices, with bools never equal to numbers."""
        for i, choice in enumerate(self.values):
            if choice == value and isinstance(choice, bool) == isinstance(value, bool):
                return i
        return None

    def contains(self, value: Any) -> bool:
        return self._index(value) is not None

    def encode(self, value: Any) -> Any:
        """The offered choice equal to `value` (so [0.5, 1, 2] finds '[0.5, 1.0, 2.0]')."""
        index = self._index(value)
        choice = self.values[index] if index is not None else value
        return json.dumps(choice) if self.encoded else choice

    def decode(self, value: Any) -> Any:
        return json.loads(value) if self.encoded else value


Distribution = Uniform | LogUniform | IntRange | Choice
KINDS = ("uniform", "loguniform", "int", "choice")


def parse_distribution(key: str, raw: Any) -> Distribution:
    """One `space:` entry, e.g. `{loguniform: [1e-4, 1e-2]}`; errors name `space.<key>`."""
    where = f"space.{key}"
    if not isinstance(raw, dict) or len(set(raw) & set(KINDS)) != 1:
        raise ConfigError(where, f"expected a mapping with exactly one of {', '.join(KINDS)}, got {raw!r}")
    kind = next(k for k in raw if k in KINDS)
    allowed = {kind, "step"} if kind in ("int", "uniform") else {kind}
    extra = set(raw) - allowed
    if extra:
        raise ConfigError(f"{where}.{sorted(extra)[0]}", "unknown key" + suggestion(sorted(extra)[0], sorted(allowed)))
    if kind == "choice":
        return _parse_choice(where, raw["choice"])
    return _parse_range(where, kind, raw[kind], raw.get("step"))


def _parse_choice(where: str, values: Any) -> Choice:
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}.choice", "expected a non-empty list of values")
    return Choice(tuple(values))


def _parse_range(where: str, kind: str, bounds: Any, step: Any) -> Distribution:
    numbers = isinstance(bounds, list) and len(bounds) == 2
    numbers = numbers and all(_is_number(b) for b in bounds)
    if not numbers or not all(math.isfinite(b) for b in bounds):
        raise ConfigError(f"{where}.{kind}", f"expected [lo, hi] with two finite numbers, got {bounds!r}")
    lo, hi = bounds
    if lo >= hi:
        raise ConfigError(f"{where}.{kind}", f"expected lo < hi, got [{lo}, {hi}]")
    if kind == "loguniform" and lo <= 0:
        raise ConfigError(f"{where}.{kind}", f"loguniform needs lo > 0, got {lo}")
    if kind == "int":
        if not all(isinstance(b, int) for b in bounds):
            raise ConfigError(f"{where}.int", f"expected two integers, got {bounds!r}")
        if step is not None and (not isinstance(step, int) or step < 1):
            raise ConfigError(f"{where}.step", f"expected a positive integer, got {step!r}")
        return IntRange(lo, hi, step or 1)
    if kind == "uniform" and step is not None:
        raise ConfigError(f"{where}.step", "step goes with int ranges only")
    return (LogUniform if kind == "loguniform" else Uniform)(float(lo), float(hi))


def parse_space(raw: dict[str, Any]) -> dict[str, Distribution]:
    return {key: parse_distribution(key, value) for key, value in raw.items()}


def set_dotted(config: dict[str, Any], key: str, value: Any) -> None:
    """config['a']['b'] = value for key 'a.b', creating sections on the way."""
    *path, leaf = key.split(".")
    for part in path:
        config = config.setdefault(part, {})
    config[leaf] = value


def get_dotted(config: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        config = config[part]
    return config


def check_dotted_key(key: str, where: str, model: type[BaseModel] = TrainConfig) -> None:
    """Raise unless `key` names a value field (not a section) of the training config."""
    current: Any = model
    parts = key.split(".")
    for depth, part in enumerate(parts):
        fields = getattr(current, "model_fields", None)
        if fields is None:
            raise ConfigError(where, f"'{'.'.join(parts[:depth])}' is a value, it has no key '{part}'")
        if part not in fields:
            prefix = ".".join(parts[:depth])
            known = [f"{prefix}.{f}" if prefix else f for f in fields]
            raise ConfigError(where, f"'{key}' is not a training config key" + suggestion(key, known))
        current = fields[part].annotation
    if isinstance(current, type) and issubclass(current, BaseModel):
        raise ConfigError(where, f"'{key}' is a config section; search one of its keys ({', '.join(current.model_fields)})")


def apply_values(base: TrainConfig, values: dict[str, Any]) -> TrainConfig:
    """`base` with each dotted key set to its (decoded) value, validated."""
    config = copy.deepcopy(base.model_dump(mode="python"))
    for key, value in values.items():
        set_dotted(config, key, value)
    return validate_model(TrainConfig, config)


def check_space(
    base: TrainConfig, space: dict[str, Distribution], check_config: Callable[[TrainConfig], None]
) -> None:
    """Every key exists in the training schema, and every boundary/choice value validates there and
    passes the task's own checks (a model name timm does not know fails here, not in every trial)."""
    for key, dist in space.items():
        check_dotted_key(key, f"space.{key}")
        for value in dist.probe_values():
            try:
                check_config(apply_values(base, {key: value}))
            except ConfigError as exc:
                raise ConfigError(f"space.{key}", f"value {value!r} does not fit {exc.key}: {exc.message}") from None


def decode_trial(space: dict[str, Distribution], params: dict[str, Any]) -> dict[str, Any]:
    """Sampler values (choice lists as JSON) -> config values, for the searched keys only."""
    return {key: dist.decode(params[key]) for key, dist in space.items() if key in params}


def encode_point(space: dict[str, Distribution], point: dict[str, Any]) -> dict[str, Any]:
    """Config values -> sampler values, for a baseline point."""
    return {key: space[key].encode(value) for key, value in point.items()}


def optuna_space(space: dict[str, Distribution]) -> dict[str, od.BaseDistribution]:
    return {key: dist.to_optuna() for key, dist in space.items()}
