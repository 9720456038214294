"""Soft Teacher's weak and strong views: one definition, built alike by albumentations (per image)
and kornia (batched on the device), and a matrix that carries the teacher's boxes into the student's view."""

from __future__ import annotations

import albumentations as A
import kornia.augmentation as K
import numpy as np
import pytest
import torch

from training.augment.knobs import KNOBS, enabled_knobs
from training.augment.views import STRONG, WEAK, DeviceViews, strong_transform, weak_transform
from training.config import AugmentConfig
from training.detection.semi import affine_matrix, map_boxes

SIZE = 32
# every kind of knob on, the CPU-only photometric ones too (the device views need none of them off)
EVERY_KIND = dict(p=0.8, hflip=0.5, vflip=0.5, rotate=10.0, elastic=0.3, brightness=0.2, contrast=0.2, hue=0.05,
                  posterize=2, blur=1.0, scale=0.2, translate=0.1)  # fmt: skip
DEVICE_KINDS = {k: v for k, v in EVERY_KIND.items() if k in ("p", "scale", "translate") or KNOBS[k].device}


def test_the_views_are_the_flip_then_the_photometric_knobs_and_one_zoom():
    cfg = AugmentConfig(**EVERY_KIND)
    # the teacher's view flips only; the student's adds pixel changes and one zoom, no other geometry
    assert enabled_knobs(cfg, WEAK) == ["hflip"]
    assert enabled_knobs(cfg, STRONG) == ["brightness", "contrast", "hue", "posterize", "blur"]
    assert all(KNOBS[knob].kind == "photometric" for knob in STRONG)


@pytest.mark.parametrize("cfg", [AugmentConfig(**DEVICE_KINDS), AugmentConfig(hflip=1.0, brightness=0.3), AugmentConfig()])
def test_both_back_ends_build_each_view_from_the_same_knobs(cfg):
    def rows(knobs, side):
        return [type(getattr(KNOBS[k], side)(getattr(cfg, k), cfg)) for k in knobs]

    zoom = cfg.scale > 0 or cfg.translate > 0
    views = DeviceViews(cfg)
    # the weak view: the same knob rows on both back-ends
    assert [type(t) for t in weak_transform(cfg).transforms] == rows(enabled_knobs(cfg, WEAK), "cpu")
    assert [type(t) for t in views.weak.transforms] == rows(enabled_knobs(cfg, WEAK), "device")
    # the strong view: the same knob rows, then the zoom on both or on neither
    assert [type(t) for t in strong_transform(cfg).transforms] == rows(enabled_knobs(cfg, STRONG), "cpu") + [A.Affine] * zoom
    assert [type(t) for t in views.strong.transforms] == rows(enabled_knobs(cfg, STRONG), "device") + [K.RandomAffine] * zoom


def test_both_back_ends_draw_the_zoom_from_the_same_ranges():
    cfg = AugmentConfig(p=1.0, scale=0.2, translate=0.15)
    image = np.full((SIZE, SIZE, 3), 128, np.uint8)
    strong = strong_transform(cfg, seed=0)
    cpu = np.stack([affine_matrix(strong(image=image)["applied_transforms"]) for _ in range(200)])
    views = DeviceViews(cfg)
    views.start_epoch(0)
    _, _, device = views(torch.full((200, 3, SIZE, SIZE), 0.5))
    for matrices in (cpu, device.double().numpy()):
        scales, shifts = matrices[:, [0, 1], [0, 1]], matrices[:, :2, 2]
        # x and y scale each drawn from [1 - scale, 1 + scale], over most of it
        assert scales.min() >= 0.8 - 1e-6 and scales.max() <= 1.2 + 1e-6 and np.ptp(scales) > 0.3
        # the shift reaches about translate * side (the zoom about the centre adds up to 0.2 * 16 px)
        assert np.abs(shifts).max() <= 0.15 * SIZE + 0.2 * SIZE / 2 + 1 and np.abs(shifts).max() > 0.15 * SIZE / 2


def _box_image(box: tuple[int, int, int, int]) -> torch.Tensor:
    image = torch.zeros(3, SIZE, SIZE)
    x0, y0, x1, y1 = box
    image[:, y0:y1, x0:x1] = 1.0
    return image


def _lit_box(image: torch.Tensor, threshold: float) -> list[float]:
    """The pixel-edge xyxy box around the pixels above `threshold`."""
    lit = (image[0] > threshold).nonzero()
    return [lit[:, 1].min().item(), lit[:, 0].min().item(), lit[:, 1].max().item() + 1, lit[:, 0].max().item() + 1]


def test_device_views_keep_the_teacher_box_mapping():
    box = (8, 10, 20, 18)
    views = DeviceViews(AugmentConfig(p=1.0, hflip=0.5, brightness=0.3, scale=0.2, translate=0.15))
    views.start_epoch(5)
    weak, strong, matrices = views(_box_image(box).expand(16, -1, -1, -1).contiguous())
    flipped, mapped_count = 0, 0
    for w, s, matrix in zip(weak, strong, matrices):
        teacher_box = _lit_box(w, 0.5)  # where the teacher sees the object: the weak view
        flipped += teacher_box[0] != box[0]
        mapped, keep = map_boxes(torch.tensor([teacher_box], dtype=torch.float32), matrix, (SIZE, SIZE))
        if not keep.all():
            continue
        mapped_count += 1
        # the teacher's box mapped through the view's matrix lands on the object in the student's
        # (strong) view, within a pixel of interpolation (brightness scales it by at least 0.7)
        assert torch.allclose(mapped[0], torch.tensor(_lit_box(s, 0.35), dtype=torch.float32), atol=1.5)
    # the weak view flips some images (hflip 0.5) and the mapping was checked on most of them
    assert 0 < flipped < 16 and mapped_count >= 12
