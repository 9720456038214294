"""MixUp (Zhang et al. 2018) and CutMix (Yun et al. 2019) on a batch, with soft targets.

A mixed batch's targets are class probabilities (rows summing to 1), which cross-entropy and the
focal loss both accept. Every draw comes from a numpy Generator the task re-seeds each epoch, so a
resumed run mixes the same batches the same way.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from training.config import AugmentConfig


def mix_enabled(cfg: AugmentConfig) -> bool:
    return cfg.mix_prob > 0 and (cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0)


Mixed = tuple[torch.Tensor, float]  # the mixed images and the share of the originals in them


def _mixup(images: torch.Tensor, partner: torch.Tensor, lam: float, rng: np.random.Generator) -> Mixed:
    return lam * images + (1 - lam) * partner, lam


def _cutmix(images: torch.Tensor, partner: torch.Tensor, lam: float, rng: np.random.Generator) -> Mixed:
    """Paste a box of area (1 - lam) from the partner; lam is corrected for the box clipped at the border."""
    height, width = images.shape[-2:]
    cut_h, cut_w = int(height * np.sqrt(1 - lam)), int(width * np.sqrt(1 - lam))
    cy, cx = rng.integers(height), rng.integers(width)
    y0, y1 = np.clip([cy - cut_h // 2, cy + cut_h // 2], 0, height)
    x0, x1 = np.clip([cx - cut_w // 2, cx + cut_w // 2], 0, width)
    mixed = images.clone()
    mixed[..., y0:y1, x0:x1] = partner[..., y0:y1, x0:x1]
    return mixed, 1 - (y1 - y0) * (x1 - x0) / (height * width)


MIXERS = {"mixup": _mixup, "cutmix": _cutmix}


def mix_batch(
    images: torch.Tensor, labels: torch.Tensor, num_classes: int, cfg: AugmentConfig, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, targets): with probability mix_prob, images mixed with a shuffled copy of the batch by
    MixUp or CutMix (50/50 when both are on) and soft targets of label mass 1; else the batch unchanged."""
    alphas = {"mixup": cfg.mixup_alpha, "cutmix": cfg.cutmix_alpha}
    enabled = [name for name, alpha in alphas.items() if alpha > 0]
    if not enabled or rng.random() >= cfg.mix_prob:
        return images, labels
    name = enabled[rng.integers(len(enabled))]
    lam = float(rng.beta(alphas[name], alphas[name]))
    order = torch.as_tensor(rng.permutation(len(images)), device=images.device)
    mixed, lam = MIXERS[name](images, images[order], lam, rng)
    one_hot = F.one_hot(labels, num_classes).float()
    return mixed, lam * one_hot + (1 - lam) * one_hot[order]
