"""What every benchmark shares: where figures go, the table and ratio line, our search run in-process."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import torch
import yaml
from rich.console import Console
from rich.table import Table

RESULTS_DIR = Path("results/benchmarks")


def machine() -> dict[str, Any]:
    """Where the figures were measured (they mean little without it)."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpus": os.cpu_count(), "memory_gib": round(memory_gib, 1), "gpu": gpu, "python": platform.python_version(), "torch": torch.__version__}


def write_figures(name: str, figures: dict[str, Any], out_dir: Path = RESULTS_DIR) -> Path:
    """results/benchmarks/<name>.json, with the machine and the time it was measured."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    stamped = {"benchmark": name, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(), **figures}
    path.write_text(json.dumps(stamped, indent=2))
    return path


def print_table(console: Console, title: str, header: list[str], rows: list[list[Any]]) -> None:
    """The table through rich; the scripts print their final ratio line with plain print(), which
    rich cannot wrap at 80 columns in a log (tests read it as the last line)."""
    table = Table(title=title)
    for column in header:
        table.add_column(column, justify="left" if column == header[0] else "right")
    for row in rows:
        table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
    console.print(table)


def folder_mib(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def run_our_search(space: dict[str, Any], results: Path, quiet: bool = True) -> dict[str, Any]:
    """`python -m search run` in this process: load_plan on the space written as YAML, then
    run_search with MLflow on SQLite under `results` (Ray stays up between calls, as in one CLI run
    per search it would start once)."""
    from search.runner import run_search
    from search.tuner import RunOptions
    from training.tracking import default_tracking_uri

    results.mkdir(parents=True, exist_ok=True)
    plan = load_space(space)
    options = RunOptions(out_dir=results / plan.name, tracking_uri=default_tracking_uri(results))
    return run_search(plan, options, Console(quiet=quiet))


def load_space(space: dict[str, Any]):
    """The checked SearchPlan of a space given as a mapping, exactly as `python -m search run` reads it."""
    from search.spec import load_plan

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{space['name']}.yaml"
        path.write_text(yaml.safe_dump(space, sort_keys=False))
        return load_plan(path)


@contextlib.contextmanager
def scratch_results(prefix: str) -> Iterator[Path]:
    """A throwaway results folder with a short path under /tmp (Ray's sockets live under RESULTS/ray
    and their paths must stay under 107 bytes, see search.tuner); Ray is shut down before it goes."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield folder
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(folder, ignore_errors=True)
