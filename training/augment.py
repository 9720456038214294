"""Albumentations pipelines built from magnitudes: each knob in AugmentConfig has one builder.

A magnitude of 0 switches its transform off, so an all-zero config is the identity.
"""

from __future__ import annotations

from typing import Callable

import albumentations as A
import cv2
import torch

from training.config import AugmentConfig

# ImageNet statistics: timm backbones expect them, pretrained or not.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

TransformBuilder = Callable[[float, float], A.BasicTransform]

# knob -> builder(magnitude, p); flips take their magnitude as the probability itself.
AUGMENTS: dict[str, TransformBuilder] = {
    "hflip": lambda m, p: A.HorizontalFlip(p=m),
    "vflip": lambda m, p: A.VerticalFlip(p=m),
    "rotate": lambda m, p: A.Rotate(limit=m, border_mode=cv2.BORDER_REFLECT_101, p=p),
    "elastic": lambda m, p: A.ElasticTransform(alpha=60 * m, sigma=6, border_mode=cv2.BORDER_REFLECT_101, p=p),
    "grid_distortion": lambda m, p: A.GridDistortion(distort_limit=m, border_mode=cv2.BORDER_REFLECT_101, p=p),
    "brightness": lambda m, p: A.ColorJitter(brightness=m, contrast=0, saturation=0, hue=0, p=p),
    "contrast": lambda m, p: A.ColorJitter(brightness=0, contrast=m, saturation=0, hue=0, p=p),
    "saturation": lambda m, p: A.ColorJitter(brightness=0, contrast=0, saturation=m, hue=0, p=p),
    "hue": lambda m, p: A.ColorJitter(brightness=0, contrast=0, saturation=0, hue=m, p=p),
    "sharpness": lambda m, p: A.Sharpen(alpha=(0.0, m), lightness=(1.0, 1.0), p=p),
    "clahe": lambda m, p: A.CLAHE(clip_limit=(1.0, max(1.0, m)), tile_grid_size=(4, 4), p=p),
    "coarse_dropout": lambda m, p: A.CoarseDropout(
        num_holes_range=(1, 4), hole_height_range=(m / 2, m), hole_width_range=(m / 2, m), p=p
    ),
}


def augment_transforms(cfg: AugmentConfig) -> list[A.BasicTransform]:
    """The enabled transforms, geometric first, in AUGMENTS order."""
    return [build(getattr(cfg, knob), cfg.p) for knob, build in AUGMENTS.items() if getattr(cfg, knob) > 0]


def train_transform(cfg: AugmentConfig, seed: int | None = None) -> A.Compose:
    """Augmentation for training images (uint8 HWC in, uint8 HWC out), reproducible from `seed`."""
    return A.Compose(augment_transforms(cfg), seed=seed)


def normalize_batch(images: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW RGB -> float32 normalized with the backbone's statistics (deterministic)."""
    mean = torch.tensor(MEAN, device=images.device).view(1, 3, 1, 1) * 255
    std = torch.tensor(STD, device=images.device).view(1, 3, 1, 1) * 255
    return (images.float() - mean) / std
