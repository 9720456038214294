"""An append-only record of a search's trials that outlives the driver process.

One JSON line per event: which MLflow run a trial logs to, each epoch's metrics, the value a trial
reached a rung with and why a rule or a rung stopped it, how it ended; the time budget's deadline;
and once, that the searcher handed out its last trial (`finished`). A resumed search replays it, so
it continues the same MLflow runs instead of duplicating them, cuts against the same rungs, and the
final summary still has every epoch from before the interruption.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any



class TrialJournal:
    """The journal's events so far; `refresh()` reads only what was appended since the last read, so
    several readers (the MLflow callback, the stopper) share one file without re-reading it whole."""

    def __init__(self, path: Path):
        self.path = path
        self.run_ids: dict[str, str] = {}
        self.history: dict[str, list[dict[str, Any]]] = {}
        self.stop_reasons: dict[str, str] = {}  # a stop rule ended the trial (it counts as finished)
        self.cut_reasons: dict[str, str] = {}  # a rung stopped the trial early (why, in words)
        self.kept_reasons: dict[str, list[str]] = {}  # rung decisions the noise rules waived (why)
        self.ended: dict[str, str] = {}
        self.groups: dict[str, str] = {}  # trial -> trial id of its config's first run (replicas share it)
        self.reference: str | None = None  # the group whose seeds measure the noise
        # bracket -> milestone -> trial -> its signed value there: the scheduler's rungs (Tune does not
        # keep a scheduler's state across a resume, search/rungs.py reads them back)
        self.rungs: dict[int, dict[int, dict[str, float]]] = {}
        self.finished = False  # the searcher has handed out every trial it will
        self.deadline: float | None = None  # time.time() after which no trial starts (search.time_budget)
        self._offset = 0
        self.refresh()

    def refresh(self) -> TrialJournal:
        """Apply the events appended since the last read, by this writer or another."""
        if not self.path.is_file():
            return self
        with self.path.open("rb") as handle:
            handle.seek(self._offset)
            data = handle.read()
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits for the next read
        for line in complete.decode().splitlines():
            if line.strip():
                self._apply(json.loads(line))
        self._offset += len(complete)
        return self

    def _apply(self, event: dict[str, Any]) -> None:
        if event.get("search") == "finished":
            self.finished = True
            return
        if event.get("search") == "deadline":  # the latest wins: a resume may give more time
            self.deadline = event["at"]
            return
        trial = event["trial"]
        if "run" in event:
            self.run_ids[trial] = event["run"]
            self.groups[trial] = event.get("group", trial)
            if event.get("reference"):
                self.reference = self.groups[trial]
        if "epoch" in event:
            # a trial resumed from an earlier checkpoint reports those epochs again: the newest wins
            kept = [h for h in self.history.get(trial, []) if h["epoch"] < event["epoch"]]
            self.history[trial] = kept + [{"epoch": event["epoch"], **event["metrics"]}]
        if "stop" in event:
            self.stop_reasons[trial] = event["stop"]
        if "cut" in event:
            self.cut_reasons[trial] = event["cut"]
        if "rung" in event:
            self.rungs.setdefault(event["bracket"], {}).setdefault(event["rung"], {})[trial] = event["value"]
        if "kept" in event:
            self.kept_reasons.setdefault(trial, []).append(event["kept"])
        if "end" in event:
            self.ended[trial] = event["end"]

    def record(self, event: dict[str, Any]) -> None:
        """Append `event` durably (flushed and synced: a SIGKILL right after keeps it), then read it back
        with anything other writers appended meanwhile."""
        with self.path.open("a") as handle:
            handle.write(json.dumps(event, default=float) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.refresh()

    def past_deadline(self) -> bool:
        """Whether the search's time budget ran out (after reading what was appended since)."""
        self.refresh()
        return self.deadline is not None and time.time() >= self.deadline

    def epochs(self, trial: str) -> int:
        history = self.history.get(trial, [])
        return history[-1]["epoch"] if history else 0
