"""The whole main path for real: space file -> Ray Tune + Optuna + ASHA -> MLflow -> export -> retrain."""

from __future__ import annotations

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

from training.config import DataConfig
from training.data import load_splits

SPACE = {
    "name": "tiny",
    "task": "classification",
    "data": {"kind": "synthetic", "image_size": 32, "batch_size": 16, "synthetic": {"count": 64, "seed": 1}},
    "base": {"model": {"name": "resnet10t"}, "loss": {"name": "focal"}, "optim": {"schedule": "constant"}},
    "space": {"optim.lr": {"choice": [0.003, 1.0e6]}, "loss.focal_gamma": {"uniform": [0.0, 3.0]}},
    "search": {
        "metric": "val/macro_f1",
        "num_samples": 3,
        "max_concurrent": 2,
        "seed": 0,
        "noise_seeds": 0,  # the seed noise and confirmation are tests/search/test_confirmation_search.py's
        "confirm": False,
        # The first baseline diverges (NaN loss): it must fail alone while the search goes on.
        "baseline": [{"optim.lr": 1.0e6}, {"optim.lr": 0.003, "loss.focal_gamma": 2.0}],
        "max_failures": 1,
        "checkpoint_every_s": 0,  # every epoch: the retry, the kept checkpoint and the report need one
    },
    "scheduler": {"name": "asha", "max_epochs": 2, "grace_period": 1, "reduction_factor": 2},
    "resources": {"cpu": 1, "gpu": 0.5},
}


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def search(tmp_path_factory) -> dict:
    """One real 3-trial search, shared by the assertions below."""
    root = tmp_path_factory.mktemp("e2e")
    (root / "tiny.yaml").write_text(yaml.safe_dump(SPACE))
    proc = run(["-m", "search", "run", "tiny.yaml", "--results", "results"], root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((root / "results" / "tiny" / "summary.json").read_text())
    return {"root": root, "proc": proc, "summary": summary, "client": MlflowClient(summary["tracking"]["uri"])}


def test_search_runs_every_trial_and_survives_a_diverging_one(search):
    trials = search["summary"]["trials"]
    # num_samples trials ran, each with its own id
    assert len(trials) == 3 and len({t["trial_id"] for t in trials}) == 3
    # the diverging baseline (lr 1e6) is marked failed with the reason, the others finished
    failed = [t for t in trials if t["status"] == "FAILED"]
    assert [t["params"]["optim.lr"] for t in failed] == [1.0e6]
    assert "NonFiniteLossError" in failed[0]["error"]
    # max_failures 1: the crashed trial was retried once before it was marked failed
    error_file = search["root"] / "results" / "tiny" / "tune" / failed[0]["trial_id"] / "error.txt"
    assert "Failure # 2" in error_file.read_text()
    # the best trial is a successful one and holds the metric
    assert search["summary"]["best"]["status"] != "FAILED"
    assert "val/macro_f1" in search["summary"]["best"]["metrics"]


def test_search_tells_optuna_the_failed_trial_failed(search):
    journal = search["root"] / "results" / "tiny" / "optuna.journal"
    # the study is Optuna's own, named as the search, in the search folder: a user opens it as is
    study = optuna.load_study(study_name="tiny", storage=JournalStorage(JournalFileBackend(str(journal))))
    trial_state = optuna.trial.TrialState
    states = {"DONE": trial_state.COMPLETE, "STOPPED": trial_state.PRUNED, "FAILED": trial_state.FAIL}
    by_trial = {t.user_attrs["trial_id"]: t for t in study.trials}
    # the sampler saw every trial; the diverged one as FAIL (no fake value), the others COMPLETE, or
    # PRUNED when ASHA stopped them (search/study.py), each as the summary says
    assert len(study.trials) == 3 and set(by_trial) == {t["trial_id"] for t in search["summary"]["trials"]}
    for trial in search["summary"]["trials"]:
        frozen = by_trial[trial["trial_id"]]
        assert frozen.state == states[trial["status"]]
        if trial["status"] != "FAILED":
            # one intermediate value per epoch it ran, the epoch's metric
            assert frozen.intermediate_values == {h["epoch"]: h["val/macro_f1"] for h in trial["history"]}
        if trial["status"] == "DONE":
            assert frozen.value == pytest.approx(trial["metrics"]["val/macro_f1"])
    # the baselines are the study's first trials, each naming its point
    assert [t.user_attrs.get("baseline") for t in study.trials] == [0, 1, None]


def test_search_falls_back_to_cpu_with_one_warning(search):
    # no GPU in the local Ray cluster: gpu 0.5 becomes 0 with exactly one warning line
    assert search["proc"].stdout.count("no GPU in the Ray cluster") == 1


def test_search_logs_parent_and_nested_runs_to_mlflow(search):
    client, summary = search["client"], search["summary"]
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id])
    parent_id = summary["tracking"]["parent_run_id"]
    nested = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_id]
    # one parent run and one nested run per trial
    assert {r.info.run_id for r in runs} == {parent_id} | {r.info.run_id for r in nested}
    assert len(nested) == 3
    # the parent holds the space file, the best config and the best trial's metric
    parent = client.get_run(parent_id)
    artifacts = {a.path for a in client.list_artifacts(parent_id)}
    assert {"space.yaml", "best.yaml", "summary.json"} <= artifacts
    assert parent.data.metrics["val/macro_f1"] == summary["best"]["metrics"]["val/macro_f1"]
    # the experiment is filed as model training in MLflow 3, not GenAI
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    for run_ in nested:
        trial = next(t for t in summary["trials"] if t["mlflow_run_id"] == run_.info.run_id)
        # params are the searched keys (plus task and model), the rest of the config is config.yaml
        assert set(run_.data.params) == {"optim.lr", "loss.focal_gamma", "task", "model.name"}
        assert float(run_.data.params["optim.lr"]) == trial["params"]["optim.lr"]
        config = client.download_artifacts(run_.info.run_id, "config.yaml", str(search["root"]))
        assert yaml.safe_load(Path(config).read_text())["optim"]["lr"] == trial["params"]["optim.lr"]
        # the two baseline points are the first two trials, tagged and named so; the third is sampled
        index = int(run_.data.tags["trial_index"])
        assert run_.data.tags["baseline"] == str(index <= 2).lower()
        name = run_.info.run_name
        assert name.startswith(f"t0{index} baseline " if index <= 2 else f"t0{index} ") and "lr=" in name
        assert "focal_gamma=" in name and (index <= 2) == ("baseline" in name)
        if trial["status"] == "FAILED":
            # a failed trial's run says so, with the reason
            assert run_.info.status == "FAILED"
            assert "NonFiniteLossError" in run_.data.tags["failure_reason"]
            continue
        # a finished trial has one metric point per epoch it ran, at step = epoch
        history = client.get_metric_history(run_.info.run_id, "val/macro_f1")
        assert sorted(m.step for m in history) == list(range(1, trial["epochs"] + 1))
        assert run_.info.status == "FINISHED"
        assert run_.data.tags["early_stopped"] == str(trial["epochs"] < 2)


def test_export_then_retrain_one_epoch(search):
    root, summary = search["root"], search["summary"]
    proc = run(["-m", "search", "export", "results/tiny", "-o", "best.yaml"], root)
    assert proc.returncode == 0, proc.stderr
    exported = yaml.safe_load((root / "best.yaml").read_text())
    best = summary["best"]
    # the export is the base config with the best trial's values filled in
    assert exported["optim"]["lr"] == best["params"]["optim.lr"]
    assert exported["loss"]["focal_gamma"] == best["params"]["loss.focal_gamma"]
    assert exported["model"]["name"] == "resnet10t" and exported["data"]["image_size"] == 32
    # its source is named in the header comments
    text = (root / "best.yaml").read_text()
    assert best["trial_id"] in text and best["mlflow_run_id"] in text
    proc = run(["-m", "training", "train", "best.yaml", "--epochs", "1", "--out", "retrain"], root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # retraining saves weights and metrics, and logs a run to the search's MLflow store
    assert (root / "retrain" / "model.pt").stat().st_size > 0
    metrics = json.loads((root / "retrain" / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1]
    experiment = search["client"].get_experiment_by_name("tiny")
    retrains = search["client"].search_runs([experiment.experiment_id], "tags.kind = 'retrain'")
    assert len(retrains) == 1 and "val/macro_f1" in retrains[0].data.metrics


def test_second_run_under_the_same_name_is_refused(search):
    root = search["root"]
    before = (root / "results" / "tiny" / "summary.json").read_text()
    proc = run(["-m", "search", "run", "tiny.yaml", "--results", "results"], root)
    # refused with exit 2, naming --name, and the first search's files are untouched
    assert proc.returncode == 2 and "--name" in proc.stderr
    assert (root / "results" / "tiny" / "summary.json").read_text() == before


def test_search_shows_progress_and_a_final_summary(search):
    out, summary = search["proc"].stdout, search["summary"]
    for trial in summary["trials"]:
        # every trial's start, and each epoch it ran, appear as a progress line while the search runs
        assert f"{trial['trial_id']} started" in out
        for epoch in range(1, trial["epochs"] + 1):
            assert f"{trial['trial_id']} epoch {epoch} val/macro_f1=" in out
    # the end shows the top trials table, the best trial and where results and MLflow live
    assert "top trials of 'tiny'" in out and f"best: {summary['best']['trial_id']}" in out
    assert "mlflow ui --backend-store-uri sqlite:///" in out


def test_finished_search_keeps_only_the_best_checkpoint(search):
    tune_dir = search["root"] / "results" / "tiny" / "tune"
    holders = {p.parent.name for p in tune_dir.glob("*/checkpoint_*")}
    # once finished, only the best trial keeps checkpoints: the results tree stays small
    assert holders == {search["summary"]["best"]["trial_id"]}


def test_report_recomputes_the_best_trials_confusion_matrix(search):
    root = search["root"]
    proc = run(["-m", "search", "report", "results/tiny"], root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = (root / "results" / "tiny" / "report" / "confusion.csv").read_text().strip().splitlines()
    counts = [[int(v) for v in row.split(",")[1:]] for row in rows[1:]]
    splits = load_splits(DataConfig.model_validate(SPACE["data"]))
    # one row and column per class, counting every validation image exactly once
    assert len(counts) == len(splits.class_names) and all(len(row) == len(splits.class_names) for row in counts)
    assert sum(map(sum, counts)) == len(splits.val)
