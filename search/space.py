"""Search-space distributions: parsed from the space file, turned into Optuna distributions,
and trial values merged back into a training config by dotted key.

Most distributions are one Optuna parameter named by their config key. A geometric ratio set is
several (`model.anchor_ratios.min`, `.max`, `.count`) assembled back into one list: every
distribution answers `params` / `encode_params` / `decode_params` (sampler side) and `parts` /
`split` (its 1-D axes, for reports), so callers never ask which kind they hold.
"""

from __future__ import annotations

import copy
import json
import math
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from pydantic import BaseModel

from training.config import TrainConfig
from training.schema.config_file import suggestion, validate_model
from training.schema.errors import ConfigError

if TYPE_CHECKING:  # optuna loads only where a distribution is built: a space file's mistake is answered first
    import optuna.distributions as od

SCALAR = (type(None), bool, int, float, str)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class OneParam:
    """A distribution sampled as one Optuna parameter named by its config key."""

    def params(self, key: str) -> dict[str, od.BaseDistribution]:
        return {key: self.to_optuna()}

    def encode_params(self, key: str, value: Any) -> dict[str, Any]:
        return {key: self.encode(value)}

    def decode_params(self, key: str, params: dict[str, Any]) -> Any:
        return self.decode(params[key])

    def parts(self, key: str) -> dict[str, Distribution]:
        """Its 1-D axes by parameter name (for plots and importance): itself."""
        return {key: self}

    def split(self, key: str, value: Any) -> dict[str, Any]:
        """A config value as the values of its `parts`."""
        return {key: value}


@dataclass(frozen=True)
class Uniform(OneParam):
    lo: float
    hi: float

    def to_optuna(self) -> od.BaseDistribution:
        import optuna.distributions as od

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
        import optuna.distributions as od

        return od.FloatDistribution(self.lo, self.hi, log=True)


@dataclass(frozen=True)
class IntRange(Uniform):
    step: int = 1

    def to_optuna(self) -> od.BaseDistribution:
        import optuna.distributions as od

        return od.IntDistribution(int(self.lo), int(self.hi), step=self.step)

    def probe_values(self) -> list[Any]:
        return [int(self.lo), int(self.hi)]

    def contains(self, value: Any) -> bool:
        return isinstance(value, int) and super().contains(value) and (value - self.lo) % self.step == 0


@dataclass(frozen=True)
class Choice(OneParam):
    """A categorical choice; non-scalar values (lists such as anchor ratios) travel as JSON strings,
    because Optuna categoricals hold scalars only."""

    values: tuple[Any, ...]

    @property
    def encoded(self) -> bool:
        return not all(isinstance(v, SCALAR) for v in self.values)

    def to_optuna(self) -> od.BaseDistribution:
        import optuna.distributions as od

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


GEOMETRIC_PARTS = ("min", "max", "count")
# a geometric set's values are rounded to this many decimals (ratios, not measurements)
GEOMETRIC_DECIMALS = 3
# a list written by hand (e.g. a baseline, fewer decimals) is that set when each value is this close
GEOMETRIC_TOLERANCE = 0.01


def _rounded(value: float) -> float:
    return max(round(float(value), GEOMETRIC_DECIMALS), 10**-GEOMETRIC_DECIMALS)


def geometric_values(first: float, last: float, count: int) -> list[float]:
    """`count` values from `first` to `last` with a constant ratio between neighbours, rounded; the
    ends are rounded first, so a decoded set re-encodes to the very same values."""
    first, last = _rounded(first), _rounded(last)
    step = (last / first) ** (1 / (count - 1))
    return [first, *(_rounded(first * step**i) for i in range(1, count - 1)), last]


@dataclass(frozen=True)
class GeometricSet:
    """A list such as anchor ratios searched as a geometric sequence: `count` values from `min` to
    `max`, each of the three fixed (a number) or searched (min/max log-uniform, count an int range).
    Each searched one is its own Optuna parameter `<key>.min` / `.max` / `.count`, so TPE models
    them separately."""

    min: LogUniform | float
    max: LogUniform | float
    count: IntRange | int

    def _fields(self) -> dict[str, Any]:
        return {"min": self.min, "max": self.max, "count": self.count}

    def parts(self, key: str) -> dict[str, Distribution]:
        return {f"{key}.{name}": part for name, part in self._fields().items() if isinstance(part, Uniform)}

    def params(self, key: str) -> dict[str, od.BaseDistribution]:
        return {name: part.to_optuna() for name, part in self.parts(key).items()}

    def _value(self, name: str, sampled: dict[str, Any], key: str) -> Any:
        part = self._fields()[name]
        return sampled[f"{key}.{name}"] if isinstance(part, Uniform) else part

    def decode_params(self, key: str, params: dict[str, Any]) -> list[float]:
        return geometric_values(*(self._value(name, params, key) for name in GEOMETRIC_PARTS))

    def split(self, key: str, value: Any) -> dict[str, Any]:
        values = {"min": value[0], "max": value[-1], "count": len(value)}
        return {f"{key}.{name}": values[name] for name, part in self._fields().items() if isinstance(part, Uniform)}

    def encode_params(self, key: str, value: Any) -> dict[str, Any]:
        return self.split(key, value)

    def contains(self, value: Any) -> bool:
        """A list this set can produce: its ends and length in range, its values the geometric ones."""
        if not isinstance(value, list) or len(value) < 2 or not all(_is_number(v) and v > 0 for v in value):
            return False
        ends = {"min": value[0], "max": value[-1], "count": len(value)}
        for name, part in self._fields().items():
            if not (part.contains(ends[name]) if isinstance(part, Uniform) else ends[name] == part):
                return False
        expected = geometric_values(value[0], value[-1], len(value))
        return all(abs(a - b) <= GEOMETRIC_TOLERANCE * b + 10**-GEOMETRIC_DECIMALS for a, b in zip(value, expected))

    def probe_values(self) -> list[Any]:
        """The sets at every corner of the searched box (shortest and longest, narrowest and widest)."""
        ends = [(p.lo, p.hi) if isinstance(p, Uniform) else (p,) for p in (self.min, self.max)]
        counts = (int(self.count.lo), int(self.count.hi)) if isinstance(self.count, IntRange) else (self.count,)
        return [geometric_values(a, b, n) for a in ends[0] for b in ends[1] for n in counts]


Distribution = Uniform | LogUniform | IntRange | Choice | GeometricSet
KINDS = ("uniform", "loguniform", "int", "choice", "geometric")


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
    if kind == "geometric":
        return _parse_geometric(f"{where}.geometric", raw["geometric"])
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


def _geometric_part(where: str, name: str, raw: Any) -> Uniform | float | int:
    """A fixed number, or a [lo, hi] range: log-uniform for min/max, integers for count (>= 2)."""
    fixed = isinstance(raw, int) if name == "count" else _is_number(raw) and math.isfinite(raw)
    if fixed and not isinstance(raw, bool):
        if raw < 2 if name == "count" else raw <= 0:
            raise ConfigError(f"{where}.{name}", f"expected {'at least 2' if name == 'count' else 'a number > 0'}, got {raw}")
        return raw if name == "count" else float(raw)
    try:
        part = _parse_range(where, "int" if name == "count" else "loguniform", raw, None)
    except ConfigError as exc:  # the range's own message, on this part's key
        raise ConfigError(f"{where}.{name}", exc.message) from None
    if name == "count" and part.lo < 2:
        raise ConfigError(f"{where}.count", f"expected at least 2 values, got [{int(part.lo)}, {int(part.hi)}]")
    return part


def _parse_geometric(where: str, raw: Any) -> GeometricSet:
    """`{min: 0.2 | [lo, hi], max: ..., count: 5 | [lo, hi]}`; errors name `space.<key>.geometric`."""
    if not isinstance(raw, dict):
        raise ConfigError(where, f"expected a mapping with min, max and count, got {raw!r}")
    for name in raw:
        if name not in GEOMETRIC_PARTS:
            raise ConfigError(f"{where}.{name}", "unknown key" + suggestion(str(name), list(GEOMETRIC_PARTS)))
    for name in GEOMETRIC_PARTS:
        if name not in raw:
            raise ConfigError(f"{where}.{name}", "required: a number or a [lo, hi] range")
    parts = {name: _geometric_part(where, name, raw[name]) for name in GEOMETRIC_PARTS}
    highest_min = parts["min"].hi if isinstance(parts["min"], Uniform) else parts["min"]
    lowest_max = parts["max"].lo if isinstance(parts["max"], Uniform) else parts["max"]
    if highest_min >= lowest_max:
        raise ConfigError(where, f"min (up to {highest_min:g}) must stay below max (from {lowest_max:g})")
    if not any(isinstance(part, Uniform) for part in parts.values()):
        raise ConfigError(where, "min, max and count are all fixed: nothing to search (put the list in base)")
    return GeometricSet(**parts)


def parse_space(raw: dict[str, Any]) -> dict[str, Distribution]:
    return {key: parse_distribution(key, value) for key, value in raw.items()}


def _item(items: list[Any], part: str, key: str) -> int:
    """The list index a dotted-key part names (`phases.1.lr_factor`), or a ConfigError."""
    if not part.isdigit() or int(part) >= len(items):
        raise ConfigError(key, f"'{part}' is not an item of a list of {len(items)} (indices from 0)")
    return int(part)


def set_dotted(config: dict[str, Any], key: str, value: Any) -> None:
    """config['a']['b'] = value for key 'a.b', creating sections on the way; a numeric part indexes
    an existing list item (`phases.1.lr_factor`)."""
    *path, leaf = key.split(".")
    for part in path:
        config = config[_item(config, part, key)] if isinstance(config, list) else config.setdefault(part, {})
    if isinstance(config, list):
        config[_item(config, leaf, key)] = value
    else:
        config[leaf] = value


def get_dotted(config: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        config = config[_item(config, part, key)] if isinstance(config, list) else config[part]
    return config


def check_dotted_key(key: str, where: str, model: type[BaseModel] = TrainConfig) -> None:
    """Raise unless `key` names a value field (not a section) of the training config."""
    current: Any = model
    parts = key.split(".")
    for depth, part in enumerate(parts):
        # list items (phases.1) and mapping entries (phases.1.augment.rotate) are checked by value
        if typing.get_origin(current) is list:
            if not part.isdigit():
                raise ConfigError(where, f"'{'.'.join(parts[:depth])}' is a list; expected an item number, got '{part}'")
            current = typing.get_args(current)[0]
            continue
        if typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]
            continue
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
    """Sampler values (choice lists as JSON, geometric sets as their parts) -> config values, for
    the searched keys whose parameters are all there."""
    return {
        key: dist.decode_params(key, params)
        for key, dist in space.items()
        if all(name in params for name in dist.params(key))
    }


def encode_point(space: dict[str, Distribution], point: dict[str, Any]) -> dict[str, Any]:
    """Config values -> sampler values, for a baseline point."""
    return {name: v for key, value in point.items() for name, v in space[key].encode_params(key, value).items()}


def optuna_space(space: dict[str, Distribution]) -> dict[str, od.BaseDistribution]:
    """One Optuna distribution per sampled parameter (a geometric set gives several)."""
    return {name: d for key, dist in space.items() for name, d in dist.params(key).items()}


def searched_parts(space: dict[str, Distribution]) -> dict[str, Distribution]:
    """The 1-D axes of a space by parameter name: what plots and importance put on an axis."""
    return {name: part for key, dist in space.items() for name, part in dist.parts(key).items()}


def split_point(space: dict[str, Distribution], point: dict[str, Any]) -> dict[str, Any]:
    """Config values -> the values of `searched_parts`, for the keys of `point`."""
    return {name: v for key, value in point.items() if key in space for name, v in space[key].split(key, value).items()}
