"""Box-aware augmentation for detection: resize to the data's size, then the enabled box-aware knobs
of `training.augment.knobs.KNOBS`, per image with albumentations (boxes in pascal_voc xyxy pixels move
with the image) or batched on the device (`augment_batch`: boxes through each sample's matrix).
"""

from __future__ import annotations

import albumentations as A
import torch

from training.augment.boxes import move_boxes
from training.augment.device import DeviceAugment
from training.augment.knobs import BOX_AWARE, augment_transforms, enabled_knobs
from training.config import AugmentConfig

# A box that keeps less than this share of its area after a geometric transform is dropped.
MIN_VISIBILITY = 0.3


def not_box_aware(cfg: AugmentConfig) -> list[str]:
    """Enabled augment knobs the detection pipeline has no box-aware transform for: warps (elastic,
    grid, perspective), crops and occlusions that can cut a defect away."""
    return [knob for knob in enabled_knobs(cfg) if knob not in BOX_AWARE]


def detection_transform(cfg: AugmentConfig | None, image_size: int, seed: int | None = None) -> A.Compose:
    """uint8 HWC image + `bboxes` + `labels` in, resized to image_size and augmented (cfg None: resize
    only), reproducible from `seed`. Transforms run in table order (geometric first)."""
    enabled = [] if cfg is None else augment_transforms(cfg, BOX_AWARE)
    bbox_params = A.BboxParams(
        format="pascal_voc",
        label_fields=["labels"],
        min_visibility=MIN_VISIBILITY,
        clip=True,
        filter_invalid_bboxes=True,
    )
    return A.Compose([A.Resize(image_size, image_size), *enabled], bbox_params=bbox_params, seed=seed)


def augment_batch(
    augment: DeviceAugment, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]
) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Float [0, 1] CHW images (one size) augmented on their device, each target's boxes moved with
    its image (dropped under MIN_VISIBILITY, labels with them)."""
    batch, matrices = augment(torch.stack(images))
    size = tuple(batch.shape[-2:])
    moved = []
    for target, matrix in zip(targets, matrices):
        boxes, keep = move_boxes(target["boxes"], matrix, size, MIN_VISIBILITY)
        moved.append({**target, "boxes": boxes, "labels": target["labels"][keep]})
    return list(batch), moved
