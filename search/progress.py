"""Live progress of a search: a rich table on a terminal, one line per event in a plain log."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console
from rich.live import Live
from rich.table import Table
from ray.tune import Callback

from search.budget import clock_text
from search.console import format_value, make_console, short_keys
from search.constraints import Constraint, feasible, is_finite
from search.journal import TrialJournal
from search.noise import describe, spread
from search.roles import BASELINE, group_of, is_reference, is_replica, replica
from search.score import scored_metrics
from search.tracking import failure_reason


def clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


class Progress(Callback):
    """Which trials run, their epoch and metric, and the best so far, while the search runs."""

    def __init__(
        self,
        metric: str,
        mode: str,
        planned: int,
        param_keys: list[str],
        decode,
        console: Console,
        journal: Path,
        max_epochs: int,
        score: str,
        scheduler: str,
        constraints: Sequence[Constraint] = (),
    ):
        self.metric = metric
        self.mode = mode
        self.sign = 1 if mode == "max" else -1
        self.score = score  # search.score: which epochs stand for a finished trial, as in the final pick
        self.planned = planned  # trials the search runs at most: sampled, noise and confirmation seeds
        self.param_keys = param_keys
        self.decode = decode  # trial.config -> {dotted key: value}
        self.console = console
        self.max_epochs = max_epochs
        self.scheduler = scheduler  # what stops a trial early besides the stop rules: SchedulerSettings.stopper()
        self.constraints = list(constraints)
        self.rows: dict[str, dict[str, Any]] = {}
        # (value, trial) of the best finished feasible trial by its score: the final pick's rule (a trial's
        # value under `score`, search/summary.py pick_best), and it never gets worse
        self.best: tuple[float, str] | None = None
        self.started = time.monotonic()
        self.live: Live | None = None
        self.journal = journal
        self.done_before = 0  # trials a resumed search finished before its interruption
        self.reference_scores: dict[str, float] = {}  # finished runs of the reference config -> score
        self.deadline: float | None = None  # the time budget's, from the journal (a resume may set a new one)

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment state; a console and a live view hold locks.
        return {**self.__dict__, "console": None, "live": None}

    def setup(self, **info) -> None:
        self.console = self.console or make_console()  # None when Tune restored this callback on resume
        self.started = time.monotonic()
        journal = TrialJournal(self.journal)
        self.done_before = len(journal.ended)
        self.deadline = journal.deadline
        for trial_id, end in journal.ended.items():  # the best of the trials finished before a resume
            if end == "FINISHED" and journal.history.get(trial_id):
                group = journal.groups.get(trial_id, trial_id)
                self._offer(journal.history[trial_id], trial_id, replica=group != trial_id)
                if journal.reference is not None and group == journal.reference:
                    self._note_reference(journal.history[trial_id], trial_id)
        if self.console.is_terminal:
            self.live = Live(self.table(), console=self.console, refresh_per_second=2, transient=True)
            self.live.start()

    def _row(self, trial) -> dict[str, Any]:
        if trial.trial_id not in self.rows:
            row = {"status": "RUNNING", "epoch": 0, "value": math.nan, "params": self.decode(trial.config), "history": []}
            self.rows[trial.trial_id] = row
        return self.rows[trial.trial_id]

    def _event(self, trial, text: str) -> None:
        if self.live:
            self.live.update(self.table())
        else:
            self.console.print(f"[{self.elapsed()}] {trial.trial_id} {text}", highlight=False)

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        row = self._row(trial)
        keys = list(row["params"])
        params = " ".join(f"{k}={format_value(v)}" for k, v in zip(short_keys(keys), row["params"].values()))
        self._event(trial, f"started {role_text(trial.config, trial.trial_id)}{params}")

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        row = self._row(trial)
        row["epoch"] = int(result.get("epoch", 0))
        row["value"] = result.get(self.metric, math.nan)
        self._keep(row, result)
        self._event(trial, f"epoch {row['epoch']} {self.metric}={format_value(row['value'])}{self._best_text()}")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        row = self._row(trial)
        row["status"] = "DONE"
        self._offer(row["history"], trial.trial_id, replica=is_replica(trial.config))
        if is_reference(trial.config) or group_of(trial.config, trial.trial_id) in self.reference_groups(trials):
            self._note_reference(row["history"], trial.trial_id)
        self._event(trial, f"{self._ending(trial.trial_id, row['epoch'])}; {self._counts()}{self._best_text()}")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._row(trial)["status"] = "FAILED"
        self._event(trial, f"failed: {failure_reason(trial)}; {self._counts()}")

    def on_experiment_end(self, trials, **info) -> None:
        if self.live:
            self.live.stop()
            self.live = None

    def _ending(self, trial_id: str, epochs: int) -> str:
        """How a trial that did not fail ended: its full budget, a stop rule, or the scheduler."""
        ran = f"{epochs} epoch" + ("" if epochs == 1 else "s")
        if epochs >= self.max_epochs:
            return f"done after {ran}"
        journal = TrialJournal(self.journal)
        reason = journal.stop_reasons.get(trial_id)
        if reason:
            return f"stopped early after {ran}: {reason}"
        if self.scheduler == "none":
            return f"stopped after {ran}"
        cut = journal.cut_reasons.get(trial_id)
        return f"stopped early by {self.scheduler} after {ran}" + (f": {cut}" if cut else "")

    @staticmethod
    def _keep(row: dict[str, Any], result: dict[str, Any]) -> None:
        """The epoch's metrics only (rows are pickled with Tune's state); a repeated epoch (a trial
        resumed from an earlier checkpoint) replaces the old one, as in the journal."""
        epoch = int(result.get("epoch", 0))
        kept = [h for h in row["history"] if h["epoch"] < epoch]
        row["history"] = kept + [{"epoch": epoch, **{k: v for k, v in result.items() if "/" in k}}]

    @staticmethod
    def reference_groups(trials) -> set[str]:
        """The group of the reference config, as its replicas name it."""
        return {group_of(t.config, t.trial_id) for t in trials if is_reference(t.config)}

    def _note_reference(self, history: list[dict[str, Any]], trial_id: str) -> None:
        """A finished run of the reference config: its score joins the seed-noise estimate."""
        value = scored_metrics(history, self.score, self.metric, self.mode).get(self.metric)
        if is_finite(value) and history and history[-1]["epoch"] >= self.max_epochs:
            self.reference_scores[trial_id] = float(value)

    def noise_text(self) -> str:
        """`; seed noise +-0.031 (3 seeds)` once two runs of the reference config finished."""
        if len(self.reference_scores) < 2:
            return ""
        return f"; seed noise {describe(spread(self.reference_scores.values()))} ({len(self.reference_scores)} seeds)"

    def _offer(self, history: list[dict[str, Any]], trial_id: str, replica: bool = False) -> None:
        """A finished trial's epochs: its score (the `search.score` rule, as the final pick reads it)
        becomes the best if finite, feasible and better. Replicas (extra seeds) are not candidates."""
        if replica:
            return
        metrics = scored_metrics(history, self.score, self.metric, self.mode)
        value = metrics.get(self.metric)
        if not is_finite(value) or not feasible(metrics, self.constraints):
            return
        if self.best is None or self.sign * value > self.sign * self.best[0]:
            self.best = (float(value), trial_id)

    def _best_text(self) -> str:
        if not self.best:
            return f" ({self.noise_text().removeprefix('; ')})" if self.noise_text() else ""
        return f" (best finished {format_value(self.best[0])} by {self.best[1]}, {self.score} score{self.noise_text()})"

    def elapsed(self) -> str:
        return clock(time.monotonic() - self.started)

    def _counts(self) -> str:
        """`k/N trials done, ETA mm:ss`: the remaining trials at the pace of the finished ones
        (an upper bound under ASHA, which stops most of the rest early); with a time budget, what is left of it."""
        finished = sum(r["status"] != "RUNNING" for r in self.rows.values())
        text = f"{finished + self.done_before}/{self.planned} trials done"
        if finished:
            pace = (time.monotonic() - self.started) / finished
            text += f", ETA {clock(pace * max(0, self.planned - finished - self.done_before))}"
        if self.deadline is not None:
            left = self.deadline - time.time()
            text += f", budget left {clock_text(left)}" if left > 0 else ", time budget ran out: no new trials"
        return text

    def table(self) -> Table:
        title = f"{self._counts()}, {self.elapsed()} elapsed{self._best_text()}"
        table = Table(title=title, title_justify="left")
        for header in ["trial", "status", "epoch", *short_keys(self.param_keys), self.metric]:
            table.add_column(header)
        for trial_id, row in self.rows.items():
            params = [format_value(row["params"].get(k, "")) for k in self.param_keys]
            table.add_row(trial_id, row["status"], str(row["epoch"]), *params, format_value(row["value"]))
        return table


def role_text(config: dict[str, Any], trial_id: str) -> str:
    """`baseline `, `noise seed 2 of 3f1c9a2b: `, `confirmation seed 1 of 3f1c9a2b: ` or nothing."""
    entry = replica(config)
    role = entry.get("role")
    if role == BASELINE:
        return "baseline "
    if role is None:
        return ""
    name = "confirmation" if role == "confirm" else role
    return f"{name} seed {entry['seed']} of {entry['group']}: "
