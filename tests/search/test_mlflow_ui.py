"""The MLflow UI as a user opens it after a search: headless Chromium (Debian's `chromium`) on a real
`mlflow server` over the search's own SQLite store, loading the experiment page (the trials charted), the
compare view of the trial runs and a trial's page, each saved as a screenshot and read as a DOM.

Screenshots go to $MLFLOW_UI_SHOTS when set (to look at them), else to the test's temporary folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
import yaml

SPACE = {
    "name": "ui",
    "task": "classification",
    "data": {"kind": "synthetic", "image_size": 32, "batch_size": 16, "synthetic": {"count": 40, "seed": 1}},
    "base": {"model": {"name": "resnet10t"}, "loss": {"name": "focal"}, "optim": {"schedule": "constant"}},
    "space": {"optim.lr": {"loguniform": [1.0e-4, 1.0e-2]}, "loss.focal_gamma": {"uniform": [0.0, 3.0]}},
    "search": {
        "metric": "val/macro_f1",
        "num_samples": 3,
        "max_concurrent": 2,
        "seed": 0,
        "noise_seeds": 0,
        "confirm": False,
        "baseline": [{"optim.lr": 1.0e-3, "loss.focal_gamma": 2.0}],
    },
    "scheduler": {"name": "asha", "max_epochs": 2, "grace_period": 1},
    "resources": {"cpu": 1, "gpu": 0},
}
SEARCHED = list(SPACE["space"])
# The UI's own switch between its GenAI and model-training views (MLflow 3.17 decides by it, not by
# the experiment's kind tag): the links the README gives carry it.
MODEL_TRAINING_VIEW = "workflowType=machine_learning"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1600,1400", "--virtual-time-budget=60000", "--run-all-compositor-stages-before-draw",
]  # fmt: skip


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI") == "true":  # .ci/run installs it: missing there is a broken CI, not a skip
        pytest.fail("chromium not found under CI=true (.ci/run installs Debian's chromium package)")
    pytest.skip("chromium not installed (apt-get install chromium): the MLflow UI check needs a browser")


@pytest.fixture(scope="module")
def search(tmp_path_factory) -> dict:
    """A real 3-trial search (the first trial the baseline point) into its own results folder."""
    root = tmp_path_factory.mktemp("ui_search")
    (root / "ui.yaml").write_text(yaml.safe_dump(SPACE, sort_keys=False))
    command = [sys.executable, "-m", "search", "run", "ui.yaml", "--results", "results"]
    proc = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((root / "results" / "ui" / "summary.json").read_text())
    return {"root": root, "summary": summary}


@pytest.fixture(scope="module")
def ui(search, start_mlflow_server) -> dict:
    """`mlflow server` over the search's store, and what the UI needs to link its pages."""
    server = start_mlflow_server(search["summary"]["tracking"]["uri"], search["root"])
    experiments = server["http"].get(
        f"{server['url']}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": "ui"}, timeout=30
    )
    return {**server, "experiment_id": experiments.json()["experiment"]["experiment_id"]}


@pytest.fixture(scope="module")
def browse(chromium, tmp_path_factory):
    """browse(name, url) -> the page's DOM once its requests settled; its screenshot is NAME.png."""
    shots = Path(os.environ.get("MLFLOW_UI_SHOTS") or tmp_path_factory.mktemp("ui_shots"))
    shots.mkdir(parents=True, exist_ok=True)

    def load(name: str, url: str) -> str:
        profile = tmp_path_factory.mktemp(f"chromium_{name}")  # a new user: no view remembered
        shot = shots / f"{name}.png"
        command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={shot}", "--dump-dom", url]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0 and shot.stat().st_size > 0, proc.stderr[-2000:]
        return proc.stdout

    return load


def trial_runs(search: dict) -> list[dict]:
    return sorted(search["summary"]["trials"], key=lambda t: t["trial_id"])


def get_run(ui: dict, run_id: str) -> dict:
    return ui["http"].get(f"{ui['url']}/api/2.0/mlflow/runs/get", params={"run_id": run_id}, timeout=30).json()["run"]


def run_names(ui: dict, search: dict) -> dict[str, str]:
    """run id -> run name, as the server has them."""
    return {t["mlflow_run_id"]: get_run(ui, t["mlflow_run_id"])["info"]["run_name"] for t in trial_runs(search)}


def run_page(ui: dict, run_id: str) -> str:
    return f"{ui['url']}/#/experiments/{ui['experiment_id']}/runs/{run_id}"


def test_the_parent_runs_link_charts_every_trial_by_name(ui, search, browse):
    parent_id = search["summary"]["tracking"]["parent_run_id"]
    note = {t["key"]: t["value"] for t in get_run(ui, parent_id)["data"]["tags"]}["mlflow.note.content"]
    links = re.findall(r"\]\((#/experiments/[^)]+)\)", note)
    # the parent run's description links to its trials' view
    assert len(links) == 1 and parent_id in unquote(links[0])
    parent_page = browse("parent", f"{run_page(ui, parent_id)}?{MODEL_TRAINING_VIEW}")
    # the parent page shows that link
    assert re.search(r'href="#/experiments/[^"]*parentRunId[^"]*"', parent_page)
    dom = browse("experiment", f"{ui['url']}/{links[0]}")
    names = run_names(ui, search)
    # the trials, listed flat: every trial run, each named by its searched values
    for name in names.values():
        assert name in dom
    assert all(f"{key.split('.')[-1]}=" in name for name in names.values() for key in SEARCHED)
    # the baseline trial is named so
    assert sum(" baseline " in name for name in names.values()) == 1
    # charted: a line per trial in the metric charts (plotly traces), the search metric among them
    assert dom.count('class="trace scatter') >= len(names) and "val/macro_f1" in dom
    # in the UI's model-training view, not GenAI's
    assert "Evaluation runs" not in dom


def test_compare_view_names_the_searched_keys(ui, search, browse):
    ids = [t["mlflow_run_id"] for t in trial_runs(search)]
    runs, experiments = quote(json.dumps(ids)), quote(json.dumps([ui["experiment_id"]]))
    dom = browse("compare", f"{ui['url']}/#/compare-runs?runs={runs}&experiments={experiments}&{MODEL_TRAINING_VIEW}")
    # the parallel-coordinates plot and the params table offer exactly the searched keys (and task, model)
    for key in SEARCHED:
        assert key in dom
    assert "data.coco" not in dom and "loss.rpn" not in dom
    # every trial run is a column, by name
    for name in run_names(ui, search).values():
        assert name in dom


def test_trial_page_shows_its_searched_values_and_config_artifact(ui, search, browse):
    trial = trial_runs(search)[0]
    page = run_page(ui, trial["mlflow_run_id"])
    dom = browse("trial", f"{page}?{MODEL_TRAINING_VIEW}")
    # the trial's page: its name, its searched params, its baseline tag, the model-training view
    assert run_names(ui, search)[trial["mlflow_run_id"]] in dom
    for key in SEARCHED:
        assert key in dom
    assert "baseline" in dom and "Evaluation runs" not in dom
    artifacts = browse("trial_artifacts", f"{page}/artifacts?{MODEL_TRAINING_VIEW}")
    # its artifacts: the resolved config, retrainable as it is
    assert "config.yaml" in artifacts
