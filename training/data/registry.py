"""The data-kind registry and the three things every kind answers: classes, checks, splits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from training.config import DataConfig
from training.data import imagefolder, synthetic
from training.data.samples import Splits
from training.data.split import stratified_split


@dataclass(frozen=True)
class DataKind:
    class_names: Callable[[DataConfig], list[str]]
    check: Callable[[DataConfig], None]
    load: Callable[[DataConfig], Splits]


def _load_synthetic(cfg: DataConfig) -> Splits:
    images = synthetic.generate(cfg.synthetic, cfg.image_size)
    train, val = stratified_split(images, cfg.val_fraction, cfg.split_seed)
    return Splits(train, val, list(cfg.synthetic.classes))


DATA_KINDS: dict[str, DataKind] = {
    "synthetic": DataKind(
        class_names=lambda cfg: list(cfg.synthetic.classes), check=lambda cfg: None, load=_load_synthetic
    ),
    "imagefolder": DataKind(
        class_names=imagefolder.class_names, check=imagefolder.check, load=imagefolder.load
    ),
}


def class_names(cfg: DataConfig) -> list[str]:
    return DATA_KINDS[cfg.kind].class_names(cfg)


def check_data(cfg: DataConfig) -> None:
    """Raise a ConfigError if the data cannot be read; cheap, runs before any trial."""
    DATA_KINDS[cfg.kind].check(cfg)


def load_splits(cfg: DataConfig) -> Splits:
    return DATA_KINDS[cfg.kind].load(cfg)
