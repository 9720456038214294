"""Severstal-style CSV data: rows of `ImageId, ClassId, EncodedPixels`, one per (image, class) mask.

- A row with a non-empty RLE marks its class present on its image. A row with an empty RLE, or an
  image in `data.csv.images` that the CSV does not list, is clean for that class (or altogether).
- RLE is the Kaggle convention: space-separated (start, length) pairs, starts 1-indexed, over the
  mask flattened column-major (top to bottom, then left to right).
- Loading checks each RLE's form (integer pairs, runs in order, not overlapping), which needs no
  image size; `rle_decode` also checks that the runs fit the image, for whoever needs the masks.
"""

from __future__ import annotations

import csv
import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.config import DataConfig
from training.data.imagefolder import IMAGE_SUFFIXES
from training.data.samples import ImageSet
from training.schema.errors import ConfigError

COLUMNS = ("ImageId", "ClassId", "EncodedPixels")


@dataclass(frozen=True)
class MaskRow:
    """One CSV row: an image's mask of one class (empty `rle` = the class is absent)."""

    image_id: str
    class_id: int  # 1-based, as in the file
    rle: str
    line: int  # line number in the file (the header is line 1)


def rle_runs(rle: str) -> np.ndarray:
    """(k, 2) int64 array of (0-based start, length); ValueError when not ordered integer pairs."""
    try:
        values = np.array(rle.split(), dtype=np.int64)
    except ValueError:
        raise ValueError(f"expected integers, got {rle[:40]!r}") from None
    if len(values) % 2:
        raise ValueError(f"expected start/length pairs, got an odd count of {len(values)} numbers")
    runs = values.reshape(-1, 2)
    if (runs < 1).any():
        raise ValueError("starts (1-indexed) and lengths must be >= 1")
    if (runs[1:, 0] < runs[:-1].sum(axis=1)).any():
        raise ValueError("runs must be in increasing order and must not overlap")
    return runs - [1, 0]


def rle_decode(rle: str, shape: tuple[int, int]) -> np.ndarray:
    """The uint8 0/1 (height, width) mask of a Kaggle RLE; ValueError when malformed or off the image."""
    height, width = shape
    runs = rle_runs(rle)
    ends = runs.sum(axis=1)
    if len(runs) and ends[-1] > height * width:
        raise ValueError(f"a run ends at pixel {ends[-1]}, beyond the {height}x{width} image")
    # +1 at each run start, -1 after its end: the running sum is the mask (runs never overlap)
    steps = np.zeros(height * width + 1, np.int8)
    steps[runs[:, 0]] = 1
    steps[ends] -= 1
    return np.cumsum(steps[:-1], dtype=np.int8).astype(np.uint8).reshape((height, width), order="F")


def rle_encode(mask: np.ndarray) -> str:
    """The Kaggle RLE of a 2-D mask (non-zero = inside); "" for an empty mask."""
    flat = np.concatenate([[0], mask.flatten(order="F") != 0, [0]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(flat)) + 1  # 1-based first pixel of each run, then one past its end
    edges[1::2] -= edges[::2]
    return " ".join(map(str, edges))


@functools.lru_cache(maxsize=4)
def _read_cached(path: str, modified_ns: int, key: str) -> tuple[MaskRow, ...]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            found = reader.fieldnames or "none"
            raise ConfigError(key, f"{path}: missing column(s) {', '.join(missing)}; found {found}")
        return tuple(_parse(row, line, path, key) for line, row in enumerate(reader, start=2))


def _parse(row: dict[str, str], line: int, path: str, key: str) -> MaskRow:
    where = f"{path} line {line}"
    try:
        class_id = int(row["ClassId"])
    except (TypeError, ValueError):
        raise ConfigError(key, f"{where}: ClassId must be an integer, got {row['ClassId']!r}") from None
    if class_id < 1:
        raise ConfigError(key, f"{where}: ClassId must be >= 1, got {class_id}")
    rle = (row["EncodedPixels"] or "").strip()
    try:
        rle_runs(rle)
    except ValueError as exc:
        raise ConfigError(key, f"{where}: unreadable EncodedPixels: {exc}") from None
    return MaskRow(str(row["ImageId"] or "").strip(), class_id, rle, line)


def _rows(path: Path, key: str) -> tuple[MaskRow, ...]:
    if not path.is_file():
        raise ConfigError(key, f"file not found: {path}")
    return _read_cached(str(path), path.stat().st_mtime_ns, key)


def read_rows(cfg: DataConfig) -> tuple[MaskRow, ...]:
    """Every row of `data.csv.file`, validated (cached while the file is unchanged)."""
    if cfg.csv.file is None:
        raise ConfigError("data.csv.file", "required when data.kind is csv")
    return _rows(Path(cfg.csv.file), "data.csv.file")


def class_names(cfg: DataConfig) -> list[str]:
    """`data.csv.classes`, else class_1 ... class_<largest ClassId in the file>."""
    if cfg.csv.classes:
        return list(cfg.csv.classes)
    largest = max((row.class_id for row in read_rows(cfg)), default=1)
    return [f"class_{i}" for i in range(1, largest + 1)]


def _folder_images(folder: Path) -> list[str]:
    return [e.name for e in os.scandir(folder) if e.is_file() and Path(e.name).suffix.lower() in IMAGE_SUFFIXES]


def check(cfg: DataConfig) -> None:
    _check_training(cfg)
    _check_test(cfg)


def _check_training(cfg: DataConfig) -> None:
    rows = read_rows(cfg)
    if cfg.csv.images is None:
        raise ConfigError("data.csv.images", "required when data.kind is csv")
    n_classes = len(class_names(cfg))
    _check_images(rows, cfg.csv.file, "data.csv.classes", Path(cfg.csv.images), "data.csv.images", n_classes, 2)


def _check_test(cfg: DataConfig) -> None:
    file, folder = cfg.csv.test_file, cfg.csv.test_images
    if file is None and folder is None:
        return
    if folder is None:
        raise ConfigError("data.csv.test_images", "required with data.csv.test_file: the folder of the test images")
    if file is None:
        raise ConfigError("data.csv.test_file", "required with data.csv.test_images: the CSV of the test images")
    if Path(folder).resolve() == Path(cfg.csv.images).resolve():
        raise ConfigError("data.csv.test_images", f"{folder} is data.csv.images: expected a folder of test images only")
    rows = _rows(Path(file), "data.csv.test_file")
    _check_images(rows, file, "data.csv.test_file", Path(folder), "data.csv.test_images", len(class_names(cfg)), 1)


def _check_images(
    rows: tuple[MaskRow, ...], file: Path, classes_key: str, folder: Path, folder_key: str, n_classes: int, least: int
) -> None:
    """The CSV's class ids against the class count (errors on `classes_key`), its images against the
    folder, which must hold at least `least` images (errors on `folder_key`)."""
    if not folder.is_dir():
        raise ConfigError(folder_key, f"folder not found: {folder}")
    for row in rows:
        if row.class_id > n_classes:
            where = f"{file} line {row.line}"
            raise ConfigError(classes_key, f"{where}: ClassId {row.class_id} but only {n_classes} classes")
    present = set(_folder_images(folder))
    missing = sorted({row.image_id for row in rows} - present)
    if missing:
        raise ConfigError(folder_key, f"{len(missing)} image(s) of the CSV not found in {folder}, e.g. {missing[0]!r}")
    if len(present) < least:
        raise ConfigError(folder_key, f"expected at least {least} image(s) in {folder}, found {len(present)}")


def _labelled(rows: tuple[MaskRow, ...], folder: Path, n_classes: int) -> ImageSet:
    """Every image of the folder, labelled by `rows` as an (n, classes) 0/1 array."""
    names = sorted(_folder_images(folder))
    index = {name: i for i, name in enumerate(names)}
    labels = np.zeros((len(names), n_classes), np.uint8)
    for row in rows:
        if row.rle:
            labels[index[row.image_id], row.class_id - 1] = 1
    return ImageSet(images=[str(folder / name) for name in names], labels=labels)


def load_images(cfg: DataConfig) -> ImageSet:
    """Every image of `data.csv.images`, labelled by `data.csv.file` (the test CSV and folder are not read)."""
    _check_training(cfg)
    return _labelled(read_rows(cfg), Path(cfg.csv.images), len(class_names(cfg)))


def fixed_test_source(cfg: DataConfig) -> str | None:
    return "data.csv.test_file" if cfg.csv.test_file is not None or cfg.csv.test_images is not None else None


def load_test(cfg: DataConfig) -> ImageSet:
    check(cfg)
    rows = _rows(Path(cfg.csv.test_file), "data.csv.test_file")
    return _labelled(rows, Path(cfg.csv.test_images), len(class_names(cfg)))
