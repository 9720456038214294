"""Tiny trained runs shared by the predict and export-model tests: each task's is trained once per session."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from tests.training.inference.tiny_runs import train_run


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Callable[[str], Path]:
    """trained_run(task) -> the folder of a real 1-epoch run of `tiny_runs.tiny_config(task)`."""
    runs: dict[str, Path] = {}

    def get(task: str) -> Path:
        if task not in runs:
            runs[task] = train_run(task, tmp_path_factory.mktemp("runs") / task)
        return runs[task]

    return get
