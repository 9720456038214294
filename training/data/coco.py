"""COCO detection data: a COCO JSON (images, annotations with bbox [x, y, w, h], categories) and
the folder its `file_name`s are relative to (the format mmdetection users already have).

Classes are the good class (images without boxes) followed by the category names in category-id
order, so image-level miss and overkill rates work as for classification. Images stay file paths,
read lazily by the dataset; `check` parses the JSON and stats the files but decodes no image.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.config import GOOD_CLASS, DataConfig
from training.data.samples import ImageSet
from training.schema.errors import ConfigError

# exporters round boxes: an edge up to this many pixels past the image border is clipped, not refused
EDGE_TOLERANCE = 1.0


@dataclass(frozen=True)
class CocoImage:
    path: Path
    width: int
    height: int
    boxes: np.ndarray  # float32 (k, 4) xyxy pixels
    categories: tuple[int, ...]  # category id of each box


@dataclass(frozen=True)
class CocoFile:
    """A parsed, checked COCO JSON: category id -> name (in id order) and its images with boxes."""

    categories: dict[int, str]
    images: list[CocoImage]


# --------------------------------------------------------------------------- parsing and checks


def _read_json(path: Path, key: str) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(key, f"invalid JSON in {path}: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(key, f"expected a COCO object with images, annotations and categories in {path}")
    for part in ("images", "annotations", "categories"):
        if not isinstance(doc.get(part, []), list):
            raise ConfigError(key, f"'{part}' must be a list in {path}")
    return doc


def _categories(doc: dict[str, Any], path: Path, key: str) -> dict[int, str]:
    raw = doc.get("categories") or []
    if not raw:
        raise ConfigError(key, f"empty category list in {path}: expected at least one category")
    try:
        categories = {int(c["id"]): str(c["name"]) for c in sorted(raw, key=lambda c: int(c["id"]))}
    except (KeyError, TypeError, ValueError):
        raise ConfigError(key, f"every category needs an integer 'id' and a 'name' in {path}") from None
    if GOOD_CLASS in categories.values():
        raise ConfigError(key, f"category '{GOOD_CLASS}' in {path} clashes with the class of images without boxes")
    return categories


def _image_size(entry: dict[str, Any], path: Path) -> tuple[int, int]:
    """(width, height) from the JSON, else from the file's header (PIL reads no pixels for it)."""
    if isinstance(entry.get("width"), int) and isinstance(entry.get("height"), int):
        return entry["width"], entry["height"]
    from PIL import Image

    with Image.open(path) as image:
        return image.size


def _image_entries(doc: dict[str, Any], root: Path, path: Path, key: str) -> dict[int, tuple[Path, int, int]]:
    """image id -> (file, width, height); every file must exist under `root`."""
    entries = {}
    for entry in doc.get("images") or []:
        if not isinstance(entry, dict) or "id" not in entry or "file_name" not in entry:
            raise ConfigError(key, f"every image needs an 'id' and a 'file_name' in {path}")
        file = root / entry["file_name"]
        if not file.is_file():
            raise ConfigError("data.coco.images", f"image '{entry['file_name']}' of {path.name} not found in {root}")
        entries[entry["id"]] = (file, *_image_size(entry, file))
    return entries


def _box(ann: dict[str, Any], size: tuple[int, int], file: Path, path: Path, key: str) -> list[float]:
    """The annotation's bbox [x, y, w, h] as xyxy, checked against the image (width, height)."""
    where = f"annotation {ann.get('id')} of image '{file.name}' in {path.name}"
    bbox = ann.get("bbox")
    numbers = isinstance(bbox, list) and len(bbox) == 4
    if not (numbers and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)):
        raise ConfigError(key, f"{where}: expected bbox [x, y, width, height] of finite numbers, got {bbox!r}")
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        raise ConfigError(key, f"{where}: box width and height must be > 0, got {w:g} x {h:g}")
    width, height = size
    if x < -EDGE_TOLERANCE or y < -EDGE_TOLERANCE or x + w > width + EDGE_TOLERANCE or y + h > height + EDGE_TOLERANCE:
        raise ConfigError(key, f"{where}: box [{x:g}, {y:g}, {w:g}, {h:g}] lies outside the {width}x{height} image")
    return [max(x, 0.0), max(y, 0.0), min(x + w, width), min(y + h, height)]


def _annotations(
    doc: dict[str, Any], images: dict[int, tuple[Path, int, int]], categories: dict[int, str], path: Path, key: str
) -> dict[int, list[tuple[list[float], int]]]:
    """image id -> [(xyxy box, category id)], crowd regions left out (they mark no single object)."""
    boxes: dict[int, list[tuple[list[float], int]]] = {image_id: [] for image_id in images}
    for ann in doc.get("annotations") or []:
        if not isinstance(ann, dict):
            raise ConfigError(key, f"every annotation must be an object in {path}")
        if ann.get("image_id") not in images:
            raise ConfigError(key, f"annotation {ann.get('id')} in {path.name}: unknown image_id {ann.get('image_id')!r}")
        if ann.get("category_id") not in categories:
            known = ", ".join(str(c) for c in categories)
            unknown = f"unknown category_id {ann.get('category_id')!r} (known: {known})"
            raise ConfigError(key, f"annotation {ann.get('id')} in {path.name}: {unknown}")
        if ann.get("iscrowd"):
            continue
        file, width, height = images[ann["image_id"]]
        boxes[ann["image_id"]].append((_box(ann, (width, height), file, path, key), ann["category_id"]))
    return boxes


@functools.lru_cache(maxsize=8)
def _parse_cached(path: Path, root: Path, key: str, _stamp: tuple[int, int]) -> CocoFile:
    doc = _read_json(path, key)
    categories = _categories(doc, path, key)
    entries = _image_entries(doc, root, path, key)
    boxes = _annotations(doc, entries, categories, path, key)
    images = []
    for image_id, (file, width, height) in entries.items():
        found = boxes[image_id]
        xyxy = np.array([b for b, _ in found], np.float32).reshape(-1, 4)
        xyxy.setflags(write=False)  # cached and shared by every load: an in-place edit would leak
        images.append(CocoImage(file, width, height, xyxy, tuple(c for _, c in found)))
    return CocoFile(categories, images)


def parse(path: Path, root: Path, key: str) -> CocoFile:
    """Read and check one COCO JSON; errors name `key`. Cached until the file changes, because
    `check`, `class_names` and `load` all read it."""
    if not path.is_file():
        raise ConfigError(key, f"COCO JSON not found: {path}")
    stat = path.stat()
    return _parse_cached(path.resolve(), root.resolve(), key, (stat.st_mtime_ns, stat.st_size))


# --------------------------------------------------------------------------- the data kind


def _paths(cfg: DataConfig) -> tuple[Path, Path]:
    if cfg.coco.annotations is None:
        raise ConfigError("data.coco.annotations", "required when data.kind is coco: the COCO JSON file")
    if cfg.coco.images is None:
        raise ConfigError("data.coco.images", "required when data.kind is coco: the folder of the images")
    if not Path(cfg.coco.images).is_dir():
        raise ConfigError("data.coco.images", f"folder not found: {cfg.coco.images}")
    return Path(cfg.coco.annotations), Path(cfg.coco.images)


def _train_file(cfg: DataConfig) -> CocoFile:
    annotations, root = _paths(cfg)
    return parse(annotations, root, "data.coco.annotations")


def _same_categories(other: CocoFile, train: CocoFile, key: str) -> CocoFile:
    if other.categories != train.categories:
        differ = f"{other.categories} vs {train.categories}"
        raise ConfigError(key, f"categories differ from data.coco.annotations: {differ}")
    return other


def _val_file(cfg: DataConfig, train: CocoFile) -> CocoFile:
    key = "data.coco.val_annotations"
    return _same_categories(parse(Path(cfg.coco.val_annotations), Path(cfg.coco.images), key), train, key)


def _test_file(cfg: DataConfig) -> CocoFile:
    """The test JSON, checked against the others: same categories, no image of theirs."""
    key = "data.coco.test_annotations"
    train = _checked_train_file(cfg)
    test = _same_categories(parse(Path(cfg.coco.test_annotations), Path(cfg.coco.images), key), train, key)
    if not test.images:
        raise ConfigError(key, f"no images listed in {cfg.coco.test_annotations}")
    others = {cfg.coco.annotations: train}
    if cfg.coco.val_annotations is not None:
        others[cfg.coco.val_annotations] = _val_file(cfg, train)
    tested = {image.path.resolve() for image in test.images}
    for path, other in others.items():
        shared = sorted(tested & {image.path.resolve() for image in other.images})
        if shared:
            raise ConfigError(key, f"image '{shared[0].name}' is also listed in {path}: test images must stay unseen")
    return test


def _checked_train_file(cfg: DataConfig) -> CocoFile:
    train = _train_file(cfg)
    if not train.images:
        raise ConfigError("data.coco.annotations", f"no images listed in {cfg.coco.annotations}")
    return train


def class_names(cfg: DataConfig) -> list[str]:
    """The good class, then the category names in category-id order."""
    return [GOOD_CLASS, *_train_file(cfg).categories.values()]


def check(cfg: DataConfig) -> None:
    train = _checked_train_file(cfg)
    if cfg.coco.val_annotations is not None:
        _val_file(cfg, train)
    if cfg.coco.test_annotations is not None:
        _test_file(cfg)


def image_set(coco: CocoFile) -> ImageSet:
    """Paths, image labels (good, else the class of the largest box) and per-box class indices."""
    index = {category: i for i, category in enumerate(coco.categories, start=1)}
    labels, box_labels = [], []
    for image in coco.images:
        classes = np.array([index[c] for c in image.categories], np.int64)
        areas = (image.boxes[:, 2] - image.boxes[:, 0]) * (image.boxes[:, 3] - image.boxes[:, 1])
        labels.append(int(classes[np.argmax(areas)]) if len(classes) else 0)
        box_labels.append(classes)
    return ImageSet(
        images=[str(image.path) for image in coco.images],
        labels=np.array(labels, np.int64),
        boxes=[image.boxes for image in coco.images],
        box_labels=box_labels,
    )


def images(cfg: DataConfig) -> ImageSet:
    """The training JSON's images (neither the val nor the test JSON is read)."""
    return image_set(_checked_train_file(cfg))


def fixed_val_source(cfg: DataConfig) -> str | None:
    return "data.coco.val_annotations" if cfg.coco.val_annotations is not None else None


def load_val(cfg: DataConfig) -> ImageSet:
    return image_set(_val_file(cfg, _checked_train_file(cfg)))


def fixed_test_source(cfg: DataConfig) -> str | None:
    return "data.coco.test_annotations" if cfg.coco.test_annotations is not None else None


def load_test(cfg: DataConfig) -> ImageSet:
    check(cfg)
    return image_set(_test_file(cfg))
