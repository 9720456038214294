"""Ray Tune + an Optuna study in its own storage (seeded TPE or NSGA-II, one or several objectives,
constraints) wrapped in the noise-seed and confirmation searcher + noise-aware ASHA + fractional
resources + MLflow, for one plan."""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search.space import decode_trial, encode_point, optuna_space
from search.spec import SearchPlan
from training.schema.errors import ConfigError
from training.schema.resources import TrialResources

# Before Ray is imported: no auto CSV/JSON/TensorBoard loggers (MLflow is our record), no log dedup noise.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
# Snapshot the experiment (trials, searcher, scheduler) every few seconds: a hard kill loses at most that.
os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "5")

import optuna  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)
logging.getLogger("mlflow").setLevel(logging.WARNING)
# Tune logs each failed trial's traceback at ERROR; the progress view and MLflow already report it.
logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
import ray  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune.schedulers import FIFOScheduler  # noqa: E402

from search.confirm import ConfirmingSearch  # noqa: E402
from search.layout import TUNE_DIR  # noqa: E402
from search.rungs import NoiseAwareHyperband  # noqa: E402
from search.sampler import make_sampler, objectives  # noqa: E402
from search.study import TruthfulOptunaSearch  # noqa: E402
from search.trainable import make_trainable  # noqa: E402


@dataclass
class RunOptions:
    """Command-line settings of one `search run`."""

    out_dir: Path
    tracking_uri: str
    address: str | None = None
    require_gpu: bool = False
    storage: str | None = None  # Tune storage (path or URI shared by all nodes); default: out_dir


def tune_location(out_dir: Path, name: str, storage: str | None) -> tuple[str, str]:
    """(storage_path, experiment name) of Tune's folder: OUT/tune, or STORAGE/NAME on shared storage."""
    return (str(out_dir), TUNE_DIR) if storage is None else (storage, name)


# Ray's session folder holds Unix sockets, whose paths may not exceed 107 bytes.
MAX_RAY_DIR_LENGTH = 38  # + "/session_<date>_<time>_<us>_<pid>/sockets/plasma_store" <= 107


def ray_temp_dir(results_dir: Path) -> str | None:
    """RESULTS/ray for a local Ray's sessions and logs (so they stay with the results and are removed
    with them), unless its path is too long for Ray's sockets: then Ray's default."""
    folder = (results_dir / "ray").resolve()
    return str(folder) if len(str(folder)) <= MAX_RAY_DIR_LENGTH else None


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds on a dead host:port (Ray itself retries for minutes before giving up)."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError) as exc:
        raise ConfigError("--address", f"cannot reach a Ray cluster at {address}: {exc}") from None


def init_ray(address: str | None, results_dir: Path) -> None:
    """Local Ray by default, an existing cluster with `address`; Ray's console noise stays in its logs."""
    if ray.is_initialized():
        return
    if address:
        check_reachable(address)
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
            ignore_reinit_error=True,
            _temp_dir=None if address else ray_temp_dir(results_dir),
        )
    except ConnectionError as exc:
        hint = "" if os.environ.get("RAY_AUTH_MODE") else " (a cluster with token auth needs RAY_AUTH_MODE=token here)"
        raise ConfigError("--address", f"cannot reach a Ray cluster at {address}: {exc}{hint}") from None


def cluster_gpus() -> float:
    """The GPUs of the Ray cluster this driver is connected to (what `resolve_resources` weighs a GPU share against)."""
    return ray.cluster_resources().get("GPU", 0)


def build_searcher(plan: SearchPlan, storage: str | None = None) -> TruthfulOptunaSearch:
    """One metric and mode, or lists of them for a multi-objective search; the study, named as the search,
    lives in `storage` (a journal file's path or an RDB URL; None: in memory) and is told each epoch and
    how each trial ended (search/study.py)."""
    metrics, modes = objectives(plan)
    multi = bool(plan.spec.search.objectives)
    return TruthfulOptunaSearch(
        optuna_space(plan.space),
        metric=metrics if multi else metrics[0],
        mode=modes if multi else modes[0],
        sampler=make_sampler(plan),
        max_epochs=plan.epochs,
        storage=storage,
        study_name=plan.name,
        points_to_evaluate=[encode_point(plan.space, point) for point in plan.baseline],
        constraints=plan.constraints,
        score=plan.spec.search.score,
        score_by=(plan.spec.search.metric, plan.spec.search.mode),
    )


def confirming(plan: SearchPlan, searcher: TruthfulOptunaSearch, journal: Path | None = None) -> ConfirmingSearch:
    """The sampler's searcher, plus the reference config's noise seeds and the confirmation of the top
    configs (search/confirm.py). A multi-objective search has a front, not one winner: no confirmation."""
    settings = plan.spec.search
    confirm = settings.confirm.model_copy(update={"top": 0}) if settings.objectives else settings.confirm
    return ConfirmingSearch(
        searcher,
        num_samples=settings.num_samples,
        baselines=len(plan.baseline),
        noise_seeds=settings.noise_seeds,
        confirm=confirm,
        base_seed=plan.base.seed,
        max_epochs=plan.epochs,
        score=(settings.score, settings.metric, settings.mode),
        constraints=plan.constraints,
        journal=journal,
    )


def build_scheduler(plan: SearchPlan, journal: Path | None = None):
    """ASHA (or async Hyperband with brackets > 1) whose rungs do not cut within the seed noise or
    before the reference config has left chance (search/rungs.py); `none`: every trial runs out."""
    settings = plan.spec.scheduler
    if settings.name == "none":
        return FIFOScheduler()
    return NoiseAwareHyperband(
        metric=plan.spec.search.metric,
        mode=plan.spec.search.mode,
        max_t=plan.epochs,
        grace_period=settings.grace_period,
        reduction_factor=settings.reduction_factor,
        brackets=settings.brackets,
        seed=plan.spec.search.seed,
        margin_sds=settings.margin_sds,
        wait_for_learning=settings.wait_for_learning,
        pace=settings.keep_reference_pace,
        journal=journal,
    )


def searched_values(plan: SearchPlan):
    def values(config: dict[str, Any]) -> dict[str, Any]:
        return decode_trial(plan.space, config)

    return values


def resourced_trainable(plan: SearchPlan, resources: TrialResources):
    """The trial function, placed by Ray on the resources its torch runtime then uses."""
    trainable = make_trainable(plan.base, plan.space, resources, plan.spec.search.checkpoint_every_s)
    return tune.with_resources(trainable, {"cpu": resources.cpu, "gpu": resources.gpu})


def build_tuner(
    plan: SearchPlan,
    resources: TrialResources,
    location: tuple[str, str],
    callbacks: list,
    stopper: tune.Stopper | None,
    journal: Path | None = None,
    study_storage: str | None = None,
) -> tune.Tuner:
    """The search's tuner; the searcher ends it (num_samples -1: trials until it says FINISHED); the
    Optuna study lives in `study_storage` (see build_searcher)."""
    spec = plan.spec
    storage_path, name = location
    return tune.Tuner(
        resourced_trainable(plan, resources),
        tune_config=tune.TuneConfig(
            metric=spec.search.metric,
            mode=spec.search.mode,
            search_alg=confirming(plan, build_searcher(plan, study_storage), journal),
            scheduler=build_scheduler(plan, journal),
            num_samples=-1,
            max_concurrent_trials=spec.search.max_concurrent,
            reuse_actors=True,
            trial_dirname_creator=lambda trial: trial.trial_id,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage_path,
            callbacks=callbacks,
            stop=stopper,
            verbose=0,
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=spec.search.keep_checkpoints,
                checkpoint_score_attribute=spec.search.metric,
                checkpoint_score_order=spec.search.mode,
            ),
            failure_config=tune.FailureConfig(max_failures=spec.search.max_failures),
        ),
    )
