"""A real multi-objective, constrained search: Ray Tune + Optuna (two objectives) + ASHA + MLflow ->
pareto.csv / pareto.png -> export --pick with the calibrated decision threshold."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from search.constraints import parse_constraint

CONSTRAINT = "val/overkill_rate <= 0.9"
SPACE = {
    "name": "mo",
    "task": "classification",
    "data": {"kind": "synthetic", "image_size": 32, "batch_size": 16, "synthetic": {"count": 48, "seed": 1, "classes": ["good", "scratch"], "difficulty": 0.0}},
    "base": {"model": {"name": "resnet10t"}, "optim": {"schedule": "constant"}, "eval": {"target_miss_rate": 0.1}},
    "space": {"optim.lr": {"loguniform": [1.0e-4, 3.0e-2]}, "loss.label_smoothing": {"uniform": [0.0, 0.3]}},
    "search": {
        "objectives": [{"metric": "val/miss_rate", "mode": "min"}, {"metric": "val/overkill_rate", "mode": "min"}],
        "constraints": [CONSTRAINT],
        "num_samples": 4,
        "max_concurrent": 2,
        "seed": 0,
    },
    "scheduler": {"name": "asha", "max_epochs": 2, "grace_period": 1, "reduction_factor": 2},
    "resources": {"cpu": 1, "gpu": 0},
}
OBJECTIVES = [o["metric"] for o in SPACE["search"]["objectives"]]


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def search(tmp_path_factory) -> dict:
    """One real 4-trial two-objective search, shared by the assertions below."""
    root = tmp_path_factory.mktemp("mo")
    (root / "mo.yaml").write_text(yaml.safe_dump(SPACE))
    proc = run(["-m", "search", "run", "mo.yaml", "--results", "results"], root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out_dir = root / "results" / "mo"
    summary = json.loads((out_dir / "summary.json").read_text())
    return {"root": root, "out": out_dir, "proc": proc, "summary": summary}


def dominated(point: list[float], others: list[list[float]]) -> bool:
    """Both objectives minimized: another point no worse in both and different."""
    return any(all(o <= p for o, p in zip(other, point)) and other != point for other in others)


def test_pareto_csv_holds_exactly_the_non_dominated_feasible_trials(search):
    summary = search["summary"]
    constraint = parse_constraint(CONSTRAINT, "test")
    for trial in summary["trials"]:
        # each trial is marked feasible exactly when it did not fail and meets the constraint
        assert trial["feasible"] == (trial["status"] != "FAILED" and constraint.satisfied(trial["metrics"]))
    # the front is made of sampled trials: an extra seed of the reference config is no point of its own
    sampled = [t for t in summary["trials"] if t["role"] not in ("noise", "confirm")]
    # and a front has no single winner to confirm: no confirmation seeds
    assert "confirm" not in {t["role"] for t in summary["trials"]} and summary["confirmation"] is None
    pool = [t for t in sampled if t["feasible"] and all(m in t["metrics"] for m in OBJECTIVES)]
    points = {t["trial_id"]: [t["metrics"][m] for m in OBJECTIVES] for t in pool}
    with (search["out"] / "pareto.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    # pareto.csv lists the trial, its objectives and its searched values
    assert list(rows[0])[:3] == ["trial", *OBJECTIVES] and set(list(rows[0])[3:]) == set(SPACE["space"])
    # its trials are the feasible ones no other feasible trial dominates (checked by brute force here)
    expected = {tid for tid, point in points.items() if not dominated(point, list(points.values()))}
    assert {row["trial"] for row in rows} == expected and expected
    for row in rows:
        assert [float(row[m]) for m in OBJECTIVES] == points[row["trial"]]
    # the plot is a real PNG
    assert (search["out"] / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the best trial is feasible and best by the first objective (ASHA's metric by default)
    assert summary["metric"] == "val/miss_rate" and summary["best"]["feasible"]
    assert summary["best"]["metrics"]["val/miss_rate"] == min(p[0] for p in points.values())


def test_parent_run_holds_the_pareto_artifacts(search):
    tracking = search["summary"]["tracking"]
    client = MlflowClient(tracking["uri"])
    artifacts = {a.path for a in client.list_artifacts(tracking["parent_run_id"])}
    # the front and its plot are logged to the search's MLflow parent run
    assert {"pareto.csv", "pareto.png", "summary.json", "best.yaml"} <= artifacts


def test_sampler_saw_two_objectives_and_every_trials_constraint(search):
    storage = JournalStorage(JournalFileBackend(str(search["out"] / "optuna.journal")))
    study = optuna.load_study(study_name="mo", storage=storage)
    # Optuna optimized both objectives, minimizing each
    assert study.directions == [optuna.study.StudyDirection.MINIMIZE] * 2
    states = {"DONE": optuna.trial.TrialState.COMPLETE, "STOPPED": optuna.trial.TrialState.PRUNED}
    by_epochs = {tuple(tuple(e) for e in t.user_attrs["epochs"]): t for t in study.trials}
    sampled = [t for t in search["summary"]["trials"] if t["role"] not in ("noise", "confirm")]
    # the sampler heard of its own trials only: the extra seeds of a config are not told to it
    assert len(study.trials) == len(sampled) == SPACE["search"]["num_samples"]
    for trial in sampled:
        frozen = by_epochs[tuple((h["epoch"], *(h[m] for m in OBJECTIVES)) for h in trial["history"])]
        # a full trial is COMPLETE, one ASHA stopped is PRUNED (multi-objective: no intermediate values,
        # its epochs are a user attribute), and a COMPLETE one's values are the summary's scored metrics
        assert frozen.state == states[trial["status"]]
        if frozen.state == optuna.trial.TrialState.COMPLETE:
            assert frozen.values == [trial["metrics"][m] for m in OBJECTIVES]
        # each trial carries the constraint, > 0 exactly when the summary calls it infeasible
        assert list(frozen.constraints) == [CONSTRAINT]
        assert (frozen.constraints[CONSTRAINT] > 0) == (not trial["feasible"])


def test_export_pick_chooses_from_the_front_and_keeps_the_threshold(search):
    root = search["root"]
    rule = "min val/overkill_rate where val/miss_rate <= 1"
    proc = run(["-m", "search", "export", "results/mo", "-o", "picked.yaml", "--pick", rule], root)
    assert proc.returncode == 0, proc.stderr
    with (search["out"] / "pareto.csv").open() as handle:
        front = list(csv.DictReader(handle))
    chosen = min(front, key=lambda row: (float(row["val/overkill_rate"]), row["trial"]))
    trial = next(t for t in search["summary"]["trials"] if t["trial_id"] == chosen["trial"])
    text = (root / "picked.yaml").read_text()
    # the front trial with the lowest overkill is exported, and the header says which rule picked it
    assert f"# trial {trial['trial_id']}," in text and f"picked by: --pick '{rule}'" in text
    exported = yaml.safe_load(text)
    assert exported["optim"]["lr"] == trial["params"]["optim.lr"]
    # the trial's calibrated threshold (eval.target_miss_rate) is the deployment decision threshold
    # (from its last epoch, whatever the score rule: a retrain ends with that model)
    assert exported["eval"]["decision_threshold"] == trial["last_metrics"]["val/threshold_at_target_miss"]
    from training.schema.config_file import load_config
    from training.tasks import get_task

    # and `python -m training train` accepts the file (its config and task checks pass)
    config = load_config(root / "picked.yaml")
    get_task(config.task).check(config)
