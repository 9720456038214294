"""One search from checked plan to summary: results folder, Ray, MLflow parent run, tuner, best config.

`run_search` starts a search; `resume_search` continues one that was interrupted (Ctrl-C, SIGTERM,
SIGKILL, reboot) from what it left on disk: `search.json` (where things are), `space.yaml` (the
effective space), the trial journal, the Optuna study in its storage (`optuna.journal` unless an RDB
holds it) and Tune's own experiment state (trials, searcher, scheduler).
"""

from __future__ import annotations

import shutil
import signal
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from ray import tune

from search.budget import clock_text
from search.constraints import is_finite
from search.decide import decide
from search.export import best_config_yaml
from search.journal import TrialJournal
from search.layout import BEST_FILE, JOURNAL_FILE, SPACE_FILE, SUMMARY_FILE
from search.progress import Progress
from search.report.pareto import write_pareto
from search.resources import resolve_resources
from search.roles import group_of, replica
from search.spec import SearchPlan, load_plan
from search.state import (
    claim_out_dir,
    discard_unstarted,
    read_state,
    record_resources,
    refuse_finished,
    stored_resources,
    stored_study,
    study_record,
    write_atomic,
    write_state,
)
from search.stopping import BudgetWatch, LossRules
from search.study import refuse_taken_study
from search.summary import (
    is_feasible,
    numeric_metrics,
    print_summary,
    score_text,
    trial_metrics,
    trial_status,
    write_summary,
)
from search.tracking import TrialTracking
from search.trainable import trial_config
from search.tuner import (
    RunOptions,
    build_tuner,
    cluster_gpus,
    init_ray,
    resourced_trainable,
    searched_values,
    tune_location,
)
from search.verdict import verdict
from training.schema.errors import ConfigError
from training.schema.resources import TrialResources
from training.tracking import Tracker


def experiment_name(plan: SearchPlan) -> str:
    """The space file's tracking.experiment, else the search name."""
    tracking = plan.spec.tracking
    return tracking.experiment if "experiment" in tracking.model_fields_set else plan.name


def search_params(plan: SearchPlan, resources: TrialResources) -> dict[str, Any]:
    spec = plan.spec
    params = {f"search.{k}": v for k, v in spec.search.model_dump(exclude={"baseline"}).items()}
    params.update({f"scheduler.{k}": v for k, v in spec.scheduler.model_dump().items()})
    params.update({"resources.cpu": resources.cpu, "resources.gpu": resources.gpu, "task": plan.base.task})
    params.update({f"space.{k}": v for k, v in spec.space.items()})
    return params


def write_effective_space(plan: SearchPlan, out_dir: Path) -> Path:
    """The space as run (command-line overrides included): what resume reads back."""
    spec = plan.spec.model_dump(mode="json", exclude_unset=True)
    spec["name"] = plan.name
    text = f"# effective space of search '{plan.name}' (from {plan.path})\n" + yaml.safe_dump(spec, sort_keys=False)
    return write_atomic(out_dir / SPACE_FILE, text)


def run_search(plan: SearchPlan, options: RunOptions, console: Console) -> dict[str, Any] | None:
    """Run a new search; returns the summary also written to OUT/summary.json (None when interrupted).

    space.yaml and search.json come first, before Ray starts: from then on `resume` continues the
    search, whatever second it is killed at (before that, the folder holds no search and `run` takes it)."""
    out_dir = options.out_dir.resolve()
    claim_out_dir(out_dir)
    study = study_record(out_dir, plan.name, plan.spec.search.optuna_storage)
    refuse_taken_study(study["storage"], study["study"])
    out_dir.mkdir(parents=True, exist_ok=True)
    write_effective_space(plan, out_dir)
    storage_path, name = tune_location(out_dir, plan.name, options.storage)
    state = {
        "name": plan.name,
        "space_file": str(plan.path.resolve()),
        "out_dir": str(out_dir),
        "tune_path": f"{storage_path.rstrip('/')}/{name}",
        "address": options.address,
        "require_gpu": options.require_gpu,
        "resources": None,  # decided once Ray is up
        "optuna": study,
        "started_at": datetime.now(timezone.utc).isoformat(),
        "tracking": {"uri": options.tracking_uri, "experiment": experiment_name(plan), "parent_run_id": None},
    }
    write_state(out_dir, state)
    if plan.spec.search.time_budget:
        set_deadline(out_dir, plan.spec.search.time_budget)
    console.print(f"search '{plan.name}': {plan_text(plan)}, results in {out_dir}")
    try:
        return launch(plan, state, console)
    except ConfigError:
        if state["tracking"]["parent_run_id"] is None:  # refused before anything ran: leave nothing behind
            discard_unstarted(out_dir)
        raise


def plan_text(plan: SearchPlan) -> str:
    """`10 trials + 2 noise seeds of the baseline + confirmation of the top 1 x 2 seeds`."""
    settings = plan.spec.search
    parts = [f"{settings.num_samples} trials"]
    if settings.noise_seeds:
        of = "search.baseline[0]" if plan.baseline else "the first trial to run its full budget"
        parts.append(f"{settings.noise_seeds} noise seeds of {of}")
    if settings.confirm.top and not settings.objectives:
        parts.append(f"confirmation of the top {settings.confirm.top} x {settings.confirm.seeds} seeds")
    budget = f", at most {clock_text(settings.time_budget)}" if settings.time_budget else ""
    return " + ".join(parts) + budget


def set_deadline(out_dir: Path, budget: float) -> None:
    """No trial starts after now + `budget` seconds (the journal's latest deadline counts)."""
    TrialJournal(out_dir / JOURNAL_FILE).record({"search": "deadline", "at": time.time() + budget})


def resume_search(
    result_dir: Path, restart_unfinished: bool, console: Console, time_budget: float | None = None
) -> dict[str, Any] | None:
    """Continue an interrupted search: finished trials kept, unfinished ones from their last checkpoint
    (or from scratch), the Optuna study from its storage (the sampler goes on from every trial told),
    the searchers and ASHA from Tune's saved state, the same MLflow runs; `time_budget` (seconds from
    now) replaces the search's deadline."""
    result_dir = result_dir.resolve()
    state = read_state(result_dir)
    stored_study(state)  # refuses a search an older version started: its study is in Tune's state
    refuse_finished(result_dir, time_budget)
    plan = load_plan(result_dir / SPACE_FILE)
    if time_budget:
        set_deadline(result_dir, time_budget)
        # a search its budget ended goes on: its summary is written again when it ends
        (result_dir / SUMMARY_FILE).unlink(missing_ok=True)
        if not TrialJournal(result_dir / JOURNAL_FILE).run_ids and "://" not in state["tune_path"]:
            # its budget ran out before any trial started: Tune ended it for good, so it starts afresh
            shutil.rmtree(state["tune_path"], ignore_errors=True)
    console.print(f"resuming search '{plan.name}' from {result_dir}")
    return launch(plan, state, console, restart_unfinished)


def launch(plan: SearchPlan, state: dict[str, Any], console: Console, restart_unfinished: bool = False):
    """Ray, the trial resources, the MLflow parent run, the tuner: each made once and recorded in
    search.json, so a search killed at any point finds what it had and makes the rest."""
    out_dir = Path(state["out_dir"])
    init_ray(state["address"], out_dir.parent)
    resources = trial_resources(plan, state, console)
    tracking = state["tracking"]
    tracker = Tracker(tracking["uri"], tracking["experiment"], artifact_root=out_dir.parent / "mlartifacts")
    if tracking["parent_run_id"] is None:
        tracking["parent_run_id"] = start_parent_run(tracker, plan, resources, out_dir)
    else:
        tracker.client.update_run(tracking["parent_run_id"], status="RUNNING")
    write_state(out_dir, state)
    if tune_state_saved(state["tune_path"]):
        unfinished = tune.ResumeConfig.ResumeType.RESTART if restart_unfinished else tune.ResumeConfig.ResumeType.RESUME
        tuner = tune.Tuner.restore(
            state["tune_path"],
            trainable=resourced_trainable(plan, resources),
            _resume_config=tune.ResumeConfig(unfinished=unfinished),
        )
    else:
        tuner = new_tuner(plan, state, resources, tracker, console)
    return fit_and_finish(tuner, plan, state, tracker, console)


def trial_resources(plan: SearchPlan, state: dict[str, Any], console: Console) -> TrialResources:
    """What each trial holds: as search.json records it, else (a new search) the space file's resources
    against the Ray cluster's GPUs, then recorded there; a resumed search keeps what it began with."""
    resources = stored_resources(state, plan.spec.resources.cpu)
    if resources is None:
        requested = plan.spec.resources.requested()
        resources = resolve_resources(requested, cluster_gpus(), state.get("require_gpu", False), console)
    record_resources(state, resources)
    return resources


def start_parent_run(tracker: Tracker, plan: SearchPlan, resources: TrialResources, out_dir: Path) -> str:
    parent = tracker.start_run(plan.name, tags={"search": plan.name, "space_file": str(plan.path)})
    tracker.log(parent, params=search_params(plan, resources))
    tracker.log_artifact(parent, out_dir / SPACE_FILE)
    return parent


def tune_state_saved(tune_path: str) -> bool:
    """Whether Tune saved an experiment snapshot to restore; a search killed before its first one
    (seconds in) starts its tuner afresh, and the trials it had begun are closed as orphans at the end."""
    if "://" in tune_path:
        return tune.Tuner.can_restore(tune_path)
    return any(Path(tune_path).glob("experiment_state-*.json"))


def new_tuner(
    plan: SearchPlan, state: dict[str, Any], resources: TrialResources, tracker: Tracker, console: Console
) -> tune.Tuner:
    out_dir = Path(state["out_dir"])
    journal = out_dir / JOURNAL_FILE
    callbacks = [
        TrialTracking(tracker, state["tracking"]["parent_run_id"], plan, journal),
        progress_view(plan, console, journal),
        BudgetWatch(journal),
    ]
    location = tuple(state["tune_path"].rsplit("/", 1))
    rules = LossRules(plan.spec.stop, journal)
    return build_tuner(plan, resources, location, callbacks, rules, journal, stored_study(state)["storage"])


def progress_view(plan: SearchPlan, console: Console, journal: Path) -> Progress:
    settings = plan.spec.search
    return Progress(
        settings.metric,
        settings.mode,
        plan.planned_trials,
        list(plan.space),
        searched_values(plan),
        console,
        journal,
        max_epochs=plan.epochs,
        score=settings.score,
        scheduler=plan.spec.scheduler.stopper(),
        constraints=plan.constraints,
    )


def fit_and_finish(tuner: tune.Tuner, plan: SearchPlan, state: dict[str, Any], tracker: Tracker, console: Console):
    """Run the tuner; then either the summary and best config, or (interrupted) how to resume."""
    out_dir, parent = Path(state["out_dir"]), state["tracking"]["parent_run_id"]
    began = time.time()
    previous = signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))  # SIGTERM = Ctrl-C
    try:
        results = tuner.fit()
    except KeyboardInterrupt:  # a second Ctrl-C skips Tune's graceful stop: still resumable
        tracker.end_run(parent, "KILLED")
        raise
    except BaseException:
        tracker.end_run(parent, "FAILED")
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    journal = TrialJournal(out_dir / JOURNAL_FILE)
    done = journal.finished or journal.past_deadline()  # every trial handed out, or the time budget ran out
    if not done or any(trial_id_of(result) not in journal.ended for result in results):
        tracker.end_run(parent, "KILLED")
        console.print(
            f"interrupted after {len(journal.ended)} trials; nothing is lost. "
            f"Resume with: python -m search resume {out_dir}"
        )
        return None
    summary = build_summary(results, plan, state, journal, time.time() - began)
    conclude(summary, plan, console)
    close_orphans(tracker, journal, summary)
    prune_checkpoints(summary, state)
    finish_parent(tracker, parent, summary, out_dir)
    print_summary(summary, console, plan.spec.scheduler.stopper())
    return summary


def build_summary(results, plan: SearchPlan, state: dict[str, Any], journal: TrialJournal, seconds: float):
    settings = plan.spec.search
    summary = {
        "name": plan.name,
        "space_file": state["space_file"],
        "out_dir": state["out_dir"],
        "task": plan.base.task,
        "metric": settings.metric,
        "mode": settings.mode,
        "objectives": [o.model_dump() for o in settings.objectives],
        "constraints": [c.text for c in plan.constraints],
        "space_keys": list(plan.space),
        "max_epochs": plan.epochs,
        "score": settings.score,
        "time_budget": {"deadline": journal.deadline, "ran_out": journal.past_deadline()} if journal.deadline else None,
        "started_at": state["started_at"],
        "duration_s": seconds,
        "tracking": state["tracking"],
    }
    tracking = {"uri": state["tracking"]["uri"], "experiment": state["tracking"]["experiment"]}
    summary["trials"] = collect_trials(results, plan, journal, tracking)
    return summary


def trial_id_of(result) -> str:
    return (result.metrics or {}).get("trial_id") or Path(result.path).name


def collect_trials(results, plan: SearchPlan, journal: TrialJournal, tracking: dict[str, str]) -> list[dict[str, Any]]:
    """One record per trial; its config is complete and retrainable, logging where the search logged.
    A replica (noise or confirmation seed) says so, with its seed and the trial whose config it runs."""
    trials, settings = [], plan.spec.search
    for result in results:
        metrics = result.metrics or {}
        trial_id = trial_id_of(result)
        epochs = int(metrics.get("epoch", 0))
        config = trial_config(plan.base, plan.space, result.config).model_dump(mode="json")
        history = journal.history.get(trial_id, [])
        status = trial_status(result.error, epochs, plan.epochs)
        numbers = trial_metrics(metrics, history, settings.score, settings.metric, settings.mode)
        trials.append(
            {
                "trial_id": trial_id,
                **trial_role(result.config, trial_id),
                "status": status,
                "feasible": is_feasible(status, numbers, plan.constraints),
                "epochs": epochs,
                "metrics": numbers,
                "last_metrics": numeric_metrics(metrics),
                "params": searched_values(plan)(result.config),
                "config": {**config, "tracking": tracking},
                "mlflow_run_id": journal.run_ids.get(trial_id),
                "history": history,
                "stop_reason": journal.stop_reasons.get(trial_id) or journal.cut_reasons.get(trial_id),
                "checkpoint": result.checkpoint.path if result.checkpoint else None,
                "error": str(result.error).strip().splitlines()[-1] if result.error else None,
            }
        )
    return sorted(trials, key=lambda t: t["trial_id"])


def trial_role(config: dict[str, Any], trial_id: str) -> dict[str, Any]:
    """What the trial was for (search/roles.py): role, group, seed, baseline point, reference."""
    entry = replica(config)
    return {
        "role": entry.get("role"),
        "group": group_of(config, trial_id),
        "seed": entry.get("seed"),
        "point": entry.get("point"),
        "reference": bool(entry.get("reference")),
    }


def conclude(summary: dict[str, Any], plan: SearchPlan, console: Console) -> None:
    """The seed noise, the confirmed pick (the exported trial) and the verdict on the test split."""
    confirmation, noise, best = decide(summary, plan.spec.search.confirm)
    summary.update(noise=noise, confirmation=confirmation, best=best)
    summary["verdict"] = verdict(summary, plan, console)


def close_orphans(tracker: Tracker, journal: TrialJournal, summary: dict[str, Any]) -> None:
    """Trials started after Tune's last experiment snapshot before a hard kill are unknown to the
    restored search (it sampled afresh instead); their MLflow runs are closed as KILLED, not left RUNNING."""
    known = {t["trial_id"] for t in summary["trials"]}
    orphans = {run_id for trial_id, run_id in journal.run_ids.items() if trial_id not in known}
    # a kill between a trial run's creation and its journal line leaves a run no journal names: once the
    # search has ended every trial run is closed, so a nested run still RUNNING is one of those
    parent = summary["tracking"]["parent_run_id"]
    running = f"tags.`mlflow.parentRunId` = '{parent}' and attributes.status = 'RUNNING'"
    orphans |= {run.info.run_id for run in tracker.client.search_runs([tracker.experiment_id], filter_string=running)}
    for run_id in sorted(orphans):
        # renamed: the restored search names its trial of the same index as this one was named
        name = f"{tracker.client.get_run(run_id).info.run_name} (orphaned)"
        orphaned = "started before a hard kill, after the last saved experiment state"
        tracker.log(run_id, tags={"orphaned": orphaned, "mlflow.runName": name})
        tracker.end_run(run_id, "KILLED")


def finish_parent(tracker: Tracker, parent: str, summary: dict[str, Any], out_dir: Path) -> None:
    """Best trial's metrics and config onto the parent run, summary and best.yaml beside the results
    (and, for a multi-objective search, the Pareto front)."""
    if summary["objectives"]:
        for path in write_pareto(out_dir, summary):
            tracker.log_artifact(parent, path)
    best = summary["best"]
    if best is not None:
        write_atomic(out_dir / BEST_FILE, best_config_yaml(summary))
        tags = {"best_trial_id": best["trial_id"], "best_run_id": best["mlflow_run_id"], "best_score": score_text(summary)}
        # tags, not params: a search its time budget ended may go on (`resume --time-budget`) to another best
        tags |= {f"best.{k}": str(v) for k, v in best["params"].items()}
        tracker.log(parent, metrics=best["metrics"], tags=tags)
        tracker.log_artifact(parent, out_dir / BEST_FILE)
    metrics, tags = conclusion_record(summary)
    tracker.log(parent, metrics=metrics, tags=tags)
    tracker.log_artifact(parent, write_summary(out_dir, summary))
    tracker.end_run(parent, "FINISHED" if best is not None else "FAILED")


def conclusion_record(summary: dict[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """(metrics, tags) of the parent run: the seed noise, the confirmed means, the verdict's differences."""
    metrics, tags = {}, {}
    noise = summary.get("noise") or {}
    if noise.get("reference"):
        metrics["noise/sd"] = noise["sd"]
        tags["seed_noise"] = noise["text"]
    for group in (summary.get("confirmation") or {}).get("groups", []):
        name = "baseline" if group["reference"] else group["group"]
        metrics[f"confirm/{name}_mean"] = group["mean"]
    verdict = summary.get("verdict")
    if verdict:
        tags["verdict"] = verdict["text"]
        for name, d in verdict["differences"].items():
            metrics.update({f"verdict/{name}": d["value"], f"verdict/{name}_lo": d["lo"], f"verdict/{name}_hi": d["hi"]})
    return {k: v for k, v in metrics.items() if is_finite(v)}, tags


def prune_checkpoints(summary: dict[str, Any], state: dict[str, Any]) -> None:
    """A finished search keeps the checkpoints of the best trial, of the models its verdict scored and
    of the reference config's runs only: the others' weights are dead weight (hundreds of MB for a small
    search), and finished trials never resume."""
    if "://" in state["tune_path"]:
        return
    reference = (summary.get("noise") or {}).get("reference")
    # the reference's runs too: a search its time budget ended may go on and give a later verdict
    kept = {(summary["best"] or {}).get("trial_id"), *(summary.get("verdict") or {}).get("trials", [])}
    kept |= {t["trial_id"] for t in summary["trials"] if reference is not None and t["group"] == reference}
    for trial in summary["trials"]:
        if trial["trial_id"] not in kept and trial["checkpoint"]:
            for folder in Path(trial["checkpoint"]).parent.glob("checkpoint_*"):
                shutil.rmtree(folder, ignore_errors=True)
            trial["checkpoint"] = None
