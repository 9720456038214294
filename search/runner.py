"""One search from checked plan to summary: results folder, Ray, MLflow parent run, tuner, best config."""

from __future__ import annotations

import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console

from search.export import best_config_yaml
from search.progress import Progress
from search.spec import SearchPlan
from search.summary import numeric_metrics, pick_best, print_summary, trial_status, write_summary
from search.tracking import TrialTracking
from training.tracking import Tracker
from search.tuner import RunOptions, build_tuner, gpu_per_trial, init_ray, searched_values, trial_params
from search.trainable import trial_config
from training.errors import ConfigError


def check_out_dir_free(out_dir: Path) -> None:
    """A second search under the same name never overwrites the first."""
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ConfigError("--name", f"{out_dir} already holds a search; choose another --name (or remove that folder)")


def experiment_name(plan: SearchPlan) -> str:
    """The space file's tracking.experiment, else the search name."""
    tracking = plan.spec.tracking
    return tracking.experiment if "experiment" in tracking.model_fields_set else plan.name


def search_params(plan: SearchPlan, gpu: float) -> dict[str, Any]:
    spec = plan.spec
    params = {f"search.{k}": v for k, v in spec.search.model_dump(exclude={"baseline"}).items()}
    params.update({f"scheduler.{k}": v for k, v in spec.scheduler.model_dump().items()})
    params.update({"resources.cpu": spec.resources.cpu, "resources.gpu": gpu, "task": plan.base.task})
    params.update({f"space.{k}": v for k, v in spec.space.items()})
    return params


def collect_trials(
    results, plan: SearchPlan, tracking_cb: TrialTracking, tracking: dict[str, str]
) -> list[dict[str, Any]]:
    """One record per trial; its config is complete and retrainable, logging where the search logged."""
    trials = []
    for result in results:
        metrics = result.metrics or {}
        trial_id = metrics.get("trial_id") or Path(result.path).name
        epochs = int(metrics.get("epoch", 0))
        trials.append(
            {
                "trial_id": trial_id,
                "status": trial_status(result.error, epochs, plan.epochs),
                "epochs": epochs,
                "metrics": numeric_metrics(metrics),
                "params": searched_values(plan)(result.config),
                "config": {**trial_config(plan.base, plan.space, result.config).model_dump(mode="json"), "tracking": tracking},
                "mlflow_run_id": tracking_cb.run_ids.get(trial_id),
                "history": tracking_cb.history.get(trial_id, []),
                "error": str(result.error).strip().splitlines()[-1] if result.error else None,
            }
        )
    return sorted(trials, key=lambda t: t["trial_id"])


def run_search(plan: SearchPlan, options: RunOptions, console: Console) -> dict[str, Any]:
    """Run the whole search; returns the summary also written to OUT/summary.json."""
    out_dir = options.out_dir.resolve()
    check_out_dir_free(out_dir)
    started = time.time()
    console.print(f"search '{plan.name}': {plan.spec.search.num_samples} trials, results in {out_dir}")
    init_ray(options.address)
    gpu = gpu_per_trial(plan.spec.resources.gpu, options.require_gpu, console)
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(plan.path, out_dir / "space.yaml")
    tracker = Tracker(options.tracking_uri, experiment_name(plan), artifact_root=out_dir.parent / "mlartifacts")
    parent = tracker.start_run(plan.name, tags={"search": plan.name, "space_file": str(plan.path)})
    tracker.log(parent, params=search_params(plan, gpu))
    tracker.log_artifact(parent, out_dir / "space.yaml")
    tracking = TrialTracking(tracker, parent, trial_params(plan), plan.epochs)
    settings = plan.spec.search
    progress = Progress(settings.metric, settings.mode, settings.num_samples, list(plan.space), searched_values(plan), console)
    status = "FAILED"
    try:
        results = build_tuner(plan, gpu, out_dir, [tracking, progress]).fit()
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        if status != "FINISHED":
            tracker.end_run(parent, status)
    summary = {
        "name": plan.name,
        "space_file": str(plan.path),
        "out_dir": str(out_dir),
        "task": plan.base.task,
        "metric": settings.metric,
        "mode": settings.mode,
        "space_keys": list(plan.space),
        "max_epochs": plan.epochs,
        "started_at": datetime.fromtimestamp(started, timezone.utc).isoformat(),
        "duration_s": time.time() - started,
        "tracking": {"uri": tracker.uri, "experiment": experiment_name(plan), "parent_run_id": parent},
    }
    trial_tracking = {"uri": tracker.uri, "experiment": experiment_name(plan)}
    summary["trials"] = collect_trials(results, plan, tracking, trial_tracking)
    best = pick_best(summary["trials"], settings.metric, settings.mode)
    summary["best"] = best
    finish_parent(tracker, parent, summary, out_dir)
    print_summary(summary, console)
    return summary


def finish_parent(tracker: Tracker, parent: str, summary: dict[str, Any], out_dir: Path) -> None:
    """Best trial's metrics and config onto the parent run, summary and best.yaml beside the results."""
    best = summary["best"]
    if best is not None:
        (out_dir / "best.yaml").write_text(best_config_yaml(summary))
        tags = {"best_trial_id": best["trial_id"], "best_run_id": best["mlflow_run_id"]}
        tracker.log(parent, metrics=best["metrics"], params={f"best.{k}": v for k, v in best["params"].items()}, tags=tags)
        tracker.log_artifact(parent, out_dir / "best.yaml")
    tracker.log_artifact(parent, write_summary(out_dir, summary))
    tracker.end_run(parent, "FINISHED" if best is not None else "FAILED")
