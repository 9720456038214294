"""What the image-level tasks (classification, multilabel) share: a timm model, phase-aware
augmentation (per image on the CPU, or batched on the device) and loaders over cached images,
per-epoch reseeding, and the model/phase checks."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import cv2
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from training.augment.device import DeviceAugment, check_placement, device_capable, on_device
from training.augment.knobs import normalize_batch, train_transform
from training.config import AugmentConfig, DataConfig, TrainConfig
from training.data import check_data, class_names, load_splits
from training.data.cache import device_tensors, prepared_splits
from training.data.dataset import read_image, to_chw
from training.data.loading import DeviceBatches, batch_order, make_loader
from training.data.samples import ImageSet
from training.loop.phases import check_phases, phase_at
from training.loop.runtime import Runtime, epoch_seed_of
from training.models.backbone import check_freeze_stages, check_model_name, check_pretrained, create_model, set_frozen_stages
from training.tasks.base import ModelOutputs, Task, load_weights


def _batch_size(data: DataConfig, shuffle: bool) -> int:
    # validation keeps no activations for a backward pass: larger batches
    return data.batch_size if shuffle else max(data.batch_size, 64)


@dataclass(frozen=True)
class ImageOutputs(ModelOutputs):
    """Per-image logits as validation computes them (TTA included) and targets, on the CPU."""

    logits: torch.Tensor
    targets: torch.Tensor

    def __len__(self) -> int:
        return len(self.targets)

    def at(self, indices: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, targets) of the images at `indices` (None = all)."""
        if indices is None:
            return self.logits, self.targets
        pick = torch.as_tensor(indices, dtype=torch.long)
        return self.logits[pick], self.targets[pick]


class ImageTask(Task):
    """A task whose samples are (uint8 image, target) pairs from `dataset_class` over an ImageSet."""

    dataset_class: ClassVar[type[Dataset]]
    target_dtype: ClassVar[torch.dtype]  # of the batched targets: what `dataset_class` collates to
    criterion: nn.Module  # the loss; a subclass sets it

    def __init__(self, cfg: TrainConfig, runtime: Runtime):
        super().__init__(cfg, runtime)
        shape = cfg.data.image_shape()
        self.splits, self.cache = prepared_splits(
            cfg.data, load_splits, shape, cv2.INTER_AREA, runtime, device_capable(cfg)
        )
        self.class_names = self.splits.class_names
        self.train_set = self.splits.train
        self.shuffle_generator = torch.Generator()
        self.device_batches = self.cache.mode == "device"
        if self.device_batches:
            images = device_tensors(self.splits, runtime.device)
            targets = [self._targets(s).to(runtime.device) for s in (self.splits.train, self.splits.val)]
            self.tensors = {True: (images[0], targets[0]), False: (images[1], targets[1])}  # by shuffle (train)
        self._use_augment(phase_at(cfg, 1).augment)
        self.val_loader = self._loader(self.dataset_class(self.splits.val, shape), shuffle=False)
        self.model = self._create_model()

    def _create_model(self) -> nn.Module:
        model = create_model(self.cfg.model, len(self.class_names)).to(self.runtime.device)
        return model.to(memory_format=torch.channels_last) if self.runtime.channels_last else model

    @classmethod
    def loaded(cls, cfg: TrainConfig, runtime: Runtime, model_state: dict[str, Any]) -> ImageTask:
        task = cls._bare(cfg, runtime)
        task.class_names = class_names(cfg.data)
        task.model = task._create_model()
        load_weights(task.model, model_state)
        task.model.eval()
        return task

    @classmethod
    def outputs(cls, cfg: TrainConfig, runtime: Runtime, model_state: dict[str, Any], images: ImageSet) -> ModelOutputs:
        task = cls.loaded(cfg, runtime, model_state)
        return task.scored(*task.predictions(task.eval_loader(images)))

    def infer(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C) class probabilities of `val_logits` (TTA included)."""
        with self.runtime.autocast():
            return self.probabilities(self.val_logits(images).float())

    @torch.no_grad()
    def predict(self, images: list[np.ndarray]) -> torch.Tensor:
        """(N, C) class probabilities, each image resized as the validation split's."""
        shape = self.cfg.data.image_shape()
        return self.infer(torch.stack([to_chw(read_image(image, shape)) for image in images])).cpu()

    @abstractmethod
    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """(N, C) class probabilities from (N, C) logits."""

    @abstractmethod
    def scored(self, logits: torch.Tensor, targets: torch.Tensor) -> ImageOutputs:
        """Logits and targets from `predictions`, as outputs that score any resample of them."""

    @abstractmethod
    def metrics_of(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """The validation metrics of `logits` on `targets`, the loss aside, without the `val/` prefix."""

    @abstractmethod
    def prior_logits(self) -> torch.Tensor:
        """(C,) logits of a constant prediction that knows only the training split's class frequencies."""

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        return self.val_scores(*self.predictions())

    @torch.no_grad()
    def chance_metrics(self) -> dict[str, float]:
        targets = self._targets(self.splits.val)
        return self.val_scores(self.prior_logits().expand(len(targets), -1), targets)

    def val_scores(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """The `val/...` metrics of `logits` on `targets`, loss included: what `evaluate` reports."""
        metrics = self.metrics_of(logits, targets)
        metrics["loss"] = float(self.criterion(logits.to(self.runtime.device), targets.to(self.runtime.device)))
        return {f"val/{k}": v for k, v in metrics.items()}

    def eval_loader(self, images: ImageSet) -> DataLoader:
        """`images` in order, resized and not augmented, in batches as the validation split's."""
        dataset = self.dataset_class(images, self.cfg.data.image_shape())
        return make_loader(dataset, self.cfg.data, self.runtime, False, batch_size=_batch_size(self.cfg.data, False))

    def _targets(self, images: ImageSet) -> torch.Tensor:
        return torch.as_tensor(images.labels, dtype=self.target_dtype)

    def _use_augment(self, augment: AugmentConfig) -> None:
        """Train with `augment` from now on (a phase may change it): a new pipeline and loader, so that
        DataLoader workers get it too."""
        self.augment_cfg = augment
        cfg = self.cfg.model_copy(update={"augment": augment, "phases": []})
        device = on_device(cfg, None, self.runtime.device, self.device_batches)
        self.device_augment = DeviceAugment(augment) if device else None
        cpu_augment = None if device else train_transform(augment, self.cfg.seed)
        dataset = self.dataset_class(self.train_set, self.cfg.data.image_shape(), cpu_augment)
        self.train_loader = self._loader(dataset, shuffle=True)

    def train_sampler(self, dataset: Dataset) -> Sampler | None:
        """A sampler replacing plain shuffling of the training set (None = shuffle)."""
        return None

    def _loader(self, dataset: Dataset, shuffle: bool) -> Any:
        data = self.cfg.data
        batch_size = _batch_size(data, shuffle)
        sampler = self.train_sampler(dataset) if shuffle else None
        if not self.device_batches:
            return make_loader(dataset, data, self.runtime, shuffle, self.shuffle_generator, batch_size, sampler)
        images, targets = self.tensors[shuffle]
        order = batch_order(dataset, data, shuffle, self.shuffle_generator, batch_size, sampler)
        return DeviceBatches(dataset, order, lambda i, _: (images[i], targets[i]), images.device)

    def start_epoch(self, epoch: int) -> None:
        epoch_seed = epoch_seed_of(self.cfg.seed, epoch)
        phase = phase_at(self.cfg, epoch)
        set_frozen_stages(self.model, phase.freeze_stages)
        if phase.augment != self.augment_cfg:
            self._use_augment(phase.augment)
        self.shuffle_generator.manual_seed(epoch_seed)
        if self.device_augment is not None:
            self.device_augment.start_epoch(epoch_seed)

    @classmethod
    def check(cls, cfg: TrainConfig) -> None:
        check_data(cfg.data)
        check_model_name(cfg.model.name)
        check_pretrained(cfg.model)
        check_phases(cfg)
        check_placement(cfg)
        for stages in {cfg.model.freeze_stages, *(p.freeze_stages for p in cfg.phases if p.freeze_stages is not None)}:
            check_freeze_stages(cfg.model.name, stages)

    def _inputs(self, images: torch.Tensor) -> torch.Tensor:
        return normalize_batch(self.runtime.to_device(images))

    def _train_inputs(self, images: torch.Tensor) -> torch.Tensor:
        """A training batch on the device, augmented there when the device path is on, normalized."""
        if self.device_augment is None:
            return self._inputs(images)
        images = images.to(self.runtime.device, non_blocking=True).float() / 255
        augmented, _ = self.device_augment(images)
        return self._inputs(augmented * 255)

    def val_logits(self, images: torch.Tensor) -> torch.Tensor:
        """The model's logits for one validation batch (a task may average views: TTA)."""
        return self.model(self._inputs(images))

    @torch.no_grad()
    def eval_batch(self, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        # `evaluate` collects the logits per batch and computes its loss and metrics once, on them all
        self.model.eval()
        with self.runtime.autocast():
            self.val_logits(batch[0]).float()

    @torch.no_grad()
    def predictions(self, loader: Iterable | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, targets) over the validation split (or `loader`'s batches), on the CPU."""
        self.model.eval()
        logits, targets = [], []
        with self.runtime.autocast():
            for images, labels in self.val_loader if loader is None else loader:
                logits.append(self.val_logits(images).float())
                targets.append(labels)
        return torch.cat(logits).cpu(), torch.cat(targets).cpu()
