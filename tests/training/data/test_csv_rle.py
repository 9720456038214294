"""The csv data kind: Kaggle RLE decoding, Severstal-style CSV labels, its errors, a training step on long images."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from training.config import DataConfig, TrainConfig
from training.data import check_data, class_names, load_splits
from training.data.csv_rle import load_images, rle_decode, rle_encode
from training.loop.optim import create_optimizer
from training.loop.runtime import Runtime
from training.loop.step import training_step
from training.schema.errors import ConfigError
from training.tasks import create_task, get_task

# 3 x 4 mask; column-major 1-indexed pixels 3, 4, 5 (a run of 3 from 3) and 11, 12 (a run of 2 from 11)
MASK = np.array([[0, 1, 0, 0], [0, 1, 0, 1], [1, 0, 0, 1]], np.uint8)
MASK_RLE = "3 3 11 2"


def test_rle_decode_reads_kaggle_column_major_runs():
    assert np.array_equal(rle_decode(MASK_RLE, MASK.shape), MASK)
    # the empty RLE is an empty mask
    assert not rle_decode("", (2, 5)).any()


def test_rle_encode_round_trips_random_masks():
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (7, 3), (16, 64)]:
        mask = (rng.random(shape) < 0.3).astype(np.uint8)
        assert np.array_equal(rle_decode(rle_encode(mask), shape), mask)
    assert rle_encode(MASK) == MASK_RLE


@pytest.mark.parametrize(
    "rle, message",
    [
        ("3 3 11", "pairs"),
        ("3 x", "integers"),
        ("0 2", ">= 1"),
        ("5 2 3 1", "order"),
        ("1 3 3 1", "overlap"),
        ("11 3", "beyond the 3x4 image"),
    ],
)
def test_rle_decode_rejects_malformed_runs(rle, message):
    with pytest.raises(ValueError, match=message):
        rle_decode(rle, (3, 4))


def write_dataset(root: Path, rows: list[tuple[str, int, str]], images: list[str], shape=(8, 20)) -> DataConfig:
    """Images of `shape` under root/images and a CSV of `rows`; the data config that reads them."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in images:
        cv2.imwrite(str(root / "images" / name), rng.integers(0, 255, (*shape, 3), dtype=np.uint8))
    with open(root / "train.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ImageId", "ClassId", "EncodedPixels"])
        writer.writerows(rows)
    return DataConfig(kind="csv", csv={"file": root / "train.csv", "images": root / "images"})


def test_csv_labels_come_from_non_empty_rles(tmp_path):
    mask = np.zeros((8, 20), np.uint8)
    mask[2:5, 3:9] = 1
    rle = rle_encode(mask)
    rows = [("a.png", 1, rle), ("a.png", 3, rle), ("b.png", 2, rle), ("c.png", 4, "")]
    cfg = write_dataset(tmp_path, rows, ["a.png", "b.png", "c.png", "d.png"])
    images = load_images(cfg)
    by_name = {Path(p).name: row.tolist() for p, row in zip(images.images, images.labels)}
    # several rows per image set several classes; an empty RLE (c) or no row at all (d) is clean
    assert by_name == {"a.png": [1, 0, 1, 0], "b.png": [0, 1, 0, 0], "c.png": [0, 0, 0, 0], "d.png": [0, 0, 0, 0]}
    # class names default to class_<id> up to the largest ClassId; names can be given
    assert class_names(cfg) == ["class_1", "class_2", "class_3", "class_4"]
    named = cfg.model_copy(update={"csv": cfg.csv.model_copy(update={"classes": ["a", "b", "c", "d", "e"]})})
    assert class_names(named) == ["a", "b", "c", "d", "e"] and load_images(named).labels.shape == (4, 5)
    # the RLE of a labelled row decodes back to its mask (what a segmentation task would read)
    assert np.array_equal(rle_decode(rle, (8, 20)), mask)


@pytest.mark.parametrize(
    "change, key, message",
    [
        ("no_file", "data.csv.file", "file not found"),
        ("columns", "data.csv.file", "missing column"),
        ("bad_rle", "data.csv.file", "line 3: unreadable EncodedPixels"),
        ("class_id", "data.csv.file", "line 2: ClassId must be an integer"),
        ("out_of_range", "data.csv.classes", "line 3: ClassId 3 but only 2 classes"),
        ("missing_image", "data.csv.images", "not found in"),
    ],
)
def test_csv_errors_name_the_key_and_the_line(tmp_path, change, key, message):
    rows = [("a.png", 1, "1 2"), ("b.png", 2, "3 1")]
    images = ["a.png", "b.png"]
    classes = None
    if change == "bad_rle":
        rows[1] = ("b.png", 2, "3 one")
    if change == "class_id":
        rows[0] = ("a.png", "first", "1 2")
    if change == "out_of_range":
        rows[1], classes = ("b.png", 3, "3 1"), ["x", "y"]
    if change == "missing_image":
        images = ["a.png"]
    cfg = write_dataset(tmp_path, rows, images)
    cfg = cfg.model_copy(update={"csv": cfg.csv.model_copy(update={"classes": classes})})
    if change == "no_file":
        (tmp_path / "train.csv").unlink()
    if change == "columns":
        (tmp_path / "train.csv").write_text("ImageId,EncodedPixels\na.png,1 2\n")
    with pytest.raises(ConfigError) as error:
        check_data(cfg)
    assert error.value.key == key and message in error.value.message


def test_long_csv_images_flow_through_a_training_step(tmp_path):
    names = [f"{i:02d}.png" for i in range(12)]
    rows = [(name, 1 + i % 2, "1 40") for i, name in enumerate(names[:8])]
    data = write_dataset(tmp_path, rows, names, shape=(64, 400))
    cfg = TrainConfig(
        task="multilabel",
        data=data.model_copy(update={"image_size": 64, "image_width": 400, "batch_size": 4}),
        model={"name": "resnet10t"},
        train={"device": "cpu"},
    )
    get_task("multilabel").check(cfg)
    task = create_task(cfg, Runtime.from_config(cfg.train))
    images, labels = next(iter(task.train_loader))
    # the images keep their 64 x 400 shape; labels are one 0/1 column per class
    assert images.shape == (4, 3, 64, 400) and labels.shape == (4, 2)
    optimizer = create_optimizer(task.model, cfg.optim)
    loss = training_step(task, (images, labels), optimizer, task.runtime.grad_scaler(), None)
    assert torch.isfinite(loss)
    # the stratified split keeps both classes (4 images each) on both sides
    splits = load_splits(cfg.data)
    assert splits.train.labels.sum(axis=0).min() > 0 and splits.val.labels.sum(axis=0).min() > 0
