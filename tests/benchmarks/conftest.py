"""Run a benchmark script at its --smoke settings, as a user would, and read the figures it wrote."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def run_benchmark(tmp_path: Path) -> Callable[..., tuple[dict[str, Any], str]]:
    """run_benchmark(name, *flags) -> (the JSON figures, stdout); fails with the output on a non-zero exit."""

    def run(name: str, *flags: str) -> tuple[dict[str, Any], str]:
        command = [sys.executable, "-m", f"benchmarks.{name}", "--smoke", "--out", str(tmp_path), *flags]
        proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return json.loads((tmp_path / f"{name}.json").read_text()), proc.stdout

    return run
