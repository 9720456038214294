"""MLflow, all in one place: one parent run per search, one nested run per trial.

Every write happens in the driver process (a Tune callback), so concurrent trials never contend
for the SQLite store's lock and no write is lost.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ray.tune import Callback

from search.journal import TrialJournal
from training.tracking import Tracker


# Per-epoch metrics wait at most this long before their MLflow write: the epochs that arrive meanwhile
# (short epochs, concurrent trials) share one store transaction per run, and the UI stays live.
FLUSH_EVERY_S = 1.0


class TrialTracking(Callback):
    """Tune callback: a nested MLflow run per trial with its params, per-epoch metrics and status.

    Its memory is the journal file, so the instance Tune restores on resume (unpickled from the
    experiment state) catches up on every run it created before by reading the rest of the file.
    Epoch metrics go to the journal (durably) at once and to MLflow batched (`flush`).
    """

    def __init__(self, tracker: Tracker, parent_run_id: str, trial_params: Any, max_epochs: int, journal: Path):
        self.tracker = tracker
        self.parent_run_id = parent_run_id
        self.trial_params = trial_params  # trial config -> flat dotted params of its resolved config
        self.max_epochs = max_epochs
        self.journal = TrialJournal(journal)
        self._pending: dict[str, list[tuple[int, dict[str, float]]]] = {}  # run id -> epochs not yet in MLflow
        self._flushed_at = time.monotonic()

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles callbacks into its experiment snapshots; a resumed search re-reads the journal.
        return {**self.__dict__, "_pending": {}}

    def flush(self, run_id: str | None = None, tags: dict[str, Any] | None = None) -> None:
        """Write the pending epochs of `run_id` (with `tags`, in the same transaction), or of every run."""
        for run in [run_id] if run_id else list(self._pending):
            steps = self._pending.pop(run, [])
            if steps or tags:
                self.tracker.log_steps(run, steps, tags=tags)
        if run_id is None:
            self._flushed_at = time.monotonic()

    def setup(self, **info) -> None:
        self.journal.refresh()

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        run_id = self.journal.run_ids.get(trial.trial_id)
        if run_id is not None:  # resumed or retried: continue its run
            self.tracker.client.update_run(run_id, status="RUNNING")
            return
        run_id = self.tracker.start_run(trial.trial_id, {"trial_id": trial.trial_id}, parent=self.parent_run_id)
        self.journal.record({"trial": trial.trial_id, "run": run_id})
        self.tracker.log(run_id, params=self.trial_params(trial.config))

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        epoch = int(result.get("epoch", 0))
        metrics = {k: v for k, v in result.items() if "/" in k}
        self.journal.record({"trial": trial.trial_id, "epoch": epoch, "metrics": metrics})
        run_id = self.journal.run_ids[trial.trial_id]
        self._pending.setdefault(run_id, []).append((epoch, metrics))
        self.tracker.log_extras(run_id, result.get("extras") or {}, epoch)

    def on_step_end(self, iteration, trials, **info) -> None:
        if self._pending and time.monotonic() - self._flushed_at >= FLUSH_EVERY_S:
            self.flush()

    def on_experiment_end(self, trials, **info) -> None:
        self.flush()

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        epochs = self.journal.epochs(trial.trial_id)
        tags = {"epochs_run": epochs, "early_stopped": epochs < self.max_epochs}
        stop_reason = self.journal.refresh().stop_reasons.get(trial.trial_id)  # written by the stopper
        if stop_reason:
            tags["stop_reason"] = stop_reason
        run_id = self.journal.run_ids[trial.trial_id]
        self.flush(run_id, tags)
        self.tracker.end_run(run_id, "FINISHED")
        self.journal.record({"trial": trial.trial_id, "end": "FINISHED"})

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        run_id = self.journal.run_ids.get(trial.trial_id)
        if run_id is None:
            return
        tags = {"failure_reason": failure_reason(trial), "epochs_run": self.journal.epochs(trial.trial_id)}
        self.flush(run_id, tags)
        self.tracker.end_run(run_id, "FAILED")
        self.journal.record({"trial": trial.trial_id, "end": "FAILED"})


def failure_reason(trial) -> str:
    """The last line of the trial's traceback: the exception and its message.

    Tune writes the error file beside the trial's local results before calling back; `get_error()`
    reads the storage copy, which may not be synced yet.
    """
    local = Path(trial.error_file) if trial.error_file else None
    text = local.read_text() if local and local.is_file() else str(trial.get_error() or "")
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else "unknown error"
