"""How the search driver's cost grows with the number of trials: 10, 100, 500 trials of the `probe`
task (a linear model on random tensors, milliseconds per trial) through `search.runner.run_search`,
i.e. the same Tune trainable, OptunaSearch, MLflow callback, journal and summary as real trials.

    python -m benchmarks.scale            # 10, 100, 500 trials
    python -m benchmarks.scale --smoke    # 5 trials
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from benchmarks.common import RESULTS_DIR, folder_mib, print_table, run_our_search, scratch_results, write_figures

EPOCHS = 3  # reports per trial, as in the anchor (40 trivial trials of 3 reports)


def probe_space(trials: int, concurrency: int) -> dict[str, Any]:
    return {
        "name": f"scale{trials}",
        "task": "probe",
        "data": {"batch_size": 16},
        "base": {},
        "space": {"optim.lr": {"loguniform": [1.0e-3, 1.0e-1]}, "optim.weight_decay": {"uniform": [0.0, 0.1]}},
        "search": {"metric": "val/loss", "mode": "min", "noise_seeds": 0, "confirm": False, "num_samples": trials, "max_concurrent": concurrency, "seed": 0},
        "scheduler": {"name": "none", "max_epochs": EPOCHS},
        "resources": {"cpu": 1, "gpu": 0},
    }


def rss_bytes() -> int:
    """This process's resident memory now (Linux /proc; no psutil in the environment)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class PeakMemory:
    """The driver's peak resident memory while a block runs (sampled; ru_maxrss only ever grows)."""

    def __init__(self, interval: float = 0.1):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> PeakMemory:
        self.peak = rss_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def trial_compute_s(summary: dict[str, Any]) -> float:
    """Seconds spent inside the epochs themselves (the task's work, not the machinery's)."""
    return sum(h.get("time/epoch_s", 0.0) for t in summary["trials"] for h in t["history"])


def measure(trials: int, concurrency: int, results: Path) -> dict[str, Any]:
    db = results / "mlflow.db"
    db_before = db.stat().st_size if db.exists() else 0
    with PeakMemory() as memory:
        began = time.perf_counter()
        summary = run_our_search(probe_space(trials, concurrency), results)
        wall = time.perf_counter() - began
    finished = sum(t["status"] != "FAILED" for t in summary["trials"])
    compute = trial_compute_s(summary)
    tree = folder_mib(results / summary["name"])
    return {
        "trials": trials,
        "finished": finished,
        "wall_s": wall,
        "compute_s": compute,
        "s_per_trial": wall / trials,
        "overhead_s_per_trial": (wall - compute / concurrency) / trials,
        "driver_peak_rss_mib": memory.peak / 2**20,
        "results_tree_mib": tree,
        "results_tree_kib_per_trial": tree * 1024 / trials,
        "mlflow_db_growth_mib": ((db.stat().st_size if db.exists() else 0) - db_before) / 2**20,
    }


def measure_sizes(args: argparse.Namespace, sizes: list[int], results: Path) -> dict[str, Any]:
    """Ray's start-up once (outside every measured search), then one search per size; the figures
    are written after each size, so a long run stopped early keeps what it measured."""
    from search.tuner import init_ray

    began = time.perf_counter()
    init_ray(None, results)
    figures = {"concurrency": args.concurrency, "epochs_per_trial": EPOCHS, "ray_init_s": time.perf_counter() - began, "runs": []}
    for n in sizes:
        figures["runs"].append(measure(n, args.concurrency, results))
        figures["marginal_s_per_trial"] = marginal_costs(figures["runs"])
        write_figures("scale", {**figures, "smoke": args.smoke}, args.out)
    return figures


def marginal_costs(rows: list[dict[str, Any]]) -> list[float]:
    """Seconds per added trial between consecutive sizes: the fixed cost cancels out."""
    return [(b["wall_s"] - a["wall_s"]) / (b["trials"] - a["trials"]) for a, b in zip(rows, rows[1:])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[10, 100, 500], help="search sizes to run")
    parser.add_argument("--concurrency", type=int, default=2, help="trials at once (search.max_concurrent)")
    parser.add_argument("--smoke", action="store_true", help="tiny settings for the test suite: one search of 5 trials")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="where scale.json goes")
    args = parser.parse_args(argv)
    sizes = [5] if args.smoke else sorted(args.trials)
    console = Console()
    with scratch_results("bscale") as results:
        figures = measure_sizes(args, sizes, results)
    rows = figures["runs"]
    print_table(
        console,
        f"scale: probe trials of {EPOCHS} epochs, concurrency {args.concurrency} (Ray init {figures['ray_init_s']:.1f} s, not included)",
        ["trials", "wall s", "s/trial", "overhead s/trial", "driver peak MiB", "tree KiB/trial", "MLflow db MiB"],
        [
            [r["trials"], r["wall_s"], r["s_per_trial"], r["overhead_s_per_trial"], r["driver_peak_rss_mib"], r["results_tree_kib_per_trial"], r["mlflow_db_growth_mib"]]
            for r in rows
        ],
    )
    path = args.out / "scale.json"
    console.print(f"figures: {path}")
    # flat = the marginal cost of a trial does not grow with the search's size (the first search's
    # wall time also holds the per-search fixed cost, which the marginal costs cancel)
    marginal = figures["marginal_s_per_trial"]
    growth = f"{marginal[-1] / marginal[0]:.2f}x" if len(marginal) > 1 else "n/a (one step)"
    print(
        f"ratios: marginal s/trial between sizes {', '.join(f'{m:.3f}' for m in marginal) or 'n/a'} (last/first {growth}); "
        f"tree KiB/trial {rows[-1]['results_tree_kib_per_trial']:.1f} at {rows[-1]['trials']} vs {rows[0]['results_tree_kib_per_trial']:.1f} at {rows[0]['trials']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
