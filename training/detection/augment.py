"""Box-aware albumentations pipelines for detection: resize to the data's size, then the enabled
magnitude transforms of `training.augment`; boxes (pascal_voc xyxy pixels) move with the image.
"""

from __future__ import annotations

import albumentations as A

from training.augment import AUGMENTS
from training.config import AugmentConfig

# The knobs whose transform keeps boxes right: pixel-level ones, and geometric ones albumentations
# maps boxes through. Warps (elastic, grid, perspective) and crops/erasing that can cut a defect away
# are left out.
BOX_AWARE = (
    "hflip", "vflip", "rotate", "scale", "translate",
    "brightness", "contrast", "saturation", "hue", "sharpness", "clahe", "blur",
    "autocontrast", "equalize", "posterize",
)  # fmt: skip
# A box that keeps less than this share of its area after a geometric transform is dropped.
MIN_VISIBILITY = 0.3


def _enabled(cfg: AugmentConfig) -> list[str]:
    return [knob for knob in AUGMENTS if getattr(cfg, knob) > 0]


def not_box_aware(cfg: AugmentConfig) -> list[str]:
    """Enabled augment knobs the detection pipeline has no box-aware transform for."""
    return [knob for knob in _enabled(cfg) if knob not in BOX_AWARE]


def detection_transform(cfg: AugmentConfig | None, image_size: int, seed: int | None = None) -> A.Compose:
    """uint8 HWC image + `bboxes` + `labels` in, resized to image_size and augmented (cfg None: resize
    only), reproducible from `seed`. Transforms run in AUGMENTS order (geometric first)."""
    enabled = [] if cfg is None else [AUGMENTS[k](getattr(cfg, k), cfg) for k in _enabled(cfg) if k in BOX_AWARE]
    bbox_params = A.BboxParams(
        format="pascal_voc",
        label_fields=["labels"],
        min_visibility=MIN_VISIBILITY,
        clip=True,
        filter_invalid_bboxes=True,
    )
    return A.Compose([A.Resize(image_size, image_size), *enabled], bbox_params=bbox_params, seed=seed)
