"""The Optuna study the sampler learns from, told what each trial really was.

Ray's `OptunaSearch` tells Optuna that a trial ASHA stopped after one epoch is COMPLETE with its
one-epoch value, like a trial that ran every epoch, so TPE mixes values from different budgets. Here:

- every epoch's search metric is an intermediate value of the Optuna trial (step = epoch), including
  the epoch on which ASHA stopped it (Tune does not pass that one to `on_trial_result`);
- a trial that ended before `max_epochs` without an error and not by a stop rule (ASHA stopped it)
  is PRUNED: TPE ranks pruned trials below finished ones, by the step they reached, then the value;
- a trial that ran every epoch (or a plateau/variance rule ended, `stop_reason` in its result) is
  COMPLETE with its score (`search.score`: last, best or ema; see search/score.py);
- a trial that crashed, never reported, or whose score is not finite (diverged) is FAIL, which
  samplers ignore.

Multi-objective studies: Optuna keeps no intermediate values there (`Trial.report` refuses them), so
the per-epoch objective values go to the trial's user attribute `epochs`; a stopped trial is PRUNED
without values (NSGA-II and MOTPE learn from the finished ones). Constraints (`Trial.set_constraint`)
are set from the scored metrics of every COMPLETE or PRUNED trial. Tune pickles this object whole
(`save`/`restore`), the per-epoch record included, so a resumed search goes on from the same study.
"""

from __future__ import annotations

from typing import Any, ClassVar

from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from search.constraints import Constraint, is_finite
from search.score import numeric, scored_metrics


class TruthfulOptunaSearch(OptunaSearch):
    """OptunaSearch telling the study each epoch, and PRUNED / COMPLETE / FAIL as the trial ended."""

    # Benchmarks only (benchmarks/search_efficiency.py, "ours_legacy"): Ray's behaviour, every ended
    # trial COMPLETE with its last value, to measure what telling the truth changes.
    legacy_tell: ClassVar[bool] = False

    def __init__(
        self,
        *args,
        constraints: list[Constraint] | None = None,
        max_epochs: int,
        score: str = "last",
        score_by: tuple[str, str] | None = None,
        **kwargs,
    ):
        self._constraints = list(constraints or [])
        self._max_epochs = max_epochs
        self._score = score
        self._score_by = score_by  # (metric, mode) that ranks epochs for `best`: the search metric
        self._epochs: dict[str, dict[int, dict[str, float]]] = {}  # trial id -> epoch -> numeric metrics
        super().__init__(*args, **kwargs)

    @property
    def _multi(self) -> bool:
        return isinstance(self.metric, list)

    def history(self, trial_id: str) -> list[dict[str, Any]]:
        """The trial's epochs so far, in order, as the journal keeps them."""
        return [{"epoch": e, **m} for e, m in sorted(self._epochs.get(trial_id, {}).items())]

    def _record(self, trial_id: str, result: dict[str, Any]) -> None:
        """Keep the epoch's metrics (a resumed trial's repeated epoch replaces the old one) and, in a
        single-objective study, report the search metric as the intermediate value at that step."""
        epoch = int(result.get("epoch", 0))
        if epoch < 1:
            return
        epochs = self._epochs.setdefault(trial_id, {})
        first_report = epoch not in epochs  # Optuna keeps the first value of a step (pickled with this record)
        epochs[epoch] = numeric(result)
        value = result.get(self.metric) if not self._multi else None
        if first_report and is_finite(value):
            self._ot_trials[trial_id].report(float(value), epoch)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if self.legacy_tell:
            return super().on_trial_result(trial_id, result)
        if trial_id in self._ot_trials and trial_id not in self._completed_trials:
            self._record(trial_id, result)

    def outcome(self, trial_id: str, result: dict | None, error: bool) -> tuple[TrialState, list[float] | None]:
        """(state, values) to tell Optuna about an ended trial."""
        history = self.history(trial_id)
        if error or not history:
            return TrialState.FAIL, None
        metrics = self._metrics(history)
        names = self.metric if self._multi else [self.metric]
        values = [metrics.get(name) for name in names]
        if not all(is_finite(v) for v in values):
            return TrialState.FAIL, None  # diverged, or never reported the metric
        stopped_by_scheduler = history[-1]["epoch"] < self._max_epochs and not (result or {}).get("stop_reason")
        return (TrialState.PRUNED, None) if stopped_by_scheduler else (TrialState.COMPLETE, values)

    def _metrics(self, history: list[dict[str, Any]]) -> dict[str, float]:
        metric, mode = self._score_by or ((self.metric[0], self.mode[0]) if self._multi else (self.metric, self.mode))
        return scored_metrics(history, self._score, metric, mode)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self._ot_trials or trial_id in self._completed_trials:
            return
        if self.legacy_tell:
            self._set_constraints(trial_id, numeric(result or {}))
            return super().on_trial_complete(trial_id, result, error)
        if result and not error:
            self._record(trial_id, result)
        state, values = self.outcome(trial_id, result, error)
        ot_trial = self._ot_trials[trial_id]
        ot_trial.set_user_attr("score", self._score)
        if self._multi:
            ot_trial.set_user_attr("epochs", [[h["epoch"], *(h.get(m) for m in self.metric)] for h in self.history(trial_id)])
        if state != TrialState.FAIL:
            self._set_constraints(trial_id, self._metrics(self.history(trial_id)))
        self._ot_study.tell(ot_trial, values if self._multi or values is None else values[0], state=state)
        self._completed_trials.add(trial_id)

    def _set_constraints(self, trial_id: str, metrics: dict[str, float]) -> None:
        """Optuna's constraint values (> 0 = infeasible) from the trial's scored metrics."""
        if not metrics:
            return
        for constraint in self._constraints:
            self._ot_trials[trial_id].set_constraint(constraint.text, constraint.violation(metrics))
