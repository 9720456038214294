"""`python -m search check SPACE.yaml`: a dry run of a search in seconds, without Ray or trials.

1. Validate the space file and its data with `load_plan` (every mistake is a ConfigError: exit 2).
2. Sample 3 trial configs the way the search does: the baselines first, then a seeded Optuna TPE
   sampler (same settings as the tuner's) on an in-memory study over `optuna_space(plan.space)`.
3. Build the task of the first config on the runtime one trial would get (`resources.cpu` threads;
   CUDA with AMP/channels_last when `resources.gpu` > 0 and a GPU is here) and time one training
   step (forward, backward, optimizer step) and one validation batch, each the second call after a
   warm-up call unless the first took longer than WARMUP_LIMIT_S (then the cold time is reported).
4. Estimate the time per epoch (train step x train batches + val batch x val batches), per trial
   (x max epochs) and for the whole search (x rounds of max_concurrent trials; an upper bound, ASHA
   stops most trials early), and the peak memory of a trial: the RSS increase on CPU, or
   `torch.cuda.max_memory_allocated` with a suggested `resources.gpu` fraction on CUDA.

5. For a detection task whose data has boxes: the box statistics behind anchor choices
   (`training.data.box_stats`) with the base config's anchors: h/w per class, sizes, the share of
   boxes no anchor matches, and a suggested `model.anchor_ratios` search range.

`check_space_file` returns the numbers (`CheckResult`); `run_check` prints them.
"""

from __future__ import annotations

import math
import resource
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import optuna
import torch
from rich.console import Console
from rich.table import Table

from search.console import format_value
from search.sampler import directions, make_sampler
from search.space import apply_values, decode_trial, encode_point, optuna_space
from search.spec import SearchPlan, load_plan
from training import device_augment
from training.config import TrainConfig
from training.data import cache, load_splits
from training.data.box_stats import MATCH_IOU, RATIO_EDGES, BoxStats, box_stats
from training.errors import ConfigError
from training.fit import seed_everything, training_step
from training.optim import create_optimizer
from training.runtime import Runtime
from training.tasks import Task, create_task, get_task

SAMPLES = 3
WARMUP_LIMIT_S = 10.0  # a first call slower than this is not repeated: its (cold) time is reported
GPU_HEADROOM = 1.25  # fragmentation and the CUDA context are not in max_memory_allocated
GPU_STEP = 1 / 8  # suggested GPU fractions are multiples of this


@dataclass
class Measurement:
    """One training step and one validation batch of a trial config, and what they imply."""

    device: str
    cpu_threads: int
    train_images: int
    val_images: int
    train_batches: int
    val_batches: int
    batch_size: int
    train_step_s: float
    val_batch_s: float
    warm: bool  # True: times of a second call after a warm-up call; False: cold first calls
    peak_memory_bytes: int  # CPU: peak RSS increase during the check; CUDA: max_memory_allocated
    gpu_total_bytes: int | None = None

    @property
    def epoch_s(self) -> float:
        return self.train_step_s * self.train_batches + self.val_batch_s * self.val_batches

    @property
    def gpu_fraction_needed(self) -> float | None:
        """Peak GPU memory with headroom, as a share of the card (None on CPU)."""
        if self.gpu_total_bytes is None:
            return None
        return self.peak_memory_bytes * GPU_HEADROOM / self.gpu_total_bytes

    @property
    def gpu_fraction_suggested(self) -> float | None:
        """The needed share rounded up to a multiple of GPU_STEP (None on CPU)."""
        needed = self.gpu_fraction_needed
        return None if needed is None else max(GPU_STEP, math.ceil(needed / GPU_STEP) * GPU_STEP)

    def batch_size_for(self, gpu_fraction: float) -> int:
        """A batch size that should fit in `gpu_fraction` (memory taken as proportional to the batch,
        which overestimates it: the weights and optimizer state do not shrink), a multiple of 8 if >= 8."""
        batch = max(1, int(self.batch_size * gpu_fraction / self.gpu_fraction_needed))
        return batch // 8 * 8 or batch


@dataclass
class CheckResult:
    plan: SearchPlan
    samples: list[dict[str, Any]]  # decoded values (dotted key -> value), baselines first
    measurement: Measurement
    boxes: BoxStats | None = None  # detection data only
    placement: list[str] = field(default_factory=list)  # where the data cache and the augmentation go

    @property
    def trial_s(self) -> float:
        return self.measurement.epoch_s * self.plan.epochs

    @property
    def rounds(self) -> int:
        search = self.plan.spec.search
        return math.ceil(search.num_samples / search.max_concurrent)

    @property
    def search_s(self) -> float:
        """Every trial runs all epochs, max_concurrent at a time: an upper bound without ASHA."""
        return self.trial_s * self.rounds


# ---------------------------------------------------------------- sampling


def sample_configs(plan: SearchPlan, count: int = SAMPLES) -> list[dict[str, Any]]:
    """The first `count` trials' values, as Ray's OptunaSearch asks them (baselines enqueued first)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=make_sampler(plan), directions=directions(plan))
    for point in plan.baseline:
        study.enqueue_trial(encode_point(plan.space, point))
    distributions = optuna_space(plan.space)
    trials = [study.ask(fixed_distributions=distributions) for _ in range(count)]
    return [decode_trial(plan.space, trial.params) for trial in trials]


# ---------------------------------------------------------------- measuring


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def endless(loader: Iterable[Any]) -> Iterator[Any]:
    """The loader's batches, epoch after epoch (a loader may hold a single batch)."""
    while True:
        yield from loader


def timed(call: Callable[[], Any], device: torch.device) -> tuple[float, bool]:
    """(seconds, warm): a second call after a warm-up one, or the first alone when it was slow."""

    def once() -> float:
        began = time.perf_counter()
        call()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - began

    first = once()
    return (first, False) if first > WARMUP_LIMIT_S else (once(), True)


def train_step(task: Task, cfg: TrainConfig, batches: Iterator[Any]) -> Callable[[], None]:
    """One step of `training.fit.train_one_epoch` on the next batch (its loading included)."""
    optimizer = create_optimizer(task.model, cfg.optim)
    scaler = task.runtime.grad_scaler()

    def step() -> None:
        task.model.train()
        training_step(task, next(batches), optimizer, scaler, cfg.train.grad_clip)

    return step


def val_batch(task: Task, batches: Iterator[Any]) -> Callable[[], None]:
    """One validation batch: the model in eval mode, no gradients. Through the Task interface (which
    has no bare forward) it is `training_loss`, i.e. forward + loss, as `evaluate` also computes."""

    @torch.no_grad()
    def forward() -> None:
        task.model.eval()
        with task.runtime.autocast():
            task.training_loss(next(batches)).item()

    return forward


def peak_rss_bytes() -> int:
    """The process's peak resident set size (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def time_steps(task: Task, cfg: TrainConfig) -> tuple[float, float, bool]:
    """(training step s, validation batch s, warm) of a freshly built task."""
    device = task.runtime.device
    try:
        step_s, warm_train = timed(train_step(task, cfg, endless(task.train_loader)), device)
        val_s, warm_val = timed(val_batch(task, endless(task.val_loader)), device)
    except torch.cuda.OutOfMemoryError:
        message = f"one training step of {cfg.data.batch_size} images does not fit on the GPU"
        raise ConfigError("data.batch_size", message) from None
    return step_s, val_s, warm_train and warm_val


def measure(cfg: TrainConfig, runtime: Runtime) -> Measurement:
    """Build the task of `cfg` on `runtime` and time one training step and one validation batch."""
    rss_before, cuda = peak_rss_bytes(), runtime.device.type == "cuda"
    threads = runtime.cpu_threads or torch.get_num_threads()
    if cuda:
        torch.cuda.reset_peak_memory_stats(runtime.device)
    with torch_threads(threads):
        seed_everything(cfg.seed)
        task = create_task(cfg, runtime)
        task.start_epoch(1)
        step_s, val_s, warm = time_steps(task, cfg)
    return Measurement(
        device=str(runtime.device),
        cpu_threads=threads,
        train_images=len(task.train_loader.dataset),
        val_images=len(task.val_loader.dataset),
        train_batches=len(task.train_loader),
        val_batches=len(task.val_loader),
        batch_size=cfg.data.batch_size,
        train_step_s=step_s,
        val_batch_s=val_s,
        warm=warm,
        peak_memory_bytes=torch.cuda.max_memory_allocated(runtime.device) if cuda else peak_rss_bytes() - rss_before,
        gpu_total_bytes=torch.cuda.get_device_properties(runtime.device).total_memory if cuda else None,
    )


def check_space_file(path: Path) -> CheckResult:
    """Validate, sample, build and time: the numbers behind `python -m search check`."""
    plan = load_plan(path)
    samples = sample_configs(plan)
    cfg = apply_values(plan.base, samples[0])
    resources = plan.spec.resources
    runtime = Runtime.for_trial(cfg, resources.cpu, resources.gpu)
    try:
        measurement = measure(cfg, runtime)
    except ConfigError as exc:
        raise exc.with_file(path) from None
    placement = data_placement(cfg, plan, runtime, measurement.train_images + measurement.val_images)
    return CheckResult(plan=plan, samples=samples, measurement=measurement, boxes=plan_box_stats(plan), placement=placement)


def data_placement(cfg: TrainConfig, plan: SearchPlan, runtime: Runtime, images: int) -> list[str]:
    """Where a trial keeps its decoded images (data.cache) and runs its augmentation (augment.device)."""
    device_ok = getattr(get_task(cfg.task), "device_batches_ok", True) and device_augment.device_capable(cfg)
    kept = cache.plan_cache(cfg.data, images, runtime.device, runtime.gpu_fraction, device_ok)
    searched = [key.removeprefix("augment.") for key in plan.space if key.startswith("augment.")]
    where = device_augment.describe(cfg, searched, runtime.device, kept.mode == "device")
    return [cache.describe(kept, cfg.data), where]


def plan_box_stats(plan: SearchPlan) -> BoxStats | None:
    """Box statistics of a detection task's data with the base config's anchors (None otherwise)."""
    base = plan.base
    if "detection" not in base.task:
        return None
    return box_stats(load_splits(base.data), base.data.image_size, base.model.anchor_ratios, base.model.anchor_sizes)


# ---------------------------------------------------------------- printing


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.3g} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min {seconds % 60:.0f} s"
    return f"{seconds // 3600:.0f} h {seconds % 3600 / 60:.0f} min"


def size(count: int) -> str:
    return f"{count / 2**30:.2f} GiB" if count >= 2**30 else f"{count / 2**20:.0f} MiB"


def samples_table(result: CheckResult) -> Table:
    baselines = len(result.plan.baseline)
    table = Table(title=f"{len(result.samples)} sampled trial configs (seed {result.plan.spec.search.seed})")
    table.add_column("key")
    for i in range(len(result.samples)):
        table.add_column(f"#{i + 1}" + (" baseline" if i < baselines else ""), justify="right")
    for key in result.plan.space:
        table.add_row(key, *(format_value(sample[key]) for sample in result.samples))
    return table


def print_times(result: CheckResult, console: Console) -> None:
    m, search = result.measurement, result.plan.spec.search
    how = "after a warm-up call" if m.warm else "cold: first call, no warm-up"
    console.print(f"images: {m.train_images} train, {m.val_images} val")
    console.print(f"batches per epoch: {m.train_batches} train, {m.val_batches} val")
    console.print(f"one training step {m.train_step_s:.3f} s, one validation batch {m.val_batch_s:.3f} s ({how})")
    console.print(f"time per epoch: ~{duration(m.epoch_s)}")
    console.print(f"time per trial: ~{duration(result.trial_s)} ({result.plan.epochs} epochs)")
    console.print(
        f"whole search: at most ~{duration(result.search_s)} ({search.num_samples} trials, {search.max_concurrent} at once;"
        " without ASHA's early stops)"
    )


def print_memory(result: CheckResult, console: Console) -> None:
    m, requested = result.measurement, result.plan.spec.resources.gpu
    if m.gpu_total_bytes is None:
        console.print(f"peak memory per trial: ~{size(m.peak_memory_bytes)} (RSS increase on CPU)")
        return
    needed, suggested = m.gpu_fraction_needed, m.gpu_fraction_suggested
    console.print(
        f"peak GPU memory per trial: {size(m.peak_memory_bytes)} of {size(m.gpu_total_bytes)};"
        f" suggested resources.gpu: {suggested:g}" + ("" if suggested <= 1 else " (more than one GPU: lower the batch size)")
    )
    if requested < needed:
        console.print(
            f"[yellow]warning:[/] resources.gpu {requested:g} is less than the ~{needed:.2f} needed:"
            f" raise it, or try data.batch_size {m.batch_size_for(requested)}"
        )


BAR_WIDTH = 30  # characters of the histogram's longest bar


def ratio_bins() -> list[str]:
    """Labels of the h/w histogram bins."""
    edges = [f"{e:.2g}" for e in RATIO_EDGES]
    return [f"< {edges[0]}", *(f"{a} - {b}" for a, b in zip(edges, edges[1:])), f">= {edges[-1]}"]


def ratio_table(stats: BoxStats) -> Table:
    """Per class: boxes, median h/w, spread, and the share no anchor matches."""
    table = Table(title=f"box aspect ratios (h/w) after the resize to {stats.image_size}x{stats.image_size}")
    for column in ("class", "boxes", "median h/w", "p5 - p95", "h/w < 0.5", f"no anchor IoU >= {MATCH_IOU:g}"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for row in [*stats.classes, stats.overall]:
        p5, p95 = np.percentile(row.ratios, [5, 95])
        spread, flat = f"{p5:.2f} - {p95:.2f}", f"{np.mean(row.ratios < 0.5):.0%}"
        table.add_row(row.name, str(row.count), f"{row.median_ratio:.2f}", spread, flat, f"{row.miss_share:.0%}")
    return table


def ratio_histogram(stats: BoxStats) -> Table:
    """Boxes per h/w bin: a bar for all classes, then the count of each class."""
    counts = [c.histogram() for c in stats.classes]
    total = np.sum(counts, axis=0)
    table = Table(title="h/w histogram")
    table.add_column("h/w")
    table.add_column("all", justify="left")
    for c in stats.classes:
        table.add_column(c.name, justify="right")
    for i, label in enumerate(ratio_bins()):
        bar = "█" * round(BAR_WIDTH * total[i] / max(total.max(), 1))
        table.add_row(label, f"{bar} {total[i]}", *(str(c[i]) for c in counts))
    return table


def print_box_stats(stats: BoxStats, plan: SearchPlan, console: Console) -> None:
    ratios, sizes = stats.anchor_ratios, stats.anchor_sizes
    console.print(f"box statistics: {stats.count} boxes; anchors: ratios {format_value(ratios)} x sizes {format_value(sizes)}")
    if "model.anchor_ratios" in plan.space:
        console.print("[yellow]note:[/] model.anchor_ratios is searched: coverage below is for its base value")
    console.print(ratio_table(stats))
    console.print(ratio_histogram(stats))
    size_text = ", ".join(f"p{p} {v:.3g} px ({v / stats.image_size:.2f})" for p, v in stats.size_percentiles().items())
    console.print(f"box size sqrt(area), px (share of the image side): {size_text}")
    console.print(
        f"anchor coverage: {stats.miss_share:.0%} of boxes have no anchor with IoU >= {MATCH_IOU:g}"
        " (shape-only IoU, anchor centred on the box: an upper bound for grid anchors)"
    )
    suggestion = stats.suggestion()
    console.print("suggested anchor-ratio search (paste under space:):")
    console.print(f"  {suggestion.space_entry()}", markup=False, highlight=False)
    console.print(f"  (h/w p5 to p95 in steps of at most 2x: {format_value(suggestion.centre)})")


def run_check(path: Path, console: Console) -> int:
    result = check_space_file(path)
    m = result.measurement
    console.print(f"{path}: valid")
    console.print(samples_table(result))
    threads = f"{m.cpu_threads} CPU thread" + ("s" if m.cpu_threads > 1 else "")
    console.print(f"first config on {m.device} ({threads}):")
    if result.plan.spec.resources.gpu > 0 and m.device == "cpu":
        console.print("[yellow]note:[/] resources.gpu > 0 but no CUDA GPU here: measured on CPU")
    print_times(result, console)
    print_memory(result, console)
    for line in result.placement:
        console.print(line)
    if result.boxes is not None:
        print_box_stats(result.boxes, result.plan, console)
    return 0
