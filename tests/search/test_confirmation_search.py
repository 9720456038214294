"""Issue 23 for real (Ray Tune, Optuna, MLflow, tiny data): the baseline's noise seeds, the confirmation
of the top config, the baseline winning ties, the verdict on a test split no trial opens."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from search.layout import JOURNAL_FILE

SPACE = {
    "name": "confirmed",
    "task": "classification",
    "data": {"kind": "synthetic", "image_size": 32, "batch_size": 16, "test_fraction": 0.4,
             "synthetic": {"count": 100, "seed": 1, "difficulty": 0.2}},  # fmt: skip
    "base": {"model": {"name": "resnet10t"}, "loss": {"name": "focal"}},
    "space": {"optim.lr": {"loguniform": [3.0e-4, 3.0e-2]}},
    "search": {
        "num_samples": 3,
        "max_concurrent": 2,
        "seed": 0,
        "baseline": [{"optim.lr": 1.0e-3}],
        "noise_seeds": 1,
        "confirm": {"top": 1, "seeds": 2},
    },
    "scheduler": {"name": "asha", "max_epochs": 2},
}


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=900, env=env)


@pytest.fixture(scope="module")
def search(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("confirm")
    (root / "space.yaml").write_text(yaml.safe_dump(SPACE))
    proc = run(["-m", "search", "run", "space.yaml", "--results", "results"], root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    folder = root / "results" / "confirmed"
    return {"root": root, "folder": folder, "proc": proc, "summary": json.loads((folder / "summary.json").read_text())}


def test_the_baseline_runs_noise_seeds_and_the_top_config_fresh_seeds(search):
    trials = search["summary"]["trials"]
    roles = sorted(str(t["role"]) for t in trials)
    # 3 sampled (the baseline among them), 1 noise seed of the baseline, 2 confirmation seeds
    assert roles == ["None", "None", "baseline", "confirm", "confirm", "noise"]
    baseline = next(t for t in trials if t["role"] == "baseline")
    noise = next(t for t in trials if t["role"] == "noise")
    confirm = [t for t in trials if t["role"] == "confirm"]
    # replicas run their config with another seed, for the full budget, whatever ASHA would say
    assert noise["group"] == baseline["trial_id"] and noise["params"] == baseline["params"] and noise["seed"] == 1
    assert noise["config"]["seed"] == 1 and all(t["status"] == "DONE" for t in [noise, *confirm])
    assert {t["seed"] for t in confirm} == {1, 2} and len({t["group"] for t in confirm}) == 1
    # the confirmed config is the best sampled one other than the baseline, by the search's score
    scores = {t["trial_id"]: t["metrics"]["val/macro_f1"] for t in trials if t["role"] is None}
    assert scores[confirm[0]["group"]] == max(scores.values())


def test_the_summary_keeps_the_noise_the_confirmation_and_the_verdict(search):
    summary = search["summary"]
    confirmation = summary["confirmation"]
    groups = {g["group"]: g for g in confirmation["groups"]}
    # the baseline's two runs and the candidate's two fresh seeds, with their mean and spread
    reference = next(g for g in groups.values() if g["reference"])
    assert reference["n"] == 2 and groups[confirmation["candidate"]]["n"] == 2
    assert reference["mean"] == pytest.approx(sum(reference["scores"]) / 2)
    # the exported trial is the candidate only if it beat the baseline beyond the noise
    exported = summary["best"]["trial_id"]
    assert exported == (confirmation["candidate"] if confirmation["outcome"] == "wins" else reference["group"])
    assert summary["noise"]["dof"] == 2 and summary["noise"]["text"].startswith("+-")
    verdict = summary["verdict"]
    # scored on the held-out test split (40 % of 100 images), the candidate's and the baseline's runs
    assert verdict["split"] == "test" and verdict["images"] == 40 and len(verdict["trials"]) == 4
    assert verdict["models"] == {"candidate": 2, "reference": 2}
    gain = verdict["differences"]["macro_f1"]
    assert gain["lo"] <= gain["value"] <= gain["hi"]
    assert set(verdict["differences"]) == {"macro_f1", "miss_rate", "overkill_rate"}
    assert verdict["text"].startswith("winner vs baseline on test: macro_f1 ")
    assert ("No evidence" in verdict["text"]) is (not verdict["evidence"])


def test_the_console_shows_the_noise_the_stops_and_ends_with_the_verdict(search):
    out = search["proc"].stdout
    # replicas say what they are when they start; the search's last line is the verdict
    assert "noise seed 1 of " in out and "confirmation seed 2 of " in out
    assert "seed noise: +-" in out
    assert out.strip().splitlines()[-1].startswith("winner vs baseline on test:") or "No evidence" in out.strip().splitlines()[-1]


def test_replicas_are_tagged_nested_runs_and_the_parent_holds_the_verdict(search):
    summary = search["summary"]
    client = MlflowClient(summary["tracking"]["uri"])
    parent = client.get_run(summary["tracking"]["parent_run_id"])
    # the parent run holds the verdict's text and its numbers, and the seed noise
    assert parent.data.tags["verdict"] == summary["verdict"]["text"]
    assert parent.data.metrics["verdict/macro_f1"] == pytest.approx(summary["verdict"]["differences"]["macro_f1"]["value"])
    assert "noise/sd" in parent.data.metrics
    for trial in summary["trials"]:
        if trial["role"] in ("noise", "confirm"):
            run = client.get_run(trial["mlflow_run_id"])
            # a replica's run says what it is, which config it repeats and with which seed
            assert run.data.tags["role"] == trial["role"] and run.data.tags["replica_of"] == trial["group"]
            assert run.data.params["seed"] == str(trial["seed"]) and f"seed={trial['seed']}" in run.info.run_name


def test_export_and_report_say_what_confirmation_and_the_verdict_found(search):
    root, folder = search["root"], search["folder"]
    proc = run(["-m", "search", "export", str(folder), "-o", "best.yaml"], root)
    assert proc.returncode == 0, proc.stderr
    header = (root / "best.yaml").read_text()
    assert "# confirmed: " in header and "# winner vs baseline on test:" in header
    proc = run(["-m", "search", "report", str(folder)], root)
    assert proc.returncode == 0, proc.stderr
    verdict = (folder / "report" / "verdict.md").read_text()
    assert "## Confirmation" in verdict and "## Verdict on test" in verdict
    assert (folder / "report" / "verdict.png").stat().st_size > 0
    # the leaderboard ranks the sampled trials only: replicas are the verdict's
    leaderboard = (folder / "report" / "leaderboard.csv").read_text().splitlines()
    assert len(leaderboard) == 1 + 3


def test_every_early_stop_says_which_rung_cut_it(search):
    stopped = [t for t in search["summary"]["trials"] if t["status"] == "STOPPED"]
    # a trial a rung stopped carries the rung's reason: the cut it was below and by how much
    assert all(t["stop_reason"].startswith("below the rung-") for t in stopped)
    journal = (search["folder"] / JOURNAL_FILE).read_text()
    # and every rung decision is journaled, made or waived (the baseline's pace, the seed noise)
    assert journal.count('"cut"') == len(stopped)


def test_a_search_on_k_folds_confirms_and_judges_with_every_fold_model(tmp_path):
    space = {**SPACE, "name": "folds", "data": {**SPACE["data"], "folds": 2},
             "search": {**SPACE["search"], "num_samples": 2, "confirm": {"top": 1, "seeds": 1}}}  # fmt: skip
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    proc = run(["-m", "search", "run", "space.yaml", "--results", "results"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((tmp_path / "results" / "folds" / "summary.json").read_text())
    # each trial trained 2 fold models: the verdict scored both of every run it compared
    verdict = summary["verdict"]
    assert verdict["models"] == {"candidate": 2 * 1, "reference": 2 * 2}
    # the checkpoint the verdict read holds the two fold models
    kept = next(t for t in summary["trials"] if t["trial_id"] == verdict["trials"][0])
    state = torch.load(Path(kept["checkpoint"]) / "state.pt", map_location="cpu", weights_only=False)
    assert [f["model"].keys() == state["model"].keys() for f in state["folds"]] == [True, True]


# ----------------------------------------------------------------------------- no trial opens a test image

AUDIT = textwrap.dedent(
    """
    import os, sys
    _watched, _log = os.environ.get("AUDIT_WATCH"), os.environ.get("AUDIT_LOG")

    def _hook(event, args):
        if event != "open" or not args or isinstance(args[0], int):
            return
        path = os.fsdecode(args[0])
        if _watched and path.startswith(_watched):
            with open(_log, "a") as handle:
                handle.write(f"{os.getpid()} {path}\\n")

    if _watched and _log:
        sys.addaudithook(_hook)
    """
)


def write_imagefolder(root: Path) -> None:
    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("val", 6), ("test", 6)):
        for cls, level in (("good", 60), ("scratch", 190)):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(count):
                image = np.clip(rng.normal(level, 25, (32, 32, 3)), 0, 255).astype(np.uint8)
                cv2.imwrite(str(folder / f"{i}.png"), image)


def test_no_trial_opens_a_test_image_and_the_verdict_does(tmp_path):
    data = tmp_path / "parts"
    write_imagefolder(data)
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(AUDIT)
    space = {
        **SPACE,
        "name": "folders",
        "data": {"kind": "imagefolder", "image_size": 32, "batch_size": 8, "imagefolder": {"root": str(data), "split": "folders"}},
        "search": {**SPACE["search"], "num_samples": 2, "confirm": {"top": 1, "seeds": 1}},
    }
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    log = tmp_path / "opened.txt"
    env = {**os.environ, "PYTHONPATH": f"{hooks}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "AUDIT_WATCH": str(data), "AUDIT_LOG": str(log)}  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "search", "run", "space.yaml", "--results", "results"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    stdout, stderr = process.communicate(timeout=900)
    assert process.returncode == 0, stdout + stderr
    trials = json.loads((tmp_path / "results" / "folders" / "summary.json").read_text())["trials"]
    assert len(trials) == 2 + 1 + 1  # the trials ran in Ray workers: processes other than the driver
    journal = (tmp_path / "results" / "folders" / JOURNAL_FILE).read_text()
    assert journal.count('"end": "FINISHED"') == 4
    opened = [line.split(" ", 1) for line in log.read_text().splitlines()]
    driver, test_folder = str(process.pid), str(data / "test")
    by_workers = {path for pid, path in opened if pid != driver}
    # the hook ran in the Ray workers that trained the trials: they read the training images ...
    assert any(path.startswith(str(data / "train")) for path in by_workers)
    # ... and none of them opened a test image
    assert not [path for path in by_workers if path.startswith(test_folder)]
    # the driver's verdict read every test image (12): what trials never see, only the verdict scores
    assert len({path for pid, path in opened if pid == driver and path.startswith(test_folder)}) == 12
