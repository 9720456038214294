"""Decoded, resized training data kept for a trial process's later trials.

A Ray actor that runs one trial after another with the same data config builds the splits once:
`cached_splits` returns the same decoded, resized uint8 images (labels, boxes) while the data
config is unchanged. `data.cache: device` also keeps them as one uint8 NCHW tensor per split on the
trial's device, and batches are drawn there by index (`training.data.loading.DeviceBatches`).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Literal

import cv2
import numpy as np
import torch

from training.config import DataConfig
from training.data.dataset import read_image
from training.data.samples import ImageSet, Splits
from training.loop.runtime import Runtime

CacheMode = Literal["none", "ram", "device"]
# auto keeps the images on the device when they take at most this share of the trial's GPU memory
# (its resources.gpu fraction of the card): the rest is for the model, activations and workspace.
DEVICE_SHARE = 0.25
# ... and in RAM when they take at most this share of the machine's memory (else none: read per batch).
RAM_SHARE = 0.25
# data configs whose splits a process keeps (a searched data.image_size gives one each); with
# data.folds = k a config's k fold splits count as one (each holds the decoded images again: k copies
# of a small dataset, where k-fold is meant for)
KEPT = 2
# DataConfig fields that change batching, not the images
BATCHING_FIELDS = {"batch_size", "num_workers", "cache", "class_weight_power", "weighted_sampler"}

_SPLITS: OrderedDict[tuple, Splits] = OrderedDict()
_TENSORS: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


@dataclass(frozen=True)
class CachePlan:
    """Where the decoded images go and how much they take."""

    mode: CacheMode
    nbytes: int
    reason: str


def plan_cache(
    data: DataConfig, image_count: int, device: torch.device, gpu_fraction: float | None, device_ok: bool = True
) -> CachePlan:
    """data.cache resolved for `image_count` images at the data's size on `device`; `device_ok` False
    (augmentation that must run on the CPU, or a task that needs a DataLoader) keeps auto off the device."""
    height, width = data.image_shape()
    nbytes = image_count * height * width * 3
    if data.cache != "auto":
        return CachePlan(data.cache, nbytes if data.cache != "none" else 0, "set by data.cache")
    if device.type == "cuda" and device_ok:
        budget = DEVICE_SHARE * (gpu_fraction or 1.0) * torch.cuda.get_device_properties(device).total_memory
        if nbytes <= budget:
            return CachePlan("device", nbytes, f"fits in {DEVICE_SHARE:.0%} of the trial's GPU memory")
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if nbytes <= RAM_SHARE * ram:
        return CachePlan("ram", nbytes, f"fits in {RAM_SHARE:.0%} of RAM")
    return CachePlan("none", 0, f"more than {RAM_SHARE:.0%} of RAM: read per batch")


def data_key(data: DataConfig) -> str:
    """What decides the images: the data config without its batching fields."""
    return data.model_dump_json(exclude=BATCHING_FIELDS)


def resized(images: ImageSet, shape: tuple[int, int], interpolation: int) -> ImageSet:
    """`images` decoded and resized to shape (height, width), boxes scaled with them."""
    height, width = shape
    arrays, boxes = [], []
    for i, item in enumerate(images.images):
        original = read_image(item, None)
        scale = np.array([width / original.shape[1], height / original.shape[0]] * 2, np.float32)
        if original.shape[:2] != shape:
            original = cv2.resize(original, (width, height), interpolation=interpolation)
        arrays.append(np.ascontiguousarray(original))
        if images.boxes:
            boxes.append((images.boxes[i].reshape(-1, 4) * scale).astype(np.float32))
    return ImageSet(arrays, images.labels, boxes, list(images.box_labels))


def prepared_splits(
    data: DataConfig,
    load: Callable[[DataConfig], Splits],
    shape: tuple[int, int],
    interpolation: int,
    runtime: Runtime,
    device_ok: bool = True,
) -> tuple[Splits, CachePlan]:
    """The splits of `data` and where they are kept (`plan_cache`): with a cache, decoded and resized
    to `shape` (height, width), built once per process and data config."""
    key = (data_key(data), shape, interpolation)
    splits = _SPLITS.get(key) if data.cache != "none" else None
    loaded = splits or load(data)
    plan = plan_cache(data, len(loaded.train) + len(loaded.val), runtime.device, runtime.gpu_fraction, device_ok)
    if plan.mode == "none":
        return loaded, plan
    if splits is None:
        train, val = (resized(s, shape, interpolation) for s in (loaded.train, loaded.val))
        _SPLITS[key] = splits = Splits(train, val, loaded.class_names)
        while len(_SPLITS) > KEPT * data.folds:
            dropped, _ = _SPLITS.popitem(last=False)
            for tensor_key in [k for k in _TENSORS if k[0] == dropped]:
                del _TENSORS[tensor_key]
    _SPLITS.move_to_end(key)
    return splits, plan


def device_tensors(splits: Splits, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val) images of cached `splits` as uint8 NCHW tensors on `device`, built once."""
    key = next((k for k, v in _SPLITS.items() if v is splits), None)
    tensors = _TENSORS.get((key, str(device))) if key is not None else None
    if tensors is None:
        tensors = tuple(_stack(s.images, device) for s in (splits.train, splits.val))
        if key is not None:
            _TENSORS[(key, str(device))] = tensors
    return tensors


def _stack(images: list[np.ndarray], device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous().to(device)


def describe(plan: CachePlan, data: DataConfig) -> str:
    """One line for `search check`: the cache's mode, size and why."""
    if plan.mode == "none":
        return f"data cache: none, images read per batch ({plan.reason})"
    height, width = data.image_shape()
    where = "one uint8 tensor on the trial's device" if plan.mode == "device" else "RAM"
    return f"data cache: {plan.mode}, {plan.nbytes / 2**20:.1f} MiB of {height}x{width} images in {where} ({plan.reason})"
