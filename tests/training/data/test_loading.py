"""Loaders: data.num_workers auto from the CPU share, and batches that do not depend on the number
of worker processes, on persistent workers, nor on resuming at a later epoch."""

from __future__ import annotations

import pytest
import torch

from training.config import DataConfig, TrainConfig
from training.data.loading import loader_options
from training.loop.runtime import Runtime
from training.tasks import create_task

pytestmark = pytest.mark.usefixtures("one_cpu_thread")
BATCHES = 3


def _cfg(task: str, workers: int) -> TrainConfig:
    augment = {"p": 0.7, "hflip": 0.5, "brightness": 0.3, "rotate": 20}
    if task == "classification":
        augment |= {"coarse_dropout": 0.2, "rrc_p": 0.5}
    return TrainConfig.model_validate(
        {
            "task": task,
            "model": {"name": "resnet10t" if task == "classification" else "resnet18"},
            "data": {"image_size": 32, "batch_size": 4, "num_workers": workers, "cache": "ram",
                     "synthetic": {"count": 40, "seed": 1}},
            "augment": augment,
        }
    )  # fmt: skip


def _batches(task, epoch: int) -> list[torch.Tensor]:
    task.start_epoch(epoch)
    images = []
    for i, batch in enumerate(task.train_loader):
        images.append(batch[0].clone())
        if i + 1 == BATCHES:
            break
    return images


@pytest.mark.parametrize("task_name", ["classification", "detection"])
def test_loader_batches_do_not_depend_on_workers_nor_on_resuming(task_name):
    runtime = Runtime(torch.device("cpu"), cpu_threads=1)
    serial = create_task(_cfg(task_name, 0), runtime)
    workers = create_task(_cfg(task_name, 2), runtime)
    # two worker processes, kept alive across epochs
    assert workers.train_loader.num_workers == 2 and workers.train_loader.persistent_workers
    first = _batches(serial, 1)
    # the augmented batches of an epoch are identical whatever the number of workers
    assert all(torch.equal(a, b) for a, b in zip(first, _batches(workers, 1)))
    # and so are the next epoch's, from the same persistent workers
    second = _batches(workers, 2)
    assert all(torch.equal(a, b) for a, b in zip(second, _batches(serial, 2)))
    # a run resumed at epoch 2 (a fresh task) sees the same batches as the uninterrupted one
    assert all(torch.equal(a, b) for a, b in zip(second, _batches(create_task(_cfg(task_name, 0), runtime), 2)))
    # while epochs differ from each other
    assert not all(torch.equal(a, b) for a, b in zip(first, second))


def test_loader_options_auto_workers_are_the_cpu_share_minus_one():
    data = DataConfig()
    # auto leaves one of the trial's CPUs to the trial's own thread
    assert loader_options(data, Runtime(torch.device("cpu"), cpu_threads=4))["num_workers"] == 3
    # a one-CPU trial loads in its own process, as before
    assert loader_options(data, Runtime(torch.device("cpu"), cpu_threads=1))["num_workers"] == 0
    # workers persist across epochs; memory is pinned only for copies to a GPU
    options = loader_options(data, Runtime(torch.device("cpu"), cpu_threads=3))
    assert options["persistent_workers"] and not options["pin_memory"]
    # a dataset whose augmentation is not seeded per sample gets no auto workers (a set count is kept)
    assert loader_options(data, Runtime(torch.device("cpu"), cpu_threads=4), seeded=False)["num_workers"] == 0
    assert loader_options(DataConfig(num_workers=2), Runtime(torch.device("cpu")), seeded=False)["num_workers"] == 2
