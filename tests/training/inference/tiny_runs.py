"""Tiny runs of each task that predicts, saved as `python -m training train` folders, and their
validation images as files: what the predict and export-model tests run on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import yaml

from training.config import TrainConfig
from training.data import load_splits
from training.data.samples import ImageSet
from training.loop.fit import fit

TINY_RUNS: dict[str, dict[str, Any]] = {
    # 60 synthetic 32x32 images of 3 classes, resnet10t, 1 epoch; hflip TTA, so that predict and the
    # exported model must average the views as validation does
    "classification": {
        "data": {"image_size": 32, "batch_size": 16, "synthetic": {"count": 60, "classes": ["good", "scratch", "rust"]}},
        "model": {"name": "resnet10t"},
        "eval": {"tta": ["hflip"]},
    },
    "multilabel": {
        "task": "multilabel",
        "data": {"kind": "synthetic_multilabel", "image_size": 32, "batch_size": 8, "synthetic": {"count": 40}},
        "model": {"name": "resnet10t"},
    },
    # Faster R-CNN at 32 px on 24 images: an untrained detector's scores sit near 0.06, so that boxes
    # above eval.score_threshold exist
    "detection": {
        "task": "detection",
        "data": {"image_size": 32, "batch_size": 4, "synthetic": {"count": 24, "seed": 1, "difficulty": 0.2}},
        "model": {"name": "resnet10t", "anchor_sizes": [8, 16, 32]},
        "optim": {"schedule": "constant"},
        "eval": {"score_threshold": 0.06},
    },
    "semi_supervised_detection": {
        "task": "semi_supervised_detection",
        "data": {"image_size": 32, "batch_size": 4, "synthetic": {"count": 24, "seed": 1, "difficulty": 0.2}},
        "model": {"name": "resnet10t", "anchor_sizes": [8, 16, 32]},
        "optim": {"schedule": "constant"},
        # no burn-in: the teacher is an EMA of the student, not a copy of it
        "semi": {"labeled_fraction": 0.5, "burn_in_epochs": 0, "jitter": {"times": 0}},
        "eval": {"score_threshold": 0.06},
    },
}


def tiny_config(task: str, **overrides: Any) -> TrainConfig:
    """TINY_RUNS[task] for 1 epoch on the CPU, with top-level sections replaced by `overrides`."""
    return TrainConfig.model_validate({**TINY_RUNS[task], "train": {"epochs": 1, "device": "cpu"}, **overrides})


def save_run(folder: Path, cfg: TrainConfig, model_state: dict[str, Any]) -> Path:
    """The folder `python -m training train` writes: config.yaml, model.pt (the state_dict), metrics.json."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    torch.save(model_state, folder / "model.pt")
    (folder / "metrics.json").write_text(json.dumps({"final": {}}))
    return folder


def write_images(folder: Path, images: ImageSet, nested: bool = True) -> list[Path]:
    """`images` (RGB arrays) as PNG files under `folder`, every other one in a sub-folder, named so
    that a folder's sorted scan finds them in their order in `images`."""
    paths = []
    for index, image in enumerate(images.images):
        path = folder / (f"{index:03d}-sub/image.png" if nested and index % 2 else f"{index:03d}.png")
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2BGR))
        paths.append(path)
    return paths


def validation_images(run: Path, count: int | None = None) -> ImageSet:
    """The first `count` validation images of the run's data (all by default)."""
    cfg = TrainConfig.model_validate(yaml.safe_load((run / "config.yaml").read_text()))
    images = load_splits(cfg.data).val
    return images if count is None else images.subset(np.arange(min(count, len(images))))


def train_run(task: str, folder: Path) -> Path:
    """A real 1-epoch run of `tiny_config(task)` on one thread, saved in `folder`."""
    cfg = tiny_config(task)
    states = []
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models train fastest on one thread
    try:
        fit(cfg, on_epoch=lambda report: states.append(report.state()))
    finally:
        torch.set_num_threads(before)
    return save_run(folder, cfg, states[-1]["model"])
