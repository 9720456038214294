"""A task that costs milliseconds: a linear model on a few random tensors. It exists to measure the
search machinery's own cost per trial (benchmarks/scale.py) through the real code path."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from training.config import TrainConfig
from training.loop.runtime import Runtime
from training.tasks import register_task
from training.tasks.base import Task

FEATURES, TRAIN_ROWS, VAL_ROWS = 8, 48, 16


@register_task("probe")
class ProbeTask(Task):
    """Two classes separated by the sign of the feature sum; data drawn from `seed`, no files."""

    def __init__(self, cfg: TrainConfig, runtime: Runtime):
        super().__init__(cfg, runtime)
        generator = torch.Generator().manual_seed(cfg.seed)
        x = torch.randn(TRAIN_ROWS + VAL_ROWS, FEATURES, generator=generator)
        y = (x.sum(dim=1) > 0).long()
        self.model = nn.Linear(FEATURES, 2).to(runtime.device)
        self.train_loader = DataLoader(TensorDataset(x[:TRAIN_ROWS], y[:TRAIN_ROWS]), batch_size=cfg.data.batch_size)
        self.val = (x[TRAIN_ROWS:].to(runtime.device), y[TRAIN_ROWS:].to(runtime.device))
        self.val_loader = DataLoader(TensorDataset(*self.val), batch_size=VAL_ROWS)  # `evaluate` takes it whole

    def training_loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = (t.to(self.runtime.device) for t in batch)
        return F.cross_entropy(self.model(x), y)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        x, y = self.val
        logits = self.model(x)
        accuracy = (logits.argmax(dim=1) == y).float().mean()
        return {"val/loss": float(F.cross_entropy(logits, y)), "val/accuracy": float(accuracy)}
