"""MLflow, all in one place: one parent run per search, one nested run per trial.

Every write happens in the driver process (a Tune callback), so concurrent trials never contend
for the SQLite store's lock and no write is lost.

A trial's run is what a user compares trials by: it is named by its index and searched values
(`t03 lr=3.1e-4 focal_gamma=2.5`), its params are the searched keys (plus the task and model), and
the whole resolved training config is one artifact, `config.yaml`, that `python -m training train`
takes as it is.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import yaml
from ray.tune import Callback

from search.journal import TrialJournal
from search.roles import BASELINE, creation_index, group_of, is_reference, replica
from search.space import decode_trial
from search.spec import SearchPlan
from search.trainable import trial_config
from training.tracking import Tracker

# Per-epoch metrics wait at most this long before their MLflow write: the epochs that arrive meanwhile
# (short epochs, concurrent trials) share one store transaction per run, and the UI stays live.
FLUSH_EVERY_S = 1.0
CONFIG_ARTIFACT = "config.yaml"
MAX_VALUE_CHARS = 14  # a value longer than this is cut in a run name (the param holds it whole)
MAX_NAME_CHARS = 80  # beyond this the run name ends in "…": MLflow's tables and legends show the start
NOTE_TAG = "mlflow.note.content"  # a run's or experiment's description in the MLflow UI
EXPERIMENT_NOTE = (
    "Hyperparameter searches: each search is a parent run with one nested run per trial, named by its "
    "index and searched values (`t03 lr=3.1e-4 focal_gamma=2.5`); baseline trials carry the tag "
    "`baseline = true`, and each trial's `config.yaml` artifact retrains it. "
    "A parent run's description links to its trials listed flat and charted epoch by epoch."
)


def trials_view(experiment_id: str, parent_run_id: str, metric: str, mode: str) -> str:
    """The experiment page's path (after the UI's address) that lists one search's trial runs flat, best
    first, in the chart view, in the UI's model-training view: MLflow's default view nests them under
    the collapsed parent run, so its charts would show the parent alone."""
    query = {
        "workflowType": "machine_learning",  # MLflow 3.17's UI files runs by this switch, default GenAI
        "compareRunsMode": "CHART",
        "searchFilter": f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
        "orderByKey": f"metrics.`{metric}`",
        "orderByAsc": str(mode == "min").lower(),
    }
    return f"#/experiments/{experiment_id}/runs?{urlencode(query, quote_via=quote)}"


def short_value(value: Any) -> str:
    """A value as a run name shows it: floats with 2-3 significant digits (3.1e-4, 0.25, 1e6)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and math.isfinite(value):
        if value == 0 or 1e-2 <= abs(value) < 1e4:
            return f"{value:.3g}"
        mantissa, exponent = f"{value:.1e}".split("e")
        return f"{mantissa.removesuffix('.0')}e{int(exponent)}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(short_value(v) for v in value) + "]"
    text = str(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def short_keys(keys: list[str]) -> dict[str, str]:
    """Each dotted key by its last part (`optim.lr` -> `lr`), or by more parts where two would clash."""
    names = {}
    for key in keys:
        parts = key.split(".")
        depth = 1
        while depth < len(parts) and sum(k.split(".")[-depth:] == parts[-depth:] for k in keys) > 1:
            depth += 1
        names[key] = ".".join(parts[-depth:])
    return names


def run_name(index: int, width: int, values: dict[str, Any], baseline: bool, role: str = "") -> str:
    """`t03 lr=3.1e-4 focal_gamma=2.5`; a baseline trial says so after its index, a replica names its
    role and seed (`t12 confirm seed=2 lr=...`)."""
    names = short_keys(list(values))
    label = f"t{index:0{width}d}" + (" baseline" if baseline else "") + (f" {role}" if role else "")
    name = " ".join([label, *(f"{names[k]}={short_value(v)}" for k, v in values.items())])
    return name if len(name) <= MAX_NAME_CHARS else name[: MAX_NAME_CHARS - 1] + "…"


ROLE_NOTES = {
    "noise": "another seed of the reference config, run early to measure the seed noise",
    "confirm": "a fresh seed of a top config, run after sampling to confirm it",
}


def trial_note(
    search: str, trial_id: str, searched: dict[str, Any], baseline_point: str | None, entry: dict[str, Any] | None = None
) -> str:
    """The run's description (markdown): which trial of which search, what it tried, how to retrain it."""
    values = ", ".join(f"`{k}` = {v!r}" for k, v in searched.items())
    origin = f" It is the baseline point `{baseline_point}`." if baseline_point else ""
    if entry and entry.get("role") in ROLE_NOTES:
        origin += f" It is {ROLE_NOTES[entry['role']]} (seed {entry['seed']}, config of trial `{entry['group']}`)."
    return (
        f"Trial `{trial_id}` of search `{search}`: {values}.{origin}\n\n"
        f"Its whole training config is the artifact `{CONFIG_ARTIFACT}`: "
        f"`python -m training train {CONFIG_ARTIFACT}` retrains it."
    )


@dataclass(frozen=True)
class TrialRun:
    """What a trial's MLflow run shows: its name, tags, params and resolved config."""

    name: str
    tags: dict[str, str]
    params: dict[str, Any]
    config: dict[str, Any]

    @classmethod
    def of(cls, plan: SearchPlan, trial, index: int, tracking: dict[str, str]) -> TrialRun:
        searched = decode_trial(plan.space, trial.config)
        entry = replica(trial.config)
        baseline = entry.get("role") == BASELINE
        tags = {"trial_id": trial.trial_id, "trial_index": str(index), "baseline": str(baseline).lower()}
        if baseline:
            tags["baseline_point"] = f"search.baseline[{entry['point']}]"
        role = entry.get("role") if entry.get("role") != BASELINE else ""
        if role:
            tags.update({"role": role, "replica_of": entry["group"], "confirmation": str(role == "confirm").lower()})
        tags[NOTE_TAG] = trial_note(plan.name, trial.trial_id, searched, tags.get("baseline_point"), entry)
        width = max(2, len(str(plan.spec.search.num_samples)))
        base = plan.base
        fixed = {"task": base.task} | ({} if "model.name" in searched else {"model.name": base.model.name})
        config = trial_config(base, plan.space, trial.config)
        seed = {"seed": config.seed} if role else {}
        # the config retrains as the trial ran and logs where the search logged (like best.yaml)
        config = {**config.model_dump(mode="json"), "tracking": tracking}
        label = f"{role} seed={config['seed']}" if role else ""
        return cls(run_name(index, width, searched, baseline, label), tags, {**fixed, **seed, **searched}, config)


class TrialTracking(Callback):
    """Tune callback: a nested MLflow run per trial (`TrialRun`), its per-epoch metrics and status.

    Its memory is the journal file, so the instance Tune restores on resume (unpickled from the
    experiment state) catches up on every run it created before by reading the rest of the file: a
    resumed or retried trial continues its own run, under the same name.
    Epoch metrics go to the journal (durably) at once and to MLflow batched (`flush`).
    """

    def __init__(self, tracker: Tracker, parent_run_id: str, plan: SearchPlan, journal: Path):
        self.tracker = tracker
        self.parent_run_id = parent_run_id
        self.plan = plan
        self.max_epochs = plan.epochs
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
        client, settings = self.tracker.client, self.plan.spec.search
        if NOTE_TAG not in client.get_experiment(self.tracker.experiment_id).tags:  # one someone wrote stays
            client.set_experiment_tag(self.tracker.experiment_id, NOTE_TAG, EXPERIMENT_NOTE)
        view = trials_view(self.tracker.experiment_id, self.parent_run_id, settings.metric, settings.mode)
        trials = f"[its {settings.num_samples} trials, charted]({view})"
        client.set_tag(self.parent_run_id, NOTE_TAG, f"Search `{self.plan.name}`: {trials} (best {settings.metric} first).")

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        run_id = self.journal.run_ids.get(trial.trial_id)
        if run_id is not None:  # resumed or retried: continue its run
            self.tracker.client.update_run(run_id, status="RUNNING")
            return
        index = creation_index(trial) or len(self.journal.run_ids) + 1
        tracking = {"uri": self.tracker.uri, "experiment": self.tracker.experiment}
        run = TrialRun.of(self.plan, trial, index, tracking)
        run_id = self.tracker.start_run(run.name, run.tags, parent=self.parent_run_id)
        self.tracker.log(run_id, params=run.params)
        self.tracker.client.log_text(run_id, yaml.safe_dump(run.config, sort_keys=False), CONFIG_ARTIFACT)
        # journaled last: a run the journal names is complete; one a kill left half-made is closed as an orphan
        group = group_of(trial.config, trial.trial_id)
        self.journal.record({"trial": trial.trial_id, "run": run_id, "group": group, "reference": is_reference(trial.config)})

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
        self.journal.refresh()  # the stop rules and the rungs write their reasons there
        stop_reason = self.journal.stop_reasons.get(trial.trial_id) or self.journal.cut_reasons.get(trial.trial_id)
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
