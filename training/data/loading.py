"""How a task gets its batches: a DataLoader (workers, pinned memory, per-sample augmentation
seeds), or `DeviceBatches` drawn by index from images cached on the trial's device."""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler

from training.config import DataConfig
from training.loop.runtime import Runtime


def cpu_share(runtime: Runtime) -> int:
    """The CPUs this run holds: the trial's share, else the CPUs this process may use."""
    return runtime.cpu_threads or len(os.sched_getaffinity(0))


def loader_options(data: DataConfig, runtime: Runtime, seeded: bool = True) -> dict[str, Any]:
    """DataLoader worker settings: data.num_workers (auto: the CPU share - 1) kept alive across
    epochs, and pinned memory for asynchronous copies to a GPU. A dataset whose augmentation is not
    `seeded` per sample (its transforms' streams would differ per worker) gets no auto workers."""
    workers = data.worker_count(cpu_share(runtime)) if seeded or data.num_workers != "auto" else 0
    return {"num_workers": workers, "persistent_workers": workers > 0, "pin_memory": runtime.device.type == "cuda"}


class SeededSampler(Sampler[tuple[int, int]]):
    """`order`'s indices as (index, seed) keys: the seed of each draw comes from `generator` (reseeded
    per epoch by the task) and the draw's position, so a sample's augmentation does not depend on
    which worker process makes it, nor on how many there are."""

    def __init__(self, order: Sampler[int], generator: torch.Generator):
        self.order, self.generator = order, generator

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = list(self.order)  # drawn first: the shuffle is the one DeviceBatches draws too
        epoch = int(torch.randint(2**31, (1,), generator=self.generator))
        for position, index in enumerate(order):
            yield int(index), int(np.random.SeedSequence([epoch, position]).generate_state(1)[0])


def batch_order(
    dataset: Dataset,
    data: DataConfig,
    shuffle: bool,
    generator: torch.Generator | None,
    batch_size: int | None = None,
    sampler: Sampler[int] | None = None,
) -> BatchSampler:
    """Training (shuffle=True): `sampler`'s order or a shuffle drawn from `generator`, a ragged last
    batch dropped; else the dataset in order."""
    if shuffle:
        order = sampler if sampler is not None else RandomSampler(dataset, generator=generator)
    else:
        order = SequentialSampler(dataset)
    return BatchSampler(order, batch_size or data.batch_size, drop_last=shuffle and len(dataset) > data.batch_size)


def make_loader(
    dataset: Dataset,
    data: DataConfig,
    runtime: Runtime,
    shuffle: bool,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
    sampler: Sampler[int] | None = None,
    collate_fn: Callable[[list[Any]], Any] | None = None,
) -> DataLoader:
    """A DataLoader of `batch_order`; a training one hands out (index, seed) keys."""
    batches = batch_order(dataset, data, shuffle, generator, batch_size, sampler)
    if shuffle:
        batches = BatchSampler(SeededSampler(batches.sampler, generator), batches.batch_size, batches.drop_last)
    # workers draw their base seed from the loader's generator, else from torch's global one, whose
    # stream (dropout, ...) must not depend on the worker count; samples are seeded per key anyway
    options = loader_options(data, runtime) | {"generator": torch.Generator()}
    return DataLoader(dataset, batch_sampler=batches, collate_fn=collate_fn, **options)


class DeviceBatches:
    """Batches taken by index from tensors already on `device`: no workers, no host copies. Each
    epoch's order goes to the device in one pinned, asynchronous copy (a pageable copy would wait for
    the GPU every batch); `take(indices on the device, the same as a list)` builds one batch;
    `dataset` is there for its length."""

    def __init__(
        self, dataset: Dataset, batches: BatchSampler, take: Callable[[torch.Tensor, list[int]], Any], device: torch.device
    ):
        self.dataset, self.batches, self.take, self.device = dataset, batches, take, device

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[Any]:
        batches = [list(b) for b in self.batches]
        order = torch.tensor([i for b in batches for i in b], dtype=torch.long)
        if self.device.type == "cuda":
            order = order.pin_memory()
        order = order.to(self.device, non_blocking=True)
        start = 0
        for batch in batches:
            yield self.take(order[start : start + len(batch)], batch)
            start += len(batch)
