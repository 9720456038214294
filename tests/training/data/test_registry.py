"""The test split and the folds, for every data kind: the test images are set aside first (the kind's
test file or folder, else data.test_fraction by data.test_seed), then the rest is split into
train/val or k folds; a trial's Splits never holds a test image, and never opens one."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import pytest

from training.config import DataConfig
from training.data import ImageSet, check_data, class_names, has_test, load_splits, load_test
from training.schema.errors import ConfigError

# images per class: a common, a middling, a rare class and one of two images
COUNTS = {"good": 12, "scratch": 8, "chip": 4, "dent": 2}


def _png(path: Path, value: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((8, 8, 3), value % 256, np.uint8))


def _imagefolder(root: Path, parts: tuple[str, ...] = ("",)) -> None:
    """COUNTS images per class under root/<part>/<class>/ for each part (file names unique across parts)."""
    for part in parts:
        for name, count in COUNTS.items():
            for i in range(count):
                _png(root / part / name / f"{part or 'all'}_{name}_{i}.png", i)


def _coco_doc(prefix: str, categories: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """COUNTS images per class: good ones without boxes, the others with one box of their category."""
    categories = categories or [{"id": i, "name": n} for i, n in enumerate(COUNTS) if n != "good"]
    ids = {c["name"]: c["id"] for c in categories}
    images, annotations = [], []
    for name, count in COUNTS.items():
        for i in range(count):
            image_id = len(images)
            images.append({"id": image_id, "file_name": f"{prefix}_{name}_{i}.png", "width": 8, "height": 8})
            if name != "good":
                bbox = [1, 1, 4, 4]
                annotations.append({"id": image_id, "image_id": image_id, "category_id": ids[name], "bbox": bbox})
    return {"images": images, "annotations": annotations, "categories": categories}


def _write_coco(root: Path, doc: dict[str, Any], name: str) -> Path:
    for image in doc["images"]:
        _png(root / "images" / image["file_name"], image["id"])
    (root / name).write_text(json.dumps(doc))
    return root / name


def _multilabel_rows(prefix: str) -> tuple[list[str], list[tuple[str, int, str]]]:
    """Image names and CSV rows: 8 clean images, then images with class 1, 2 or both (1 in 3 of each)."""
    names = [f"{prefix}_{i:02d}.png" for i in range(26)]
    rows = [(n, 1 + i % 2, "1 3") for i, n in enumerate(names[8:])] + [(n, 2, "5 2") for n in names[8::3]]
    return names, rows


def _write_csv(path: Path, rows: list[tuple[str, int, str]], folder: Path, names: list[str]) -> None:
    for i, name in enumerate(names):
        _png(folder / name, i)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ImageId", "ClassId", "EncodedPixels"])
        writer.writerows(rows)


# ----------------------------------------------------------------------------- one config per kind


def _with(cfg: DataConfig, **changes: Any) -> DataConfig:
    return DataConfig.model_validate(cfg.model_dump() | changes)


def synthetic(tmp_path: Path) -> DataConfig:
    return DataConfig(image_size=16, synthetic={"count": 40, "seed": 1}, test_fraction=0.25)


def synthetic_multilabel(tmp_path: Path) -> DataConfig:
    return _with(synthetic(tmp_path), kind="synthetic_multilabel")


def imagefolder_random(tmp_path: Path) -> DataConfig:
    _imagefolder(tmp_path)
    return DataConfig(kind="imagefolder", imagefolder={"root": tmp_path}, test_fraction=0.25)


def imagefolder_folders(tmp_path: Path) -> DataConfig:
    _imagefolder(tmp_path, ("train", "val", "test"))
    return DataConfig(kind="imagefolder", imagefolder={"root": tmp_path, "split": "folders"})


def coco_random(tmp_path: Path) -> DataConfig:
    train = _write_coco(tmp_path, _coco_doc("train"), "train.json")
    return DataConfig(kind="coco", coco={"annotations": train, "images": tmp_path / "images"}, test_fraction=0.25)


def coco_test_json(tmp_path: Path) -> DataConfig:
    train = _write_coco(tmp_path, _coco_doc("train"), "train.json")
    test = _write_coco(tmp_path, _coco_doc("test"), "test.json")
    return DataConfig(kind="coco", coco={"annotations": train, "images": tmp_path / "images", "test_annotations": test})


def csv_random(tmp_path: Path) -> DataConfig:
    names, rows = _multilabel_rows("train")
    _write_csv(tmp_path / "train.csv", rows, tmp_path / "images", names)
    files = {"file": tmp_path / "train.csv", "images": tmp_path / "images"}
    return DataConfig(kind="csv", csv=files, test_fraction=0.25)


def csv_test_file(tmp_path: Path) -> DataConfig:
    names, rows = _multilabel_rows("train")
    _write_csv(tmp_path / "train.csv", rows, tmp_path / "images", names)
    test_names, test_rows = _multilabel_rows("test")
    kept = test_names[:14]  # 8 clean images, 6 with classes
    _write_csv(tmp_path / "test.csv", [r for r in test_rows if r[0] in kept], tmp_path / "test_images", kept)
    files = {"file": tmp_path / "train.csv", "images": tmp_path / "images"}
    test = {"test_file": tmp_path / "test.csv", "test_images": tmp_path / "test_images"}
    return DataConfig(kind="csv", csv=files | test)


Build = Callable[[Path], DataConfig]
KINDS: list[Build] = [
    synthetic, synthetic_multilabel, imagefolder_random, imagefolder_folders, coco_random, coco_test_json, csv_random,
    csv_test_file,
]  # fmt: skip
BY_FRACTION = [synthetic, synthetic_multilabel, imagefolder_random, coco_random, csv_random]
RANDOM_VAL = [k for k in KINDS if k is not imagefolder_folders]
kinds = pytest.mark.parametrize("build", KINDS, ids=lambda k: k.__name__)


def _keys(images: ImageSet) -> list[str | bytes]:
    """What tells images apart: a path, or an array's bytes."""
    return [item if isinstance(item, str) else item.tobytes() for item in images.images]


def _classes(images: ImageSet) -> set[int]:
    labels = images.labels
    return set(np.flatnonzero(labels.any(axis=0)).tolist()) if labels.ndim == 2 else set(labels.tolist())


def _class_counts(images: ImageSet, n_classes: int) -> np.ndarray:
    labels = images.labels
    return labels.sum(axis=0, dtype=np.int64) if labels.ndim == 2 else np.bincount(labels, minlength=n_classes)


def _variants(build: Build) -> list[dict[str, int]]:
    """Split settings that must leave the test split where it is."""
    seeds = [{"split_seed": 0}, {"split_seed": 9}]
    return seeds + ([{"folds": 3, "fold": f} for f in range(3)] if build in RANDOM_VAL else [])


# ----------------------------------------------------------------------------- the rules


@kinds
def test_load_test_is_apart_from_every_train_val_split(tmp_path, build):
    cfg = build(tmp_path)
    test = set(_keys(load_test(cfg)))
    # there is a test split, and has_test says so without loading it
    assert test and has_test(cfg)
    non_test = None
    for changes in _variants(build):
        splits = load_splits(_with(cfg, **changes))
        train, val = set(_keys(splits.train)), set(_keys(splits.val))
        # no test image is in a trial's splits, whatever split_seed, folds and fold are
        assert not test & (train | val)
        # train and val are disjoint, and together always the same non-test images
        assert not train & val
        non_test = non_test or train | val
        assert train | val == non_test
        # the test split itself does not move
        assert set(_keys(load_test(_with(cfg, **changes)))) == test


@pytest.mark.parametrize("build", BY_FRACTION, ids=lambda k: k.__name__)
def test_load_test_by_fraction_loses_no_image_and_keeps_every_class(tmp_path, build):
    cfg = build(tmp_path)
    test, splits = load_test(cfg), load_splits(cfg)
    whole = load_splits(_with(cfg, test_fraction=0.0))
    # test + train + val are exactly the images of the data without a test split
    every_image = sorted(_keys(whole.train) + _keys(whole.val))
    assert sorted(_keys(test) + _keys(splits.train) + _keys(splits.val)) == every_image
    # about test_fraction of the images are test images
    assert abs(len(test) - 0.25 * (len(whole.train) + len(whole.val))) <= 2
    n_classes = len(class_names(cfg))
    every = _class_counts(whole.train, n_classes) + _class_counts(whole.val, n_classes)
    for cls in np.flatnonzero(every >= 2):
        # stratified: a class with 2+ images is both trained on and in the test split
        assert cls in _classes(splits.train) and cls in _classes(test), class_names(cfg)[cls]
    # test labels index the same class names as the trial's
    assert max(_classes(test)) < n_classes


@pytest.mark.parametrize("build", BY_FRACTION, ids=lambda k: k.__name__)
def test_load_test_is_deterministic_and_moves_with_test_seed(tmp_path, build):
    cfg = build(tmp_path)
    test = _keys(load_test(cfg))
    first, again = load_splits(cfg), load_splits(cfg)
    # the same seeds give the same test split and the same train/val split, in the same order
    assert _keys(load_test(cfg)) == test
    assert _keys(first.train) == _keys(again.train) and _keys(first.val) == _keys(again.val)
    # another test_seed holds out other images
    assert set(_keys(load_test(_with(cfg, test_seed=3)))) != set(test)


@pytest.mark.parametrize("build", RANDOM_VAL, ids=lambda k: k.__name__)
def test_load_splits_folds_partition_the_non_test_images(tmp_path, build):
    cfg = build(tmp_path)
    test = set(_keys(load_test(cfg)))
    folds = [load_splits(_with(cfg, folds=3, fold=f)) for f in range(3)]
    vals = [set(_keys(s.val)) for s in folds]
    non_test = set(_keys(folds[0].train)) | vals[0]
    # the validation folds are pairwise disjoint, none holds a test image, and together they are all the others
    assert sum(map(len, vals)) == len(non_test) and set().union(*vals) == non_test and not non_test & test
    for fold, val in zip(folds, vals):
        # fold model i validates on fold i and trains on the other folds
        assert set(_keys(fold.train)) == non_test - val and val
    # the same split_seed gives the same folds; another split_seed other ones
    assert _keys(load_splits(_with(cfg, folds=3, fold=1)).val) == _keys(folds[1].val)
    assert set(_keys(load_splits(_with(cfg, folds=3, fold=1, split_seed=5)).val)) != vals[1]


@pytest.mark.parametrize("build", RANDOM_VAL, ids=lambda k: k.__name__)
def test_load_splits_folds_spread_each_class(tmp_path, build):
    cfg = build(tmp_path)
    n_classes = len(class_names(cfg))
    per_fold = np.stack([_class_counts(load_splits(_with(cfg, folds=2, fold=f)).val, n_classes) for f in range(2)])
    # stratified folds: each class's non-test images are spread over the folds, a class of 2+ in both
    assert (np.abs(per_fold[0] - per_fold[1]) <= 2).all(), per_fold
    assert (per_fold.min(axis=0) >= 1)[per_fold.sum(axis=0) >= 2].all(), per_fold


@pytest.mark.parametrize("build", [synthetic, imagefolder_random, coco_random, csv_random], ids=lambda k: k.__name__)
def test_load_test_is_none_without_a_test_split(tmp_path, build):
    cfg = _with(build(tmp_path), test_fraction=0.0)
    # no test_fraction and no test file or folder: no test split, and has_test agrees
    assert load_test(cfg) is None and not has_test(cfg)
    # and the trial's split is the one val_fraction makes of every image
    splits = load_splits(cfg)
    assert abs(len(splits.val) - 0.25 * (len(splits.train) + len(splits.val))) <= 2


def test_imagefolder_folders_without_a_test_folder_have_no_test_split(tmp_path):
    _imagefolder(tmp_path, ("train", "val"))
    cfg = DataConfig(kind="imagefolder", imagefolder={"root": tmp_path, "split": "folders"})
    # ROOT/test is optional: without it there is no test split
    assert not has_test(cfg) and load_test(cfg) is None


@pytest.mark.parametrize("fixed_val", ["imagefolder", "coco"])
def test_load_test_by_fraction_with_a_fixed_val_split_comes_from_the_training_images(tmp_path, fixed_val):
    if fixed_val == "imagefolder":
        _imagefolder(tmp_path, ("train", "val"))
        cfg = DataConfig(kind="imagefolder", imagefolder={"root": tmp_path, "split": "folders"}, test_fraction=0.25)
    else:
        cfg = _with_val_json(coco_random(tmp_path), tmp_path)
    whole = load_splits(_with(cfg, test_fraction=0.0))
    test, splits = load_test(cfg), load_splits(cfg)
    # the fixed validation images stay as they are; the test images are taken from the training ones
    assert _keys(splits.val) == _keys(whole.val)
    assert sorted(_keys(test) + _keys(splits.train)) == sorted(_keys(whole.train)) and len(test) >= len(COUNTS)


def test_fixed_test_splits_are_the_test_files_with_the_trial_class_indices(tmp_path):
    cases = {
        "imagefolder": imagefolder_folders(tmp_path / "folders"),
        "coco": coco_test_json(tmp_path / "coco"),
        "csv": csv_test_file(tmp_path / "csv"),
    }
    for kind, cfg in cases.items():
        test = load_test(cfg)
        names = [Path(p).name for p in test.images]
        # the test folder / JSON / CSV folder is the test split, every image of it
        assert all(n.startswith("test") for n in names)
        assert len(names) == (14 if kind == "csv" else sum(COUNTS.values()))
        if kind != "csv":
            # an image's label indexes class_names(cfg), as the trial's labels do
            assert all(class_names(cfg)[label] in name for label, name in zip(test.labels, names))
    test = load_test(cases["csv"])
    rows = {Path(path).name: row.tolist() for path, row in zip(test.images, test.labels)}
    # the test CSV labels the test images; one it does not list is clean
    assert rows["test_08.png"] == [1, 1] and rows["test_09.png"] == [0, 1] and rows["test_00.png"] == [0, 0]


CHEAP = """
import json, sys
opened = []
sys.addaudithook(lambda event, args: event == "open" and isinstance(args[0], str) and opened.append(args[0]))
from training.config import DataConfig
from training.data import has_test
answers = [has_test(DataConfig.model_validate_json(text)) for text in json.loads(sys.stdin.read())]
print(json.dumps({"answers": answers, "torch": "torch" in sys.modules, "opened": opened}))
"""


def test_has_test_reads_no_file_and_loads_no_torch(tmp_path):
    cfgs = [build(tmp_path / build.__name__) for build in KINDS]
    run = subprocess.run(
        [sys.executable, "-c", CHEAP], input=json.dumps([c.model_dump_json() for c in cfgs]),
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    report = json.loads(run.stdout)
    # every kind answers, as load_test does ...
    assert report["answers"] == [True] * len(KINDS)
    # ... before anything heavy: no torch, and no data file opened (images, JSON, CSV)
    assert not report["torch"]
    assert not [p for p in report["opened"] if str(tmp_path) in p]


# ----------------------------------------------------------------------------- bad input


def _edit(build: Build, change: Callable[[DataConfig, Path], DataConfig]) -> Callable[[Path], DataConfig]:
    return lambda tmp_path: change(build(tmp_path), tmp_path)


def _section(cfg: DataConfig, section: str, **changes: Any) -> DataConfig:
    return _with(cfg, **{section: getattr(cfg, section).model_dump() | changes})


def _other_coco(doc_change: Callable[[dict[str, Any]], None]) -> Callable[[DataConfig, Path], DataConfig]:
    def change(cfg: DataConfig, tmp_path: Path) -> DataConfig:
        doc = _coco_doc("test")
        doc_change(doc)
        return _section(cfg, "coco", test_annotations=_write_coco(tmp_path, doc, "other.json"))

    return change


def _rename_categories(doc: dict[str, Any]) -> None:
    doc["categories"][0]["name"] = "crack"


def _share_a_training_image(doc: dict[str, Any]) -> None:
    doc["images"][3]["file_name"] = "train_good_3.png"


def _with_val_json(cfg: DataConfig, tmp_path: Path) -> DataConfig:
    return _section(cfg, "coco", val_annotations=_write_coco(tmp_path, _coco_doc("val"), "val.json"))


def _share_a_val_image(cfg: DataConfig, tmp_path: Path) -> DataConfig:
    cfg = _with_val_json(cfg, tmp_path)
    doc = _coco_doc("test")
    doc["images"][5]["file_name"] = "val_good_5.png"
    return _section(cfg, "coco", test_annotations=_write_coco(tmp_path, doc, "other.json"))


def _empty_test_folder(cfg: DataConfig, tmp_path: Path) -> DataConfig:
    for image in (tmp_path / "test").rglob("*.png"):
        image.unlink()
    return cfg


@pytest.mark.parametrize(
    "make, key, words",
    [
        (_edit(coco_test_json, lambda c, _: _with(c, test_fraction=0.2)), "data.test_fraction",
         ["data.coco.test_annotations"]),
        (_edit(csv_test_file, lambda c, _: _with(c, test_fraction=0.2)), "data.test_fraction", ["data.csv.test_file"]),
        (_edit(imagefolder_folders, lambda c, _: _with(c, test_fraction=0.2)), "data.test_fraction", ["test folder"]),
        (_edit(synthetic, lambda c, _: _with(c, folds=3, fold=3)), "data.fold", ["0 to", "2", "got 3"]),
        (_edit(imagefolder_folders, lambda c, _: _with(c, folds=3)), "data.folds", ["split: folders"]),
        (_edit(coco_test_json, lambda c, t: _with(_with_val_json(c, t), folds=2)), "data.folds", ["val_annotations"]),
        (_edit(coco_test_json, lambda c, t: _section(c, "coco", test_annotations=t / "nope.json")),
         "data.coco.test_annotations", ["not found", "nope.json"]),
        (_edit(coco_test_json, _other_coco(_rename_categories)), "data.coco.test_annotations", ["categories differ"]),
        (_edit(coco_test_json, _other_coco(_share_a_training_image)), "data.coco.test_annotations",
         ["train_good_3.png", "train.json"]),
        (_edit(coco_test_json, _share_a_val_image), "data.coco.test_annotations", ["val_good_5.png", "val.json"]),
        (_edit(csv_test_file, lambda c, t: _section(c, "csv", test_images=t / "images")), "data.csv.test_images",
         ["data.csv.images"]),
        (_edit(csv_test_file, lambda c, t: _section(c, "csv", test_images=t / "nope")), "data.csv.test_images",
         ["folder not found"]),
        (_edit(csv_test_file, lambda c, t: _section(c, "csv", test_file=t / "nope.csv")), "data.csv.test_file",
         ["file not found"]),
        (_edit(csv_test_file, lambda c, _: _section(c, "csv", test_file=None)), "data.csv.test_file", ["required"]),
        (_edit(csv_test_file, lambda c, _: _section(c, "csv", test_images=None)), "data.csv.test_images", ["required"]),
        (_edit(csv_test_file, lambda c, _: _section(c, "csv", classes=["a"])), "data.csv.classes", ["only 1 classes"]),
        (_edit(imagefolder_folders, _empty_test_folder), "data.imagefolder.root", ["no images"]),
    ],
    ids=[
        "coco-test-and-fraction", "csv-test-and-fraction", "folders-test-and-fraction", "fold-out-of-range",
        "folders-folds", "coco-val-folds", "coco-missing-test", "coco-test-categories",
        "coco-test-shares-train", "coco-test-shares-val", "csv-test-is-images", "csv-missing-test-folder",
        "csv-missing-test-file", "csv-test-images-alone", "csv-test-file-alone", "csv-test-class-range",
        "folders-empty-test",
    ],
)  # fmt: skip
def test_check_data_names_the_key_of_a_bad_test_or_fold_setting(tmp_path, make, key, words):
    cfg = make(tmp_path)
    with pytest.raises(ConfigError) as caught:
        check_data(cfg)
    # each mistake is one ConfigError on the key to change, saying what is wrong
    assert caught.value.key == key, caught.value
    assert all(word in caught.value.message for word in words), caught.value.message


@pytest.mark.parametrize("changes, key", [({"folds": 2, "fold": 2}, "data.fold"), ({"folds": 2}, "data.folds")])
def test_load_splits_refuses_split_settings_that_check_data_refuses(tmp_path, changes, key):
    # the trial's loader runs the same split checks: a fold model never trains on a wrong split
    cfg = _with(imagefolder_folders(tmp_path), **changes)
    for load in (load_splits, load_test):
        with pytest.raises(ConfigError) as caught:
            load(cfg)
        assert caught.value.key == key


# ----------------------------------------------------------------------------- no trial opens a test image

TRIAL = """
import json, sys
opened = set()
sys.addaudithook(lambda event, args: event == "open" and isinstance(args[0], str) and opened.add(args[0]))
from training.config import DataConfig
from training.data import has_test, load_splits
from training.data.dataset import read_image
report = []
for text in json.loads(sys.stdin.read()):
    cfg = DataConfig.model_validate_json(text)
    opened.clear()
    assert has_test(cfg)
    splits = load_splits(cfg)
    for item in splits.train.images + splits.val.images:
        read_image(item, 8)  # what a trial does with every image it gets
    report.append(sorted(opened))
print(json.dumps(report))
"""


def test_a_trial_opens_no_test_image_file(tmp_path):
    builds = [imagefolder_random, imagefolder_folders, coco_random, coco_test_json, csv_random, csv_test_file]
    cfgs = [build(tmp_path / build.__name__) for build in builds]
    for cfg in cfgs:
        check_data(cfg)  # the search's up-front checks, in the driver, before any trial
    # a fresh process, as a trial's is: its audit hook sees every file opened through Python
    run = subprocess.run(
        [sys.executable, "-c", TRIAL], input=json.dumps([c.model_dump_json() for c in cfgs]),
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    for build, cfg, opened in zip(builds, cfgs, json.loads(run.stdout)):
        test = {str(Path(p).resolve()) for p in load_test(cfg).images}
        opened = {str(Path(p).resolve()) for p in opened}
        splits = load_splits(cfg)
        # the hook sees the trial's images being read ...
        assert {str(Path(p).resolve()) for p in splits.train.images} <= opened, build.__name__
        # ... and no test image: loading the splits and reading them never touches one
        assert not test & opened, (build.__name__, sorted(test & opened)[:3])
