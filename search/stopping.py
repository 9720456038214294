"""Plateau and divergence stopping: the seed team's hand rules as a Tune Stopper.

- plateau: the watched loss has not improved for `patience_epochs` epochs;
- divergence: the loss variance over the last `window` epochs exceeds the previous window's by more
  than `max_loss_variance_increase` (relative), i.e. training started to oscillate.
Both are off by default. A stopped trial ends normally (its result counts) with a `stop_reason`.
Past the search's time budget (search/budget.py) every trial stops after the epoch it reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import signal

import numpy as np
from ray.tune import Callback, Stopper
from ray.tune.experiment import Trial

from search.journal import TrialJournal
from search.spec import StopSettings


def plateau_reason(losses: list[float], patience: int | None) -> str | None:
    if patience is None or not losses:
        return None
    since_best = len(losses) - 1 - int(np.argmin(losses))
    return f"loss has not improved for {since_best} epochs" if since_best >= patience else None


def variance_reason(losses: list[float], window: int, max_increase: float | None) -> str | None:
    if max_increase is None or len(losses) < 2 * window:
        return None
    before, last = np.var(losses[-2 * window : -window]), np.var(losses[-window:])
    if before > 0 and last > (1 + max_increase) * before:
        return f"loss variance grew {last / before:.1f}x over the last {window} epochs"
    return None


class LossRules(Stopper):
    def __init__(self, settings: StopSettings, journal: Path):
        self.settings = settings
        self.journal = TrialJournal(journal)
        self.losses: dict[str, list[float]] = {}

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        if self.journal.past_deadline():
            self.journal.record({"trial": trial_id, "stop": "the time budget ran out"})
            return True  # Optuna hears PRUNED (no stop_reason): the trial did not finish
        value = result.get(self.settings.metric)
        if value is None:
            return False
        if trial_id not in self.losses:  # first sight, maybe after a resume: earlier epochs are in the journal
            history = self.journal.refresh().history.get(trial_id, [])
            self.losses[trial_id] = [h[self.settings.metric] for h in history if h["epoch"] < result.get("epoch", 0)]
        losses = self.losses[trial_id]
        losses.append(float(value))
        s = self.settings
        reason = plateau_reason(losses, s.patience_epochs) or variance_reason(losses, s.window, s.max_loss_variance_increase)
        if reason:
            self.journal.record({"trial": trial_id, "stop": reason})
            result["stop_reason"] = reason  # the trial's last result: the searcher tells Optuna it finished, not pruned
        return reason is not None

    def stop_all(self) -> bool:
        return False


class BudgetWatch(Callback):
    """Ends the Tune run once the time budget ran out and every trial has stopped, the way a Ctrl-C
    does (Tune's graceful SIGINT stop): its searcher is not marked finished, so `resume
    --time-budget` can go on sampling. (A Stopper's `stop_all` would mark it finished for good.)"""

    def __init__(self, journal: Path):
        self.journal = TrialJournal(journal)
        self.signalled = False

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        if self.signalled or not self.journal.past_deadline():
            return
        if all(trial.status in (Trial.TERMINATED, Trial.ERROR) for trial in trials):
            self.signalled = True
            signal.raise_signal(signal.SIGINT)
