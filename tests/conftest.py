"""Shared fixtures: a tiny valid space file, a writer for space files under tmp_path, and a real
`python -m search run` of a space file."""

from __future__ import annotations

import copy
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
import yaml

# Small enough that load_plan's checks (and any trial) stay cheap: 32 px, 40 synthetic images, resnet10t.
MINIMAL_SPACE: dict[str, Any] = {
    "task": "classification",
    "data": {"kind": "synthetic", "image_size": 32, "batch_size": 8, "synthetic": {"count": 40, "seed": 0}},
    "base": {"model": {"name": "resnet10t"}},
    "space": {"optim.lr": {"loguniform": [1.0e-4, 1.0e-2]}},
    "scheduler": {"name": "asha", "max_epochs": 3},
}


@pytest.fixture
def minimal_space() -> dict[str, Any]:
    """A fresh copy of MINIMAL_SPACE, free to edit."""
    return copy.deepcopy(MINIMAL_SPACE)


@pytest.fixture
def write_space(tmp_path: Path) -> Callable[..., Path]:
    """write_space(content, name='space.yaml') -> path; content is a mapping (dumped as YAML) or raw text."""

    def write(content: dict[str, Any] | str, name: str = "space.yaml") -> Path:
        path = tmp_path / name
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False))
        return path

    return write


@pytest.fixture(scope="module")
def one_cpu_thread():
    """Tiny models train fastest on one thread, and then do not fight other test processes for cores.
    A module opts in with `pytestmark = pytest.mark.usefixtures("one_cpu_thread")`."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def run_search_cli(tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """`python -m search run` of a space (as a subprocess, under tmp_path/results); it must succeed.
    Returns the search's summary.json."""

    def run(space: dict[str, Any], timeout: int = 600) -> dict[str, Any]:
        (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
        command = [sys.executable, "-m", "search", "run", "space.yaml", "--results", "results"]
        proc = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return json.loads((tmp_path / "results" / space["name"] / "summary.json").read_text())

    return run


@pytest.fixture
def rendered() -> Callable[[list], str]:
    """rendered(parts) -> the plain text rich prints for those renderables (tables, lines), 200 columns."""
    from rich.console import Console

    def render(parts: list) -> str:
        out = io.StringIO()
        console = Console(file=out, width=200, color_system=None)
        for part in parts:
            console.print(part)
        return out.getvalue()

    return render
