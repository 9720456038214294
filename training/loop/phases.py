"""Multi-phase fine-tuning: which phase an epoch belongs to, and what that phase sets.

`phases` splits `train.epochs`: each phase runs its `epochs`, and a last phase without `epochs`
runs the rest. When every phase gives its epochs they must add up to train.epochs (a search's
`scheduler.max_epochs` sets train.epochs, so ASHA's budget and the phases always agree). The phase
of an epoch follows from the epoch number alone, so a run resumed mid-phase is in the right phase.
"""

from __future__ import annotations

from dataclasses import dataclass

from training.config import AugmentConfig, TrainConfig
from training.schema.errors import ConfigError


@dataclass(frozen=True)
class Phase:
    """A resolved phase: its number and what it sets."""

    index: int
    lr_factor: float
    freeze_stages: int
    augment: AugmentConfig


def phase_epochs(cfg: TrainConfig) -> list[int]:
    """Epochs of each phase (one phase of train.epochs when none are given)."""
    if not cfg.phases:
        return [cfg.train.epochs]
    given = [p.epochs for p in cfg.phases[:-1]]
    last = cfg.phases[-1].epochs
    return [*given, cfg.train.epochs - sum(given) if last is None else last]


def check_phases(cfg: TrainConfig) -> None:
    """Raise a ConfigError when the phases do not split train.epochs."""
    for i, phase in enumerate(cfg.phases[:-1]):
        if phase.epochs is None:
            raise ConfigError(f"phases.{i}.epochs", "required for every phase but the last")
    epochs = phase_epochs(cfg)
    if cfg.phases and (sum(epochs) != cfg.train.epochs or epochs[-1] < 1):
        raise ConfigError(
            "phases",
            f"phase epochs {epochs} must add up to train.epochs ({cfg.train.epochs}, the scheduler's max_epochs "
            "in a search); leave the last phase's epochs out to give it the rest",
        )


def phase_at(cfg: TrainConfig, epoch: int) -> Phase:
    """The phase that 1-based `epoch` belongs to (epochs past the end stay in the last phase)."""
    if not cfg.phases:
        return Phase(0, 1.0, cfg.model.freeze_stages, cfg.augment)
    end, index = 0, len(cfg.phases) - 1
    for i, epochs in enumerate(phase_epochs(cfg)):
        end += epochs
        if epoch <= end:
            index = i
            break
    spec = cfg.phases[index]
    freeze = cfg.model.freeze_stages if spec.freeze_stages is None else spec.freeze_stages
    augment = AugmentConfig.model_validate({**cfg.augment.model_dump(), **spec.augment})
    return Phase(index, spec.lr_factor, freeze, augment)
