"""The space file schema (`SearchSpec`) and `load_plan(path)`: everything checked before Ray starts."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from search.budget import parse_duration
from search.constraints import Constraint, parse_constraint
from search.space import Distribution, check_dotted_key, check_space, get_dotted, parse_space
from training.config import Section, TrackingConfig, TrainConfig
from training.data.registry import check_data
from training.schema.config_file import read_yaml, suggestion, validate_model
from training.schema.errors import ConfigError
from training.schema.metric_names import metric_names
from training.schema.model_names import check_listed_model_name
from training.schema.resources import TrialResources
from training.schema.task_keys import check_reads, check_task_name, reads, unread_settings

# Nothing here imports torch, Ray or MLflow at module level: `read_plan` answers a mistake in the file,
# its paths, keys, values, metric names or timm model names in well under a second; only `check_plan`
# (the task's own checks) loads torch.


class Objective(Section):
    """One objective of a multi-objective search."""

    metric: str = Field(description="a metric the task reports")
    mode: Literal["max", "min"] = Field(description="maximize or minimize it")


class ConfirmSettings(Section):
    """After sampling, the top configs re-run at the full budget with fresh seeds, beside the baseline's
    own seeds; the best mean wins, and an edge over the baseline inside the seed noise is no win."""

    top: int = Field(
        1, ge=0, description="distinct top configs (by score, the baseline aside) re-run after sampling; 0 = no confirmation"
    )
    seeds: int = Field(2, ge=1, description="fresh seeds each confirmed config runs with (seed + 1, seed + 2, ...)")
    z: float = Field(
        2.0,
        ge=0,
        description="the winner's mean must beat the baseline's by more than z standard errors of the difference "
        "(from the measured seed noise), else the baseline is exported",
    )

    @model_validator(mode="before")
    @classmethod
    def _off(cls, value: Any) -> Any:
        """`confirm: false` (or 0) switches confirmation off."""
        return {"top": 0} if value is False or value == 0 else value


class SearchSettings(Section):
    """What to optimize and how many trials to run."""

    metric: str = Field(
        "val/macro_f1",
        description="metric the search optimizes, and the one ASHA and the progress view use "
        "(default with objectives: the first objective)",
    )
    mode: Literal["max", "min"] = Field("max", description="maximize or minimize the metric")
    objectives: list[Objective] = Field(
        default_factory=list, description="multi-objective search: the metrics Optuna optimizes together"
    )
    sampler: Literal["tpe", "nsga2"] = Field("tpe", description="Optuna sampler: multivariate TPE or NSGA-II")
    constraints: list[str] = Field(
        default_factory=list,
        description="'<metric> <op> <number>' (op <=, <, >=, >): a trial violating one is infeasible, never the best",
    )
    num_samples: int = Field(8, ge=1, description="number of trials")
    max_concurrent: int = Field(2, ge=1, description="trials running at once")
    seed: int = Field(0, description="seed of the Optuna sampler")
    baseline: list[dict[str, Any]] = Field(
        default_factory=list, description="known configs (dotted key -> value) evaluated first"
    )
    max_failures: int = Field(0, ge=0, description="retries of a crashed trial (from its last checkpoint)")
    keep_checkpoints: int = Field(
        1, ge=1, description="checkpoints kept per trial: its best k by the metric (the latest is kept too, to resume)"
    )
    score: Literal["last", "best", "ema"] = Field(
        "ema",
        description="a trial's value for the sampler, the best trial and export: its last epoch, its best epoch, "
        "or a moving average over epochs (search/score.py)",
    )
    noise_seeds: int = Field(
        2,
        ge=0,
        description="extra seeds the reference config (search.baseline[0], else the first trial to run its full "
        "budget) runs with early in the search: the seed noise that rungs, confirmation and the verdict read; 0 = none",
    )
    confirm: ConfirmSettings = Field(default_factory=ConfirmSettings)
    time_budget: float | None = Field(
        None,
        description="seconds (or 8h, 90m, 1h30m) after which no trial starts and running trials stop after "
        "their epoch; the search then ends as any search does (summary, export, verdict); none = no limit",
    )
    checkpoint_every_s: float = Field(
        10.0,
        ge=0,
        description="a trial saves a checkpoint after an epoch once this many seconds passed since its last one, "
        "and after its last epoch if it ran that long; a trial shorter than this saves none (0: every epoch)",
    )
    optuna_storage: str | None = Field(
        None,
        description="an RDB URL (sqlite:///studies.db, postgresql://user@host/db; a password belongs in e.g. ~/.pgpass, "
        "not here: the space file is logged to MLflow) holding the search's Optuna study, named as the search; "
        "default: optuna.journal in the search's folder",
    )

    @field_validator("time_budget", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value)

    @field_validator("optuna_storage")
    @classmethod
    def _rdb_url(cls, value: str | None) -> str | None:
        if value is not None and "://" not in value:
            raise ValueError("an RDB URL such as sqlite:///studies.db or postgresql://user@host/db")
        return value

    @model_validator(mode="before")
    @classmethod
    def _metric_from_first_objective(cls, value: Any) -> Any:
        """With objectives and no explicit metric, ASHA and the progress view follow the first objective."""
        if not isinstance(value, dict) or "metric" in value or not value.get("objectives"):
            return value
        first = value["objectives"][0]
        if not isinstance(first, dict) or "metric" not in first or first.get("mode") not in ("max", "min"):
            return value  # the objective's own validation reports what is wrong with it
        return {**value, "metric": first["metric"], "mode": value.get("mode", first["mode"])}


class SchedulerSettings(Section):
    """Early stopping of unpromising trials."""

    name: Literal["asha", "none"] = Field("asha", description="asha = Tune's ASHAScheduler; none = full budget")
    max_epochs: int | None = Field(None, ge=1, description="epochs of a full trial (default: base train.epochs)")
    grace_period: int = Field(1, ge=1, description="epochs every trial gets before it can be stopped")
    reduction_factor: float = Field(2.0, gt=1, description="1/reduction_factor of trials go on at each rung")
    brackets: int = Field(
        3,
        ge=1,
        description="1 = ASHA; more = asynchronous Hyperband: bracket s lets its trials run grace_period * "
        "reduction_factor**s epochs before any stop, a hedge for metrics that say little in the first epochs "
        "(default 3: the best scheduler in benchmarks/search_efficiency.py)",
    )

    margin_sds: float = Field(
        1.0,
        ge=0,
        description="a rung stops a trial only if it is below the rung's cut by more than this many seed-noise "
        "standard deviations (measured on the reference config's seeds at that epoch); 0 = plain ASHA",
    )
    keep_reference_pace: bool = Field(
        True,
        description="a rung never stops a trial that is as far along as the reference config was at that epoch "
        "(within margin_sds of its seed noise): while the reference is still at chance, every trial at chance "
        "is kept (benchmarks/rung_rules.py)",
    )
    wait_for_learning: bool = Field(
        False,
        description="stricter: no rung stops any trial before the reference's mean has left chance level (a "
        "constant prediction's score) by twice its seed noise; with a warm-up it stops almost nothing",
    )

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    def stopper(self) -> str:
        """What stops a trial early besides the stop rules, as the progress lines and the summary name it."""
        if self.name == "none":
            return "none"
        return "ASHA" if self.brackets == 1 else "Hyperband"


# 0.333 is read as a third of a card: shares within this of 1/n count as 1/n
GPU_SHARE_TOLERANCE = 0.01


class ResourceSettings(Section):
    """What one trial gets."""

    cpu: float = Field(1.0, gt=0, description="CPUs per trial (also its torch thread count)")
    gpu: float = Field(
        0.0, ge=0, description="GPU share per trial: 0, 1, or 1/n (0.5, 0.25, ...) to pack n trials on a card"
    )

    @field_validator("gpu")
    @classmethod
    def _one_card_or_a_divisor(cls, value: float) -> float:
        if value > 1:  # Runtime.for_trial trains on one device: a second card would sit idle
            raise ValueError(f"a trial trains on one GPU; use 1, or 1/n to pack n trials per card, got {value:g}")
        share = round(1 / value) if value > 0 else 0
        if value > 0 and abs(share * value - 1) > GPU_SHARE_TOLERANCE:
            raise ValueError(
                f"{value:g} does not divide a card ({int(1 / value)} trials leave {1 - int(1 / value) * value:.2g} of it idle); "
                f"use 1/n, e.g. {1 / max(share, 1):.3g} or {1 / (share + 1):.3g}"
            )
        return value

    def requested(self) -> TrialResources:
        """What the file asks for each trial; the search resolves it against the GPUs there are."""
        return TrialResources(cpu=self.cpu, gpu=self.gpu)


class StopSettings(Section):
    """Trial stopping rules beside ASHA (all off by default)."""

    metric: str = Field("train/loss", description="the loss the rules watch")
    patience_epochs: int | None = Field(None, ge=1, description="stop after this many epochs without improvement")
    max_loss_variance_increase: float | None = Field(
        None, gt=0, description="stop when loss variance grows by more than this factor (0.5 = +50%) window over window"
    )
    window: int = Field(3, ge=2, description="epochs per variance window")


class SearchSpec(Section):
    """A space file: the fixed base config, the searched keys and how to search them."""

    name: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="search name (default: the space file's stem)"
    )
    task: str = Field("classification", description="training task")
    data: dict[str, Any] = Field(default_factory=dict, description="training config `data` section")
    base: dict[str, Any] = Field(default_factory=dict, description="fixed training config values")
    space: dict[str, Any] = Field(description="dotted training-config key -> distribution")
    search: SearchSettings = Field(default_factory=SearchSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    resources: ResourceSettings = Field(default_factory=ResourceSettings)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    stop: StopSettings = Field(default_factory=StopSettings)


@dataclass
class SearchPlan:
    """A checked space file, ready for the tuner."""

    path: Path
    spec: SearchSpec
    name: str
    base: TrainConfig
    space: dict[str, Distribution]
    baseline: list[dict[str, Any]]
    constraints: list[Constraint] = field(default_factory=list)
    # base settings no trial reads (the task never does; the searched keys override them): shown, not refused
    unread: list[ConfigError] = field(default_factory=list)

    @property
    def epochs(self) -> int:
        return self.base.train.epochs

    @property
    def planned_trials(self) -> int:
        """Trials the search runs at most: sampled, the reference's noise seeds, the confirmation seeds
        (a multi-objective search is not confirmed)."""
        settings = self.spec.search
        confirm = 0 if settings.objectives else settings.confirm.top * settings.confirm.seeds
        return settings.num_samples + settings.noise_seeds + confirm


def _base_config(spec: SearchSpec) -> TrainConfig:
    """base + the top-level task/data (+ the scheduler's epoch budget), validated."""
    if "task" in spec.base:
        raise ConfigError("base.task", "set the task at the top of the file, not under base")
    merged = copy.deepcopy(spec.base)
    merged["task"] = spec.task
    merged["data"] = {**merged.get("data", {}), **spec.data}
    train = merged.get("train") or {}
    if isinstance(train, dict):  # anything else is left to the validation below, which names the key
        merged["train"] = train = {**train}
        if spec.scheduler.max_epochs:
            train["epochs"] = spec.scheduler.max_epochs
        # the trial's thread count is part of what it computes: recorded so that an exported config retrains the same
        train.setdefault("cpu_threads", spec.resources.requested().threads)
    try:
        return validate_model(TrainConfig, merged)
    except ConfigError as exc:
        parts = (exc.key or "").split(".")
        top_level = parts[0] == "task" or (parts[0] == "data" and parts[1:2] and parts[1] in spec.data)
        raise (exc if top_level else exc.with_prefix("base")) from None


def _check_metrics(spec: SearchSpec, base: TrainConfig, known: list[str]) -> None:
    # objectives first: search.metric may be a copy of the first one, and the error should name where it was written
    named = [(f"search.objectives.{i}.metric", o.metric) for i, o in enumerate(spec.search.objectives)]
    named += [("search.metric", spec.search.metric), ("stop.metric", spec.stop.metric)]
    for key, metric in named:
        if metric not in known:
            raise ConfigError(key, f"task '{base.task}' does not report '{metric}'" + suggestion(metric, known))
    seen = [o.metric for o in spec.search.objectives]
    for i, metric in enumerate(seen):
        if metric in seen[:i]:
            raise ConfigError(f"search.objectives.{i}.metric", f"'{metric}' is already an objective")


def _check_constraint_metrics(constraints: list[Constraint], task: str, known: list[str]) -> None:
    """Each of search.constraints on a metric the task reports."""
    for i, constraint in enumerate(constraints):
        if constraint.metric not in known:
            raise ConfigError(
                f"search.constraints.{i}",
                f"task '{task}' does not report '{constraint.metric}'" + suggestion(constraint.metric, known),
            )


def _baseline_points(spec: SearchSpec, base: TrainConfig, space: dict[str, Distribution]) -> list[dict[str, Any]]:
    """Each baseline completed with the base config's value for every searched key it leaves out."""
    points = []
    base_values = base.model_dump(mode="python")
    for i, given in enumerate(spec.search.baseline):
        for key in given:
            if key not in space:
                raise ConfigError(f"search.baseline.{i}.{key}", "not a searched key; fixed values belong in base")
        point = {key: given.get(key, get_dotted(base_values, key)) for key in space}
        for key, value in point.items():
            if not space[key].contains(value):
                origin = "" if key in given else " (the base value; give one in the baseline)"
                raise ConfigError(
                    f"search.baseline.{i}.{key}", f"{value!r}{origin} is outside the searched range of {key}"
                )
        points.append(point)
    return points


def _shared_detector(base: TrainConfig, space: dict[str, Distribution]) -> str | None:
    """The detector every trial uses; None when it is searched."""
    return None if "model.detector" in space else base.model.detector


def _check_searched_keys(base: TrainConfig, space: dict[str, Distribution]) -> None:
    """Every searched key is a training-config value that the task, and the detector if every trial
    has the same one, reads."""
    if not space:
        raise ConfigError("space", "expected at least one searched key")
    for key in space:
        check_dotted_key(key, f"space.{key}")
        check_reads(base.task, key, f"space.{key}", _shared_detector(base, space))


def _check_listed_names(cfg: TrainConfig) -> None:
    """The names a config holds that the torch-free lists can refute: its timm model, where the task reads one."""
    if reads(cfg.task, "model.name"):
        check_listed_model_name(cfg.model.name)


def _check_grace_period(scheduler: SchedulerSettings, base: TrainConfig) -> None:
    """ASHA's grace period fits in a full trial (base.train.epochs is scheduler.max_epochs when that is set)."""
    if scheduler.name == "asha" and scheduler.grace_period > base.train.epochs:
        budget = "scheduler.max_epochs" if scheduler.max_epochs else "base.train.epochs"
        raise ConfigError(
            "scheduler.grace_period",
            f"{scheduler.grace_period} is more than the {base.train.epochs} epochs of a full trial ({budget}); "
            f"use at most {base.train.epochs}",
        )


def _unread_base_keys(base: TrainConfig, space: dict[str, Distribution]) -> list[ConfigError]:
    """Every task reads `data`, so an unread setting always comes from the file's `base:`."""
    unread = unread_settings(base, _shared_detector(base, space))
    return [e.with_prefix("base") for e in unread if e.key not in space]


def read_plan(path: str | Path) -> SearchPlan:
    """The checks that need no torch: YAML, schema, base config, task name, grace period, data paths,
    timm model names, searched keys (known and read by the task), range ends and choices (valid config
    values), metric names, baselines, constraints. A ConfigError names file and key."""
    path = Path(path)
    try:
        spec = validate_model(SearchSpec, read_yaml(path))
        check_task_name(spec.task)
        base = _base_config(spec)
        _check_grace_period(spec.scheduler, base)
        check_data(base.data)
        try:
            _check_listed_names(base)
        except ConfigError as exc:
            raise exc.with_prefix("base") from None
        space = parse_space(spec.space)
        _check_searched_keys(base, space)
        check_space(base, space, _check_listed_names)
        constraints = [parse_constraint(text, f"search.constraints.{i}") for i, text in enumerate(spec.search.constraints)]
        known = metric_names(base.task, base)
        _check_metrics(spec, base, known)
        _check_constraint_metrics(constraints, base.task, known)
        baseline = _baseline_points(spec, base, space)
    except ConfigError as exc:
        raise exc.with_file(path) from None
    unread = [e.with_file(path) for e in _unread_base_keys(base, space)]
    return SearchPlan(path, spec, spec.name or path.stem, base, space, baseline, constraints, unread)


def check_plan(plan: SearchPlan) -> None:
    """The task's own checks of the base config and of every range end and choice (model names through
    timm, pretrained weights, freeze stages, ...): these load torch."""
    from training.tasks import get_task

    task = get_task(plan.base.task)
    try:
        task.check(plan.base)
        check_space(plan.base, plan.space, task.check)
    except ConfigError as exc:
        raise exc.with_file(plan.path) from None


def load_plan(path: str | Path) -> SearchPlan:
    """Read and check a space file; every error is a ConfigError naming the file and key."""
    plan = read_plan(path)
    check_plan(plan)
    return plan
