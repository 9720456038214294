"""A search logging to a real remote MLflow tracking server, checked through the server's REST API.

The server (`mlflow server`, SQLite backend, artifacts proxied over HTTP) runs as a subprocess on a
free localhost port; the search runs as `python -m search run ... --tracking-uri http://127.0.0.1:PORT`.
Everything is read back with plain HTTP requests, as any other client of the server would.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import yaml

SPACE = {
    "name": "tiny",
    "task": "classification",
    "data": {"kind": "synthetic", "image_size": 32, "batch_size": 16, "synthetic": {"count": 64, "seed": 1}},
    "base": {"model": {"name": "resnet10t"}, "loss": {"name": "focal"}, "optim": {"schedule": "constant"}},
    "space": {"optim.lr": {"choice": [0.003, 0.01]}, "loss.focal_gamma": {"uniform": [0.0, 3.0]}},
    "search": {"metric": "val/macro_f1", "noise_seeds": 0, "confirm": False, "num_samples": 2, "max_concurrent": 2, "seed": 0},
    "scheduler": {"name": "asha", "max_epochs": 2, "grace_period": 1},
    "resources": {"cpu": 1, "gpu": 0},
}
METRIC = "val/macro_f1"


@pytest.fixture(scope="module")
def server(start_mlflow_server, tmp_path_factory) -> dict:
    """A real `mlflow server` on a free localhost port, SQLite backend, artifacts served over HTTP."""
    root = tmp_path_factory.mktemp("mlflow_server")
    server = start_mlflow_server(f"sqlite:///{root / 'mlflow.db'}", root, "--artifacts-destination", str(root / "artifacts"))
    return {**server, "root": root}


@pytest.fixture(scope="module")
def search(server, tmp_path_factory) -> dict:
    """One real 2-trial search logging to the server; the results folder lies outside the working directory."""
    root = tmp_path_factory.mktemp("search_http")
    cwd = root / "work"
    cwd.mkdir()
    (cwd / "tiny.yaml").write_text(yaml.safe_dump(SPACE, sort_keys=False))
    args = ["-m", "search", "run", "tiny.yaml", "--tracking-uri", server["url"], "--results", str(root / "results")]
    proc = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=server["env"], capture_output=True, text=True, timeout=300
    )
    # a search against a tracking server finishes like one against the default SQLite store: exit 0
    assert proc.returncode == 0, proc.stdout + proc.stderr + "\n--- server log ---\n" + server["log"].read_text()
    summary = json.loads((root / "results" / "tiny" / "summary.json").read_text())
    return {"root": root, "cwd": cwd, "proc": proc, "summary": summary}


def api(server: dict, method: str, route: str, **kwargs) -> dict:
    """One call to the REST API (`/api/2.0/mlflow/...`), asserted to answer 200; its JSON body."""
    response = server["http"].request(method, f"{server['url']}/api/2.0/mlflow/{route}", timeout=30, **kwargs)
    assert response.status_code == 200, f"{method} {route}: {response.status_code} {response.text}"
    return response.json()


def experiment(server: dict) -> dict:
    return api(server, "GET", "experiments/get-by-name", params={"experiment_name": "tiny"})["experiment"]


def all_runs(server: dict) -> list[dict]:
    body = {"experiment_ids": [experiment(server)["experiment_id"]], "max_results": 1000}
    return api(server, "POST", "runs/search", json=body).get("runs", [])


def tags(run: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def params(run: dict) -> dict[str, str]:
    return {p["key"]: p["value"] for p in run["data"].get("params", [])}


def parent_and_nested(server: dict, search: dict) -> tuple[dict, list[dict]]:
    runs = all_runs(server)
    parent_id = search["summary"]["tracking"]["parent_run_id"]
    parents = [r for r in runs if r["info"]["run_id"] == parent_id]
    nested = [r for r in runs if tags(r).get("mlflow.parentRunId") == parent_id]
    return (parents[0] if parents else {}), nested


def test_search_creates_the_experiment_on_the_server_with_served_artifacts(server, search):
    found = experiment(server)
    # the experiment is named after the search and lives in the server's store
    assert found["name"] == "tiny" and found["lifecycle_stage"] == "active"
    # no artifact location is passed for a non-SQLite URI: the server's default (proxied artifacts) applies
    assert found["artifact_location"].startswith("mlflow-artifacts:")
    # the summary records the server's URI as where the search was tracked
    assert search["summary"]["tracking"]["uri"] == server["url"]
    # MLflow 3 files it as model training, not GenAI
    assert {t["key"]: t["value"] for t in found["tags"]}["mlflow.experimentKind"] == "custom_model_development"


def test_search_logs_one_parent_run_and_one_nested_run_per_trial(server, search):
    runs = all_runs(server)
    parent, nested = parent_and_nested(server, search)
    # exactly one top-level run (the parent), named after the search
    top = [r for r in runs if "mlflow.parentRunId" not in tags(r)]
    assert [r["info"]["run_id"] for r in top] == [parent["info"]["run_id"]]
    assert parent["info"]["run_name"] == "tiny"
    # one nested run per trial, and nothing else in the experiment
    assert len(nested) == 2 and len(runs) == 3
    # the nested runs are the ones the summary names for its trials
    assert {r["info"]["run_id"] for r in nested} == {t["mlflow_run_id"] for t in search["summary"]["trials"]}


def test_search_nested_runs_hold_params_and_one_metric_point_per_epoch(server, search):
    _, nested = parent_and_nested(server, search)
    trials = {t["mlflow_run_id"]: t for t in search["summary"]["trials"]}
    for run in nested:
        run_id, trial = run["info"]["run_id"], trials[run["info"]["run_id"]]
        # params are the searched keys with the trial's values, plus the task and model: nothing constant
        assert set(params(run)) == {"optim.lr", "loss.focal_gamma", "task", "model.name"}
        assert float(params(run)["optim.lr"]) == trial["params"]["optim.lr"]
        assert params(run)["task"] == "classification" and params(run)["model.name"] == "resnet10t"
        # the run is named by its index and searched values, not by the hex trial id (a tag)
        assert re.fullmatch(r"t0[12] lr=\S+ focal_gamma=\S+", run["info"]["run_name"]), run["info"]["run_name"]
        assert tags(run)["trial_id"] == trial["trial_id"]
        # the rest of the resolved config is one artifact, config.yaml, served over HTTP
        response = server["http"].get(
            f"{server['url']}/get-artifact", params={"path": "config.yaml", "run_uuid": run_id}, timeout=30
        )
        assert response.status_code == 200, response.text
        config = yaml.safe_load(response.text)
        assert config["optim"]["lr"] == trial["params"]["optim.lr"] and config["data"]["image_size"] == 32
        # the run's epochs_run tag agrees with the number of epochs the summary reports
        epochs = int(tags(run)["epochs_run"])
        assert epochs == trial["epochs"] and 1 <= epochs <= 2
        history = api(server, "GET", "metrics/get-history", params={"run_id": run_id, "metric_key": METRIC})
        # one point of the search metric per epoch run, at step = epoch
        assert sorted(m["step"] for m in history["metrics"]) == list(range(1, epochs + 1))
        # each trial finished normally
        assert run["info"]["status"] == "FINISHED"


def test_search_ends_the_parent_finished_and_leaves_no_run_running(server, search):
    parent, _ = parent_and_nested(server, search)
    # the parent is closed as FINISHED once the search is done
    assert parent["info"]["status"] == "FINISHED" and int(parent["info"].get("end_time", 0)) > 0
    # no run of the experiment is left RUNNING
    assert [r["info"]["run_id"] for r in all_runs(server) if r["info"]["status"] == "RUNNING"] == []


def test_search_parent_artifacts_are_listed_and_downloadable_over_http(server, search):
    parent, _ = parent_and_nested(server, search)
    parent_id = parent["info"]["run_id"]
    listing = api(server, "GET", "artifacts/list", params={"run_id": parent_id})
    # the parent holds the space file, the best config and the summary
    assert {"space.yaml", "best.yaml", "summary.json"} <= {f["path"] for f in listing.get("files", [])}
    http, url = server["http"], server["url"]
    response = http.get(f"{url}/get-artifact", params={"path": "best.yaml", "run_uuid": parent_id}, timeout=30)
    # best.yaml downloads over HTTP and is the same file the search wrote beside its results
    assert response.status_code == 200, response.text
    assert response.text == (search["root"] / "results" / "tiny" / "best.yaml").read_text()
    # it parses as a training config with an optim section holding the best trial's lr
    best = yaml.safe_load(response.text)
    assert isinstance(best.get("optim"), dict)
    assert best["optim"]["lr"] == search["summary"]["best"]["params"]["optim.lr"]
    # the proxied mlflow-artifacts route serves the run's artifacts as well (summary.json, same parent id)
    path = parent["info"]["artifact_uri"].removeprefix("mlflow-artifacts:").lstrip("/")
    response = http.get(f"{url}/api/2.0/mlflow-artifacts/artifacts/{path}/summary.json", timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["tracking"]["parent_run_id"] == parent_id
    # the artifacts were stored under the server's --artifacts-destination, not on the search's side
    assert (server["root"] / "artifacts" / path / "best.yaml").is_file()


def test_search_writes_no_local_mlflow_store_when_given_a_tracking_uri(search):
    cwd, results = search["cwd"], search["root"] / "results"
    # the tracking URI is honoured: no mlruns/, mlflow.db or mlartifacts/ in the working directory
    assert [p.name for p in cwd.iterdir() if p.name in {"mlruns", "mlflow.db", "mlartifacts"}] == []
    # nor the default SQLite store or its artifact root in the results folder
    assert not (results / "mlflow.db").exists() and not (results / "mlartifacts").exists()
    # nor an mlruns/ file store anywhere under the search's folders (cf. ray-project/ray#36257)
    assert list(search["root"].rglob("mlruns")) == []


def test_summary_points_to_the_server_not_mlflow_ui():
    from search.summary import mlflow_view_hint

    # a tracking server is opened in the browser; `mlflow ui` only takes local stores
    assert mlflow_view_hint("http://127.0.0.1:5000") == "open http://127.0.0.1:5000"
    assert mlflow_view_hint("sqlite:///r/mlflow.db").startswith("mlflow ui --backend-store-uri sqlite:")
