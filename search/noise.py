"""Seed noise: how far one config's metric moves from seed to seed, and when a curve leaves chance.

On a few hundred images the validation metric of one config moves by several hundredths between
seeds. The search measures it on the reference config (the baseline, run with extra seeds early),
and three decisions read it: a rung does not stop a trial that is within the noise of its cut
(search/rungs.py), confirmation does not call an edge inside it a win (search/decide.py), and the
console shows it ("seed noise: +-0.03").

Chance level is what a constant prediction scores (`Task.chance_metrics`): while the reference
config is still there, every config looks alike and a rung decision would be a coin flip.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from search.constraints import is_finite

# a curve has not left chance by less than this (metric units): one image more right on a small
# validation split moves macro F1 by about this much
MIN_GAP = 0.01


def spread(values: Iterable[float]) -> float:
    """The sample standard deviation (ddof 1) of the finite values; NaN with fewer than two."""
    finite = [float(v) for v in values if is_finite(v)]
    if len(finite) < 2:
        return math.nan
    mean = sum(finite) / len(finite)
    return math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1))


def pooled_spread(groups: Iterable[Sequence[float]]) -> tuple[float, int]:
    """(pooled standard deviation, its degrees of freedom) over groups of runs of one config each:
    every group of two or more finite values adds its squared deviations from its own mean."""
    squares, dof = 0.0, 0
    for group in groups:
        finite = [float(v) for v in group if is_finite(v)]
        if len(finite) < 2:
            continue
        mean = sum(finite) / len(finite)
        squares += sum((v - mean) ** 2 for v in finite)
        dof += len(finite) - 1
    return (math.sqrt(squares / dof), dof) if dof else (math.nan, 0)


def mean(values: Iterable[float]) -> float:
    finite = [float(v) for v in values if is_finite(v)]
    return sum(finite) / len(finite) if finite else math.nan


@dataclass
class Curve:
    """The per-epoch values of the search metric over several runs (seeds) of one config."""

    runs: dict[str, dict[int, float]] = field(default_factory=dict)  # run (trial id) -> epoch -> value

    def add(self, run: str, epoch: int, value: float) -> None:
        if is_finite(value):
            self.runs.setdefault(run, {})[epoch] = float(value)

    def values(self, epoch: int) -> list[float]:
        return [epochs[epoch] for epochs in self.runs.values() if epoch in epochs]

    def mean(self, epoch: int) -> float:
        return mean(self.values(epoch))

    def noise(self, epoch: int) -> float:
        """The seed spread at `epoch`: NaN until two runs reached it."""
        return spread(self.values(epoch))

    def left_chance(self, epoch: int, chance: float, sign: float, sds: float = 2.0) -> bool:
        """Whether, at some epoch up to `epoch`, the mean over runs beat chance by more than `sds` times
        its seed spread and by at least MIN_GAP (MIN_GAP alone while one run reached it)."""
        for e in range(1, epoch + 1):
            values = self.values(e)
            if not values:
                continue
            noise = spread(values)
            gap = sign * (mean(values) - chance)
            if gap >= MIN_GAP and gap > (sds * noise if is_finite(noise) else 0.0):
                return True
        return False


def describe(sd: float) -> str:
    """'+-0.031' for the console and the summary."""
    return f"+-{sd:.2g}" if is_finite(sd) else "not measured"
