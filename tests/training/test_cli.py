"""`python -m training train`: where its files go (never into the working directory unless asked),
and what it says of settings its task never reads."""

from __future__ import annotations

import subprocess
import sys

import yaml
from mlflow.tracking import MlflowClient

TINY = {
    "data": {"kind": "synthetic", "image_size": 32, "batch_size": 8, "synthetic": {"count": 40}},
    "model": {"name": "resnet10t"},
    "train": {"epochs": 1, "device": "cpu"},
    "tracking": {"experiment": "retrain"},
}


def test_cli_train_keeps_mlflow_artifacts_beside_the_store_not_in_the_working_directory(tmp_path):
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    # a classification config with a semi-supervised setting: trains, with one warning line naming the key
    (work / "c.yaml").write_text(yaml.safe_dump({**TINY, "semi": {"unsup_weight": 3.0}}))
    uri = f"sqlite:///{elsewhere / 'm.db'}"
    elsewhere.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "training", "train", "c.yaml", "--tracking-uri", uri, "--out", str(tmp_path / "out")],
        cwd=work, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "warning: c.yaml: semi.unsup_weight: task 'classification' reads no semi.* key" in proc.stderr
    # nothing is written into the working directory: no results/, no mlartifacts/
    assert sorted(p.name for p in work.iterdir()) == ["c.yaml"]
    # the run's artifacts sit beside the store it logged to
    client = MlflowClient(uri)
    run = client.search_runs([client.get_experiment_by_name("retrain").experiment_id])[0]
    assert run.info.artifact_uri.startswith((elsewhere / "mlartifacts").as_uri())
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"config.yaml", "metrics.json", "model.pt"}
    # and the weights and metrics are under --out
    assert (tmp_path / "out" / "model.pt").is_file() and (tmp_path / "out" / "metrics.json").is_file()
