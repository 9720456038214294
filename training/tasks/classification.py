"""Image classification (binary or multi-class) with a timm backbone."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from training.augment import normalize_batch, train_transform
from training.config import TrainConfig
from training.data import check_data, class_names, load_splits
from training.data.dataset import ClassificationDataset
from training.errors import ConfigError
from training.losses import create_loss
from training.metrics import classification_metric_names, classification_metrics
from training.models import check_model_name, check_pretrained, create_model
from training.runtime import Runtime, epoch_seed_of
from training.tasks import register_task
from training.tasks.base import Task


@register_task("classification")
class ClassificationTask(Task):
    def __init__(self, cfg: TrainConfig, runtime: Runtime):
        super().__init__(cfg, runtime)
        splits = load_splits(cfg.data)
        self.class_names = splits.class_names
        size = cfg.data.image_size
        self.augment = train_transform(cfg.augment, cfg.seed)
        self.shuffle_generator = torch.Generator()
        self.train_loader = self._loader(ClassificationDataset(splits.train, size, self.augment), shuffle=True)
        self.val_loader = self._loader(ClassificationDataset(splits.val, size), shuffle=False)
        self.model = create_model(cfg.model, len(self.class_names)).to(runtime.device)
        if runtime.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.criterion = create_loss(cfg.loss, self.class_names, cfg.eval.good_class).to(runtime.device)

    def _loader(self, dataset: ClassificationDataset, shuffle: bool) -> DataLoader:
        data = self.cfg.data
        return DataLoader(
            dataset,
            batch_size=data.batch_size if shuffle else max(data.batch_size, 64),
            shuffle=shuffle,
            drop_last=shuffle and len(dataset) > data.batch_size,
            num_workers=data.num_workers,
            persistent_workers=data.num_workers > 0,
            pin_memory=self.runtime.device.type == "cuda",
            generator=self.shuffle_generator if shuffle else None,
        )

    def start_epoch(self, epoch: int) -> None:
        epoch_seed = epoch_seed_of(self.cfg.seed, epoch)
        self.shuffle_generator.manual_seed(epoch_seed)
        self.augment.set_random_seed(epoch_seed)

    @classmethod
    def check(cls, cfg: TrainConfig) -> None:
        check_data(cfg.data)
        check_model_name(cfg.model.name)
        check_pretrained(cfg.model)
        names = class_names(cfg.data)
        if cfg.loss.focal_alpha is not None and cfg.eval.good_class not in names:
            raise ConfigError("loss.focal_alpha", f"needs the good class '{cfg.eval.good_class}' among {names}")

    @classmethod
    def metric_names(cls, cfg: TrainConfig) -> list[str]:
        names = classification_metric_names(class_names(cfg.data), cfg.eval.good_class)
        return ["train/loss", "val/loss"] + [f"val/{n}" for n in names]

    def _forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(normalize_batch(self.runtime.to_device(images)))

    def training_loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        images, labels = batch
        return self.criterion(self._forward(images), labels.to(self.runtime.device))

    @torch.no_grad()
    def predictions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, targets) over the validation split, on the CPU."""
        self.model.eval()
        logits, targets = [], []
        with self.runtime.autocast():
            for images, labels in self.val_loader:
                logits.append(self._forward(images).float().cpu())
                targets.append(labels)
        return torch.cat(logits), torch.cat(targets)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        logits, targets = self.predictions()
        metrics = classification_metrics(logits, targets, self.class_names, self.cfg.eval.good_class)
        metrics["loss"] = float(self.criterion(logits.to(self.runtime.device), targets.to(self.runtime.device)))
        return {f"val/{k}": v for k, v in metrics.items()}
