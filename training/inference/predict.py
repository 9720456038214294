"""Predict with a trained model on image files: `python -m training predict RUN_DIR IMAGES... -o OUT`.

The run is a folder of `python -m training train` (config.yaml, model.pt) or a search checkpoint
folder (state.pt), found as `evaluate` finds it. Images are decoded here, in the DataLoader workers
of the run's `data.num_workers` (a file that cannot be decoded is a row with its error, not a failed
run), then resized, normalized and scored by the task's own inference code (`Task.predict`: TTA for
classification, the EMA teacher for semi-supervised detection), batch by batch. Image tasks write one
CSV row per image; detection writes COCO results JSON, boxes in each image's own pixels.

`plan` checks what needs no torch (run folder, config, task, data, images, output) before torch loads.
"""

from __future__ import annotations

import csv
import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

from training.config import TrainConfig
from training.data import check_data, class_names
from training.data.imagefolder import IMAGE_SUFFIXES
from training.inference.evaluate import SavedRun, find_run
from training.schema.errors import ConfigError
from training.schema.task_keys import check_task_name


class Predictions(ABC):
    """One kind of task's predictions: how `predict` writes them, and what the model `export-model`
    writes returns (`outputs`) and says about itself (`metadata`)."""

    suffix: ClassVar[str]  # of the file `predict` writes
    outputs: ClassVar[tuple[str, ...]]  # the exported model's outputs, in order
    one_image: ClassVar[bool] = False  # the exported model takes a batch of exactly one image

    def __init__(self, cfg: TrainConfig, classes: list[str]):
        self.cfg = cfg
        self.classes = classes

    @classmethod
    def check(cls, cfg: TrainConfig, classes: list[str]) -> None:
        """Raise a ConfigError for a config whose predictions cannot be told; nothing by default."""

    @classmethod
    @abstractmethod
    def metadata(cls, cfg: TrainConfig, classes: list[str]) -> dict[str, Any]:
        """What a deployment needs to read the exported model's outputs (class names, thresholds)."""

    @abstractmethod
    def add(self, path: str, prediction: Any) -> None:
        """Record one image's prediction (a row of `Task.predict`'s output)."""

    @abstractmethod
    def add_error(self, path: str, error: str) -> None:
        """Record an image that could not be read."""

    @abstractmethod
    def save(self, output: Path) -> None:
        """Write what was recorded, in the order it was."""


class CsvPredictions(Predictions):
    """One CSV row per image; an unreadable image's row holds only its path and its `error`."""

    suffix = ".csv"
    outputs = ("probs",)

    def __init__(self, cfg: TrainConfig, classes: list[str]):
        super().__init__(cfg, classes)
        self.rows: list[list[Any]] = []

    @abstractmethod
    def header(self) -> list[str]:
        """The columns between the path and the error."""

    def add_error(self, path: str, error: str) -> None:
        self.rows.append([path, *[""] * len(self.header()), error])

    def save(self, output: Path) -> None:
        with output.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", *self.header(), "error"])
            writer.writerows(self.rows)


def _probability(value: float) -> str:
    return f"{value:.7g}"


class ClassPredictions(CsvPredictions):
    """path, predicted (the class as deployed: see `deployed_classes`), p_defect = 1 - P(good) and
    decision (defect or good, at `eval.decision_threshold`, else the argmax) when the good class is
    among the classes, p_<class> for every class, error."""

    def __init__(self, cfg: TrainConfig, classes: list[str]):
        super().__init__(cfg, classes)
        self.good = classes.index(cfg.eval.good_class) if cfg.eval.good_class in classes else None

    @classmethod
    def check(cls, cfg: TrainConfig, classes: list[str]) -> None:
        if cfg.eval.decision_threshold is not None and cfg.eval.good_class not in classes:
            raise ConfigError("eval.decision_threshold", f"needs the good class '{cfg.eval.good_class}' among {classes}")

    @classmethod
    def metadata(cls, cfg: TrainConfig, classes: list[str]) -> dict[str, Any]:
        # the caller applies the threshold: defect when 1 - probs[good] >= it (the argmax without one)
        return {"good_class": cfg.eval.good_class, "decision_threshold": cfg.eval.decision_threshold, "tta": cfg.eval.tta}

    def header(self) -> list[str]:
        decided = ["p_defect", "decision"] if self.good is not None else []
        return ["predicted", *decided, *(f"p_{name}" for name in self.classes)]

    def add(self, path: str, prediction: Any) -> None:
        from training.tasks.classification import deployed_classes

        predicted = int(deployed_classes(prediction[None], self.good, self.cfg.eval.decision_threshold)[0])
        row = [path, self.classes[predicted]]
        if self.good is not None:
            p_defect = 1.0 - float(prediction[self.good])
            row += [_probability(p_defect), "good" if predicted == self.good else "defect"]
        self.rows.append(row + [_probability(float(p)) for p in prediction] + [""])


MULTILABEL_THRESHOLD = 0.5  # the fixed threshold the multilabel metrics score at (training.metrics.multilabel)


class MultiLabelPredictions(CsvPredictions):
    """path, p_<class> for every class, then <class> = 1 where that probability >= 0.5, error."""

    @classmethod
    def metadata(cls, cfg: TrainConfig, classes: list[str]) -> dict[str, Any]:
        return {"threshold": MULTILABEL_THRESHOLD}

    def header(self) -> list[str]:
        return [*(f"p_{name}" for name in self.classes), *self.classes]

    def add(self, path: str, prediction: Any) -> None:
        probs = [float(p) for p in prediction]
        self.rows.append([path, *map(_probability, probs), *(int(p >= MULTILABEL_THRESHOLD) for p in probs), ""])


class BoxPredictions(Predictions):
    """COCO results JSON: one entry per box scoring above `eval.score_threshold`, {image_id (the
    image's position in the input), file_name, category_id (the detector label: 1..K over the defect
    classes in class order, the COCO category ids of a data set numbered 1..K), category, bbox [x, y,
    w, h] in the image's own pixels, score}; an unreadable image is one entry {image_id, file_name,
    error}."""

    suffix = ".json"
    outputs = ("boxes", "scores", "labels")
    one_image = True  # torchvision's detectors take a list of images: traced for one

    def __init__(self, cfg: TrainConfig, classes: list[str]):
        super().__init__(cfg, classes)
        self.defects = self.label_names(cfg, classes)
        self.entries: list[dict[str, Any]] = []
        self.images = 0

    @staticmethod
    def label_names(cfg: TrainConfig, classes: list[str]) -> list[str]:
        """Detector label l is the defect class label_names[l - 1] (`training.detection.LabelMap`)."""
        return [name for name in classes if name != cfg.eval.good_class]

    @classmethod
    def metadata(cls, cfg: TrainConfig, classes: list[str]) -> dict[str, Any]:
        # the caller keeps the boxes scoring above score_threshold, as predict does
        names = cls.label_names(cfg, classes)
        return {"good_class": cfg.eval.good_class, "label_names": names, "score_threshold": cfg.eval.score_threshold}

    def add(self, path: str, prediction: Any) -> None:
        keep = prediction["scores"] > self.cfg.eval.score_threshold
        for box, score, label in zip(*(prediction[k][keep].tolist() for k in ("boxes", "scores", "labels"))):
            x0, y0, x1, y1 = box
            self.entries.append({
                "image_id": self.images, "file_name": path, "category_id": label, "category": self.defects[label - 1],
                "bbox": [x0, y0, x1 - x0, y1 - y0], "score": score,
            })  # fmt: skip
        self.images += 1

    def add_error(self, path: str, error: str) -> None:
        self.entries.append({"image_id": self.images, "file_name": path, "error": error})
        self.images += 1

    def save(self, output: Path) -> None:
        # one entry a line: a JSON list that diffs and greps line by line
        output.write_text("[\n" + ",\n".join(json.dumps(entry) for entry in self.entries) + "\n]\n")


# task -> its predictions; a task not here cannot predict (its `Task.loaded` refuses)
PREDICTIONS: dict[str, type[Predictions]] = {
    "classification": ClassPredictions,
    "multilabel": MultiLabelPredictions,
    "detection": BoxPredictions,
    "semi_supervised_detection": BoxPredictions,
}


def predictions_of(run: SavedRun) -> type[Predictions]:
    """The kind of predictions of `run`'s task; a task that has none is a ConfigError on its config."""
    try:
        check_task_name(run.cfg.task)
    except ConfigError as exc:
        raise exc.with_file(run.config_file) from None
    if run.cfg.task not in PREDICTIONS:
        raise ConfigError("task", f"task '{run.cfg.task}' cannot predict on images", run.config_file)
    return PREDICTIONS[run.cfg.task]


def run_classes(run: SavedRun) -> list[str]:
    """The class names that index the model's outputs: the run's data tells them (it must be there)."""
    try:
        check_data(run.cfg.data)
        return class_names(run.cfg.data)
    except ConfigError as exc:
        message = f"{exc.message} (the class names of the model's outputs come from the run's data)"
        raise ConfigError(exc.key, message, run.config_file) from None


def check_output(output: Path, suffix: str, expected: str) -> None:
    """A ConfigError unless `output` ends in `suffix` and can be written (its folder may not exist yet);
    `expected` says what the suffix is for."""
    if output.suffix.lower() != suffix:
        raise ConfigError("-o", f"expected a {suffix} file ({expected}), got '{output.name}'", output)
    if output.is_dir():
        raise ConfigError("-o", "is a folder; expected a file to write", output)
    existing = next(p for p in [output.absolute().parent, *output.absolute().parents] if p.exists())
    if not existing.is_dir():
        raise ConfigError("-o", f"cannot be written: {existing} is not a folder", output)
    if not os.access(existing, os.W_OK) or (output.exists() and not os.access(output, os.W_OK)):
        raise ConfigError("-o", "not writable", output)


def image_files(inputs: list[Path]) -> list[Path]:
    """Each input file, and the image files (IMAGE_SUFFIXES) under each input folder, searched
    recursively, in sorted order."""
    found: list[Path] = []
    for item in inputs:
        if item.is_dir():
            found += sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif item.exists():
            found.append(item)
        else:
            raise ConfigError(None, "image or folder not found", item)
    if not found:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        raise ConfigError(None, f"no image files ({suffixes}) found", ", ".join(map(str, inputs)))
    return found


@dataclass
class PredictionPlan:
    """Checked input of a prediction: the run, the class names, the images and where to write."""

    run: SavedRun
    predictions: type[Predictions]
    classes: list[str]
    images: list[Path]
    output: Path


def plan(run_dir: Path, inputs: list[Path], output: Path) -> PredictionPlan:
    """Every check that needs no model: run folder and config, task, data (class names), output, images."""
    run = find_run(run_dir)
    predictions = predictions_of(run)
    classes = run_classes(run)
    try:
        predictions.check(run.cfg, classes)
    except ConfigError as exc:
        raise exc.with_file(run.config_file) from None
    check_output(output, predictions.suffix, f"what task '{run.cfg.task}' predicts")
    return PredictionPlan(run, predictions, classes, image_files(inputs), output)


class ImageFiles:
    """(path, uint8 RGB image or None, error or None) per file: a map-style dataset for a DataLoader."""

    def __init__(self, paths: list[Path]):
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[str, Any, str | None]:
        from training.data.dataset import read_image

        path = str(self.paths[index])
        try:
            return path, read_image(path, None), None
        except Exception as exc:  # a corrupt file fails in the decoder in many ways: its row's error, not the run's
            return path, None, str(exc) or type(exc).__name__


def predict(
    planned: PredictionPlan, batch_size: int = 32, device: str = "auto", advance: Callable[[int], None] | None = None
) -> int:
    """Write the predictions of the planned run on the planned images; `advance(n)` after every n
    images. Returns the number of images that could not be read."""
    import torch
    from torch.utils.data import DataLoader

    from training.data.loading import loader_options
    from training.loop.runtime import Runtime
    from training.tasks import get_task

    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device", "torch sees no CUDA GPU here; use auto or cpu")
    run, cfg = planned.run, planned.run.cfg
    runtime = Runtime.from_config(cfg.train.model_copy(update={"device": device}))
    runtime.apply()
    try:
        task = get_task(cfg.task).loaded(cfg, runtime, run.model_state())
    except ConfigError as exc:
        raise exc.with_file(run.config_file) from None
    written = planned.predictions(cfg, planned.classes)
    options = loader_options(cfg.data, runtime) | {"persistent_workers": False}  # one pass
    errors = 0
    for batch in DataLoader(ImageFiles(planned.images), batch_size=batch_size, collate_fn=list, **options):
        decoded = [image for _, image, _ in batch if image is not None]
        found = iter(task.predict(decoded) if decoded else [])
        for path, image, error in batch:
            if image is None:
                written.add_error(path, error)
                errors += 1
            else:
                written.add(path, next(found))
        if advance is not None:
            advance(len(batch))
    planned.output.parent.mkdir(parents=True, exist_ok=True)
    written.save(planned.output)
    return errors
