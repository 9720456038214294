"""Tests of the COCO data kind: round trip through a tiny COCO JSON and every user error."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from training.config import DataConfig
from training.data import check_data, class_names, load_splits
from training.schema.errors import ConfigError

SIZE = 40


def _coco(n_images: int = 12) -> dict:
    """Two categories (ids 7 and 3, so id order differs from list order); every third image is good."""
    images = [{"id": i, "file_name": f"part_{i}.png", "width": SIZE + i % 2 * 8, "height": SIZE} for i in range(n_images)]
    annotations, next_id = [], 100
    for i in range(n_images):
        if i % 3 == 0:
            continue
        category = 7 if i % 3 == 1 else 3
        annotations.append({"id": next_id, "image_id": i, "category_id": category, "bbox": [2, 4, 20, 6], "iscrowd": 0})
        annotations.append({"id": next_id + 1, "image_id": i, "category_id": 3, "bbox": [10.5, 20, 5, 5], "iscrowd": 0})
        next_id += 2
    categories = [{"id": 7, "name": "scratch"}, {"id": 3, "name": "chip"}]
    return {"images": images, "annotations": annotations, "categories": categories}


def _write(tmp_path: Path, doc: dict, name: str = "train.json") -> DataConfig:
    folder = tmp_path / "images"
    folder.mkdir(exist_ok=True)
    for image in doc["images"]:
        pixels = np.full((image["height"], image["width"], 3), 120, np.uint8)
        cv2.imwrite(str(folder / image["file_name"]), pixels)
    (tmp_path / name).write_text(json.dumps(doc))
    return DataConfig(kind="coco", coco={"annotations": tmp_path / name, "images": folder}, val_fraction=0.25)


def test_coco_class_names_put_good_first_then_categories_by_id(tmp_path):
    cfg = _write(tmp_path, _coco())
    # the good class (images without boxes) comes first, then category names sorted by category id
    assert class_names(cfg) == ["good", "chip", "scratch"]


def test_coco_load_round_trips_boxes_and_labels(tmp_path):
    doc = _coco()
    cfg = _write(tmp_path, doc)
    splits = load_splits(cfg)
    every = {
        Path(path).name: (label, boxes, box_labels)
        for part in (splits.train, splits.val)
        for path, label, boxes, box_labels in zip(part.images, part.labels, part.boxes, part.box_labels)
    }
    # every image is in exactly one split, as a path (read lazily)
    assert sorted(every) == sorted(image["file_name"] for image in doc["images"])
    # the split is stratified by image label: each of the three classes (4 images each) gives one to val
    assert sorted(splits.val.labels.tolist()) == [0, 1, 2]
    names = splits.class_names
    for image in doc["images"]:
        label, boxes, box_labels = every[image["file_name"]]
        anns = [a for a in doc["annotations"] if a["image_id"] == image["id"]]
        # boxes are the JSON's [x, y, w, h] as float32 xyxy pixels, in the JSON's order
        expected = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], np.float32).reshape(-1, 4)
        assert boxes.dtype == np.float32 and np.array_equal(boxes, expected)
        # box labels index the class list by category name
        category_names = {7: "scratch", 3: "chip"}
        assert [names[c] for c in box_labels] == [category_names[a["category_id"]] for a in anns]
        # the image label is good without boxes, else the class of its largest box
        assert names[label] == ("good" if not anns else category_names[anns[0]["category_id"]])


def test_coco_val_annotations_give_a_fixed_split(tmp_path):
    cfg = _write(tmp_path, _coco(9))
    val_doc = _coco(3)
    for image in val_doc["images"]:
        image["file_name"] = "val_" + image["file_name"]
    _write(tmp_path, val_doc, "val.json")
    cfg = cfg.model_copy(update={"coco": cfg.coco.model_copy(update={"val_annotations": tmp_path / "val.json"})})
    splits = load_splits(cfg)
    # with val_annotations, the training JSON is all training data and the val JSON all validation data
    assert len(splits.train) == 9 and len(splits.val) == 3
    assert all(Path(p).name.startswith("val_") for p in splits.val.images)


def test_coco_crowd_regions_are_left_out(tmp_path):
    doc = _coco(3)
    doc["annotations"][0]["iscrowd"] = 1
    splits = load_splits(_write(tmp_path, doc).model_copy(update={"val_fraction": 0.5}))
    # a crowd region marks no single defect: it is not a training box
    assert sum(len(b) for b in [*splits.train.boxes, *splits.val.boxes]) == len(doc["annotations"]) - 1


def _broken(mutate):
    def make(tmp_path: Path) -> DataConfig:
        doc = _coco(6)
        cfg = _write(tmp_path, doc)
        mutate(doc, tmp_path)
        (tmp_path / "train.json").write_text(json.dumps(doc))
        return cfg

    return make


def _set_bbox(bbox):
    return _broken(lambda doc, _: doc["annotations"][0].update(bbox=bbox))


@pytest.mark.parametrize(
    "make, key, words",
    [
        (_broken(lambda doc, _: doc.update(categories=[])), "data.coco.annotations", ["empty category list"]),
        (_broken(lambda doc, tmp: (tmp / "images" / "part_2.png").unlink()), "data.coco.images", ["part_2.png", "not found"]),
        (_set_bbox([30, 4, 20, 6]), "data.coco.annotations", ["annotation 100", "part_1.png", "outside"]),
        (_set_bbox([2, 4, 0, 6]), "data.coco.annotations", ["annotation 100", "must be > 0"]),
        (_set_bbox([2, 4, 5]), "data.coco.annotations", ["annotation 100", "bbox"]),
        (
            _broken(lambda doc, _: doc["annotations"][0].update(category_id=99)),
            "data.coco.annotations",
            ["unknown category_id 99"],
        ),
        (_broken(lambda doc, _: doc["annotations"][0].update(image_id=99)), "data.coco.annotations", ["unknown image_id 99"]),
        (_broken(lambda doc, _: doc["categories"].append({"id": 1, "name": "good"})), "data.coco.annotations", ["'good'"]),
    ],
    ids=["no-categories", "missing-image", "box-outside", "empty-box", "bad-bbox", "unknown-category",
         "unknown-image", "good-category"],
)
def test_coco_check_names_the_key_and_the_problem(tmp_path, make, key, words):
    cfg = make(tmp_path)
    with pytest.raises(ConfigError) as caught:
        check_data(cfg)
    # each mistake is one ConfigError on the right key, naming what is wrong
    assert caught.value.key == key
    assert all(word in caught.value.message for word in words), caught.value.message


def test_coco_check_rejects_a_missing_json(tmp_path):
    cfg = _write(tmp_path, _coco(3))
    cfg = cfg.model_copy(update={"coco": cfg.coco.model_copy(update={"annotations": tmp_path / "nope.json"})})
    with pytest.raises(ConfigError) as caught:
        check_data(cfg)
    # a JSON path that does not exist is named
    assert caught.value.key == "data.coco.annotations" and "not found" in caught.value.message
    assert "nope.json" in caught.value.message


def test_coco_check_rejects_invalid_json(tmp_path):
    cfg = _write(tmp_path, _coco(3))
    (tmp_path / "train.json").write_text("{not json")
    with pytest.raises(ConfigError) as caught:
        check_data(cfg)
    # a file that is not JSON is named as such
    assert caught.value.key == "data.coco.annotations" and "invalid JSON" in caught.value.message


@pytest.mark.parametrize("missing, key", [("annotations", "data.coco.annotations"), ("images", "data.coco.images")])
def test_coco_check_requires_both_paths(tmp_path, missing, key):
    cfg = _write(tmp_path, _coco(3))
    cfg = cfg.model_copy(update={"coco": cfg.coco.model_copy(update={missing: None})})
    # data.kind coco without the JSON or the image folder is a config error on that key
    with pytest.raises(ConfigError, match="required") as caught:
        check_data(cfg)
    assert caught.value.key == key


def test_coco_box_edge_within_a_pixel_is_clipped(tmp_path):
    doc = _coco(3)
    doc["annotations"][0]["bbox"] = [0, 0, SIZE + 8 + 0.5, 6]  # image 1 is SIZE + 8 wide
    splits = load_splits(_write(tmp_path, doc).model_copy(update={"val_fraction": 0.5}))
    boxes = np.concatenate([*splits.train.boxes, *splits.val.boxes])
    # an exporter's rounding past the border is clipped to the image, not refused
    assert boxes[:, 2].max() == SIZE + 8
