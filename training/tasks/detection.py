"""Object detection of defects: a torchvision Faster R-CNN (FPN) or RetinaNet on a timm backbone."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import cv2
import numpy as np
import torch
from rich.console import RenderableType
from torch import nn
from torch.utils.data import DataLoader

from training.augment.device import DeviceAugment, check_placement, device_capable, on_device
from training.augment.knobs import BOX_AWARE
from training.config import TrainConfig
from training.data import check_data, class_names, load_splits
from training.data.box_report import box_report
from training.data.box_stats import box_stats
from training.data.cache import device_tensors, prepared_splits
from training.data.dataset import to_chw
from training.data.samples import ImageSet
from training.detection import (
    DetectionDataset,
    LabelMap,
    check_detector,
    create_detector,
    detection_metrics,
    detection_transform,
)
from training.detection.augment import augment_batch, not_box_aware
from training.detection.dataset import detection_loader
from training.loop.runtime import Runtime, epoch_seed_of
from training.metrics.detection import Detections
from training.schema.errors import ConfigError
from training.tasks import register_task
from training.tasks.base import ModelOutputs, Task, load_weights

# Data kinds that carry boxes.
BOX_DATA_KINDS = ("synthetic", "coco")

Batch = tuple[torch.Tensor, list[dict[str, torch.Tensor]]]


def _on_cpu(detections: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One image's detections on the CPU, floats as float32 (AMP may give half precision)."""
    return {k: v.float().cpu() if v.is_floating_point() else v.cpu() for k, v in detections.items()}


@dataclass(frozen=True)
class DetectionOutputs(ModelOutputs):
    """A detector's detections per image (detector labels 1..K) and the images' targets, on the CPU, in
    pixels of the data's image size. `metrics` runs pycocotools' mAP twice (all IoUs, and per class at
    0.5): about 0.5 s on 100 images of 10 boxes, 1 s on 300, 300x a classifier's metrics."""

    preds: Detections
    targets: Detections
    defect_names: list[str]
    score_threshold: float
    iou_threshold: float
    headline: ClassVar[str] = "mAP50"
    resamples: ClassVar[int] = 200  # ~2 to 4 minutes per model on a few hundred images

    def __len__(self) -> int:
        return len(self.targets)

    def metrics(self, indices: np.ndarray | None = None) -> dict[str, float]:
        # a repeated image is another image to pycocotools (ids are list positions): resamples work as is
        pick = range(len(self)) if indices is None else [int(i) for i in indices]
        preds, targets = [self.preds[i] for i in pick], [self.targets[i] for i in pick]
        return detection_metrics(preds, targets, self.defect_names, self.score_threshold, self.iou_threshold)


@register_task("detection")
class DetectionTask(Task):
    def __init__(self, cfg: TrainConfig, runtime: Runtime):
        super().__init__(cfg, runtime)
        size = cfg.data.image_size
        device_ok = self.device_batches_ok and device_capable(cfg, BOX_AWARE)
        splits, self.cache = prepared_splits(cfg.data, load_splits, (size, size), cv2.INTER_LINEAR, runtime, device_ok)
        if not splits.train.boxes:
            raise ConfigError("data.kind", f"'{cfg.data.kind}' data has no boxes; detection needs {BOX_DATA_KINDS}")
        self.labels = LabelMap(splits.class_names, cfg.eval.good_class)
        device = on_device(cfg, BOX_AWARE, runtime.device, self.cache.mode == "device")
        self.device_augment = DeviceAugment(cfg.augment, BOX_AWARE) if device else None
        self.augment = detection_transform(None if device else cfg.augment, size, cfg.seed)
        self.shuffle_generator = torch.Generator()
        self.tensors = device_tensors(splits, runtime.device) if self.cache.mode == "device" else (None, None)
        self.train_loader = self._loader(splits.train, self.augment, shuffle=True)
        self.val_loader = self._loader(splits.val, detection_transform(None, size), shuffle=False)
        self.model = self._create_model()

    def _create_model(self) -> nn.Module:
        cfg = self.cfg
        model = create_detector(cfg.model, cfg.loss, self.labels.num_classes, cfg.data.image_size).to(self.runtime.device)
        return model.to(memory_format=torch.channels_last) if self.runtime.channels_last else model

    @classmethod
    def outputs(cls, cfg: TrainConfig, runtime: Runtime, model_state: dict[str, Any], images: ImageSet) -> ModelOutputs:
        """`eval_model`'s detections on `images`."""
        if not images.boxes:
            raise ConfigError("data.kind", f"these '{cfg.data.kind}' images have no boxes; detection needs {BOX_DATA_KINDS}")
        task = cls.loaded(cfg, runtime, model_state)
        return task.scored(*task.predictions(loader=task.eval_loader(images)))

    @classmethod
    def loaded(cls, cfg: TrainConfig, runtime: Runtime, model_state: dict[str, Any]) -> DetectionTask:
        task = cls._bare(cfg, runtime)
        task.labels = LabelMap(class_names(cfg.data), cfg.eval.good_class)
        task.model = task._create_model()
        load_weights(task.model, model_state)
        task.model.eval()
        return task

    def infer(self, images: torch.Tensor) -> Detections:
        """`eval_model`'s detections per image (detector labels 1..K), boxes in the batch's pixels."""
        return self._detect(self.eval_model, (images, []))

    @torch.no_grad()
    def predict(self, images: list[np.ndarray]) -> Detections:
        """`infer` on the images resized as the validation split's, boxes back in each image's own pixels."""
        size = self.cfg.data.image_size
        resize = detection_transform(None, size)
        resized = [resize(image=image, bboxes=np.zeros((0, 4)), labels=[])["image"] for image in images]
        found = self.infer(torch.stack([to_chw(image) for image in resized]))
        for detections, image in zip(found, images):
            height, width = image.shape[:2]
            detections["boxes"] = detections["boxes"] * torch.tensor([width / size, height / size] * 2)
        return found

    def eval_loader(self, images: ImageSet) -> DataLoader:
        """`images` in order at the data's size, not augmented, in batches as the validation split's."""
        dataset = DetectionDataset(images, self.labels, detection_transform(None, self.cfg.data.image_size))
        return detection_loader(dataset, self.cfg.data, self.runtime, False, torch.Generator())

    def _loader(self, images: ImageSet, transform: Any, shuffle: bool) -> DataLoader:
        dataset = DetectionDataset(images, self.labels, transform)
        cached = self.tensors[0 if shuffle else 1]
        return detection_loader(dataset, self.cfg.data, self.runtime, shuffle, self.shuffle_generator, cached)

    def start_epoch(self, epoch: int) -> None:
        epoch_seed = epoch_seed_of(self.cfg.seed, epoch)
        self.shuffle_generator.manual_seed(epoch_seed)
        self.augment.set_random_seed(epoch_seed)
        if self.device_augment is not None:
            self.device_augment.start_epoch(epoch_seed)

    @classmethod
    def check(cls, cfg: TrainConfig) -> None:
        if cfg.data.kind not in BOX_DATA_KINDS:
            raise ConfigError("data.kind", f"detection needs data with boxes {BOX_DATA_KINDS}, got '{cfg.data.kind}'")
        check_data(cfg.data)
        check_detector(cfg.model)
        unsupported = not_box_aware(cfg.augment)
        if unsupported:
            raise ConfigError(f"augment.{unsupported[0]}", "has no box-aware transform for detection; set it to 0")
        check_placement(cfg, BOX_AWARE)
        if cfg.data.cache == "device" and not cls.device_batches_ok:
            raise ConfigError("data.cache", f"device is not for {cls.name} (its batches need a DataLoader); use auto or ram")

    @classmethod
    def describe_data(cls, cfg: TrainConfig, searched: Collection[str]) -> list[RenderableType]:
        """The box statistics behind anchor choices, with the config's anchors."""
        model = cfg.model
        stats = box_stats(load_splits(cfg.data), cfg.data.image_size, model.anchor_ratios, model.anchor_sizes)
        return [] if stats is None else box_report(stats, ratios_searched="model.anchor_ratios" in searched)

    def _to_device(self, batch: Batch) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
        images, targets = batch
        images = self.runtime.to_device(images).float() / 255  # torchvision detectors take [0, 1] floats
        device = self.runtime.device
        return list(images), [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]

    def training_loss(self, batch: Batch) -> torch.Tensor:
        images, targets = self._to_device(batch)
        if self.device_augment is not None:
            images, targets = augment_batch(self.device_augment, images, targets)
        return sum(self.model(images, targets).values())

    def _detect(self, model: nn.Module, batch: Batch) -> list[dict[str, torch.Tensor]]:
        """`model`'s detections (in eval mode) per image of one validation batch, on the CPU."""
        model.eval()
        with self.runtime.autocast():
            return [_on_cpu(p) for p in model(self._to_device(batch)[0])]

    @torch.no_grad()
    def predictions(self, model: nn.Module | None = None, loader: Iterable | None = None) -> tuple[Detections, Detections]:
        """(detections, targets) per validation image (or per image of `loader`'s batches) of `model`
        (default: `eval_model`), on the CPU, with detector labels 1..K."""
        preds, targets = [], []
        for batch in self.val_loader if loader is None else loader:
            preds += self._detect(model or self.eval_model, batch)
            targets += batch[1]
        return preds, targets

    @torch.no_grad()
    def eval_batch(self, batch: Batch) -> None:
        # torchvision detectors compute losses in train mode only: validation is the inference forward
        self._detect(self.eval_model, batch)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        return self.scores(*self.predictions())

    def chance_metrics(self) -> dict[str, float]:
        """No box on any validation image: what a detector that has learned nothing reports."""
        targets = [target for _, batch_targets in self.val_loader for target in batch_targets]
        nothing = {"boxes": torch.zeros((0, 4)), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}
        return self.scores([nothing] * len(targets), targets)

    def scored(self, preds: Detections, targets: Detections) -> DetectionOutputs:
        """Detections and targets from `predictions`, as outputs that score any resample of them."""
        ev = self.cfg.eval
        return DetectionOutputs(preds, targets, self.labels.defect_names, ev.score_threshold, ev.iou_threshold)

    def scores(self, preds: Detections, targets: Detections) -> dict[str, float]:
        """The `val/...` metrics of detections on the validation images."""
        return {f"val/{k}": v for k, v in self.scored(preds, targets).metrics().items()}
