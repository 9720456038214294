"""Shared fixtures: a tiny valid space file and a writer for space files under tmp_path."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

import pytest
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
