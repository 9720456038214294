"""Augmentation: magnitudes 0 are the identity, every knob is built and acts, seeds reproduce."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.augment.knobs import (
    BOX_AWARE,
    KNOBS,
    MEAN,
    PHOTOMETRIC,
    STD,
    augment_transforms,
    normalize_batch,
    train_transform,
)
from training.config import AugmentConfig

# a magnitude per knob that visibly changes a textured image when the transform fires
MAGNITUDES = {
    "hflip": 1.0,
    "vflip": 1.0,
    "rotate": 45.0,
    "elastic": 1.0,
    "grid_distortion": 0.5,
    "brightness": 0.5,
    "contrast": 0.5,
    "saturation": 0.5,
    "hue": 0.2,
    "sharpness": 1.0,
    "clahe": 4.0,
    "coarse_dropout": 0.3,
    "rrc_p": 1.0,
    "shrink_p": 1.0,
    "scale": 0.3,
    "translate": 0.2,
    "shear": 20.0,
    "perspective": 0.2,
    "blur": 2.0,
    "erasing": 0.3,
    "autocontrast": 1.0,
    "equalize": 1.0,
    "posterize": 3,
}
FLIPS = {"hflip", "vflip"}
# knobs whose magnitude is their own firing probability (cfg.p does not apply)
PROBABILITY_KNOBS = FLIPS | {"rrc_p", "shrink_p", "autocontrast", "equalize"}
# AugmentConfig fields that shape a transform, mix batches (training.augment.mix) or place the pipeline
SETTINGS = {
    "p", "rrc_scale_min", "rrc_ratio", "shrink_scale_min", "shrink_pad", "mixup_alpha", "cutmix_alpha", "mix_prob",
    "device",
}  # fmt: skip


def _image(seed: int, size: int = 32) -> np.ndarray:
    """A textured random uint8 RGB image."""
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_augment_knobs_match_config_fields():
    knobs = set(AugmentConfig.model_fields) - SETTINGS
    # every magnitude in the config has a row in the table and every row a config knob
    assert set(KNOBS) == knobs
    # and this test's magnitude table covers them all
    assert set(MAGNITUDES) == knobs


def test_knob_table_kinds_derive_the_lists():
    # the photometric knobs (the strong view's pixel-only part) are box-aware: they move no pixel
    assert set(PHOTOMETRIC) <= set(BOX_AWARE)
    # a geometric knob is box-aware only where boxes follow it exactly (flips and affine maps)
    assert {k for k in BOX_AWARE if KNOBS[k].kind == "geometric"} == {"hflip", "vflip", "rotate", "scale", "translate"}
    # occlusions can cut a defect away: never box-aware
    assert not {k for k, row in KNOBS.items() if row.kind == "occlusion"} & set(BOX_AWARE)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_train_transform_all_zero_magnitudes_is_identity(seed):
    cfg = AugmentConfig(p=1.0)
    # all magnitudes 0: no transform is built
    assert augment_transforms(cfg) == []
    image = _image(seed)
    out = train_transform(cfg, seed=seed)(image=image.copy())["image"]
    # and the training transform returns the image untouched
    assert np.array_equal(out, image)


@pytest.mark.parametrize("knob", sorted(MAGNITUDES))
def test_train_transform_nonzero_magnitude_changes_image(knob):
    cfg = AugmentConfig(p=1.0, **{knob: MAGNITUDES[knob]})
    image = _image(7)
    out = train_transform(cfg, seed=0)(image=image.copy())["image"]
    # the transform keeps the uint8 HWC format
    assert out.dtype == np.uint8 and out.shape == image.shape
    # an enabled knob firing with p = 1 alters the image
    assert not np.array_equal(out, image)


@pytest.mark.parametrize("knob", sorted(set(MAGNITUDES) - PROBABILITY_KNOBS))
def test_train_transform_p_zero_disables_magnitude_transforms(knob):
    cfg = AugmentConfig(p=0.0, **{knob: MAGNITUDES[knob]})
    image = _image(3)
    out = train_transform(cfg, seed=0)(image=image.copy())["image"]
    # p is the firing probability of every magnitude transform: p = 0 never fires
    assert np.array_equal(out, image)


@pytest.mark.parametrize("knob", sorted(FLIPS))
def test_train_transform_flip_magnitude_is_its_probability(knob):
    image = _image(5)
    out = train_transform(AugmentConfig(p=0.0, **{knob: 1.0}), seed=0)(image=image.copy())["image"]
    axis = 1 if knob == "hflip" else 0
    # a flip's magnitude is its own probability (p does not apply): magnitude 1 always flips
    assert np.array_equal(out, np.flip(image, axis=axis))


def test_train_transform_same_seed_same_output():
    cfg = AugmentConfig(p=0.5, rotate=30, hflip=0.5, brightness=0.3, coarse_dropout=0.2, hue=0.1)
    images = [_image(s) for s in range(6)]

    def run(seed: int) -> list[np.ndarray]:
        transform = train_transform(cfg, seed=seed)
        return [transform(image=img.copy())["image"] for img in images]

    first, again, other = run(11), run(11), run(12)
    # the same seed reproduces every augmented image of a sequence exactly
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    # a different seed draws differently somewhere in the sequence
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_normalize_batch_imagenet_statistics_by_hand():
    batch = torch.zeros((2, 3, 4, 4), dtype=torch.uint8)
    batch[1, :, 2, 3] = torch.tensor([255, 0, 128], dtype=torch.uint8)
    out = normalize_batch(batch)
    # uint8 NCHW in, float32 of the same shape out
    assert out.dtype == torch.float32 and out.shape == batch.shape
    # each channel becomes (value / 255 - mean) / std with ImageNet's mean and std
    assert out[1, :, 2, 3].tolist() == pytest.approx(
        [(1.0 - 0.485) / 0.229, (0.0 - 0.456) / 0.224, (128 / 255 - 0.406) / 0.225], rel=1e-5
    )
    # a black pixel maps to -mean / std
    assert out[0, :, 0, 0].tolist() == pytest.approx([-m / s for m, s in zip(MEAN, STD)], rel=1e-5)


@pytest.mark.parametrize("pad", ["constant", "reflect"])
def test_shrink_and_pad_keeps_a_scaled_copy_inside_the_image(pad):
    image = np.full((32, 32, 3), 200, np.uint8)
    cfg = AugmentConfig(shrink_p=1.0, shrink_scale_min=0.5, shrink_pad=pad)
    out = train_transform(cfg, seed=1)(image=image.copy())["image"]
    # the size is kept
    assert out.shape == image.shape
    if pad == "constant":
        # constant padding adds black borders around the scaled-down (still uniform) image
        assert (out == 0).any() and (out == 200).any()
    else:
        # reflect padding mirrors the image itself: a uniform image stays uniform
        assert np.array_equal(out, image)


def test_resized_crop_scale_one_ratio_one_is_identity():
    image = _image(4)
    cfg = AugmentConfig(rrc_p=1.0, rrc_scale_min=1.0, rrc_ratio=1.0)
    out = train_transform(cfg, seed=0)(image=image.copy())["image"]
    # a crop of the whole image at its own aspect ratio, resized to its own size, is the image
    assert np.array_equal(out, image)
