"""Soft Teacher's two views of an unlabeled image, defined once and built by both back-ends:
albumentations per image on the CPU (`weak_transform`, `strong_transform`) and kornia on a batch on
the trial's device (`DeviceViews`).

- weak, the teacher's view: the WEAK knobs of `training.augment.knobs.KNOBS` (the configured
  horizontal flip);
- strong, the student's view, applied on top of the weak one: the STRONG knobs (the photometric
  ones), then one affine zoom/shift (`strong_zoom`), whose matrix carries the teacher's boxes into it.

Each knob's magnitude is read by its row of KNOBS, the same on both back-ends; the zoom's by `Zoom`.
"""

from __future__ import annotations

from dataclasses import dataclass

import albumentations as A
import cv2
import kornia.augmentation as K
import torch
from torch import Tensor

from training.augment.boxes import edge_matrix
from training.augment.device import DeviceAugment
from training.augment.knobs import PHOTOMETRIC, augment_transforms
from training.config import AugmentConfig

WEAK = ("hflip",)
STRONG = PHOTOMETRIC  # pixels only: the zoom is the strong view's one geometry


@dataclass(frozen=True)
class Zoom:
    """The strong view's affine zoom/shift, drawn per image: x and y scale each from [1 - scale,
    1 + scale], a shift of up to `translate` of the side along each axis, firing with probability p.
    A constant border: a reflected one would mirror defects that no pseudo box covers."""

    scale: float
    translate: float
    p: float


def strong_zoom(cfg: AugmentConfig) -> Zoom | None:
    """augment.scale, augment.translate and augment.p as the strong view's zoom; None when both are 0."""
    return Zoom(cfg.scale, cfg.translate, cfg.p) if cfg.scale > 0 or cfg.translate > 0 else None


def weak_transform(cfg: AugmentConfig, seed: int | None = None) -> A.Compose:
    """The teacher's view of an unlabeled image (uint8 HWC), per image."""
    return A.Compose(augment_transforms(cfg, WEAK), seed=seed)


def strong_transform(cfg: AugmentConfig, seed: int | None = None) -> A.Compose:
    """The student's view, on top of the weak one, per image; `save_applied_params` keeps the zoom's
    matrix, which maps the teacher's boxes."""
    transforms = augment_transforms(cfg, STRONG)
    zoom = strong_zoom(cfg)
    if zoom is not None:
        transforms.append(
            A.Affine(
                scale=(1 - zoom.scale, 1 + zoom.scale),
                translate_percent=(-zoom.translate, zoom.translate),
                border_mode=cv2.BORDER_CONSTANT,
                p=zoom.p,
            )
        )
    return A.Compose(transforms, seed=seed, save_applied_params=True)


class DeviceViews:
    """Both views of a batch of unlabeled images, on its device. The matrices map weak-view box
    coordinates (pixel edges) to strong-view ones."""

    def __init__(self, cfg: AugmentConfig):
        self.weak = DeviceAugment(cfg, WEAK)
        self.strong = DeviceAugment(cfg, STRONG)
        zoom = strong_zoom(cfg)
        if zoom is not None:  # kornia's RandomAffine: a range of None draws nothing, zeros pad (a constant border)
            scale = (1 - zoom.scale, 1 + zoom.scale) * 2 if zoom.scale > 0 else None
            shift = (zoom.translate, zoom.translate) if zoom.translate > 0 else None
            self.strong.transforms.append(K.RandomAffine(0.0, translate=shift, scale=scale, p=zoom.p))

    def start_epoch(self, epoch_seed: int) -> None:
        # distinct streams: the views must not share the labeled batch's draws
        self.weak.start_epoch(epoch_seed + 1)
        self.strong.start_epoch(epoch_seed + 2)

    def __call__(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(weak, strong, matrices) of float [0, 1] NCHW `images`."""
        weak, _ = self.weak(images)
        strong, matrices = self.strong(weak)
        return weak, strong, torch.stack([edge_matrix(m) for m in matrices])
