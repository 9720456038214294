"""One way to build a task's DataLoader from the data config and the trial's device."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from training.config import DataConfig


def make_loader(
    dataset: Dataset,
    data: DataConfig,
    device: torch.device,
    shuffle: bool,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
    **options: Any,
) -> DataLoader:
    """Training loaders (shuffle=True) drop a ragged last batch and draw their order from `generator`
    (reseeded per epoch by the task); `options` go to DataLoader (a sampler, a collate_fn)."""
    sampled = options.get("sampler") is not None
    return DataLoader(
        dataset,
        batch_size=batch_size or data.batch_size,
        shuffle=shuffle and not sampled,
        drop_last=shuffle and len(dataset) > data.batch_size,
        num_workers=data.num_workers,
        persistent_workers=data.num_workers > 0,
        pin_memory=device.type == "cuda",
        generator=generator if shuffle else None,
        **options,
    )
