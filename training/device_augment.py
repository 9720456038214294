"""Augmentation on the trial's device: the enabled knobs' kornia transforms run on a whole batch,
each sample with its own parameters; where the CPU path runs albumentations per image.

Random parameters come from a generator reseeded by `start_epoch` and the batch count of the epoch,
inside a forked RNG: the same (seed, epoch, batch) gives the same augmentation, whatever else
(dropout, the model's init) draws from torch's global generator.
"""

from __future__ import annotations

import logging

import kornia.augmentation as K
import numpy as np
import torch
from kornia.augmentation import GeometricAugmentationBase2D
from torch import Tensor

from training.augment import KNOBS, PHOTOMETRIC, cpu_only, device_transforms, enabled_knobs
from training.config import AugmentConfig, TrainConfig
from training.errors import ConfigError

log = logging.getLogger(__name__)
_SAID: set[tuple[str, ...]] = set()  # CPU fallbacks already logged by this process


class DeviceAugment:
    """The enabled knobs of `cfg` (restricted to `among`) as one batched pipeline: float NCHW images
    in [0, 1] in, augmented images and the (B, 3, 3) matrices of their geometry out."""

    def __init__(self, cfg: AugmentConfig, among: tuple[str, ...] | None = None):
        self.transforms = device_transforms(cfg, among)
        self.epoch_seed, self.batches = 0, 0

    def start_epoch(self, epoch_seed: int) -> None:
        self.epoch_seed, self.batches = epoch_seed, 0

    def __call__(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(images, matrices): a matrix maps input pixel coordinates (pixel centres) to output ones."""
        matrix = torch.eye(3, device=images.device).expand(len(images), 3, 3)
        seed = int(np.random.SeedSequence([self.epoch_seed, self.batches]).generate_state(1)[0])
        self.batches += 1
        with torch.random.fork_rng(devices=[images.device] if images.device.type == "cuda" else []):
            torch.manual_seed(seed)
            for transform in self.transforms:
                images = transform(images)
                if isinstance(transform, GeometricAugmentationBase2D) and transform.transform_matrix is not None:
                    matrix = transform.transform_matrix.to(matrix) @ matrix
        return images, matrix


def edge_matrix(matrix: Tensor) -> Tensor:
    """A pixel-centre matrix (kornia's) as the same map of pixel-edge coordinates (boxes,
    albumentations' `bbox_matrix`): shift by half a pixel, map, shift back."""
    shift = torch.eye(3, device=matrix.device, dtype=matrix.dtype)
    shift[:2, 2] = 0.5
    unshift = shift.clone()
    unshift[:2, 2] = -0.5
    return shift @ matrix @ unshift


class DeviceViews:
    """Soft Teacher's two views of unlabeled images, batched on the device with the CPU path's meaning
    (`training.detection.semi.weak_transform` / `strong_transform`): weak = the configured horizontal
    flip; strong, on top of it = the photometric knobs, then one affine zoom/shift with a constant
    border. The matrices map weak-view box coordinates to strong-view ones."""

    def __init__(self, cfg: AugmentConfig):
        self.weak = DeviceAugment(cfg.model_copy(update={k: 0 for k in KNOBS if k != "hflip"}))
        self.strong = DeviceAugment(cfg, PHOTOMETRIC)
        if cfg.scale > 0 or cfg.translate > 0:
            zoom = (1 - cfg.scale, 1 + cfg.scale) * 2 if cfg.scale > 0 else None
            shift = (cfg.translate, cfg.translate) if cfg.translate > 0 else None
            self.strong.transforms.append(K.RandomAffine(0.0, translate=shift, scale=zoom, p=cfg.p))

    def start_epoch(self, epoch_seed: int) -> None:
        # distinct streams: the views must not share the labeled batch's draws
        self.weak.start_epoch(epoch_seed + 1)
        self.strong.start_epoch(epoch_seed + 2)

    def __call__(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(weak, strong, matrices) of float [0, 1] NCHW `images`."""
        weak, _ = self.weak(images)
        strong, matrices = self.strong(weak)
        return weak, strong, torch.stack([edge_matrix(m) for m in matrices])


def move_boxes(
    boxes: Tensor, matrix: Tensor, size: tuple[int, int], min_visibility: float
) -> tuple[Tensor, Tensor]:
    """(boxes after the geometry, mask of those kept): xyxy pixel-edge boxes through a pixel-centre
    `matrix` (kornia's), enclosed, clipped to (height, width); a box keeping less than `min_visibility` of its
    area inside the image, or thinner than a pixel, is dropped (albumentations' rule)."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    corners = torch.stack([torch.stack([x, y], -1) for x, y in ((x0, y0), (x1, y0), (x0, y1), (x1, y1))], 1)
    matrix = edge_matrix(matrix.to(boxes))
    moved = corners @ matrix[:2, :2].T + matrix[:2, 2]
    mapped = torch.cat([moved.amin(1), moved.amax(1)], -1)
    area = (mapped[:, 2:] - mapped[:, :2]).prod(-1)
    clipped = mapped.clone()
    clipped[:, 0::2] = clipped[:, 0::2].clamp(0, size[1])
    clipped[:, 1::2] = clipped[:, 1::2].clamp(0, size[0])
    sides = clipped[:, 2:] - clipped[:, :2]
    keep = (sides >= 1).all(-1) & (sides.prod(-1) >= min_visibility * area)
    return clipped[keep], keep


def augment_configs(cfg: TrainConfig) -> list[AugmentConfig]:
    """The augmentation of every phase (the base one when there are no phases)."""
    configs = [cfg.augment] + [cfg.augment.model_copy(update=phase.augment) for phase in cfg.phases]
    return [a for i, a in enumerate(configs) if a not in configs[:i]]


def missing_on_device(cfg: TrainConfig, among: tuple[str, ...] | None = None) -> list[str]:
    """Enabled knobs (any phase, restricted to `among`) without a device builder."""
    missing = [knob for a in augment_configs(cfg) for knob in cpu_only(enabled_knobs(a, among))]
    return list(dict.fromkeys(missing))


def device_capable(cfg: TrainConfig, among: tuple[str, ...] | None = None) -> bool:
    """Whether every phase's augmentation can run on the device (nothing enabled counts as yes)."""
    enabled = any(enabled_knobs(a, among) for a in augment_configs(cfg))
    return not enabled or (cfg.augment.device != "cpu" and not missing_on_device(cfg, among))


def on_device(cfg: TrainConfig, among: tuple[str, ...] | None, device: torch.device, batches_on_device: bool) -> bool:
    """Whether `cfg.task` augments on the device: augment.device gpu always (`check_placement` refused
    a knob without a device builder), cpu never, auto when the batches are on the device already or
    the trial has CUDA, and every enabled knob has a device builder (else it stays on the CPU and
    says so once). On a CPU-only trial albumentations per image is the faster path (measured, one thread,
    brightness + hflip: 22k vs 14k images/s at 32 px, 8k vs 0.3k at 128 px)."""
    if cfg.augment.device != "auto":
        return cfg.augment.device == "gpu"
    if device.type != "cuda" and not batches_on_device:
        return False
    missing = missing_on_device(cfg, among)
    if missing and (cfg.task, *missing) not in _SAID:
        _SAID.add((cfg.task, *missing))
        log.warning("%s: augmentation stays on the CPU: %s", cfg.task, placement_note(missing))
    return not missing


def placement_note(missing: list[str]) -> str:
    """Why augmentation stays on the CPU, in a line."""
    return f"augment.{', augment.'.join(missing)} {'has' if len(missing) == 1 else 'have'} no device transform"


def check_placement(cfg: TrainConfig, among: tuple[str, ...] | None = None) -> None:
    """ConfigError for augment.device gpu with a knob that has no device builder, and for
    data.cache device (batches drawn on the device) with augmentation that must run on the CPU."""
    missing = missing_on_device(cfg, among)
    if cfg.augment.device == "gpu" and missing:
        raise ConfigError(f"augment.{missing[0]}", "has no device transform; set augment.device to auto or cpu")
    if cfg.data.cache == "device" and not device_capable(cfg, among):
        reason = placement_note(missing) if missing else "augment.device is cpu"
        raise ConfigError("data.cache", f"device draws batches on the device, where augmentation must run ({reason})")


def describe(cfg: TrainConfig, searched: list[str], device: torch.device, batches_on_device: bool) -> str:
    """One line for `search check`: where the augmentation of `cfg`, with the `searched` knobs on
    too, runs on `device`."""
    knobs = list(dict.fromkeys(enabled_knobs(cfg.augment) + [k for k in searched if k in KNOBS]))
    missing = cpu_only(knobs)
    if not knobs:
        return "augmentation: none enabled"
    if cfg.augment.device == "cpu":
        return "augmentation: on the CPU, per image (albumentations; augment.device cpu)"
    if cfg.augment.device == "gpu" or ((device.type == "cuda" or batches_on_device) and not missing):
        return f"augmentation: batched on the trial's device ({device.type}; kornia)"
    if device.type == "cuda" or batches_on_device:
        return f"augmentation: on the CPU, per image: {placement_note(missing)}"
    return "augmentation: on the CPU, per image (albumentations: faster than batched on a CPU-only trial)"
