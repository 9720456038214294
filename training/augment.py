"""Albumentations pipelines built from magnitudes: each knob in AugmentConfig has one builder.

A magnitude of 0 switches its transform off, so an all-zero config is the identity.
"""

from __future__ import annotations

from typing import Callable

import albumentations as A
import cv2
import torch

from training.config import AugmentConfig
from training.crop_pad import ResizedCrop, ShrinkAndPad

# ImageNet statistics: timm backbones expect them, pretrained or not.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

TransformBuilder = Callable[[float, AugmentConfig], A.BasicTransform]
BORDER = cv2.BORDER_REFLECT_101

# knob -> builder(magnitude, cfg): geometric first, then photometric, then occlusion. Flips and the
# *_p knobs take their magnitude as the probability itself; the others fire with probability cfg.p.
AUGMENTS: dict[str, TransformBuilder] = {
    "rrc_p": lambda m, cfg: ResizedCrop(cfg.rrc_scale_min, cfg.rrc_ratio, p=m),
    "shrink_p": lambda m, cfg: ShrinkAndPad(cfg.shrink_scale_min, cfg.shrink_pad, p=m),
    "hflip": lambda m, cfg: A.HorizontalFlip(p=m),
    "vflip": lambda m, cfg: A.VerticalFlip(p=m),
    "rotate": lambda m, cfg: A.Rotate(limit=m, border_mode=BORDER, p=cfg.p),
    "scale": lambda m, cfg: A.Affine(scale=(1 - m, 1 + m), border_mode=BORDER, p=cfg.p),
    "translate": lambda m, cfg: A.Affine(translate_percent=(-m, m), border_mode=BORDER, p=cfg.p),
    "shear": lambda m, cfg: A.Affine(shear=(-m, m), border_mode=BORDER, p=cfg.p),
    "perspective": lambda m, cfg: A.Perspective(scale=(m / 2, m), border_mode=BORDER, p=cfg.p),
    "elastic": lambda m, cfg: A.ElasticTransform(alpha=60 * m, sigma=6, border_mode=BORDER, p=cfg.p),
    "grid_distortion": lambda m, cfg: A.GridDistortion(distort_limit=m, border_mode=BORDER, p=cfg.p),
    "brightness": lambda m, cfg: A.ColorJitter(brightness=m, contrast=0, saturation=0, hue=0, p=cfg.p),
    "contrast": lambda m, cfg: A.ColorJitter(brightness=0, contrast=m, saturation=0, hue=0, p=cfg.p),
    "saturation": lambda m, cfg: A.ColorJitter(brightness=0, contrast=0, saturation=m, hue=0, p=cfg.p),
    "hue": lambda m, cfg: A.ColorJitter(brightness=0, contrast=0, saturation=0, hue=m, p=cfg.p),
    "sharpness": lambda m, cfg: A.Sharpen(alpha=(0.0, m), lightness=(1.0, 1.0), p=cfg.p),
    "clahe": lambda m, cfg: A.CLAHE(clip_limit=(1.0, max(1.0, m)), tile_grid_size=(4, 4), p=cfg.p),
    "autocontrast": lambda m, cfg: A.AutoContrast(p=m),
    "equalize": lambda m, cfg: A.Equalize(p=m),
    "posterize": lambda m, cfg: A.Posterize(num_bits=(8 - int(m), 7), p=cfg.p),
    "blur": lambda m, cfg: A.GaussianBlur(sigma_limit=(0.1, m), p=cfg.p),
    "coarse_dropout": lambda m, cfg: A.CoarseDropout(
        num_holes_range=(1, 4), hole_height_range=(m / 2, m), hole_width_range=(m / 2, m), p=cfg.p
    ),
    "erasing": lambda m, cfg: A.Erasing(scale=(m / 10, m), fill="random_uniform", p=cfg.p),
}
# AugmentConfig fields that shape a transform above or mix batches (training.mix) rather than switch one on.
SETTINGS = {
    "p", "rrc_scale_min", "rrc_ratio", "shrink_scale_min", "shrink_pad", "mixup_alpha", "cutmix_alpha", "mix_prob",
}  # fmt: skip


def augment_transforms(cfg: AugmentConfig) -> list[A.BasicTransform]:
    """The enabled transforms, in AUGMENTS order."""
    return [build(getattr(cfg, knob), cfg) for knob, build in AUGMENTS.items() if getattr(cfg, knob) > 0]


def train_transform(cfg: AugmentConfig, seed: int | None = None) -> A.Compose:
    """Augmentation for training images (uint8 HWC in, uint8 HWC out), reproducible from `seed`."""
    return A.Compose(augment_transforms(cfg), seed=seed)


def normalize_batch(images: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW RGB -> float32 normalized with the backbone's statistics (deterministic)."""
    mean = torch.tensor(MEAN, device=images.device).view(1, 3, 1, 1) * 255
    std = torch.tensor(STD, device=images.device).view(1, 3, 1, 1) * 255
    return (images.float() - mean) / std
