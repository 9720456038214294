"""One GPU, 1 to 8 trials: per workload the ceiling (the model's training step on one fixed batch
already on the GPU: the most this card can do for this model), one trial through our code
(`training.loop.fit`, as a search trial runs it) as images/s and as a share of that ceiling, 2, 4 and 8
trials packed at fractions 1/2 ... 1/8 (each capped at its memory share), AMP + channels_last on and
off, mean GPU utilization over the timed window (nvidia-smi) and peak reserved memory per trial.

Trials run as Ray tasks holding their CPU and GPU share, as in a search (`--launcher processes`:
spawned processes running the same trial function). Every measurement has its own time limit and
names the launcher that ran it; a Ray measurement that cannot start or ends past its limit says what
was pending and is rerun with spawned processes. Needs a CUDA GPU: without one it only checks both
launchers with tiny CPU trials, writes `"measured": false` and exits 0.

    python -m benchmarks.gpu_packing           # resnet18 @64 (+ with augmentation), Faster R-CNN @256
    python -m benchmarks.gpu_packing --smoke   # resnet18 @64, 1 and 2 trials, short windows
"""

from __future__ import annotations

import argparse
import gc
import logging
import multiprocessing
import os
import queue as queue_module
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from benchmarks.common import RESULTS_DIR, print_table, write_figures

AUGMENT = {"brightness": 0.2, "contrast": 0.2, "hflip": 0.5, "rotate": 10.0}  # as benchmarks.throughput
VAL_FRACTION = 0.03  # fit evaluates every epoch; a small split keeps the epoch mostly training


@dataclass(frozen=True)
class Workload:
    task: str
    model: str
    size: int
    batch: int
    images: int
    packings: tuple[int, ...]
    limit_s: float  # per measurement: start-up, data, ceiling, warm-up epoch, the timed window
    augment: dict[str, float] = field(default_factory=dict)
    detector: str | None = None


WORKLOADS = {
    "resnet18@64": Workload("classification", "resnet18", 64, 64, 4096, (1, 2, 4, 8), 120),
    "resnet18@64+augment": Workload("classification", "resnet18", 64, 64, 4096, (1,), 120, AUGMENT),
    "detector@256": Workload("detection", "resnet18", 256, 8, 512, (1, 4), 180, detector="faster_rcnn"),
    "resnet18@128": Workload("classification", "resnet18", 128, 64, 2048, (1, 4), 120),
}


@dataclass(frozen=True)
class Setting:
    """One measurement of a workload: how many trials share the GPU, and how each trains."""

    trials: int
    amp: bool = True  # AMP and channels_last together, as train.amp / train.channels_last
    compile: bool = False  # train.compile


DEFAULT_WORKLOADS = ["resnet18@64", "resnet18@64+augment", "detector@256"]
COMPILE_EXTRA_S = 120  # added to a compiled measurement's limit: torch.compile's first epoch
# Without a GPU: the launchers themselves, on trials too small to measure anything
CPU_CHECK = Workload("classification", "resnet10t", 32, 16, 64, (1, 2), 120)


def cores() -> int:
    """CPU cores this process may use. Ray is started with exactly this many, so the shares asked for
    and the cluster agree (os.cpu_count() counts the host's cores in a container, Ray the cgroup's)."""
    return len(os.sched_getaffinity(0))


class WindowOver(Exception):
    """Raised by the epoch callback to end `fit` once the timed window is over."""


class Window:
    """`fit`'s epoch callback: a mark (wall time, images trained) at the end of every epoch; the first
    epoch is the warm-up (cuDNN autotuning, allocator, caches), the window starts after it."""

    def __init__(self, marks: list[tuple[float, int]], images_per_epoch: int, seconds: float):
        self.marks, self.images, self.seconds = marks, images_per_epoch, seconds

    def __call__(self, report: Any) -> None:
        now = time.time()  # wall clock: comparable across the packed trials' processes
        self.marks.append((now, self.images if self.marks else 0))
        if now - self.marks[0][0] >= self.seconds:
            raise WindowOver


def trial_config(spec: dict[str, Any]):
    from training.config import TrainConfig

    model = {"name": spec["model"], **({"detector": spec["detector"]} if spec["detector"] else {})}
    return TrainConfig.model_validate(
        {
            "task": spec["task"],
            "data": {"image_size": spec["size"], "batch_size": spec["batch"], "val_fraction": VAL_FRACTION,
                     "synthetic": {"count": spec["images"], "seed": 0}},
            "model": model,
            "augment": spec["augment"],
            "optim": {"schedule": "constant", "lr": 1e-4},
            "train": {"epochs": 100_000, "amp": spec["amp"], "channels_last": spec["amp"], "compile": spec["compile"]},
        }
    )


def ceiling_rate(cfg, runtime, seconds: float) -> float:
    """images/s of the model's step on one fixed batch on the device (benchmarks.throughput.Ceiling)."""
    from benchmarks.throughput import Ceiling

    ceiling = Ceiling(cfg, runtime)
    rate = ceiling.rate(seconds)
    del ceiling
    gc.collect()
    if runtime.device.type == "cuda":
        torch.cuda.empty_cache()
    return rate


def trial(spec: dict[str, Any]) -> dict[str, Any]:
    """One trial on its share: the ceiling first when asked, then `training.loop.fit` as a search trial
    runs it, until `seconds` after its warm-up epoch; its epoch marks and peak GPU memory."""
    from training.data import load_splits
    from training.loop.fit import fit
    from training.schema.resources import TrialResources
    from training.loop.runtime import Runtime

    cfg = trial_config(spec)
    runtime = Runtime.for_trial(cfg, TrialResources(cpu=spec["cpus"], gpu=spec["fraction"]))
    runtime.apply()
    cuda = runtime.device.type == "cuda"
    train = len(load_splits(cfg.data).train)
    per_epoch = train // cfg.data.batch_size * cfg.data.batch_size if train > cfg.data.batch_size else train
    out: dict[str, Any] = {"pid": os.getpid(), "device": str(runtime.device), "marks": [], "oom": False, "ceiling_images_per_s": None}
    out["settings"] = {**{k: v for k, v in cfg.data.model_dump(mode="json").items() if k in ("num_workers", "cache")},
                       **{k: v for k, v in cfg.augment.model_dump(mode="json").items() if k == "device"},
                       **{k: v for k, v in cfg.train.model_dump(mode="json").items() if k in ("amp", "channels_last", "compile")}}
    try:
        if spec["ceiling_seconds"]:
            out["ceiling_images_per_s"] = ceiling_rate(cfg, runtime, spec["ceiling_seconds"])
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        fit(cfg, runtime, on_epoch=Window(out["marks"], per_epoch, spec["seconds"]))
    except WindowOver:
        pass
    except torch.OutOfMemoryError as exc:
        out.update(oom=True, error=str(exc)[:200])
    out["peak_reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20 if cuda else None
    return out


def aggregate_rate(results: list[dict[str, Any]]) -> tuple[float, tuple[float, float] | None]:
    """images/s of all trials together over the window where every one of them was timing (epochs
    that ended inside it; their start is the previous mark), and that window."""
    if any(len(r["marks"]) < 2 for r in results):
        return 0.0, None
    start = max(r["marks"][0][0] for r in results)
    end = min(r["marks"][-1][0] for r in results)
    if end <= start:
        return 0.0, None
    images = 0.0
    for r in results:
        for (t0, _), (t1, n) in zip(r["marks"], r["marks"][1:]):
            overlap = max(0.0, min(t1, end) - max(t0, start))
            images += n * overlap / (t1 - t0)  # the share of the epoch inside the window
    return images / (end - start), (start, end)


class Utilization:
    """GPU utilization (%) samples with their wall time, from nvidia-smi (pynvml is not a dependency)."""

    def __init__(self, interval: float = 0.25):
        self.interval, self.samples, self._stop = interval, [], threading.Event()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", "0"],
                capture_output=True, text=True,
            )
            if out.returncode == 0 and out.stdout.strip():
                self.samples.append((time.time(), float(out.stdout.split()[0])))

    def __enter__(self) -> Utilization:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        if shutil.which("nvidia-smi"):
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def mean(self, window: tuple[float, float] | None) -> float | None:
        """Mean over the timed window (start-up and data building left out)."""
        inside = [u for t, u in self.samples if window and window[0] <= t <= window[1]]
        return sum(inside) / len(inside) if inside else None


class LaunchFailed(RuntimeError):
    """The trials of one measurement could not run, or did not finish within its limit."""


class RayLauncher:
    """Trials as Ray tasks holding `num_cpus` and `num_gpus`, as a search's trials hold them.

    Why the old launcher hung silently: it started Ray with the CPUs Ray detects itself (the cgroup's
    in a container) but sized each trial's CPUs from os.cpu_count() (the host's), so a packing whose
    CPUs add up past Ray's count stayed pending forever; `ray.get` had no timeout and
    `log_to_driver=False` hid the workers' output. Now Ray gets the counts explicitly, a request the
    cluster cannot hold fails before it is submitted, and waiting is bounded."""

    name = "ray"

    def __init__(self) -> None:
        import ray

        if not ray.is_initialized():
            ray.init(num_cpus=cores(), num_gpus=torch.cuda.device_count(), include_dashboard=False,
                     log_to_driver=True, logging_level=logging.WARNING)
        # max_calls=1: a fresh worker per trial, so no earlier trial's GPU memory or memory cap lingers;
        # max_retries=0: a crashed trial is an error to report, not to rerun silently
        self.remote = ray.remote(max_calls=1, max_retries=0)(trial)

    @staticmethod
    def check_fits(specs: list[dict[str, Any]]) -> None:
        import ray

        have = ray.cluster_resources()
        cpus, gpus = sum(s["cpus"] for s in specs), sum(s["fraction"] for s in specs)
        if cpus > have.get("CPU", 0) or gpus > have.get("GPU", 0) + 1e-6:
            raise LaunchFailed(
                f"{len(specs)} trials ask {cpus:g} CPU and {gpus:g} GPU; the Ray cluster has "
                f"{have.get('CPU', 0):g} CPU and {have.get('GPU', 0):g} GPU, so they would stay pending"
            )

    def run(self, specs: list[dict[str, Any]], limit_s: float) -> list[dict[str, Any]]:
        import ray

        self.check_fits(specs)
        futures = [self.remote.options(num_cpus=s["cpus"], num_gpus=s["fraction"]).remote(s) for s in specs]
        ready, pending = ray.wait(futures, num_returns=len(futures), timeout=limit_s)
        if pending:
            free = ray.available_resources()
            for future in pending:
                ray.cancel(future, force=True)
            raise LaunchFailed(
                f"{len(pending)} of {len(futures)} trials not finished after {limit_s:g} s "
                f"(free now: {free.get('CPU', 0):g} CPU, {free.get('GPU', 0):g} GPU); cancelled"
            )
        try:
            return ray.get(futures)
        except ray.exceptions.RayError as exc:
            raise LaunchFailed(f"a trial failed: {str(exc).strip().splitlines()[-1][:300]}") from None


def trial_into(queue: Any, index: int, spec: dict[str, Any]) -> None:
    """A spawned process's body: (index, result) or (index, the error) into `queue`."""
    try:
        queue.put((index, trial(spec)))
    except Exception as exc:  # the driver reports it; the process ends either way
        queue.put((index, f"{type(exc).__name__}: {str(exc)[:300]}"))


class ProcessLauncher:
    """Trials as spawned processes (spawn, not fork: CUDA cannot be re-initialized in a forked child).
    Plain processes, not a Pool: a Pool's workers are daemonic and may not start DataLoader workers."""

    name = "processes"

    def run(self, specs: list[dict[str, Any]], limit_s: float) -> list[dict[str, Any]]:
        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        processes = [context.Process(target=trial_into, args=(queue, i, s)) for i, s in enumerate(specs)]
        for process in processes:
            process.start()
        deadline, results = time.time() + limit_s, {}
        try:
            while len(results) < len(specs):
                if time.time() > deadline:
                    raise LaunchFailed(f"{len(specs) - len(results)} of {len(specs)} trials not finished after {limit_s:g} s; terminated")
                try:
                    index, result = queue.get(timeout=1.0)
                except queue_module.Empty:
                    dead = [p.exitcode for i, p in enumerate(processes) if i not in results and p.exitcode not in (None, 0)]
                    if dead:  # killed (e.g. by the OOM killer or a segfault) before it could report
                        raise LaunchFailed(f"a trial process died with exit code {dead[0]}") from None
                    continue
                if isinstance(result, str):
                    raise LaunchFailed(f"a trial failed: {result}")
                results[index] = result
        finally:
            unfinished = len(results) < len(specs)
            for process in processes:
                if unfinished and process.is_alive():
                    process.terminate()
                process.join()
        return [results[i] for i in range(len(specs))]


LAUNCHERS = {"ray": RayLauncher, "processes": ProcessLauncher}


def trial_spec(workload: Workload, setting: Setting, args: argparse.Namespace, device: str) -> dict[str, Any]:
    """What each trial of a measurement runs; a lone eager trial measures the ceiling first."""
    # each trial gets its share of the cores (at most 6: 5 loader workers feed one trial at these sizes)
    packed = setting.trials
    cpus = max(1, min(cores() // packed, 6))
    ceiling = packed == 1 and not setting.compile
    return {"task": workload.task, "model": workload.model, "detector": workload.detector, "size": workload.size,
            "batch": workload.batch, "images": args.images or workload.images, "augment": workload.augment, "amp": setting.amp, "compile": setting.compile,
            "fraction": 1.0 / packed if device == "cuda" else 0.0, "cpus": cpus, "seconds": args.seconds,
            "ceiling_seconds": args.ceiling_seconds if ceiling else 0.0}


def launch(launchers: list, specs: list[dict[str, Any]], limit_s: float, console: Console) -> tuple[list[dict[str, Any]], str, list[str]]:
    """The trials' results, the launcher that ran them, and why the ones before it failed."""
    failures = []
    for launcher in launchers:
        began = time.time()
        try:
            return launcher.run(specs, limit_s), launcher.name, failures
        except LaunchFailed as exc:
            failures.append(f"{launcher.name}: {exc} ({time.time() - began:.0f} s)")
            console.print(f"  [yellow]{failures[-1]}[/]")
    return [], "none", failures


def measure(name: str, workload: Workload, setting: Setting, args: argparse.Namespace, launchers: list,
            console: Console, device: str = "cuda") -> dict[str, Any]:
    """One row: `setting.trials` trials of `workload` at once."""
    packed, amp = setting.trials, setting.amp
    spec = trial_spec(workload, setting, args, device)
    limit = (args.limit or workload.limit_s) + (COMPILE_EXTRA_S if setting.compile else 0)
    began = time.time()
    with Utilization() as utilization:
        results, launcher, failures = launch(launchers, [spec] * packed, limit, console)
    rate, window = aggregate_rate(results) if results else (0.0, None)
    ceiling = results[0]["ceiling_images_per_s"] if results else None
    row = {
        "workload": name, "trials": packed, "fraction": spec["fraction"], "cpus_per_trial": spec["cpus"],
        "amp_channels_last": amp, "compile": setting.compile, "launcher": launcher, "launch_failures": failures, "limit_s": limit,
        "wall_s": time.time() - began, "trials_timed": sum(len(r["marks"]) >= 2 for r in results), "aggregate_images_per_s": rate, "ceiling_images_per_s": ceiling,
        "gpu_util_mean_pct": utilization.mean(window),
        "peak_reserved_mib_per_trial": [r["peak_reserved_mib"] for r in results],
        "oom": any(r["oom"] for r in results), "errors": [r["error"] for r in results if r.get("error")],
        "settings": results[0]["settings"] if results else None,
    }
    util = f"{row['gpu_util_mean_pct']:.0f}%" if row["gpu_util_mean_pct"] is not None else "n/a"
    console.print(f"  {name} x{packed} AMP+CL {'on' if amp else 'off'}{' compiled' if setting.compile else ''} via {launcher}: {rate:,.0f} images/s"
                  + (f", ceiling {ceiling:,.0f}" if ceiling else "") + f", GPU util {util}, {row['wall_s']:.0f} s")
    return row


def add_shares(runs: list[dict[str, Any]]) -> None:
    """Each row as a share of its workload's ceiling (same AMP setting) and of its single trial."""
    for run in runs:
        mine = [r for r in runs if r["workload"] == run["workload"] and r["amp_channels_last"] == run["amp_channels_last"]]
        ceiling = next((r["ceiling_images_per_s"] for r in mine if r["ceiling_images_per_s"]), None)
        single = next((r["aggregate_images_per_s"] for r in mine if r["trials"] == 1 and not r["compile"]), None)
        run["share_of_ceiling"] = run["aggregate_images_per_s"] / ceiling if ceiling else None
        run["speedup_vs_one_trial"] = run["aggregate_images_per_s"] / single if single else None


def launcher_check(args: argparse.Namespace, console: Console) -> list[dict[str, Any]]:
    """Without a GPU: tiny CPU trials through each launcher (two packed via Ray, one with its ceiling
    via processes), to show both start, finish and report within their limits."""
    args.seconds, args.ceiling_seconds, args.images = 1.0, 0.5, 0
    return [measure("cpu-check", CPU_CHECK, Setting(2, amp=False), args, [RayLauncher()], console, device="cpu"),
            measure("cpu-check", CPU_CHECK, Setting(1, amp=False), args, [ProcessLauncher()], console, device="cpu")]


def no_gpu(args: argparse.Namespace, console: Console) -> int:
    reason = "no CUDA GPU on this machine"
    console.print(f"gpu_packing: {reason}; nothing measured (run it on a GPU host). Checking the launchers on the CPU:")
    checks = launcher_check(args, console)
    write_figures("gpu_packing", {"measured": False, "reason": reason, "launcher_check": checks, "smoke": args.smoke}, args.out)
    ok = all(r["launcher"] != "none" and r["trials_timed"] == r["trials"] for r in checks)
    print(f"ratios: none (not measured: {reason}); launchers on the CPU: {'both ran' if ok else 'FAILED'}")
    return 0 if ok else 1


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=DEFAULT_WORKLOADS, choices=sorted(WORKLOADS))
    parser.add_argument("--seconds", type=float, default=10.0, help="timed window per trial, after a warm-up epoch")
    parser.add_argument("--ceiling-seconds", type=float, default=5.0, help="timed fixed-batch steps for the ceiling")
    parser.add_argument("--images", type=int, default=0, help="synthetic images per trial (0 = the workload's)")
    parser.add_argument("--limit", type=float, default=0, help="seconds per measurement (0 = the workload's)")
    parser.add_argument("--compile", action="store_true", help="also one trial per workload with train.compile")
    parser.add_argument("--launcher", default="ray", choices=sorted(LAUNCHERS), help="ray falls back to processes")
    parser.add_argument("--processes", dest="launcher", action="store_const", const="processes", help="= --launcher processes")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                        help="cpu: run the whole plan on the CPU to check the script (its figures say nothing of a GPU)")
    parser.add_argument("--smoke", action="store_true", help="tiny settings for the test suite")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="where gpu_packing.json goes")
    args = parser.parse_args(argv)
    if args.smoke:  # smaller defaults; flags given explicitly still win
        parser.set_defaults(workloads=["resnet18@64"], seconds=2.0, ceiling_seconds=1.0, images=512)
        args = parser.parse_args(argv)
    return args


def plan(name: str, smoke: bool, compile_too: bool) -> list[Setting]:
    """A workload's measurements: its packings with AMP, one trial without (not for the augmented
    variant: the AMP comparison is the plain workload's), and one compiled trial when asked."""
    workload = WORKLOADS[name]
    packings = (1, 2) if smoke else workload.packings
    settings = [Setting(k) for k in packings] + ([] if workload.augment else [Setting(1, amp=False)])
    return settings + ([Setting(1, compile=True)] if compile_too else [])


def summary(runs: list[dict[str, Any]]) -> str:
    """The goals' ratios: one trial and 4 packed over the ceiling, AMP + channels_last on over off."""
    parts = []
    for name in dict.fromkeys(r["workload"] for r in runs):
        mine = {(r["trials"], r["amp_channels_last"], r["compile"]): r for r in runs if r["workload"] == name}
        rate = {k: r["aggregate_images_per_s"] for k, r in mine.items()}
        share = {k: mine[k]["share_of_ceiling"] for k in ((1, True, False), (4, True, False)) if k in mine and mine[k]["share_of_ceiling"]}
        text = [f"{k[0]} trial{'s' if k[0] > 1 else ''} {v:.2f}x ceiling" for k, v in share.items()]
        eager = rate.get((1, True, False))
        if eager and rate.get((1, False, False)):
            text.append(f"AMP+CL {eager / rate[(1, False, False)]:.2f}x fp32")
        if eager and (1, True, True) in rate:
            text.append(f"compiled {rate[(1, True, True)] / eager:.2f}x eager")
        parts.append(f"{name}: " + ", ".join(text or ["not measured"]))
    return "; ".join(parts)


def table(console: Console, gpu: str, runs: list[dict[str, Any]]) -> None:
    rows = [[r["workload"], r["trials"], ("on" if r["amp_channels_last"] else "off") + (" +compile" if r["compile"] else ""), r["launcher"], r["aggregate_images_per_s"],
             r["ceiling_images_per_s"] or "", r["share_of_ceiling"] or "", r["speedup_vs_one_trial"] or "",
             r["gpu_util_mean_pct"] if r["gpu_util_mean_pct"] is not None else "n/a",
             max((m for m in r["peak_reserved_mib_per_trial"] if m is not None), default="n/a"), "yes" if r["oom"] else "no"] for r in runs]
    print_table(console, f"gpu packing on {gpu}",
                ["workload", "trials", "AMP+CL", "launcher", "images/s", "ceiling", "of ceiling", "x one", "GPU util %", "peak MiB/trial", "OOM"], rows)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    console = Console(width=None if sys.stdout.isatty() else 160)  # a log keeps the whole table
    if args.device == "cuda" and not torch.cuda.is_available():
        return no_gpu(args, console)
    gpu = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu (script check, not a GPU measurement)"
    launchers = [LAUNCHERS[args.launcher]()] + ([ProcessLauncher()] if args.launcher == "ray" else [])
    console.print(f"gpu_packing on {gpu}, {cores()} cores, launcher {args.launcher}")
    runs: list[dict[str, Any]] = []

    def save(complete: bool) -> Path:
        """After every measurement, so a run cut short by an outer timeout still leaves its figures."""
        add_shares(runs)
        figures = {"measured": args.device == "cuda", "complete": complete, "gpu": gpu, "cores": cores(), "launcher": args.launcher,
                   "seconds": args.seconds, "ceiling_seconds": args.ceiling_seconds, "runs": runs, "smoke": args.smoke}
        return write_figures("gpu_packing", figures, args.out)

    for name in args.workloads:
        for setting in plan(name, args.smoke, args.compile):
            runs.append(measure(name, WORKLOADS[name], setting, args, launchers, console, args.device))
            save(complete=False)
    path = save(complete=True)
    table(console, gpu, runs)
    console.print(f"figures: {path}")
    print(f"ratios: {summary(runs)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
