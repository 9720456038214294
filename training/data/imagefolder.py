"""ImageFolder data: ROOT/<class>/<image> (random split) or ROOT/{train,val}/<class>/<image>."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.config import DataConfig
from training.data.samples import ImageSet, Splits
from training.data.split import stratified_split
from training.errors import ConfigError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def _class_root(cfg: DataConfig) -> Path:
    root = Path(cfg.imagefolder.root)
    return root / "train" if cfg.imagefolder.split == "folders" else root


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def class_names(cfg: DataConfig) -> list[str]:
    """Sub-folders holding at least one image, sorted by name."""
    root = _class_root(cfg)
    return sorted(d.name for d in root.iterdir() if d.is_dir() and _images_in(d))


def check(cfg: DataConfig) -> None:
    if cfg.imagefolder.root is None:
        raise ConfigError("data.imagefolder.root", "required when data.kind is imagefolder")
    root = _class_root(cfg)
    if not root.is_dir():
        raise ConfigError("data.imagefolder.root", f"folder not found: {root}")
    found = class_names(cfg)
    if len(found) < 2:
        raise ConfigError(
            "data.imagefolder.root", f"expected at least 2 class folders with images in {root}, found {len(found)}"
        )
    if cfg.imagefolder.split == "folders" and not (Path(cfg.imagefolder.root) / "val").is_dir():
        raise ConfigError("data.imagefolder.split", f"split 'folders' needs {Path(cfg.imagefolder.root) / 'val'}")


def _scan(root: Path, names: list[str]) -> ImageSet:
    paths, labels = [], []
    for index, name in enumerate(names):
        folder = root / name
        found = _images_in(folder) if folder.is_dir() else []
        paths += [str(p) for p in found]
        labels += [index] * len(found)
    return ImageSet(images=paths, labels=np.asarray(labels, dtype=np.int64))


def load(cfg: DataConfig) -> Splits:
    check(cfg)
    names = class_names(cfg)
    if cfg.imagefolder.split == "folders":
        root = Path(cfg.imagefolder.root)
        return Splits(_scan(root / "train", names), _scan(root / "val", names), names)
    train, val = stratified_split(_scan(_class_root(cfg), names), cfg.val_fraction, cfg.split_seed)
    return Splits(train, val, names)
