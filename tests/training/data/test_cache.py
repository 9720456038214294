"""The data cache: built once per process and data config, where data.cache says, and the same
images as reading them per batch."""

from __future__ import annotations

import pytest
import torch

from training.config import DataConfig, TrainConfig
from training.data.cache import plan_cache
from training.data.loading import DeviceBatches
from training.loop.runtime import Runtime
from training.tasks import create_task

pytestmark = pytest.mark.usefixtures("one_cpu_thread")
CPU = Runtime(torch.device("cpu"), cpu_threads=1)


def _cfg(**data) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "model": {"name": "resnet10t"},
            "data": {"image_size": 32, "batch_size": 8, "num_workers": 0, "synthetic": {"count": 40, "seed": 3}, **data},
        }
    )


def test_cache_two_tasks_with_the_same_data_config_build_once():
    first = create_task(_cfg(cache="ram"), CPU)
    again = create_task(_cfg(cache="ram", batch_size=4), CPU)
    # the same images (a batching field differs): the second task reuses the first one's splits
    assert again.splits is first.splits
    other = create_task(_cfg(cache="ram", image_size=48), CPU)
    # another image size is another data config: built anew, at its size
    assert other.splits is not first.splits and other.splits.train.images[0].shape == (48, 48, 3)
    # without a cache every task loads its own
    assert create_task(_cfg(cache="none"), CPU).splits is not first.splits


def test_cache_device_batches_equal_the_dataloader_batches():
    ram = create_task(_cfg(cache="ram"), CPU)
    device = create_task(_cfg(cache="device"), CPU)
    # data.cache device draws batches by index from one uint8 tensor, without a DataLoader
    assert isinstance(device.train_loader, DeviceBatches) and device.train_loader.dataset is not None
    for task in (ram, device):
        task.start_epoch(2)
    # same shuffle, same images and labels as the DataLoader over the RAM cache (no augmentation on)
    for (a_images, a_labels), (b_images, b_labels) in zip(ram.train_loader, device.train_loader):
        assert torch.equal(a_images, b_images) and torch.equal(a_labels, b_labels)
    assert len(ram.train_loader) == len(device.train_loader) and len(ram.val_loader) == len(device.val_loader)


def test_plan_cache_auto_is_ram_on_a_cpu_trial_and_states_the_size():
    data = DataConfig(image_size=32)
    plan = plan_cache(data, 100, torch.device("cpu"), None)
    # auto on a CPU-only trial keeps the decoded images in RAM, sized images x H x W x 3 bytes
    assert plan.mode == "ram" and plan.nbytes == 100 * 32 * 32 * 3
    # a set mode is kept as it is
    assert plan_cache(DataConfig(cache="device"), 100, torch.device("cpu"), None).mode == "device"
    assert plan_cache(DataConfig(cache="none"), 100, torch.device("cpu"), None).nbytes == 0
