"""The data-kind registry and what every kind answers: classes, checks, splits, the test split.

The order of operations is the same for every kind, and lives here: (1) the test images are set
aside (the kind's own test file or folder, else `data.test_fraction` of all images by `test_seed`);
(2) the rest is split into train/val (`val_fraction`, `split_seed`), or into `folds` folds of which
fold `fold` validates, unless the kind's own validation file or folder fixes the split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from training.config import DataConfig
from training.data import coco, csv_rle, imagefolder, synthetic, synthetic_multilabel
from training.data.samples import ImageSet, Splits
from training.data.split import fold_split, split_off
from training.schema.errors import ConfigError


@dataclass(frozen=True)
class FixedSplit:
    """A split the data itself gives (a folder, a JSON, a CSV) when the config names one."""

    source: Callable[[DataConfig], str | None]  # what gives it, for messages; None = this config gives none (cheap)
    load: Callable[[DataConfig], ImageSet]


@dataclass(frozen=True)
class DataKind:
    class_names: Callable[[DataConfig], list[str]]
    check: Callable[[DataConfig], None]  # the kind's inputs, the fixed splits' included
    images: Callable[[DataConfig], ImageSet]  # every image but those of a fixed val or test split
    multilabel: bool = False  # labels are an (n, classes) 0/1 array instead of one class index each
    val: FixedSplit | None = None
    test: FixedSplit | None = None


def _synthetic_images(cfg: DataConfig) -> ImageSet:
    return synthetic.generate(cfg.synthetic, cfg.image_size)


DATA_KINDS: dict[str, DataKind] = {
    "synthetic": DataKind(
        class_names=lambda cfg: list(cfg.synthetic.classes), check=lambda cfg: None, images=_synthetic_images
    ),
    "imagefolder": DataKind(
        class_names=imagefolder.class_names,
        check=imagefolder.check,
        images=imagefolder.images,
        val=FixedSplit(imagefolder.fixed_val_source, imagefolder.load_val),
        test=FixedSplit(imagefolder.fixed_test_source, imagefolder.load_test),
    ),
    "coco": DataKind(
        class_names=coco.class_names,
        check=coco.check,
        images=coco.images,
        val=FixedSplit(coco.fixed_val_source, coco.load_val),
        test=FixedSplit(coco.fixed_test_source, coco.load_test),
    ),
    "synthetic_multilabel": DataKind(
        class_names=lambda cfg: synthetic_multilabel.defect_classes(cfg.synthetic),
        check=lambda cfg: None,
        images=lambda cfg: synthetic_multilabel.generate(cfg.synthetic, cfg.image_shape()),
        multilabel=True,
    ),
    "csv": DataKind(
        class_names=csv_rle.class_names,
        check=csv_rle.check,
        images=csv_rle.load_images,
        multilabel=True,
        test=FixedSplit(csv_rle.fixed_test_source, csv_rle.load_test),
    ),
}


def class_names(cfg: DataConfig) -> list[str]:
    return DATA_KINDS[cfg.kind].class_names(cfg)


def is_multilabel(cfg: DataConfig) -> bool:
    """Whether the data kind labels each image with a set of classes (the multilabel task's data)."""
    return DATA_KINDS[cfg.kind].multilabel


def check_data(cfg: DataConfig) -> None:
    """Raise a ConfigError if the data cannot be read; cheap, runs before any trial."""
    DATA_KINDS[cfg.kind].check(cfg)
    _check_splitting(cfg)


def has_test(cfg: DataConfig) -> bool:
    """Whether the data has a test split (no image is read, nor torch imported)."""
    return cfg.test_fraction > 0 or _source(DATA_KINDS[cfg.kind].test, cfg) is not None


def load_splits(cfg: DataConfig) -> Splits:
    """The train/val split a trial trains on; no image of the test split is in it, nor read for it."""
    _check_splitting(cfg)
    kind = DATA_KINDS[cfg.kind]
    images = kind.images(cfg)
    if cfg.test_fraction > 0:
        images, _ = split_off(images, cfg.test_fraction, cfg.test_seed)
    if _source(kind.val, cfg) is not None:
        train, val = images, kind.val.load(cfg)
    elif cfg.folds > 1:
        train, val = fold_split(images, cfg.folds, cfg.fold, cfg.split_seed)
    else:
        train, val = split_off(images, cfg.val_fraction, cfg.split_seed)
    return Splits(train, val, kind.class_names(cfg))


def load_test(cfg: DataConfig) -> ImageSet | None:
    """The test split, labelled by `class_names(cfg)`; None when the data has none. For scoring after a
    search only: no trial calls it."""
    _check_splitting(cfg)
    kind = DATA_KINDS[cfg.kind]
    if cfg.test_fraction > 0:
        return split_off(kind.images(cfg), cfg.test_fraction, cfg.test_seed)[1]
    return kind.test.load(cfg) if _source(kind.test, cfg) is not None else None


def _source(split: FixedSplit | None, cfg: DataConfig) -> str | None:
    return split.source(cfg) if split is not None else None


def _check_splitting(cfg: DataConfig) -> None:
    """The split settings against each other and against the kind's fixed splits."""
    kind = DATA_KINDS[cfg.kind]
    if cfg.fold >= cfg.folds:
        raise ConfigError("data.fold", f"expected 0 to data.folds - 1 = {cfg.folds - 1}, got {cfg.fold}")
    test = _source(kind.test, cfg)
    if cfg.test_fraction > 0 and test is not None:
        raise ConfigError("data.test_fraction", f"the test split is already given by {test}: set one or the other")
    val = _source(kind.val, cfg)
    if cfg.folds > 1 and val is not None:
        raise ConfigError("data.folds", f"folds need a random split, but {val} fixes the validation images")
