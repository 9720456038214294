"""One optimizer step on one batch: what the epoch loop (`training.loop.fit`) runs and what
`Task.train_step` times for `search check`. A module of its own so that the task interface can use it
without importing the loop, which imports the task registry."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from training.tasks.base import Task


def training_step(
    task: Task,
    batch: Any,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    grad_clip: float | None,
) -> torch.Tensor:
    """Forward, backward and optimizer step on one batch; the loss, detached and still on the device
    (reading it would make the host wait for the step: `LossWatch` checks it later)."""
    optimizer.zero_grad(set_to_none=True)
    with task.runtime.autocast():
        loss = task.training_loss(batch)
    scaler.scale(loss).backward()
    if grad_clip:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(task.model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    task.after_step()
    return loss.detach()
