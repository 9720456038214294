"""A trial's score: which of its epochs' metrics stand for the trial (`search.score`).

The validation metric of a small set moves by several hundredths from one epoch to the next, so the
last epoch alone is a draw. The same rule gives the value Optuna learns from, the search's best
trial, the MLflow parent run's metrics and the exported config's header:

- `last`: the last epoch's metrics;
- `best`: the metrics of the epoch best by the search metric (every metric read at that one epoch, so
  constraints and objectives describe one model); optimistic: the maximum of noisy values;
- `ema`: an exponential moving average of each metric over the epochs (newest weight `EMA_WEIGHT`),
  which for independent epoch-to-epoch noise keeps a third of its variance and leans on recent epochs.
"""

from __future__ import annotations

from typing import Any, Callable

from search.constraints import is_finite

EMA_WEIGHT = 0.5  # weight of the newest epoch: noise variance x 1/3, half of the weight on the last epoch

Epochs = list[dict[str, Any]]  # [{"epoch": n, metric: value, ...}] in epoch order (the journal's history)


def numeric(metrics: dict[str, Any]) -> dict[str, float]:
    """The reported metrics (keys with a '/') that are finite numbers."""
    return {k: float(v) for k, v in metrics.items() if "/" in k and is_finite(v)}


def last_epoch(history: Epochs, metric: str, mode: str) -> dict[str, float]:
    return numeric(history[-1])


def best_epoch(history: Epochs, metric: str, mode: str) -> dict[str, float]:
    sign = 1.0 if mode == "max" else -1.0
    scored = [h for h in history if is_finite(h.get(metric))]
    if not scored:
        return last_epoch(history, metric, mode)
    return numeric(max(scored, key=lambda h: sign * h[metric]))  # max keeps the earliest of equal epochs


def moving_average(history: Epochs, metric: str, mode: str) -> dict[str, float]:
    average: dict[str, float] = {}
    for epoch in history:
        for key, value in numeric(epoch).items():
            average[key] = value if key not in average else EMA_WEIGHT * value + (1 - EMA_WEIGHT) * average[key]
    return average


SCORES: dict[str, Callable[[Epochs, str, str], dict[str, float]]] = {
    "last": last_epoch,
    "best": best_epoch,
    "ema": moving_average,
}

DESCRIPTIONS = {"last": "last epoch", "best": "best epoch", "ema": f"moving average over epochs, weight {EMA_WEIGHT}"}


def scored_metrics(history: Epochs, rule: str, metric: str, mode: str) -> dict[str, float]:
    """The metrics that stand for a trial under `rule`; {} for a trial that reported no epoch."""
    return SCORES[rule](history, metric, mode) if history else {}


def describe(rule: str) -> str:
    """How a score was computed, for the summary, MLflow and the exported YAML."""
    return f"{rule} ({DESCRIPTIONS[rule]})"
