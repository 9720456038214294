"""Aggregate training images/s of 1, 2, 4 and 8 trials sharing one GPU (fractions 1, 1/2, 1/4, 1/8),
each capped at its memory fraction (training/runtime.py) with AMP and channels_last on; and one trial
with AMP/channels_last off. Trials run as Ray tasks holding their GPU fraction, as in a search (or,
where Ray cannot be imported, as spawned processes running the same trial function). Needs a CUDA
GPU: without one it says so, writes `"measured": false` and exits 0.

    python -m benchmarks.gpu_packing           # resnet18 at 64 and 128 px, the detector at 256 px
    python -m benchmarks.gpu_packing --smoke   # resnet18 at 64 px, 1 and 2 trials, short windows
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from benchmarks.common import RESULTS_DIR, print_table, write_figures

# (label, task, backbone, image size, batch size)
WORKLOADS = [
    ("resnet18@64", "classification", "resnet18", 64, 64),
    ("resnet18@128", "classification", "resnet18", 128, 64),
    ("detector@256", "detection", "resnet18", 256, 8),
]
PACKINGS = [1, 2, 4, 8]


def trial(spec: dict[str, Any]) -> dict[str, Any]:
    """One packed trial: our task and epoch loop on its GPU share for `seconds` after a warm-up
    epoch; (wall time, images) at the end of each epoch, and its peak GPU memory."""
    from training.config import TrainConfig
    from training.fit import train_one_epoch
    from training.optim import create_optimizer, create_scheduler
    from training.runtime import Runtime
    from training.tasks import create_task

    cfg = TrainConfig.model_validate(
        {
            "task": spec["task"],
            "data": {"image_size": spec["size"], "batch_size": spec["batch"], "synthetic": {"count": spec["images"], "seed": 0}},
            "model": {"name": spec["model"]},
            "optim": {"schedule": "constant"},
            "train": {"device": "cuda", "amp": spec["amp"], "channels_last": spec["amp"]},
        }
    )
    runtime = Runtime.from_config(cfg.train, cpu_threads=spec["cpu_threads"], gpu_fraction=spec["fraction"])
    runtime.apply()
    torch.cuda.reset_peak_memory_stats()
    try:
        task = create_task(cfg, runtime)
        optimizer = create_optimizer(task.model, cfg.optim)
        scheduler = create_scheduler(optimizer, cfg.optim, 10_000, len(task.train_loader))
        scaler = runtime.grad_scaler()
        per_epoch = len(task.train_loader) * cfg.data.batch_size
        train_one_epoch(task, optimizer, scheduler, scaler, None, 1)  # warm-up: cuDNN autotune, allocator
        marks, epoch, began = [], 1, time.time()
        marks.append((began, 0))
        while time.time() - began < spec["seconds"]:
            epoch += 1
            train_one_epoch(task, optimizer, scheduler, scaler, None, epoch)  # .item() per step syncs
            marks.append((time.time(), per_epoch))
        return {"marks": marks, "peak_reserved_mib": torch.cuda.max_memory_reserved() / 2**20, "oom": False}
    except torch.OutOfMemoryError as exc:
        return {"marks": [], "peak_reserved_mib": torch.cuda.max_memory_reserved() / 2**20, "oom": True, "error": str(exc)[:200]}


def aggregate_rate(results: list[dict[str, Any]]) -> float:
    """images/s of all trials together over the window where every one of them was timing
    (epochs that ended inside it; their start is the previous mark)."""
    if any(not r["marks"] for r in results):
        return 0.0
    start = max(r["marks"][0][0] for r in results)
    end = min(r["marks"][-1][0] for r in results)
    if end <= start:
        return 0.0
    images = 0.0
    for r in results:
        for (t0, _), (t1, n) in zip(r["marks"], r["marks"][1:]):
            overlap = max(0.0, min(t1, end) - max(t0, start))
            images += n * overlap / (t1 - t0)  # the share of the epoch inside the window
    return images / (end - start)


class Utilization:
    """Mean GPU utilization (%) while a block runs, from nvidia-smi (pynvml is not a dependency)."""

    def __init__(self, interval: float = 0.5):
        self.interval, self.samples, self._stop = interval, [], threading.Event()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", "0"],
                capture_output=True, text=True,
            )
            if out.returncode == 0 and out.stdout.strip():
                self.samples.append(float(out.stdout.split()[0]))

    def __enter__(self) -> Utilization:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        if shutil.which("nvidia-smi"):
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


def launch_ray(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import ray

    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    # max_calls=1: a fresh worker per trial, so no earlier trial's cached GPU memory or memory cap lingers
    remote = ray.remote(max_calls=1)(trial)
    futures = [remote.options(num_gpus=s["fraction"], num_cpus=s["cpu_threads"]).remote(s) for s in specs]
    return ray.get(futures)


def launch_processes(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # spawn, not fork: CUDA cannot be re-initialized in a forked child
    with multiprocessing.get_context("spawn").Pool(len(specs)) as pool:
        return pool.map(trial, specs)


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def measure(workload: tuple, packed: int, amp: bool, args: argparse.Namespace, launch) -> dict[str, Any]:
    label, task, model, size, batch = workload
    cpus = max(1, (torch.multiprocessing.cpu_count() - 1) // packed)
    spec = {"task": task, "model": model, "size": size, "batch": batch, "images": args.images, "amp": amp,
            "fraction": 1.0 / packed, "cpu_threads": min(cpus, 4), "seconds": args.seconds}
    with Utilization() as utilization:
        results = launch([spec] * packed)
    return {
        "workload": label, "trials": packed, "fraction": 1.0 / packed, "amp_channels_last": amp,
        "aggregate_images_per_s": aggregate_rate(results), "gpu_util_mean_pct": utilization.mean,
        "peak_reserved_mib_per_trial": [r["peak_reserved_mib"] for r in results], "oom": any(r["oom"] for r in results),
        "errors": [r["error"] for r in results if r.get("error")],
    }


def no_gpu(args: argparse.Namespace, console: Console) -> int:
    reason = "no CUDA GPU on this machine"
    console.print(f"gpu_packing: {reason}; nothing measured (run it on a GPU host)")
    write_figures("gpu_packing", {"measured": False, "reason": reason, "smoke": args.smoke}, args.out)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="timed window per trial, after a warm-up epoch")
    parser.add_argument("--images", type=int, default=1024, help="synthetic images per trial (75%% train)")
    parser.add_argument("--processes", action="store_true", help="spawned processes instead of Ray tasks")
    parser.add_argument("--smoke", action="store_true", help="tiny settings for the test suite")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="where gpu_packing.json goes")
    args = parser.parse_args(argv)
    console = Console()
    if not torch.cuda.is_available():
        return no_gpu(args, console)
    workloads, packings = WORKLOADS, PACKINGS
    if args.smoke:
        workloads, packings, args.seconds, args.images = WORKLOADS[:1], [1, 2], 2.0, 256
    from training.tasks import TASKS

    skipped = [w[0] for w in workloads if w[1] not in TASKS]
    workloads = [w for w in workloads if w[1] in TASKS]
    use_ray = ray_available() and not args.processes
    launch = launch_ray if use_ray else launch_processes
    runs = []
    for workload in workloads:
        runs += [measure(workload, k, True, args, launch) for k in packings]
        runs.append(measure(workload, 1, False, args, launch))
    rows, speedups = [], {}
    for workload in workloads:
        mine = [r for r in runs if r["workload"] == workload[0]]
        single = next(r for r in mine if r["trials"] == 1 and r["amp_channels_last"])["aggregate_images_per_s"]
        for r in mine:
            r["speedup_vs_one_trial"] = r["aggregate_images_per_s"] / single if single else None
            rows.append([workload[0], r["trials"], "on" if r["amp_channels_last"] else "off", r["aggregate_images_per_s"],
                         r["speedup_vs_one_trial"] or 0.0, r["gpu_util_mean_pct"] or "n/a", max(r["peak_reserved_mib_per_trial"] or [0]), "yes" if r["oom"] else "no"])
        four = next((r for r in mine if r["trials"] == 4 and r["amp_channels_last"]), None)
        speedups[workload[0]] = four["speedup_vs_one_trial"] if four else None
    figures = {
        "measured": True, "gpu": torch.cuda.get_device_name(0), "launcher": "ray" if use_ray else "processes (spawn)",
        "seconds": args.seconds, "images": args.images, "runs": runs, "skipped_workloads": skipped,
        "speedup_4_packed": speedups, "smoke": args.smoke,
    }
    print_table(console, f"gpu packing on {figures['gpu']} ({figures['launcher']})",
                ["workload", "trials", "AMP+CL", "images/s", "x one trial", "GPU util %", "peak MiB/trial", "OOM"], rows)
    if skipped:
        console.print(f"not measured (task not registered here): {', '.join(skipped)}")
    path = write_figures("gpu_packing", figures, args.out)
    console.print(f"figures: {path}")
    print("ratios: 4 packed / 1 trial = " + ", ".join(f"{k} {v:.2f}x" for k, v in speedups.items() if v is not None))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
