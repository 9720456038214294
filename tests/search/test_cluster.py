"""A search on an existing Ray cluster (`--address`): a real `ray start --head` on localhost.

Four trials run at once on it, all logging to one SQLite MLflow store: none may lose a write.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

RAY = str(Path(sys.executable).parent / "ray")
SPACE = {
    "name": "cluster",
    "task": "classification",
    "data": {"kind": "synthetic", "image_size": 32, "batch_size": 16, "synthetic": {"count": 48, "seed": 2}},
    "base": {"model": {"name": "resnet10t"}, "optim": {"schedule": "constant"}},
    "space": {"optim.lr": {"loguniform": [1.0e-4, 1.0e-2]}},
    "search": {"metric": "val/macro_f1", "noise_seeds": 0, "confirm": False, "num_samples": 4, "max_concurrent": 4, "seed": 3},
    "scheduler": {"name": "none", "max_epochs": 3},
    "resources": {"cpu": 1, "gpu": 0},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Head and driver agree on authentication: off for this throw-away localhost cluster (Ray enables token
# auth on `ray start` when ~/.ray/auth_token exists; a driver given an explicit address then needs
# RAY_AUTH_MODE=token, as the README's "Scaling out" says).
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled"}


@pytest.fixture
def ray_head(tmp_path):
    """A real single-node Ray cluster with 4 CPUs, started and stopped by the test."""
    port = free_port()
    temp = Path("/tmp") / f"rt{port}"  # short: Ray's socket paths are length-limited
    command = [RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=4", "--num-gpus=0",
               "--include-dashboard=false", f"--temp-dir={temp}", "--disable-usage-stats"]
    subprocess.run(command, check=True, capture_output=True, timeout=180, env=ENV)
    yield f"127.0.0.1:{port}"
    subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120, env=ENV)


def test_search_runs_on_an_existing_cluster(tmp_path, ray_head):
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump(SPACE))
    command = [sys.executable, "-m", "search", "run", "cluster.yaml", "--results", "results", "--address", ray_head]
    proc = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((tmp_path / "results" / "cluster" / "summary.json").read_text())
    state = json.loads((tmp_path / "results" / "cluster" / "search.json").read_text())
    # the search ran on the given cluster, and every trial finished there
    assert state["address"] == ray_head
    assert [t["status"] for t in summary["trials"]] == ["DONE"] * 4
    client = MlflowClient(summary["tracking"]["uri"])
    for trial in summary["trials"]:
        history = client.get_metric_history(trial["mlflow_run_id"], "val/macro_f1")
        # four trials at once on one SQLite store: every epoch of every trial was written
        assert sorted(m.step for m in history) == [1, 2, 3]
        # and its params and config.yaml artifact: nothing lost either
        run = client.get_run(trial["mlflow_run_id"])
        assert set(trial["params"]) <= set(run.data.params)
        assert "config.yaml" in [a.path for a in client.list_artifacts(run.info.run_id)]
