"""The layering rules of ARCHITECTURE.md, read from the source (no import of the code under test):
`training` never imports the search layer, Ray or Optuna; MLflow stays in the tracking module;
`search` never asks which task it runs; the task package never imports the epoch loop; the torch-free
modules stay torch-free and the fast-error path reads training through them only; no private
attribute of Ray, Optuna or MLflow is used."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from training.schema.task_keys import TASK_KEYS

ROOT = Path(__file__).resolve().parents[1]
TASK_NAMES = set(TASK_KEYS)
# a task's name and the words in it ('semi', 'detection'): what a test on a task name compares against
TASK_WORDS = TASK_NAMES | {word for name in TASK_NAMES for word in name.split("_")}


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


# read before torch so that a bad space file is answered in under a second (issues 16, 25), and
# `search keys` and `search export` start at once
FAST_PATH = ["search/spec.py", "search/keys.py", "search/export.py"]
# the torch-free layer they read training through: the typed config, every module of training/schema/
# but the maintainer's `write_timm_models` (it imports timm to write the list `model_names` reads), and
# the data kinds' up-front checks (`check_data`)
TORCH_FREE_LAYER = ("training.config", "training.schema", "training.data.registry")
TORCH_FREE = [
    "training/config.py",
    *(str(p.relative_to(ROOT)) for p in sources("training/schema") if p.name != "write_timm_models.py"),
    *FAST_PATH,
]


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


def absolute(node: ast.ImportFrom, path: Path, root: Path) -> str:
    """The module a `from ... import` names, a relative one resolved against the file's package."""
    if not node.level:
        return node.module
    package = path.relative_to(root).parent.parts
    return ".".join([*package[: len(package) - node.level + 1], *filter(None, [node.module])])


def imported_modules(path: Path, root: Path = ROOT, lazy: bool = True) -> set[str]:
    """Every dotted module the file imports, at any depth (lazy imports too, unless `lazy` is False:
    then only the module-level statements, those that run on import), relative ones resolved;
    `from a import b` counts as `a` and `a.b`: b may be a module."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree) if lazy else tree.body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = absolute(node, path, root)
            names.update([module, *(f"{module}.{alias.name}" for alias in node.names)])
    return names


def module_level_imports(path: Path) -> set[str]:
    return packages(ast.parse(path.read_text()).body)


def task_name_tests(path: Path) -> list[str]:
    """`x == "detection"`, `"detection" in x`, `x.startswith("semi")`...: a comparison against a task name."""
    found, where = [], path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    for node in ast.walk(ast.parse(path.read_text())):
        constants = []
        if isinstance(node, ast.Compare):
            constants = [n for n in [node.left, *node.comparators] if isinstance(n, ast.Constant)]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in {"startswith", "endswith"}:
            constants = [n for n in node.args if isinstance(n, ast.Constant)]
        for const in constants:
            if const.value in TASK_WORDS:
                found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
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


def outside_the_torch_free_layer(path: Path) -> set[str]:
    """The training modules `path` imports on import that are not in TORCH_FREE_LAYER."""
    reached = {name for name in imported_modules(path, lazy=False) if name.startswith("training.")}
    return {name for name in reached if not any(name == p or name.startswith(f"{p}.") for p in TORCH_FREE_LAYER)}


@pytest.mark.parametrize("name", FAST_PATH)
def test_the_fast_error_path_reads_training_only_through_the_torch_free_layer(name):
    # a module of the loop, a task or a model would load torch before a space file's mistake is answered
    assert outside_the_torch_free_layer(ROOT / name) == set(), name


def test_the_torch_free_layer_probe_finds_a_heavy_training_module(tmp_path):
    probe = tmp_path / "spec.py"
    probe.write_text("from training.schema.errors import ConfigError\nfrom training.loop.runtime import Runtime\n"
                     "def check():\n    from training.tasks import get_task\n")  # fmt: skip
    # the rule above must be able to fail: a module-level import of the loop is found; the lazy one of
    # the torch path (`check_plan` asks the task) is not the fast path's
    assert outside_the_torch_free_layer(probe) == {"training.loop.runtime", "training.loop.runtime.Runtime"}


def imports_the_loop(path: Path, root: Path = ROOT) -> bool:
    return any(name == "training.loop.fit" or name.startswith("training.loop.fit.") for name in imported_modules(path, root))


@pytest.mark.parametrize("path", sources("training/tasks"), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_task_package_never_imports_the_epoch_loop(path):
    # one direction: training.loop.fit drives a task through its interface; a task importing the loop back
    # is a cycle (issue 24), even as a lazy import inside a method
    assert not imports_the_loop(path), path


def test_the_epoch_loop_probe_finds_a_lazy_or_relative_import(tmp_path):
    probe = tmp_path / "training" / "tasks" / "base.py"
    probe.parent.mkdir(parents=True)
    for source in ["def f():\n    from training.loop.fit import training_step\n", "from ..loop.fit import fit\n",
                   "from training.loop import fit\n", "from ..loop import fit\n", "import training.loop.fit as loop\n"]:  # fmt: skip
        probe.write_text(source)
        # the rule above must be able to fail: each way of importing the loop is found
        assert imports_the_loop(probe, tmp_path), source
    probe.write_text("from training.loop.fitting import x\nfrom . import fit_helpers\nfrom training.loop import step\n")
    # ...and neither a module whose name merely starts with `fit` nor the loop package's one step is the loop
    assert not imports_the_loop(probe, tmp_path)


def test_the_search_layer_never_tests_a_task_name():
    found = [hit for path in sources("search") for hit in task_name_tests(path)]
    # search/ calls tasks only through the Task interface: a new task needs no edit there
    assert found == [], "\n".join(found)


def test_the_task_name_probe_finds_a_task_name_test(tmp_path):
    # under tmp_path, not search/: a probe in the source tree would be seen by a test run beside this one
    probe = tmp_path / "probe.py"
    probe.write_text('def f(task):\n    return "detection" in task or task.startswith("semi")\n')
    # the rule above must be able to fail: a hand-written task-name test is found
    assert len(task_name_tests(probe)) == 2


def test_the_cli_entry_modules_import_no_heavy_library_at_module_level():
    heavy = {"torch", "ray", "mlflow", "optuna"}
    # `--help` and input errors must not pay for torch: the verbs import their heavy modules lazily
    for name in ["search/cli.py", "search/__main__.py", "training/__main__.py"]:
        assert not module_level_imports(ROOT / name) & heavy, name


# ----------------------------------------------------------- public APIs of Ray, Optuna and MLflow
LIBRARIES = ("ray", "optuna", "mlflow")


def private_uses(path: Path) -> list[str]:
    """`thing._name` on anything but our own `self`/`cls`, and `_name` imports, from a library."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in LIBRARIES:
            parts = node.module.split(".") + [alias.name for alias in node.names]
            found += [f"{path.name}:{node.lineno}: from {node.module} import ..." for p in parts if p.startswith("_")][:1]
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            if ast.unparse(node.value) not in ("self", "cls") and not ast.unparse(node.value).startswith("super("):
                found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    return found


def library_bases(path: Path) -> dict[str, list[type]]:
    """Our classes in `path` -> the Ray/Optuna/MLflow classes they inherit from (their whole MRO)."""
    import importlib

    imported_names = {}
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in LIBRARIES:
            for alias in node.names:
                imported_names[alias.asname or alias.name] = (node.module, alias.name)
    bases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            found = [getattr(importlib.import_module(imported_names[b.id][0]), imported_names[b.id][1])
                     for b in node.bases if isinstance(b, ast.Name) and b.id in imported_names]  # fmt: skip
            mro = [c for base in found for c in base.__mro__ if c.__module__.split(".")[0] in LIBRARIES]
            if mro:
                bases[node.name] = mro
    return bases


def own_private_names(path: Path, class_name: str) -> set[str]:
    tree = ast.parse(path.read_text())
    (cls,) = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == class_name]
    return {n.attr for n in ast.walk(cls) if isinstance(n, ast.Attribute) and ast.unparse(n.value) == "self"
            and n.attr.startswith("_") and not n.attr.startswith("__")}  # fmt: skip


SEARCH_SOURCES = sources("search") + sources("benchmarks")


@pytest.mark.parametrize("path", SEARCH_SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_attribute_of_a_library_is_read_or_written(path):
    # a Ray or Optuna minor release may rename its private attributes without a word (issue 24)
    assert private_uses(path) == []


@pytest.mark.parametrize("path", SEARCH_SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_subclass_of_a_library_class_keeps_its_own_state_out_of_the_library_s_private_names(path):
    import inspect

    for class_name, mro in library_bases(path).items():
        ours = own_private_names(path, class_name)
        for base in mro:
            # every `self.x` the library's module uses, in this base or any class beside it
            library = ast.parse(inspect.getsource(inspect.getmodule(base)))
            theirs = {n.attr for n in ast.walk(library) if isinstance(n, ast.Attribute) and ast.unparse(n.value) == "self"}
            assert not ours & theirs, f"{class_name} writes {base.__name__}'s private {sorted(ours & theirs)}"


def test_the_private_attribute_probes_find_one(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from ray.tune.schedulers import FIFOScheduler\n"
        "class Rungs(FIFOScheduler):\n    def __init__(self):\n        self._metric = 'x'\n"
        "def f(searcher):\n    return searcher._ot_study\n"
    )
    assert private_uses(probe) == ["probe.py:6: searcher._ot_study"]
    (name, mro), = library_bases(probe).items()
    assert name == "Rungs" and "_metric" in own_private_names(probe, name)
    with pytest.raises(AssertionError, match="_metric"):
        test_a_subclass_of_a_library_class_keeps_its_own_state_out_of_the_library_s_private_names(probe)
