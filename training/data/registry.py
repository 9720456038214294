"""The data-kind registry and the three things every kind answers: classes, checks, splits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from training.config import DataConfig
from training.data import coco, csv_rle, imagefolder, synthetic, synthetic_multilabel
from training.data.samples import Splits
from training.data.split import stratified_split


@dataclass(frozen=True)
class DataKind:
    class_names: Callable[[DataConfig], list[str]]
    check: Callable[[DataConfig], None]
    load: Callable[[DataConfig], Splits]
    multilabel: bool = False  # labels are an (n, classes) 0/1 array instead of one class index each


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
    "coco": DataKind(class_names=coco.class_names, check=coco.check, load=coco.load),
    "synthetic_multilabel": DataKind(
        class_names=lambda cfg: synthetic_multilabel.defect_classes(cfg.synthetic),
        check=lambda cfg: None,
        load=synthetic_multilabel.load,
        multilabel=True,
    ),
    "csv": DataKind(class_names=csv_rle.class_names, check=csv_rle.check, load=csv_rle.load, multilabel=True),
}


def class_names(cfg: DataConfig) -> list[str]:
    return DATA_KINDS[cfg.kind].class_names(cfg)


def is_multilabel(cfg: DataConfig) -> bool:
    """Whether the data kind labels each image with a set of classes (the multilabel task's data)."""
    return DATA_KINDS[cfg.kind].multilabel


def check_data(cfg: DataConfig) -> None:
    """Raise a ConfigError if the data cannot be read; cheap, runs before any trial."""
    DATA_KINDS[cfg.kind].check(cfg)


def load_splits(cfg: DataConfig) -> Splits:
    return DATA_KINDS[cfg.kind].load(cfg)
