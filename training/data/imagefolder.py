"""ImageFolder data: ROOT/<class>/<image> (random split) or ROOT/{train,val}/<class>/<image>, and with
split: folders an optional ROOT/test/<class>/<image> test split. Class names come from the training
folders; a val or test class folder of another name is not read."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.config import DataConfig
from training.data.samples import ImageSet
from training.schema.errors import ConfigError

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
    _check_training(cfg)
    names = class_names(cfg)
    if fixed_test_source(cfg) is not None and not len(_scan(_test_root(cfg), names)):
        raise ConfigError("data.imagefolder.root", f"{_test_root(cfg)} holds no images in class folders {names}")


def _check_training(cfg: DataConfig) -> None:
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


def images(cfg: DataConfig) -> ImageSet:
    """The images of ROOT (split: random) or ROOT/train (split: folders), as paths."""
    _check_training(cfg)
    return _scan(_class_root(cfg), class_names(cfg))


def fixed_val_source(cfg: DataConfig) -> str | None:
    return "data.imagefolder.split: folders" if cfg.imagefolder.split == "folders" else None


def load_val(cfg: DataConfig) -> ImageSet:
    _check_training(cfg)
    return _scan(Path(cfg.imagefolder.root) / "val", class_names(cfg))


def _test_root(cfg: DataConfig) -> Path:
    return Path(cfg.imagefolder.root) / "test"


def fixed_test_source(cfg: DataConfig) -> str | None:
    """ROOT/test with split: folders, when the folder is there (with split: random, ROOT holds classes)."""
    if cfg.imagefolder.root is None or cfg.imagefolder.split != "folders" or not _test_root(cfg).is_dir():
        return None
    return f"the test folder {_test_root(cfg)}"


def load_test(cfg: DataConfig) -> ImageSet:
    check(cfg)
    return _scan(_test_root(cfg), class_names(cfg))
