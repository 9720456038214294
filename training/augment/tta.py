"""Test-time augmentation: average the softmax over the image and transformed views of it."""

from __future__ import annotations

from typing import Callable

import torch

# eval.tta name -> view of an NCHW batch
TTA_VIEWS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "hflip": lambda images: images.flip(-1),
    "vflip": lambda images: images.flip(-2),
}


def tta_logits(forward: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, views: list[str]) -> torch.Tensor:
    """Logits whose softmax is the mean softmax over the original and each view (log of that mean);
    the plain logits when `views` is empty."""
    logits = forward(images)
    if not views:
        return logits
    probs = logits.float().softmax(dim=1)
    for name in views:
        probs = probs + forward(TTA_VIEWS[name](images)).float().softmax(dim=1)
    # clamped: a probability that underflowed to 0 would give an infinite validation loss
    return (probs / (len(views) + 1)).clamp_min(torch.finfo(torch.float32).tiny).log()
