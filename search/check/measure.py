"""One training step and one validation batch of a trial config, timed on the trial's runtime, with
the peak memory they took."""

from __future__ import annotations

import math
import resource
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import torch

from training.config import TrainConfig
from training.loop.fit import seed_everything
from training.loop.runtime import Runtime
from training.schema.errors import ConfigError
from training.tasks import Task, create_task

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


def peak_rss_bytes() -> int:
    """The process's peak resident set size (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def time_steps(task: Task) -> tuple[float, float, bool]:
    """(training step s, validation batch s, warm) of a freshly built task; each call loads its batch."""
    device = task.runtime.device
    train_batches, val_batches = endless(task.train_loader), endless(task.val_loader)
    try:
        step = task.train_step()
        step_s, warm_train = timed(lambda: step(next(train_batches)), device)
        val_s, warm_val = timed(lambda: task.eval_batch(next(val_batches)), device)
    except torch.cuda.OutOfMemoryError:
        message = f"one training step of {task.cfg.data.batch_size} images does not fit on the GPU"
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
        step_s, val_s, warm = time_steps(task)
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
