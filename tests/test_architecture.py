"""The layering rules of ARCHITECTURE.md, read from the source (no import of the code under test):
`training` never imports the search layer, Ray or Optuna; MLflow stays in the tracking module;
`search` never asks which task it runs; the torch-free modules stay torch-free."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from training.task_keys import TASK_KEYS

ROOT = Path(__file__).resolve().parents[1]
TASK_NAMES = set(TASK_KEYS)
# a task's name and the words in it ('semi', 'detection'): what a test on a task name compares against
TASK_WORDS = TASK_NAMES | {word for name in TASK_NAMES for word in name.split("_")}
# read before torch so that a bad space file is answered in under a second (issues 16, 25), and
# `search keys` and `search export` start at once
TORCH_FREE = [
    "training/config.py",
    "training/config_file.py",
    "training/errors.py",
    "training/task_keys.py",
    "training/metric_names.py",
    "training/model_names.py",
    "search/spec.py",
    "search/keys.py",
    "search/export.py",
]


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def packages(nodes) -> set[str]:
    """Top-level package of every module the import statements among `nodes` name."""
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def imported(path: Path) -> set[str]:
    """Every package the file imports, at any depth: lazy imports inside functions count too."""
    return packages(ast.walk(ast.parse(path.read_text())))


def module_level_imports(path: Path) -> set[str]:
    return packages(ast.parse(path.read_text()).body)


def task_name_tests(path: Path) -> list[str]:
    """`x == "detection"`, `"detection" in x`, `x.startswith("semi")`...: a comparison against a task name."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        constants = []
        if isinstance(node, ast.Compare):
            constants = [n for n in [node.left, *node.comparators] if isinstance(n, ast.Constant)]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in {"startswith", "endswith"}:
            constants = [n for n in node.args if isinstance(n, ast.Constant)]
        for const in constants:
            if const.value in TASK_WORDS:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    return found


@pytest.mark.parametrize("path", sources("training"), ids=lambda p: str(p.relative_to(ROOT)))
def test_training_never_imports_the_search_layer_ray_or_optuna(path):
    # training is a plain PyTorch library: usable and testable without Ray, Optuna or the search
    assert not imported(path) & {"search", "ray", "optuna"}, path


def test_only_the_tracking_module_of_training_imports_mlflow():
    users = {str(p.relative_to(ROOT)) for p in sources("training") if "mlflow" in imported(p)}
    # training.tracking is the one MLflow client both the search and `training train` share
    assert users == {"training/tracking.py"}


@pytest.mark.parametrize("name", TORCH_FREE)
def test_the_fast_error_path_imports_no_heavy_library(name):
    heavy = {"torch", "torchvision", "torchmetrics", "timm", "ray", "mlflow", "optuna", "albumentations", "kornia"}
    # these modules answer a bad space file before torch is imported, so not even lazily
    assert not imported(ROOT / name) & heavy, name


def test_the_search_layer_never_tests_a_task_name():
    found = [hit for path in sources("search") for hit in task_name_tests(path)]
    # search/ calls tasks only through the Task interface: a new task needs no edit there
    assert found == [], "\n".join(found)


def test_the_task_name_probe_finds_a_task_name_test(tmp_path):
    probe = ROOT / "search" / "_probe_for_test.py"
    # the rule above must be able to fail: a hand-written task-name test is found
    try:
        probe.write_text('def f(task):\n    return "detection" in task or task.startswith("semi")\n')
        assert len(task_name_tests(probe)) == 2
    finally:
        probe.unlink()


def test_the_cli_entry_modules_import_no_heavy_library_at_module_level():
    heavy = {"torch", "ray", "mlflow", "optuna"}
    # `--help` and input errors must not pay for torch: the verbs import their heavy modules lazily
    for name in ["search/cli.py", "search/__main__.py", "training/__main__.py"]:
        assert not module_level_imports(ROOT / name) & heavy, name
