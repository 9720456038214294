"""A trial's training is a function of its config and seed only: `search export` + `training train`
gives the trial's metrics bit for bit on the CPU, whether the trial ran packed beside another, in a
reused Tune actor after another trial, or resumed from its checkpoint after the search was SIGKILLed."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from ray.tune import ExperimentAnalysis

from training.config import TrainConfig
from training.loop.fit import fit

# two configs that differ in what they train with; A runs twice in the search
A = {"optim.lr": 3.0e-3, "augment.brightness": 0.3, "augment.hflip": 0.5}
B = {"optim.lr": 1.0e-3, "augment.brightness": 0.1, "augment.hflip": 0.2}
SPACE: dict[str, Any] = {
    "name": "repro",
    "task": "classification",
    "data": {"kind": "synthetic", "image_size": 32, "batch_size": 8, "synthetic": {"count": 40, "seed": 0}},
    "base": {"model": {"name": "resnet10t", "drop_rate": 0.2}, "augment": {"rotate": 10.0}},
    "space": {
        "optim.lr": {"loguniform": [1.0e-4, 1.0e-2]},
        "augment.brightness": {"uniform": [0.0, 0.5]},
        "augment.hflip": {"uniform": [0.0, 0.5]},
    },
    # trials 1 and 2 packed side by side; trial 3 (A again) in the actor one of them leaves
    "search": {"metric": "val/macro_f1", "noise_seeds": 0, "confirm": False, "num_samples": 3, "max_concurrent": 2, "seed": 0, "baseline": [A, B, A]},
    "scheduler": {"name": "none", "max_epochs": 3},
    "resources": {"cpu": 1, "gpu": 0},
}


def cli(root: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", *args], cwd=root, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def start_search(root: Path, space: dict[str, Any]) -> subprocess.Popen:
    (root / "space.yaml").write_text(yaml.safe_dump(space))
    command = [sys.executable, "-m", "search", "run", "space.yaml", "--results", "results"]
    return subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def summary_of(root: Path, name: str) -> dict[str, Any]:
    return json.loads((root / "results" / name / "summary.json").read_text())


def retrain(root: Path, name: str) -> list[dict[str, float]]:
    """export the search's best trial, `training train` it; its per-epoch metrics."""
    cli(root, "search", "export", f"results/{name}", "-o", f"{name}.yaml")
    cli(root, "training", "train", f"{name}.yaml", "--out", f"retrain-{name}")
    return json.loads((root / f"retrain-{name}" / "metrics.json").read_text())["history"]


def computed(history: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Each epoch's metrics, wall-clock timings aside."""
    return [{k: v for k, v in epoch.items() if not k.startswith("time/")} for epoch in history]


def last_results(root: Path, name: str) -> dict[str, dict[str, Any]]:
    """Tune's last result per trial id (it carries the actor's pid and the iterations since a restore)."""
    analysis = ExperimentAnalysis(str(root / "results" / name / "tune"))
    return {trial.trial_id: trial.last_result for trial in analysis.trials}


def with_values(values: dict[str, float], trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [t for t in trials if t["params"] == pytest.approx(values)]


@pytest.fixture(scope="module")
def packed_search(tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("packed")
    proc = start_search(root, SPACE)
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    return root, summary_of(root, "repro")


def test_exported_best_trial_retrains_to_the_same_metrics(packed_search):
    root, summary = packed_search
    best = summary["best"]
    retrained = retrain(root, "repro")
    # the retrain of the exported config ran the trial's epochs ...
    assert [e["epoch"] for e in retrained] == [e["epoch"] for e in best["history"]] == [1, 2, 3]
    # ... and computed, epoch by epoch, exactly the trial's metrics (train loss and every val metric)
    assert computed(retrained) == computed(best["history"])


def test_exported_config_records_what_the_trial_computed_with(packed_search):
    root, summary = packed_search
    exported = TrainConfig.model_validate(yaml.safe_load((root / "repro.yaml").read_text()))
    # the thread count the trial summed floats with (resources.cpu), the seed and the epochs travel with it
    assert exported.train.cpu_threads == SPACE["resources"]["cpu"]
    assert (exported.seed, exported.train.epochs) == (0, SPACE["scheduler"]["max_epochs"])


def test_a_config_run_again_in_a_reused_actor_gives_the_same_metrics(packed_search):
    root, summary = packed_search
    first, again = sorted(with_values(A, summary["trials"]), key=lambda t: t["trial_id"])
    (other,) = with_values(B, summary["trials"])
    pids = {trial_id: result["pid"] for trial_id, result in last_results(root, "repro").items()}
    # the check is meaningful: one of A's runs reused the actor (process) of an earlier trial
    assert len(set(pids.values())) < len(pids)
    # A's two runs, one alone in a fresh actor and one after another trial in the same process, agree exactly
    assert computed(first["history"]) == computed(again["history"])
    # and B, trained beside them, did not (the comparison can fail)
    assert computed(other["history"]) != computed(first["history"])


def tiny(workers: int = 0, **train: Any) -> TrainConfig:
    raw = {
        "data": {"image_size": 32, "batch_size": 8, "synthetic": {"count": 40}, "num_workers": workers},
        "model": {"name": "resnet10t", "drop_rate": 0.2},
        "augment": {"rotate": 10.0, "brightness": 0.3, "hflip": 0.5},
        "train": {"epochs": 2, "device": "cpu", **train},
    }
    return TrainConfig.model_validate(raw)


def test_fit_in_a_process_an_earlier_run_changed_computes_the_same():
    before = torch.get_num_threads()
    try:
        first = fit(tiny(cpu_threads=1))
        # an earlier trial in the same process leaves its thread count, RNG states and global settings behind
        fit(tiny(cpu_threads=2).model_copy(update={"seed": 7}))
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("medium")
        again = fit(tiny(cpu_threads=1))
    finally:
        torch.set_num_threads(before)
        torch.backends.cudnn.benchmark = False
        torch.set_float32_matmul_precision("highest")
    # the same config computes the same metrics, whatever ran before it in the process
    assert computed([again]) == computed([first])


def test_fit_with_data_workers_computes_what_it_does_without():
    # each sample's augmentation has its own seed: which worker process makes it (and how many there
    # are, e.g. data.num_workers auto on another machine) changes nothing
    assert computed([fit(tiny(workers=2, cpu_threads=1))]) == computed([fit(tiny(workers=0, cpu_threads=1))])


RESUMED = copy.deepcopy(SPACE) | {
    "name": "resumed",
    "search": {"metric": "val/macro_f1", "noise_seeds": 0, "confirm": False, "num_samples": 1, "max_concurrent": 1, "seed": 0, "baseline": [A], "checkpoint_every_s": 0},
    "scheduler": {"name": "none", "max_epochs": 6},
}


def checkpoint_saved(tune_dir: Path) -> bool:
    """Tune's saved experiment state knows a checkpoint of the trial: a resume restores from it."""
    return any("checkpoint_0000" in state.read_text() for state in tune_dir.glob("experiment_state-*.json"))


def kill_after_a_checkpoint(root: Path, proc: subprocess.Popen) -> None:
    """SIGKILL the search (driver and its local Ray) once its trial's first checkpoint is on record."""
    tune_dir = root / "results" / "resumed" / "tune"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        if checkpoint_saved(tune_dir):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
            return
        time.sleep(0.2)
    raise AssertionError("the trial saved no checkpoint in time")


def test_a_trial_resumed_after_sigkill_computes_what_an_uninterrupted_one_does(tmp_path):
    kill_after_a_checkpoint(tmp_path, start_search(tmp_path, RESUMED))
    cli(tmp_path, "search", "resume", "results/resumed")
    summary = summary_of(tmp_path, "resumed")
    (trial,) = summary["trials"]
    (last,) = last_results(tmp_path, "resumed").values()
    # the check is meaningful: the trial was restored from a checkpoint mid-trial, not rerun from epoch 1
    assert last["iterations_since_restore"] < last["training_iteration"] == RESUMED["scheduler"]["max_epochs"]
    retrained = retrain(tmp_path, "resumed")
    # epochs before the kill, and those after the restore, are what one uninterrupted run computes
    assert computed(trial["history"]) == computed(retrained)
