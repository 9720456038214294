"""The Optuna study the sampler learns from, kept in Optuna's own storage, told what each trial really was.

Ray's `OptunaSearch` tells Optuna that a trial ASHA stopped after one epoch is COMPLETE with its
one-epoch value, like a trial that ran every epoch, so TPE mixes values from different budgets. Here,
on Tune's `Searcher` interface over Optuna's ask/tell:

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
are set from the scored metrics of every COMPLETE or PRUNED trial. Each trial also carries its Tune
trial id (`trial_id`, as in MLflow and trials.jsonl), a baseline its index (`baseline`), and the rule
that scored it (`score`).

The study is named as the search and written to its storage as each trial is asked, reports an epoch
and ends: the search folder's `optuna.journal`, or the RDB `search.optuna_storage` names. It is the
study's one record: `optuna.load_study` and `optuna-dashboard` read it, and a resumed search opens it
again, so the sampler goes on from every trial told so far. Tune's snapshot of this searcher holds what
Optuna does not: which Tune trial is which Optuna trial, the running trials' epochs (the metrics that
score rules and constraints read; Optuna keeps only the search metric) and the sampler (its random
state: a resumed search does not draw its start-up configs again). A trial the storage has running that
the snapshot does not know (asked in the seconds between Tune's last snapshot and a hard kill; Tune
asks for a replacement) is told FAIL, with the user attribute `orphaned`, when the study is opened again.
"""

from __future__ import annotations

import pickle
import warnings
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.storages import BaseStorage, InMemoryStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from ray.tune.search import Searcher

from search.constraints import Constraint, is_finite
from search.score import numeric, scored_metrics
from training.schema.errors import ConfigError

ORPHANED = "asked after Tune's last saved state before a hard kill; Tune asked for a replacement"


def open_storage(location: str | None) -> BaseStorage:
    """An RDB URL (sqlite:///..., postgresql://...), else the path of a journal file; None: in memory."""
    if location is None:
        return InMemoryStorage()
    return RDBStorage(location) if "://" in location else JournalStorage(JournalFileBackend(location))


def refuse_taken_study(location: str, name: str) -> None:
    """A new search's study must not exist yet: an RDB shared by searches may hold one of that name (a
    study would go on from another search's trials). Fails in seconds on an RDB it cannot open."""
    if "://" not in location:
        return  # the journal file is in the search's own, new folder
    try:
        names = optuna.get_all_study_names(RDBStorage(location))
    except Exception as exc:  # the database's driver says what is wrong (no server, no such file, no driver)
        raise ConfigError("search.optuna_storage", f"cannot open {location}: {exc}") from None
    if name in names:
        raise ConfigError("search.optuna_storage", f"{location} already holds a study named '{name}'; choose another --name")


class TruthfulOptunaSearch(Searcher):
    """Optuna's ask/tell behind Tune's Searcher: each epoch reported, PRUNED / COMPLETE / FAIL as the trial ended."""

    def __init__(
        self,
        space: dict[str, BaseDistribution],
        metric: str | list[str],
        mode: str | list[str],
        *,
        sampler: BaseSampler,
        max_epochs: int,
        score: str,  # no default: search.score's is SearchSettings' (search/spec.py), and callers pass it
        storage: str | None = None,
        study_name: str = "search",
        points_to_evaluate: list[dict[str, Any]] | None = None,
        constraints: list[Constraint] | None = None,
        score_by: tuple[str, str] | None = None,
    ):
        super().__init__(metric=metric, mode=mode)
        self._space = space
        self._sampler = sampler
        self._location = storage  # None: an in-memory study, which ends with the process (unit tests)
        self._study_name = study_name
        self._points = list(points_to_evaluate or [])
        self._constraints = list(constraints or [])
        self._max_epochs = max_epochs
        self._score = score
        self._score_by = score_by  # (metric, mode) that ranks epochs for `best`: the search metric
        self._numbers: dict[str, int] = {}  # Tune trial id -> Optuna trial number
        self._epochs: dict[str, dict[int, dict[str, float]]] = {}  # trial id -> epoch -> numeric metrics
        self._ended: set[str] = set()  # trials the study has finished
        self._storage: BaseStorage | None = None
        self._study: optuna.Study | None = None
        self._trials: dict[str, optuna.Trial] = {}  # handles on the Optuna trials, made again after a restore

    @property
    def _multi(self) -> bool:
        return isinstance(self.metric, list)

    # ----------------------------------------------------------------- the study in its storage

    @property
    def study(self) -> optuna.Study:
        """The study, created in its storage or loaded from it on first use (after a restore: with the
        restored sampler), the trials a hard kill left running failed."""
        if self._study is None:
            self._storage = open_storage(self._location)
            modes = self.mode if self._multi else [self.mode]
            self._study = optuna.create_study(
                storage=self._storage,
                sampler=self._sampler,
                pruner=optuna.pruners.NopPruner(),  # Tune's scheduler stops trials, not Optuna
                study_name=self._study_name,
                directions=["maximize" if m == "max" else "minimize" for m in modes],
                load_if_exists=True,
            )
            self._fail_orphans()
        return self._study

    def _fail_orphans(self) -> None:
        """Tell FAIL the trials the storage has running or waiting that this searcher does not know
        (module docstring), and note which known ones have ended (a trial Tune runs again after a
        restore, ended since its snapshot, is not told twice)."""
        known = {number: trial_id for trial_id, number in self._numbers.items()}
        for frozen in self._study.get_trials(deepcopy=False):
            if frozen.state.is_finished() and frozen.number in known:
                self._ended.add(known[frozen.number])
            elif frozen.state == TrialState.RUNNING and frozen.number not in known:
                self._orphan(self._handle(frozen.number))
        while self._study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            self._orphan(self._study.ask())  # a baseline enqueued just before a kill: asked, to be failed

    def _orphan(self, trial: optuna.Trial) -> None:
        trial.set_user_attr("orphaned", ORPHANED)
        self._study.tell(trial, state=TrialState.FAIL)

    def _handle(self, number: int) -> optuna.Trial:
        """A handle on the stored trial with that number (Optuna's public storage API and Trial)."""
        study = self.study  # opened first: the storage with it
        study_id = self._storage.get_study_id_from_name(self._study_name)
        return optuna.Trial(study, self._storage.get_trial_id_from_study_id_trial_number(study_id, number))

    def _trial(self, trial_id: str) -> optuna.Trial:
        if trial_id not in self._trials:
            self._trials[trial_id] = self._handle(self._numbers[trial_id])
        return self._trials[trial_id]

    def _running(self, trial_id: str) -> bool:
        _ = self.study  # opened: what has ended is known
        return trial_id in self._numbers and trial_id not in self._ended

    # ----------------------------------------------------------------- Tune's Searcher interface

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec) -> bool:
        return False  # space, metric and mode are the plan's, given when built

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        return False  # Tune's ConcurrencyLimiter limits (constant liar covers the trials still running)

    def suggest(self, trial_id: str) -> dict[str, Any]:
        if trial_id not in self._numbers:
            index = len(self._numbers)
            if index < len(self._points):
                # enqueued as it is handed out: a baseline a hard kill lost comes again in its place
                self.study.enqueue_trial(self._points[index], user_attrs={"baseline": index})
            trial = self.study.ask(fixed_distributions=self._space)
            trial.set_user_attr("trial_id", trial_id)
            self._numbers[trial_id] = trial.number
            self._trials[trial_id] = trial
        return dict(self._trial(trial_id).params)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if self._running(trial_id):
            self._record(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if not self._running(trial_id):
            return
        if result and not error:
            self._record(trial_id, result)
        state, values = self.outcome(trial_id, result, error)
        trial = self._trial(trial_id)
        trial.set_user_attr("score", self._score)
        if self._multi:
            trial.set_user_attr("epochs", [[h["epoch"], *(h.get(m) for m in self.metric)] for h in self.history(trial_id)])
        if state != TrialState.FAIL:
            self._set_constraints(trial, self._metrics(self.history(trial_id)))
        self.study.tell(trial, values if self._multi or values is None else values[0], state=state)
        self._ended.add(trial_id)

    def save(self, checkpoint_path: str) -> None:
        """What Tune's snapshot keeps of this searcher (module docstring); the study is in its storage."""
        running = {t: epochs for t, epochs in self._epochs.items() if t not in self._ended}
        with open(checkpoint_path, "wb") as handle:
            pickle.dump({"trials": self._numbers, "epochs": running, "sampler": self._sampler}, handle)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as handle:
            saved = pickle.load(handle)
        self._numbers, self._epochs, self._sampler = saved["trials"], saved["epochs"], saved["sampler"]
        self._ended, self._study, self._trials = set(), None, {}  # the study is opened again, from its storage

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles the searcher with the tuner; the study is opened again from its storage
        return {**self.__dict__, "_storage": None, "_study": None, "_trials": {}}

    # ----------------------------------------------------------------- what each trial was

    def history(self, trial_id: str) -> list[dict[str, Any]]:
        """The trial's epochs so far, in order, as the journal keeps them."""
        return [{"epoch": e, **m} for e, m in sorted(self._epochs.get(trial_id, {}).items())]

    def _record(self, trial_id: str, result: dict[str, Any]) -> None:
        """Keep the epoch's metrics (a resumed trial's repeated epoch replaces the old one) and, in a
        single-objective study, report the search metric as the intermediate value at that step."""
        epoch = int(result.get("epoch", 0))
        if epoch < 1:
            return
        self._epochs.setdefault(trial_id, {})[epoch] = numeric(result)
        value = result.get(self.metric) if not self._multi else None
        if is_finite(value):
            with warnings.catch_warnings():
                # Optuna keeps a step's first value; a resumed trial's repeated epoch is not news to it
                warnings.filterwarnings("ignore", message="The reported value is ignored")
                self._trial(trial_id).report(float(value), epoch)

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

    def _set_constraints(self, trial: optuna.Trial, metrics: dict[str, float]) -> None:
        """Optuna's constraint values (> 0 = infeasible) from the trial's scored metrics."""
        if not metrics:
            return
        for constraint in self._constraints:
            trial.set_constraint(constraint.text, constraint.violation(metrics))
