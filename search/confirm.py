"""The searcher Tune runs: the sampler's trials, the reference config's noise seeds, then confirmation.

`ConfirmingSearch` wraps the Optuna searcher on Tune's public `Searcher` interface and hands out, in
this order of priority:

1. replicas waiting in its queue: the reference config with `noise_seeds` other seeds (queued as soon
   as the reference is known: search.baseline[0] when it is suggested, else the first trial to run
   its full budget), and, after sampling, each top config with `confirm.seeds` fresh seeds;
2. the sampler's `num_samples` trials (the baselines first), told to the sampler as before;
3. once every sampled trial has ended: the confirmation of the `confirm.top` best distinct configs
   by the search's score (the reference aside), queued as replicas;
4. `Searcher.FINISHED`, recorded in the trial journal, when nothing is left to hand out. Past the
   search's time budget (its deadline is in the journal: search/budget.py) nothing is handed out.

Replicas are ordinary Tune trials (packed, checkpointed, resumed like the others) whose config
carries a `replica` entry (search/roles.py); the sampler never hears of them, so it learns from one
run per config, as it did. The state is plain data (`get_state`), which Tune saves with its
experiment snapshots, so a resumed search goes on with the same queue and plan.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from ray.tune.search import Searcher

from search.constraints import Constraint, feasible, is_finite
from search.journal import TrialJournal
from search.roles import BASELINE, CONFIRM, NOISE, REPLICA_KEY
from search.score import numeric, scored_metrics
from search.spec import ConfirmSettings


IDLE_ASKS = 15  # Tune's asks (one a second) with nothing running past the deadline before FINISHED


class ConfirmingSearch(Searcher):
    """Sampling, noise seeds and confirmation as one stream of Tune trials (module docstring)."""

    def __init__(
        self,
        searcher: Searcher,
        *,
        num_samples: int,
        baselines: int,
        noise_seeds: int,
        confirm: ConfirmSettings,
        base_seed: int,
        max_epochs: int,
        score: tuple[str, str, str],
        constraints: list[Constraint] | None = None,
        journal: Path | None = None,
    ):
        self.searcher = searcher  # Tune saves a wrapper's `searcher` itself, and our state beside it
        super().__init__(metric=searcher.metric, mode=searcher.mode)
        self.num_samples, self.baselines, self.noise_seeds = num_samples, baselines, noise_seeds
        self.confirm_top, self.confirm_seeds = confirm.top, confirm.seeds
        self.base_seed, self.max_epochs = base_seed, max_epochs
        self.score = score  # (rule, metric, mode) ranking configs for confirmation: the search's score
        self.constraints = list(constraints or [])
        self.ranked_metrics = {score[1], *(c.metric for c in self.constraints)}
        self.journal_path = journal
        self._journal: TrialJournal | None = None
        self.state: dict[str, Any] = {
            "configs": {},  # trial id -> the config handed out (with its `replica` entry, if any)
            "sampled": [],  # trial ids of the sampler's trials, in order
            "histories": {},  # trial id -> [{epoch, metrics...}]
            "ended": {},  # trial id -> "ok" | "error"
            "queue": [],  # replica configs waiting to be handed out
            "reference": None,  # group whose seeds measure the noise
            "confirmed": None,  # groups chosen for confirmation, once planned
            "finished": False,
        }

    # ----------------------------------------------------------------- Tune's Searcher interface

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        return False  # Tune's ConcurrencyLimiter counts every trial, replicas included

    def suggest(self, trial_id: str) -> dict | str | None:
        config = self._next(trial_id)
        if isinstance(config, dict):
            self.state["configs"][trial_id] = config
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._record(trial_id, result)
        if trial_id in self.state["sampled"]:
            self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if result and not error:
            self._record(trial_id, result)
        self.state["ended"][trial_id] = "error" if error else "ok"
        if trial_id in self.state["sampled"]:
            self.searcher.on_trial_complete(trial_id, result=result, error=error)
            if self.state["reference"] is None and not error and self._epochs(trial_id) >= self.max_epochs:
                self._queue_noise(trial_id)  # no baseline: the first config to run its full budget

    def get_state(self) -> dict:
        return copy.deepcopy(self.state)

    def set_state(self, state: dict) -> None:
        self.state = copy.deepcopy(state)

    # ----------------------------------------------------------------- what comes next

    def _next(self, trial_id: str) -> dict | str | None:
        state = self.state
        if self.journal is not None and self.journal.past_deadline():
            return self._out_of_time()
        if state["queue"]:
            return state["queue"].pop(0)
        if len(state["sampled"]) < self.num_samples:
            return self._sample(trial_id)
        if state["confirmed"] is None:
            if not all(t in state["ended"] for t in state["sampled"]):
                return None  # confirmation ranks the finished sample: wait for its last trials
            self._plan_confirmation()
            if state["queue"]:
                return state["queue"].pop(0)
        if any(t not in state["ended"] for t in state["configs"]) and state["reference"] is None:
            return None  # a trial still running may become the reference and bring noise seeds
        self._finish()
        return Searcher.FINISHED

    def _out_of_time(self) -> str | None:
        """Past the deadline no trial starts. search/stopping.py (BudgetWatch) ends the run once every
        trial stopped, the way Ctrl-C does, so that `resume --time-budget` can go on. Tune asks us again
        every second when nothing runs; if that goes on (no trial ever started, or the watch missed the
        moment), FINISHED ends the run for good rather than let Tune wait."""
        running = [t for t in self.state["configs"] if t not in self.state["ended"]]
        self.state["idle_asks"] = 0 if running else self.state.get("idle_asks", 0) + 1
        if not self.state["configs"] or self.state["idle_asks"] > IDLE_ASKS:
            return Searcher.FINISHED
        return None

    def _sample(self, trial_id: str) -> dict | str | None:
        config = self.searcher.suggest(trial_id)
        if not isinstance(config, dict):
            return config
        index = len(self.state["sampled"])
        self.state["sampled"].append(trial_id)
        if index < self.baselines:
            reference = index == 0 and self.noise_seeds > 0
            config = {**config, REPLICA_KEY: {"role": BASELINE, "group": trial_id, "point": index, "reference": reference}}
            if reference:
                self._queue_noise(trial_id, config)
        return config

    def _queue_noise(self, group: str, config: dict | None = None) -> None:
        if self.noise_seeds < 1:
            return
        self.state["reference"] = group
        self._queue(group, NOISE, self.noise_seeds, config, reference=True)

    def _queue(self, group: str, role: str, seeds: int, config: dict | None = None, reference: bool = False) -> None:
        original = {k: v for k, v in (config or self.state["configs"][group]).items() if k != REPLICA_KEY}
        for i in range(1, seeds + 1):
            entry = {"role": role, "group": group, "seed": self.base_seed + i, "reference": reference}
            self.state["queue"].append({**original, REPLICA_KEY: entry})

    def _plan_confirmation(self) -> None:
        chosen = self.top_configs() if self.confirm_top > 0 else []
        self.state["confirmed"] = chosen
        for group in chosen:
            self._queue(group, CONFIRM, self.confirm_seeds)

    def top_configs(self) -> list[str]:
        """The best `confirm.top` sampled trials by score with distinct configs, the reference's aside."""
        rule, metric, mode = self.score
        sign = 1.0 if mode == "max" else -1.0
        reference = self.state["reference"]
        seen = [self._values(reference)] if reference else []
        scored = []
        for trial_id in self.state["sampled"]:
            if self.state["ended"].get(trial_id) != "ok" or not self.state["histories"].get(trial_id):
                continue
            metrics = scored_metrics(self.state["histories"][trial_id], rule, metric, mode)
            if is_finite(metrics.get(metric)) and feasible(metrics, self.constraints):
                scored.append((sign * metrics[metric], trial_id))
        chosen = []
        for _, trial_id in sorted(scored, key=lambda item: -item[0]):
            values = self._values(trial_id)
            if values in seen:
                continue
            seen.append(values)
            chosen.append(trial_id)
            if len(chosen) == self.confirm_top:
                break
        return chosen

    def _finish(self) -> None:
        if not self.state["finished"] and self.journal is not None:
            self.journal.record({"search": "finished", "confirmed": self.state["confirmed"]})
        self.state["finished"] = True

    @property
    def journal(self) -> TrialJournal | None:
        """The trial journal (where the time budget's deadline is), read incrementally."""
        if self._journal is None and self.journal_path is not None:
            self._journal = TrialJournal(self.journal_path)
        return self._journal

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_journal": None}

    # ----------------------------------------------------------------- bookkeeping

    def _values(self, trial_id: str) -> dict[str, Any]:
        return {k: v for k, v in self.state["configs"].get(trial_id, {}).items() if k != REPLICA_KEY}

    def _record(self, trial_id: str, result: dict) -> None:
        epoch = int(result.get("epoch", 0))
        if epoch < 1:
            return
        # only what ranking reads (the score's metric, the constraints'): Tune snapshots this state every few seconds
        kept = {k: v for k, v in numeric(result).items() if k in self.ranked_metrics}
        history = [h for h in self.state["histories"].get(trial_id, []) if h["epoch"] < epoch]
        self.state["histories"][trial_id] = history + [{"epoch": epoch, **kept}]

    def _epochs(self, trial_id: str) -> int:
        history = self.state["histories"].get(trial_id) or [{"epoch": 0}]
        return history[-1]["epoch"]
