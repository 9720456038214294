"""A killed search resumes where it stopped: same trials, same MLflow runs, the sampler's history kept;
and a kill at any second (before Ray starts, during the first trial, while writing the summary) leaves a
folder that `resume` continues or, when nothing had started, that `run` takes over."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import ray
import yaml
from mlflow.tracking import MlflowClient
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from rich.console import Console

from search.journal import TrialJournal
from search.runner import resume_search, trial_resources
from search.spec import load_plan
from training.schema.errors import ConfigError
from training.schema.resources import TrialResources

SPACE = {
    "name": "kill",
    "task": "classification",
    "data": {"kind": "synthetic", "image_size": 32, "batch_size": 16, "synthetic": {"count": 96, "seed": 1}},
    "base": {"model": {"name": "resnet10t"}, "optim": {"schedule": "constant"}},
    "space": {"optim.lr": {"loguniform": [1.0e-4, 1.0e-2]}},
    # no baseline: the first trial to finish gets a noise seed; the best other config a confirmation seed
    "search": {"metric": "val/macro_f1", "num_samples": 6, "max_concurrent": 2, "seed": 0,
               "noise_seeds": 1, "confirm": {"top": 1, "seeds": 1}},  # fmt: skip
    "scheduler": {"name": "none", "max_epochs": 3},
}
NUM_SAMPLES = SPACE["search"]["num_samples"]
TOTAL = NUM_SAMPLES + 2  # with the noise seed and the confirmation seed


def start_search(root: Path) -> subprocess.Popen:
    (root / "kill.yaml").write_text(yaml.safe_dump(SPACE))
    command = [sys.executable, "-m", "search", "run", "kill.yaml", "--results", "results"]
    return subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def wait_for_finished_trials(root: Path, count: int, proc: subprocess.Popen) -> TrialJournal:
    journal_path = root / "results" / "kill" / "trials.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        if journal_path.is_file() and len(TrialJournal(journal_path).ended) >= count:
            return TrialJournal(journal_path)
        time.sleep(0.5)
    raise AssertionError("the search finished no trial in time")


def resume(root: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "search", "resume", "results/kill"]
    return subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=600)


def best_last_value(journal: TrialJournal, metric: str) -> float:
    return max(journal.history[t][-1][metric] for t in journal.ended)


def nested_runs(summary: dict) -> list:
    client = MlflowClient(summary["tracking"]["uri"])
    experiment = client.get_experiment_by_name(summary["tracking"]["experiment"])
    parent = summary["tracking"]["parent_run_id"]
    runs = client.search_runs([experiment.experiment_id])
    return [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent]


def check_study(root: Path, summary: dict) -> list[optuna.trial.FrozenTrial]:
    """The study as a user opens it after the resumed search ended (`optuna.load_study` on the search
    folder's journal): every sampled trial COMPLETE (no scheduler here) with the summary's score and one
    intermediate value per epoch. Returns the other trials: those a hard kill left running."""
    storage = JournalStorage(JournalFileBackend(str(root / "results" / "kill" / "optuna.journal")))
    study = optuna.load_study(study_name="kill", storage=storage)
    by_trial = {t.user_attrs["trial_id"]: t for t in study.trials if "orphaned" not in t.user_attrs}
    sampled = [t for t in summary["trials"] if t["role"] is None]
    # the sampler's study holds each sampled trial once, the extra seeds not at all
    assert sorted(by_trial) == sorted(t["trial_id"] for t in sampled)
    for trial in sampled:
        frozen = by_trial[trial["trial_id"]]
        assert frozen.state == optuna.trial.TrialState.COMPLETE
        assert frozen.value == pytest.approx(trial["metrics"]["val/macro_f1"])
        assert sorted(frozen.intermediate_values) == [h["epoch"] for h in trial["history"]] == [1, 2, 3]
    return [t for t in study.trials if "orphaned" in t.user_attrs]


def test_resume_after_sigkill_continues_the_same_search(tmp_path):
    proc = start_search(tmp_path)
    before = wait_for_finished_trials(tmp_path, 2, proc)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its local Ray, as a crash or reboot would
    proc.wait(timeout=60)
    best_before = best_last_value(before, "val/macro_f1")

    done = resume(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((tmp_path / "results" / "kill" / "summary.json").read_text())
    ids = [t["trial_id"] for t in summary["trials"]]
    # the total stays num_samples and the two extra seeds, with no trial id twice
    assert len(ids) == TOTAL == len(set(ids))
    assert sorted(str(t["role"]) for t in summary["trials"]) == ["None"] * NUM_SAMPLES + ["confirm", "noise"]
    # trials finished before the kill are kept, not re-run: same ids, same number of epochs logged
    for trial_id in before.ended:
        assert trial_id in ids
        assert [h["epoch"] for h in TrialJournal(tmp_path / "results/kill/trials.jsonl").history[trial_id]] == [1, 2, 3]
    runs = nested_runs(summary)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    # one finished MLflow run per trial, none duplicated, none left RUNNING
    assert sorted(r.data.tags["trial_id"] for r in finished) == sorted(ids)
    # each named by its own index (and an extra seed by its role) and searched value, before the kill or after
    assert len({r.info.run_name for r in finished}) == TOTAL
    for run in finished:
        role = f"{run.data.tags['role']} seed={run.data.params['seed']} " if "role" in run.data.tags else ""
        assert run.info.run_name.startswith(f"t{int(run.data.tags['trial_index']):02d} {role}lr=")
    assert not [r for r in runs if r.info.status == "RUNNING"]
    # the Optuna study continued in its storage with the whole history: every sampled trial, told what it
    # was; a trial asked after Tune's last snapshot (Tune asked for a replacement) is FAIL there
    assert all(t.state == optuna.trial.TrialState.FAIL for t in check_study(tmp_path, summary))
    # the best sampled trial is at least as good as the best before the kill (the exported one may be the
    # reference config instead, when the confirmed edge over it is inside the seed noise)
    sampled = [t for t in summary["trials"] if t["role"] is None]
    assert max(t["metrics"]["val/macro_f1"] for t in sampled) >= best_before


def test_sigterm_stops_gracefully_then_resume_finishes(tmp_path):
    proc = start_search(tmp_path)
    wait_for_finished_trials(tmp_path, 1, proc)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    # a stop signal ends the search gracefully, saying how to resume, with exit code 130
    assert proc.returncode == 130, out
    assert "Resume with: python -m search resume" in out
    state = json.loads((tmp_path / "results" / "kill" / "search.json").read_text())
    # search.json records the resources the trials held (the space's defaults: 1 CPU, no GPU)
    assert state["resources"] == {"cpu": 1.0, "gpu": 0.0}
    client = MlflowClient(state["tracking"]["uri"])
    # the parent run is marked KILLED, not left RUNNING
    assert client.get_run(state["tracking"]["parent_run_id"]).info.status == "KILLED"
    done = resume(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((tmp_path / "results" / "kill" / "summary.json").read_text())
    # the resumed search reopened the same parent run and finished it
    assert summary["tracking"]["parent_run_id"] == state["tracking"]["parent_run_id"]
    assert client.get_run(state["tracking"]["parent_run_id"]).info.status == "FINISHED"
    assert len(summary["trials"]) == TOTAL
    # the study went on in its storage: each sampled trial once, COMPLETE, an intermediate value per
    # epoch; a graceful stop leaves no orphan
    assert check_study(tmp_path, summary) == []


@pytest.mark.parametrize(
    "state",
    [{"resources": {"cpu": 1.0, "gpu": 0.0}}, {"gpu": 0.0}],
    ids=["recorded", "older-search-json"],
)
def test_a_resumed_search_keeps_the_resources_it_began_with(minimal_space, write_space, state):
    minimal_space["resources"] = {"cpu": 1, "gpu": 0.5}
    plan = load_plan(write_space(minimal_space))
    state = {**state, "require_gpu": True}
    out = io.StringIO()
    # the first launch found no GPU (share 0): a resume reads that back, from an older search.json's
    # "gpu" too, without asking the cluster again (no Ray here) or refusing again for --require-gpu
    assert trial_resources(plan, state, Console(file=out)) == TrialResources(cpu=1, gpu=0.0)
    assert not ray.is_initialized() and out.getvalue() == ""
    # and search.json then holds them in the one field
    assert state["resources"] == {"cpu": 1.0, "gpu": 0.0} and "gpu" not in state


def test_resume_refuses_a_search_an_older_version_started(tmp_path):
    (tmp_path / "search.json").write_text(json.dumps({"name": "old", "out_dir": str(tmp_path)}))
    # its search.json names no Optuna storage: its study is pickled in Tune's state, which this version
    # does not read; a user error naming the folder, before Ray starts
    with pytest.raises(ConfigError, match="older version") as refused:
        resume_search(tmp_path, restart_unfinished=False, console=Console(file=io.StringIO()))
    assert refused.value.file == str(tmp_path) and not ray.is_initialized()


def test_resume_refuses_a_finished_or_unknown_folder(tmp_path):
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "search.json").write_text("{}")
    (tmp_path / "done" / "summary.json").write_text("{}")
    for folder in ("done", "nothing"):
        proc = subprocess.run([sys.executable, "-m", "search", "resume", folder], cwd=tmp_path, capture_output=True, text=True)
        # nothing to resume is a user error: exit 2, one line naming the folder
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and folder in proc.stderr


# ---------------------------------------------------------------- a kill at any second

TINY = {
    "name": "tiny",
    "task": "classification",
    "data": {"kind": "synthetic", "image_size": 32, "batch_size": 8, "synthetic": {"count": 40, "seed": 0}},
    "base": {"model": {"name": "resnet10t"}, "optim": {"schedule": "constant"}},
    "space": {"optim.lr": {"loguniform": [1.0e-4, 1.0e-2]}},
    "search": {"metric": "val/macro_f1", "num_samples": 2, "max_concurrent": 1, "seed": 0, "checkpoint_every_s": 0,
               "noise_seeds": 1, "confirm": {"top": 1, "seeds": 1}},  # fmt: skip
    "scheduler": {"name": "none", "max_epochs": 2},
}
POLL_S = 0.005  # the summary is written within tens of milliseconds of best.yaml: watch closely


def search_cli(root: Path, *args: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "search", *args]
    return subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def kill_when(proc: subprocess.Popen, ready, what: str) -> None:
    """SIGKILL the process group (driver and local Ray) as soon as `ready()` holds."""
    deadline = time.monotonic() + 400
    while not ready():
        assert proc.poll() is None, f"ended before {what}: " + proc.stdout.read() + proc.stderr.read()
        assert time.monotonic() < deadline, f"never reached {what}"
        time.sleep(POLL_S)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


def trial_started(folder: Path) -> bool:
    journal = folder / "trials.jsonl"
    return journal.is_file() and bool(TrialJournal(journal).run_ids)


def carry_on(root: Path) -> subprocess.Popen:
    """What a user does after a kill: resume; when the folder holds no started search (no search.json,
    and `resume` says to run it again), run again."""
    if (root / "results" / "tiny" / "search.json").is_file():
        return search_cli(root, "resume", "results/tiny")
    refused = subprocess.run([sys.executable, "-m", "search", "resume", "results/tiny"], cwd=root, capture_output=True, text=True)
    assert refused.returncode == 2 and "run it again" in refused.stderr, refused.stderr
    return search_cli(root, "run", "tiny.yaml", "--results", "results")


def test_a_kill_at_any_point_is_resumable_or_rerunnable(tmp_path):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    folder = tmp_path / "results" / "tiny"
    # 1. killed before Ray starts: the folder holds the space (and search.json) and nothing else
    proc = search_cli(tmp_path, "run", "tiny.yaml", "--results", "results")
    kill_when(proc, lambda: (folder / "space.yaml").is_file(), "space.yaml")
    assert not (folder / "tune").exists() and not (folder / "trials.jsonl").exists()
    # 2. killed during the first trial (its MLflow run exists, Tune may have saved no snapshot yet)
    proc = carry_on(tmp_path)
    kill_when(proc, lambda: trial_started(folder), "the first trial")
    assert not TrialJournal(folder / "trials.jsonl").ended and not (folder / "best.yaml").exists()
    # 3. killed while the summary is written (best.yaml is written just before summary.json)
    proc = search_cli(tmp_path, "resume", "results/tiny")
    kill_when(proc, lambda: (folder / "best.yaml").is_file(), "best.yaml")
    # each kill left a folder that carries on: the last resume finishes the search (or it had finished)
    if not (folder / "summary.json").is_file():
        done = search_cli(tmp_path, "resume", "results/tiny")
        out, err = done.communicate(timeout=600)
        assert done.returncode == 0, out + err
    summary = json.loads((folder / "summary.json").read_text())
    # a complete, valid summary with every trial of the search (its 2 sampled, a noise and a
    # confirmation seed), each run to its full budget
    assert len(summary["trials"]) == TINY["search"]["num_samples"] + 2
    assert all(t["status"] == "DONE" and t["epochs"] == 2 for t in summary["trials"])
    assert summary["best"] is not None and (folder / "best.yaml").is_file()
    # no temporary file is left behind by the atomic writes
    assert not list(folder.glob("*.tmp"))
