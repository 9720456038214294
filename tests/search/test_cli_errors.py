"""`python -m search` on bad input: exit 2, one `error: FILE: KEY: message` line on stderr, no traceback,
and no Ray (every case fails before the tuner starts).

Each case is a real subprocess. They mostly spend their time importing torch (and Ray for `name-taken`),
so the module fixture starts them all at once and the tests read their results.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from search.cli import outcome

EXIT_USER = 2
# A valid space (the cases break one thing each); tiny, like conftest's minimal_space.
SPACE = {
    "data": {"kind": "synthetic", "image_size": 32, "synthetic": {"count": 40}},
    "base": {"model": {"name": "resnet10t"}},
    "space": {"optim.lr": {"loguniform": [1.0e-4, 1.0e-2]}},
    "scheduler": {"max_epochs": 2},
}
SUMMARY = '{"name": "taken", "best": null}\n'


@dataclass
class Case:
    args: list[str]  # after `python -m search`
    setup: Callable[[Path], Any]  # writes the case's files under its folder
    prefix: str  # how the one error line starts


@dataclass
class Result:
    folder: Path
    returncode: int
    stdout: str
    stderr: str


def space_file(name: str, **sections: Any) -> Callable[[Path], Any]:
    def write(folder: Path) -> None:
        (folder / name).write_text(yaml.safe_dump({**SPACE, **sections}, sort_keys=False))

    return write


def taken_search(folder: Path) -> None:
    space_file("space.yaml")(folder)
    (folder / "results" / "taken").mkdir(parents=True)
    (folder / "results" / "taken" / "summary.json").write_text(SUMMARY)
    (folder / "results" / "taken" / "space.yaml").write_text("space: {}\n")


CASES = {
    "missing-file": Case(["run", "missing.yaml"], lambda folder: None, "error: missing.yaml: file not found"),
    "unknown-key": Case(
        ["run", "typo.yaml"],
        space_file("typo.yaml", serach={"metric": "val/loss"}),
        "error: typo.yaml: serach: unknown key; did you mean 'search'?",
    ),
    "lo-ge-hi": Case(
        ["run", "range.yaml"],
        space_file("range.yaml", space={"optim.lr": {"uniform": [0.1, 0.01]}}),
        "error: range.yaml: space.optim.lr.uniform: expected lo < hi",
    ),
    "export-no-summary": Case(
        ["export", "empty"], lambda folder: (folder / "empty").mkdir(), "error: empty: no summary.json here"
    ),
    # the same error, naming a folder as users do: the line gets longer than 80 characters
    "export-no-summary-long": Case(
        ["export", "results/quickstart"],
        lambda folder: (folder / "results" / "quickstart").mkdir(parents=True),
        "error: results/quickstart: no summary.json here",
    ),
    "name-taken": Case(
        ["run", "space.yaml", "--name", "taken", "--results", "results"], taken_search, "error: --name: "
    ),
}
BAD_FILES = ["missing-file", "unknown-key", "lo-ge-hi", "export-no-summary"]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, Result]:
    """Every case run as `python -m search ...` in its own folder, all started together."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    running = {}
    for name, case in CASES.items():
        folder = tmp_path_factory.mktemp(name)
        case.setup(folder)
        # Ray would create its session under RAY_TMPDIR: its absence shows Ray never started
        running[name] = (
            folder,
            subprocess.Popen(
                [sys.executable, "-m", "search", *case.args],
                cwd=folder,
                env={**env, "RAY_TMPDIR": str(folder / "ray-tmp")},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
        )
    done = {}
    for name, (folder, proc) in running.items():
        try:
            stdout, stderr = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        done[name] = Result(folder, proc.returncode, stdout, stderr)
    return done


@pytest.mark.parametrize("case", BAD_FILES)
def test_cli_bad_input_exits_2_with_one_error_line(results, case):
    result = results[case]
    # a user error exits with code 2
    assert result.returncode == EXIT_USER, result.stderr
    # stderr is exactly one line
    assert len(result.stderr.splitlines()) == 1, result.stderr
    # that line is `error: FILE: ...`, naming the file at fault
    assert result.stderr.startswith(CASES[case].prefix), result.stderr
    # no traceback reaches the user
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize("case", list(CASES))
def test_cli_bad_input_fails_before_ray_starts(results, case):
    # validation errors come before the tuner: Ray never creates a session
    assert not (results[case].folder / "ray-tmp").exists()


def test_cli_run_into_existing_search_is_refused(results):
    result = results["name-taken"]
    existing = result.folder / "results" / "taken"
    # a second search under a name already used exits 2
    assert result.returncode == EXIT_USER, result.stderr
    # the error points at --name and says the folder holds a search
    assert result.stderr.startswith("error: --name: ") and "already holds a search" in " ".join(result.stderr.split())
    # no traceback reaches the user
    assert "Traceback" not in result.stdout + result.stderr
    # the existing search's files are left exactly as they were
    assert {p.name: p.read_text() for p in existing.iterdir()} == {"summary.json": SUMMARY, "space.yaml": "space: {}\n"}
    # and nothing else is written beside it (no tracking database, no artifacts)
    assert sorted(p.name for p in (result.folder / "results").iterdir()) == ["taken"]


@pytest.mark.parametrize("case", ["export-no-summary-long", "name-taken"])
def test_cli_long_error_stays_on_one_line(results, case):
    result = results[case]
    # the error is longer than 80 characters (name-taken names an absolute folder)
    assert len(result.stderr.replace("\n", "")) > 80
    # still, the user gets exactly one line
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_cli_run_unreachable_address_is_a_user_error(tmp_path, minimal_space, write_space):
    write_space(minimal_space, "ok.yaml")
    proc = subprocess.run(
        [sys.executable, "-m", "search", "run", "ok.yaml", "--address", "127.0.0.1:1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    # a cluster that cannot be reached is bad input: exit 2, one line naming --address, and no results folder
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--address" in proc.stderr, proc.stderr
    assert not (tmp_path / "results" / "ok").exists()


@pytest.mark.parametrize("name", ["../evil", "a/b", ".hidden"])
def test_cli_run_name_cannot_escape_the_results_folder(tmp_path, minimal_space, write_space, name):
    write_space(minimal_space, "ok.yaml")
    proc = subprocess.run(
        [sys.executable, "-m", "search", "run", "ok.yaml", "--name", name, "--results", "results"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    # a name that is not a plain folder name is refused before anything is written
    assert proc.returncode == 2 and "--name" in proc.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "evil").exists()


def test_cli_run_never_evaluates_yaml_values_as_code(tmp_path, minimal_space, write_space):
    marker = tmp_path / "pwned"
    minimal_space["space"]["model.name"] = {"choice": [f"__import__('os').system('touch {marker}')"]}
    write_space(minimal_space, "evil.yaml")
    proc = subprocess.run(
        [sys.executable, "-m", "search", "run", "evil.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    # a string stays a string: it is rejected as an unknown model name, and the code never ran
    assert proc.returncode == 2 and "model.name" in proc.stderr
    assert not marker.exists()


# ---------------------------------------------------------------- a mistake answered in under a second

HEAVY = ("torch", "ray", "mlflow")
# runs the CLI, then says which heavy modules it had loaded by the time it answered
PROBE = """
import sys
from search.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print("loaded:", ",".join(m for m in {heavy} if m in sys.modules))
sys.exit(code)
""".format(heavy=HEAVY)
CPU_BOUND_S = 1.0  # the child's own CPU time: what the answer costs, whatever else loads the machine
WALL_BOUND_S = 10.0  # generous: a shared 2-core machine may keep the process waiting
FAST_CASES = {
    "missing-path": (["run", "missing.yaml"], None, "error: missing.yaml: file not found"),
    "misspelled-key": (["run", "s.yaml"], {"serach": {"metric": "val/loss"}}, "error: s.yaml: serach: unknown key"),
    "bad-value": (["run", "s.yaml"], {"space": {"optim.lr": {"uniform": [0.1, 0.01]}}}, "error: s.yaml: space.optim.lr.uniform"),
    "gpu-share": (["run", "s.yaml"], {"resources": {"gpu": 0.3}}, "error: s.yaml: resources.gpu: 0.3 does not divide a card"),
    "ignored-key": (
        ["run", "s.yaml"],
        {"task": "detection", "space": {"loss.focal_gamma": {"uniform": [1.0, 2.0]}}},
        "error: s.yaml: space.loss.focal_gamma: task 'detection' does not read 'loss.focal_gamma'; of loss it reads: loss.rpn, loss.roi",
    ),
    "check-bad-key": (["check", "s.yaml"], {"space": {"optim.lrr": {"uniform": [0.1, 0.2]}}}, "error: s.yaml: space.optim.lrr"),
    "wrong-metric": (
        ["run", "s.yaml"],
        {"search": {"metric": "val/f1"}},
        "error: s.yaml: search.metric: task 'classification' does not report 'val/f1'; did you mean",
    ),
    "wrong-constraint-metric": (
        ["run", "s.yaml"],
        {"search": {"constraints": ["val/mis_rate <= 0.1"]}},
        "error: s.yaml: search.constraints.0: task 'classification' does not report 'val/mis_rate'; did you mean 'val/miss_rate'?",
    ),
    "wrong-model-name": (
        ["run", "s.yaml"],
        {"base": {"model": {"name": "resnet10"}}},
        "error: s.yaml: base.model.name: unknown timm model 'resnet10'; did you mean 'resnet10t'?",
    ),
    "wrong-searched-model-name": (
        ["check", "s.yaml"],
        {"space": {"model.name": {"choice": ["resnet10t", "mobilenetv2_10"]}}},
        "error: s.yaml: space.model.name: value 'mobilenetv2_10' does not fit model.name: unknown timm model",
    ),
    "wrong-searched-detector": (
        ["run", "s.yaml"],
        {"task": "detection", "space": {"model.detector": {"choice": ["faster_rcnn", "retina"]}}},
        "error: s.yaml: space.model.detector: value 'retina' does not fit model.detector",
    ),
    "grace-over-budget": (
        ["run", "s.yaml"],
        {"scheduler": {"max_epochs": 6, "grace_period": 10}},
        "error: s.yaml: scheduler.grace_period: 10 is more than the 6 epochs of a full trial (scheduler.max_epochs)",
    ),
    "keys-unknown-task": (["keys", "--task", "clasification"], None, "error: --task: unknown task 'clasification'; did you mean"),
    "resume-nothing": (["resume", "nowhere"], None, "error: nowhere: no search.json here"),
    "report-nothing": (["report", "nowhere"], None, "error: nowhere: no summary.json here"),
}


def run_timed(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, float, float]:
    """(the process, its wall seconds, its CPU seconds)."""
    before, began = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    wall, after = time.monotonic() - began, resource.getrusage(resource.RUSAGE_CHILDREN)
    return proc, wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


@pytest.mark.parametrize("case", list(FAST_CASES))
def test_cli_mistake_is_answered_before_torch_ray_or_mlflow_load(tmp_path, case):
    args, edits, prefix = FAST_CASES[case]
    if edits is not None:
        (tmp_path / "s.yaml").write_text(yaml.safe_dump({**SPACE, **edits}, sort_keys=False))
    proc, wall, cpu = run_timed(args, tmp_path)
    # bad input: exit 2 and one line saying what is wrong, where
    assert proc.returncode == EXIT_USER and proc.stderr.splitlines() == [proc.stderr.strip()], proc.stderr
    assert proc.stderr.startswith(prefix), proc.stderr
    # answered before torch, Ray or MLflow were imported (they cost seconds each)
    assert proc.stdout.strip() == "loaded:", proc.stdout
    # in under a second of the process's own time, and a few seconds of wall time on a loaded machine
    assert cpu < CPU_BOUND_S and wall < WALL_BOUND_S, (cpu, wall)


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["export", "--help"]])
def test_cli_help_loads_nothing_heavy(tmp_path, args):
    proc, wall, cpu = run_timed(args, tmp_path)
    # help is printed at once: exit 0, usage on stdout, nothing heavy imported
    assert proc.returncode == 0 and "usage: python -m search" in proc.stdout
    assert proc.stdout.strip().endswith("loaded:")
    assert cpu < CPU_BOUND_S and wall < WALL_BOUND_S, (cpu, wall)


@pytest.mark.parametrize("args", [["keys"], ["keys", "--task", "semi_supervised_detection", "semi.*"]])
def test_cli_keys_loads_nothing_heavy(tmp_path, args):
    proc, wall, cpu = run_timed(args, tmp_path)
    # the keys are listed from the config's pydantic models: exit 0, one line per key, nothing heavy imported
    assert proc.returncode == 0 and proc.stdout.count("(float, default") > 3, proc.stdout
    assert proc.stdout.strip().endswith("loaded:")
    assert cpu < CPU_BOUND_S and wall < WALL_BOUND_S, (cpu, wall)


def finished_search(folder: Path) -> Path:
    """A hand-made finished search (its summary.json alone) whose best trial calibrated a threshold."""
    trial = {
        "trial_id": "t1",
        "status": "DONE",
        "feasible": True,
        "epochs": 2,
        "metrics": {"val/macro_f1": 0.8, "val/threshold_at_target_miss": 0.37},
        "params": {},
        "config": {"task": "classification", "eval": {"target_miss_rate": 0.05}},
        "mlflow_run_id": "run-t1",
    }
    summary = {
        "name": "done",
        "space_file": "space.yaml",
        "tracking": {"uri": "sqlite:///mlflow.db", "experiment": "done"},
        "metric": "val/macro_f1",
        "mode": "max",
        "constraints": [],
        "trials": [trial],
        "best": trial,
    }
    folder.mkdir()
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def test_cli_export_loads_nothing_heavy(tmp_path):
    finished_search(tmp_path / "done")
    proc, _, _ = run_timed(["export", "done", "-o", "best.yaml"], tmp_path)
    # the best trial's config is written, with the decision threshold its task sets from its metrics
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load((tmp_path / "best.yaml").read_text())["eval"]["decision_threshold"] == 0.37
    # export reads JSON and writes YAML: torch, Ray and MLflow (seconds each) stay unloaded
    assert proc.stdout.strip().endswith("loaded:"), proc.stdout


def test_cli_python_tag_is_one_line_of_ours(tmp_path):
    (tmp_path / "tag.yaml").write_text("space:\n  optim.lr: !!python/object/apply:os.system ['true']\n")
    proc, _, _ = run_timed(["run", "tag.yaml"], tmp_path)
    # a !!python tag gets our one line naming key, tag and line, never PyYAML's text
    assert proc.returncode == EXIT_USER and proc.stderr.splitlines() == [
        "error: tag.yaml: space.optim.lr: YAML tag !!python/object/apply:os.system is not allowed (line 2): "
        "write a plain value (number, string, list, mapping)"
    ]


# ---------------------------------------------------------------- exit codes of a finished search


def summary_of(statuses: list[str], feasible: bool, constraints: list[str], best: bool) -> dict:
    trials = [{"status": s, "feasible": feasible} for s in statuses]
    return {"trials": trials, "constraints": constraints, "metric": "val/macro_f1", "best": trials[0] if best else None}


@pytest.mark.parametrize(
    "summary, code, line",
    [
        (summary_of(["DONE", "STOPPED"], True, [], best=True), 0, None),
        (None, 130, None),
        (
            summary_of(["DONE", "FAILED"], False, ["val/miss_rate <= 0.02"], best=False),
            3,
            "error: no trial met the constraints (val/miss_rate <= 0.02): 1 finished, none feasible",
        ),
        (summary_of(["FAILED", "FAILED"], True, ["val/miss_rate <= 0.02"], best=False), 1, "error: no trial produced val/macro_f1: 2 failed"),
    ],
    ids=["best", "interrupted", "no-trial-feasible", "all-failed"],
)
def test_search_outcome_has_its_own_exit_code(summary, code, line):
    # 0 = a best trial; 3 = trials ran but none met the constraints (the user's bounds, not our failure);
    # 1 = every trial failed; 130 = interrupted; each non-zero end but an interrupt says why in one line
    assert outcome(summary) == (code, line)
