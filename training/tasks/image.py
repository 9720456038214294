"""What the image-level tasks (classification, multilabel) share: a timm model, phase-aware
augmentation and loaders, per-epoch reseeding, and the model/phase checks."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from training.augment import normalize_batch, train_transform
from training.config import AugmentConfig, TrainConfig
from training.data import Splits, check_data
from training.data.loading import make_loader
from training.models import check_freeze_stages, check_model_name, check_pretrained, create_model, set_frozen_stages
from training.phases import check_phases, phase_at
from training.runtime import Runtime, epoch_seed_of
from training.tasks.base import Task


class ImageTask(Task):
    """A task whose samples are (uint8 image, target) pairs from `dataset_class` over an ImageSet."""

    dataset_class: ClassVar[type[Dataset]]

    def __init__(self, cfg: TrainConfig, runtime: Runtime, splits: Splits):
        super().__init__(cfg, runtime)
        self.class_names = splits.class_names
        self.train_set = splits.train
        self.shuffle_generator = torch.Generator()
        self._use_augment(phase_at(cfg, 1).augment)
        self.val_loader = self._loader(self.dataset_class(splits.val, cfg.data.image_shape()), shuffle=False)
        self.model = create_model(cfg.model, len(self.class_names)).to(runtime.device)
        if runtime.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    def _use_augment(self, augment: AugmentConfig) -> None:
        """Train with `augment` from now on (a phase may change it): a new pipeline and loader, so that
        DataLoader workers get it too."""
        self.augment_cfg = augment
        self.augment = train_transform(augment, self.cfg.seed)
        dataset = self.dataset_class(self.train_set, self.cfg.data.image_shape(), self.augment)
        self.train_loader = self._loader(dataset, shuffle=True)

    def train_sampler(self, dataset: Dataset) -> Sampler | None:
        """A sampler replacing plain shuffling of the training set (None = shuffle)."""
        return None

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        data = self.cfg.data
        batch_size = data.batch_size if shuffle else max(data.batch_size, 64)
        sampler = self.train_sampler(dataset) if shuffle else None
        return make_loader(dataset, data, self.runtime.device, shuffle, self.shuffle_generator, batch_size, sampler=sampler)

    def start_epoch(self, epoch: int) -> None:
        epoch_seed = epoch_seed_of(self.cfg.seed, epoch)
        phase = phase_at(self.cfg, epoch)
        set_frozen_stages(self.model, phase.freeze_stages)
        if phase.augment != self.augment_cfg:
            self._use_augment(phase.augment)
        self.shuffle_generator.manual_seed(epoch_seed)
        self.augment.set_random_seed(epoch_seed)

    @classmethod
    def check(cls, cfg: TrainConfig) -> None:
        check_data(cfg.data)
        check_model_name(cfg.model.name)
        check_pretrained(cfg.model)
        check_phases(cfg)
        for stages in {cfg.model.freeze_stages, *(p.freeze_stages for p in cfg.phases if p.freeze_stages is not None)}:
            check_freeze_stages(cfg.model.name, stages)

    def _inputs(self, images: torch.Tensor) -> torch.Tensor:
        return normalize_batch(self.runtime.to_device(images))

    def val_logits(self, images: torch.Tensor) -> torch.Tensor:
        """The model's logits for one validation batch (a task may average views: TTA)."""
        return self.model(self._inputs(images))

    @torch.no_grad()
    def predictions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, targets) over the validation split, on the CPU."""
        self.model.eval()
        logits, targets = [], []
        with self.runtime.autocast():
            for images, labels in self.val_loader:
                logits.append(self.val_logits(images).float().cpu())
                targets.append(labels)
        return torch.cat(logits), torch.cat(targets)
