"""Augmentation knobs: one table naming, for each knob of AugmentConfig, its albumentations builder
(per image, uint8 HWC, on the CPU), its batched kornia builder (per-sample parameters, on the
trial's device; None where kornia has no transform with the same meaning of the magnitude) and its
kind (photometric, geometric, occlusion) and whether boxes stay right under it (box-aware).

A magnitude of 0 switches its transform off, so an all-zero config is the identity. Both builders
read a magnitude the same way, e.g. brightness m multiplies by a factor drawn from [1 - m, 1 + m]
(albumentations' and kornia's ColorJitter are both torchvision's formulas).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import albumentations as A
import cv2
import kornia.augmentation as K
import torch
from torch import nn

from training.augment.crop_pad import ResizedCrop, ShrinkAndPad
from training.config import AugmentConfig

# ImageNet statistics: timm backbones expect them, pretrained or not.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

TransformBuilder = Callable[[float, AugmentConfig], A.BasicTransform]
DeviceBuilder = Callable[[float, AugmentConfig], nn.Module]
Kind = Literal["photometric", "geometric", "occlusion"]
BORDER = cv2.BORDER_REFLECT_101
# torch's grid_sample reflects about the pixel edges (OpenCV's BORDER_REFLECT): one border pixel
# differs from BORDER_REFLECT_101, the closest kornia has.
DEVICE_BORDER = "reflection"


@dataclass(frozen=True)
class Knob:
    """One augment knob. Flips and the *_p knobs take their magnitude as the probability itself; the
    others fire with probability cfg.p (on both paths)."""

    kind: Kind
    cpu: TransformBuilder
    device: DeviceBuilder | None = None
    box_aware: bool = False  # detection can use it: pixels only, or geometry its boxes follow


def _jitter(name: str) -> tuple[TransformBuilder, DeviceBuilder]:
    """ColorJitter with only `name` set, on both paths (each draws its factor per image)."""
    cpu = lambda m, cfg: A.ColorJitter(**{**dict(brightness=0, contrast=0, saturation=0, hue=0), name: m}, p=cfg.p)
    device = lambda m, cfg: K.ColorJitter(**{name: m}, p=cfg.p)
    return cpu, device


def _affine(**ranges: Callable[[float], object]) -> DeviceBuilder:
    """kornia RandomAffine with the given parameter ranges of m, reflected border, firing with cfg.p."""
    return lambda m, cfg: K.RandomAffine(
        **{"degrees": 0.0, **{k: r(m) for k, r in ranges.items()}}, padding_mode=DEVICE_BORDER, p=cfg.p
    )


def _blur_kernel(sigma: float) -> int:
    """albumentations' kernel size for sigma (PIL's rule); kornia needs it fixed: the largest sigma's."""
    return max(3, int(sigma * 3.5) * 2 + 1)


# knob -> row, in pipeline order: geometric first, then photometric, then occlusion. albumentations'
# Affine draws x and y scale and shear independently (keep_ratio False): kornia's 4-value ranges do too.
KNOBS: dict[str, Knob] = {
    "rrc_p": Knob("geometric", lambda m, cfg: ResizedCrop(cfg.rrc_scale_min, cfg.rrc_ratio, p=m)),
    "shrink_p": Knob("geometric", lambda m, cfg: ShrinkAndPad(cfg.shrink_scale_min, cfg.shrink_pad, p=m)),
    "hflip": Knob("geometric", lambda m, cfg: A.HorizontalFlip(p=m), lambda m, cfg: K.RandomHorizontalFlip(p=m), True),
    "vflip": Knob("geometric", lambda m, cfg: A.VerticalFlip(p=m), lambda m, cfg: K.RandomVerticalFlip(p=m), True),
    "rotate": Knob(
        "geometric", lambda m, cfg: A.Rotate(limit=m, border_mode=BORDER, p=cfg.p), _affine(degrees=lambda m: m), True
    ),
    "scale": Knob(
        "geometric",
        lambda m, cfg: A.Affine(scale=(1 - m, 1 + m), border_mode=BORDER, p=cfg.p),
        _affine(scale=lambda m: (1 - m, 1 + m, 1 - m, 1 + m)),
        True,
    ),
    "translate": Knob(
        "geometric",
        lambda m, cfg: A.Affine(translate_percent=(-m, m), border_mode=BORDER, p=cfg.p),
        _affine(translate=lambda m: (m, m)),
        True,
    ),
    "shear": Knob(
        "geometric",
        lambda m, cfg: A.Affine(shear=(-m, m), border_mode=BORDER, p=cfg.p),
        _affine(shear=lambda m: (-m, m, -m, m)),
    ),
    # albumentations draws each corner's shift from a normal, kornia from a uniform: no device twin
    "perspective": Knob("geometric", lambda m, cfg: A.Perspective(scale=(m / 2, m), border_mode=BORDER, p=cfg.p)),
    "elastic": Knob(
        "geometric", lambda m, cfg: A.ElasticTransform(alpha=60 * m, sigma=6, border_mode=BORDER, p=cfg.p)
    ),
    "grid_distortion": Knob(
        "geometric", lambda m, cfg: A.GridDistortion(distort_limit=m, border_mode=BORDER, p=cfg.p)
    ),
    "brightness": Knob("photometric", *_jitter("brightness"), True),
    "contrast": Knob("photometric", *_jitter("contrast"), True),
    "saturation": Knob("photometric", *_jitter("saturation"), True),
    "hue": Knob("photometric", *_jitter("hue"), True),
    # sharpen, CLAHE, autocontrast and equalize: kornia's kernels / histogram rules differ
    "sharpness": Knob("photometric", lambda m, cfg: A.Sharpen(alpha=(0.0, m), lightness=(1.0, 1.0), p=cfg.p), None, True),
    "clahe": Knob(
        "photometric", lambda m, cfg: A.CLAHE(clip_limit=(1.0, max(1.0, m)), tile_grid_size=(4, 4), p=cfg.p), None, True
    ),
    "autocontrast": Knob("photometric", lambda m, cfg: A.AutoContrast(p=m), None, True),
    "equalize": Knob("photometric", lambda m, cfg: A.Equalize(p=m), None, True),
    # albumentations draws an integer in [8 - m, 7]; kornia rounds a uniform float, so widen by 0.5
    "posterize": Knob(
        "photometric",
        lambda m, cfg: A.Posterize(num_bits=(8 - int(m), 7), p=cfg.p),
        lambda m, cfg: K.RandomPosterize(bits=(8 - int(m) - 0.5, 7.5 - 1e-6), p=cfg.p),
        True,
    ),
    "blur": Knob(
        "photometric",
        lambda m, cfg: A.GaussianBlur(sigma_limit=(0.1, m), p=cfg.p),
        lambda m, cfg: K.RandomGaussianBlur(_blur_kernel(m), sigma=(0.1, max(0.1, m)), p=cfg.p),
        True,
    ),
    "coarse_dropout": Knob(
        "occlusion",
        lambda m, cfg: A.CoarseDropout(
            num_holes_range=(1, 4), hole_height_range=(m / 2, m), hole_width_range=(m / 2, m), p=cfg.p
        ),
    ),
    "erasing": Knob("occlusion", lambda m, cfg: A.Erasing(scale=(m / 10, m), fill="random_uniform", p=cfg.p)),
}
PHOTOMETRIC = tuple(knob for knob, row in KNOBS.items() if row.kind == "photometric")
BOX_AWARE = tuple(knob for knob, row in KNOBS.items() if row.box_aware)


def enabled_knobs(cfg: AugmentConfig, among: tuple[str, ...] | None = None) -> list[str]:
    """The knobs switched on in `cfg` (restricted to `among`), in table order."""
    return [knob for knob in KNOBS if getattr(cfg, knob) > 0 and (among is None or knob in among)]


def cpu_only(knobs: list[str]) -> list[str]:
    """The knobs among `knobs` that have no device builder."""
    return [knob for knob in knobs if KNOBS[knob].device is None]


def augment_transforms(cfg: AugmentConfig, among: tuple[str, ...] | None = None) -> list[A.BasicTransform]:
    """The enabled albumentations transforms, in table order."""
    return [KNOBS[knob].cpu(getattr(cfg, knob), cfg) for knob in enabled_knobs(cfg, among)]


def device_transforms(cfg: AugmentConfig, among: tuple[str, ...] | None = None) -> list[nn.Module]:
    """The enabled kornia transforms, in table order; every enabled knob must have one."""
    return [KNOBS[knob].device(getattr(cfg, knob), cfg) for knob in enabled_knobs(cfg, among)]


def train_transform(cfg: AugmentConfig, seed: int | None = None) -> A.Compose:
    """Augmentation for training images (uint8 HWC in, uint8 HWC out), reproducible from `seed`."""
    return A.Compose(augment_transforms(cfg), seed=seed)


def normalize_batch(images: torch.Tensor) -> torch.Tensor:
    """uint8 (or float 0-255) NCHW RGB -> float32 normalized with the backbone's statistics."""
    mean = torch.tensor(MEAN, device=images.device).view(1, 3, 1, 1) * 255
    std = torch.tensor(STD, device=images.device).view(1, 3, 1, 1) * 255
    return (images.float() - mean) / std
