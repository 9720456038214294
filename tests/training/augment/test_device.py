"""Augmentation on the device: each knob's kornia transform draws the same effect as its
albumentations one, boxes follow the geometry, and knobs without a device transform are placed
on the CPU (auto) or refused (gpu)."""

from __future__ import annotations

import colorsys
import math
import subprocess
import sys
from typing import Callable

import albumentations as A
import numpy as np
import pytest
import torch

from training.augment.boxes import move_boxes
from training.augment.device import DeviceAugment, check_placement, describe, on_device
from training.augment.knobs import BOX_AWARE, KNOBS, augment_transforms
from training.config import AugmentConfig, TrainConfig
from training.detection.augment import augment_batch
from training.schema.errors import ConfigError

SAMPLES = 300
SIZE = 32
# albumentations truncates a shift to whole pixels (toward 0): on a larger image that bias is small
GEOMETRY_SIZE = 128
DEVICE_KNOBS = sorted(knob for knob, row in KNOBS.items() if row.device is not None)


def _constant(rgb: tuple[int, int, int]) -> np.ndarray:
    return np.tile(np.array(rgb, np.uint8), (SIZE, SIZE, 1))


def _halves() -> np.ndarray:
    image = np.full((SIZE, SIZE, 3), 50, np.uint8)
    image[:, SIZE // 2 :] = 150
    return image


def _ramp() -> np.ndarray:
    return np.tile(np.arange(256, dtype=np.uint8)[None, :, None], (4, 1, 3))


def _spot() -> np.ndarray:
    image = np.zeros((31, 31, 3), np.uint8)
    image[15, 15] = 255
    return image


def _textured() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


def _hue(image: np.ndarray) -> float:
    return colorsys.rgb_to_hsv(*(image.reshape(-1, 3).mean(0) / 255))[0]


def _sigma(image: np.ndarray) -> float:
    """The spread (pixels) of a blurred centre spot along x."""
    weights = image[..., 0].astype(np.float64)
    x = np.arange(image.shape[1]) - image.shape[1] // 2
    return math.sqrt((weights * x[None, :] ** 2).sum() / weights.sum())


def _flipped(axis: int) -> Callable[[np.ndarray, np.ndarray], float]:
    return lambda out, image: float(np.abs(out - np.flip(image, axis)).mean() < np.abs(out - image).mean())


# knob -> (magnitude, input image, effect of one output on the input: a number per sample)
PIXEL_EFFECTS: dict[str, tuple[float, Callable[[], np.ndarray], Callable[[np.ndarray, np.ndarray], float]]] = {
    "brightness": (0.4, lambda: _constant((100, 100, 100)), lambda out, image: out.mean() / 100),
    "contrast": (0.4, _halves, lambda out, image: (out[:, SIZE // 2 :].mean() - out[:, : SIZE // 2].mean()) / 100),
    "saturation": (0.4, lambda: _constant((200, 100, 50)), lambda out, image: (out[..., 0] - out[..., 2]).mean() / 150),
    "hue": (0.2, lambda: _constant((200, 100, 50)), lambda out, image: (_hue(out) - _hue(image) + 0.5) % 1 - 0.5),
    "posterize": (4, _ramp, lambda out, image: math.log2(len(np.unique(out[..., 0])))),
    "blur": (2.0, _spot, lambda out, image: _sigma(out)),
    "hflip": (0.5, _textured, _flipped(1)),
    "vflip": (0.5, _textured, _flipped(0)),
}
# geometric knob -> (magnitude, effect read from its 3x3 pixel matrix: input -> output coordinates)
MATRIX_EFFECTS: dict[str, tuple[float, Callable[[np.ndarray], float]]] = {
    "rotate": (30.0, lambda m: math.degrees(math.atan2(abs(m[1, 0]), m[0, 0]))),
    "scale": (0.3, lambda m: m[0, 0]),
    "translate": (0.2, lambda m: abs(m[0, 2]) / GEOMETRY_SIZE),
    "shear": (20.0, lambda m: math.degrees(math.atan(abs(m[0, 1])))),
}


def _cpu_outputs(cfg: AugmentConfig, image: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(images, matrices) of SAMPLES albumentations draws on `image`."""
    transform = A.Compose(augment_transforms(cfg), seed=0, save_applied_params=True)
    images, matrices = [], []
    for _ in range(SAMPLES):
        out = transform(image=image.copy())
        images.append(out["image"].astype(np.float64))
        matrices.append(next((p["matrix"] for _, p in out["applied_transforms"] if "matrix" in p), np.eye(3)))
    return images, matrices


def _device_outputs(cfg: AugmentConfig, image: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(images, matrices) of one batched kornia pass over SAMPLES copies of `image`."""
    augment = DeviceAugment(cfg)
    augment.start_epoch(0)
    batch = torch.from_numpy(image).permute(2, 0, 1).float().div(255).expand(SAMPLES, -1, -1, -1).contiguous()
    out, matrices = augment(batch)
    images = (out * 255).round().clamp(0, 255).permute(0, 2, 3, 1).numpy().astype(np.float64)
    return list(images), list(matrices.numpy())


def test_every_device_knob_has_an_effect_test():
    # a knob given a device builder must have its effect compared here
    assert set(DEVICE_KNOBS) == set(PIXEL_EFFECTS) | set(MATRIX_EFFECTS)


def _assert_same_distribution(cpu: np.ndarray, device: np.ndarray, knob: str) -> None:
    spread = max(cpu.std(), 1e-3)
    # the same magnitude draws effects with the same mean and spread on both paths (sampling error
    # of SAMPLES draws is ~6% of the spread for the mean)
    assert abs(cpu.mean() - device.mean()) < 0.2 * spread + 0.02 * abs(cpu.mean()), (knob, cpu.mean(), device.mean())
    assert abs(cpu.std() - device.std()) < 0.2 * spread + 1e-3, (knob, cpu.std(), device.std())


@pytest.mark.parametrize("knob", sorted(PIXEL_EFFECTS))
def test_device_knob_draws_the_cpu_effect_distribution(knob):
    magnitude, make_image, effect = PIXEL_EFFECTS[knob]
    cfg = AugmentConfig(p=1.0, **{knob: magnitude})
    image = make_image()
    cpu = np.array([effect(out, image) for out in _cpu_outputs(cfg, image)[0]])
    device = np.array([effect(out, image) for out in _device_outputs(cfg, image)[0]])
    _assert_same_distribution(cpu, device, knob)


@pytest.mark.parametrize("knob", sorted(MATRIX_EFFECTS))
def test_device_geometric_knob_draws_the_cpu_matrix_distribution(knob):
    magnitude, effect = MATRIX_EFFECTS[knob]
    cfg = AugmentConfig(p=1.0, **{knob: magnitude})
    image = np.zeros((GEOMETRY_SIZE, GEOMETRY_SIZE, 3), np.uint8)
    cpu = np.array([effect(np.asarray(m)) for m in _cpu_outputs(cfg, image)[1]])
    device = np.array([effect(m) for m in _device_outputs(cfg, image)[1]])
    _assert_same_distribution(cpu, device, knob)


def test_device_p_is_the_firing_probability():
    cfg = AugmentConfig(p=0.3, brightness=0.5)
    image = _constant((100, 100, 100))
    fired = np.array([abs(out.mean() - 100) > 0.5 for out in _device_outputs(cfg, image)[0]])
    # a magnitude knob fires with probability augment.p on the device too
    assert abs(fired.mean() - 0.3) < 0.08


def _box_image(box: tuple[int, int, int, int]) -> torch.Tensor:
    image = torch.zeros(3, SIZE, SIZE)
    x0, y0, x1, y1 = box
    image[:, y0:y1, x0:x1] = 1.0
    return image


@pytest.mark.parametrize("knob,magnitude", [("hflip", 1.0), ("vflip", 1.0), ("scale", 0.3), ("translate", 0.2), ("rotate", 30.0)])
def test_device_boxes_stay_inside_and_follow_the_geometry(knob, magnitude):
    box = (8, 10, 20, 18)
    augment = DeviceAugment(AugmentConfig(p=1.0, **{knob: magnitude}))
    augment.start_epoch(3)
    images, matrices = augment(_box_image(box).expand(16, -1, -1, -1).contiguous())
    kept = 0
    for image, matrix in zip(images, matrices):
        moved, keep = move_boxes(torch.tensor([box], dtype=torch.float32), matrix, (SIZE, SIZE), 0.3)
        lit = (image[0] > 0.5).nonzero()
        if not keep.all():
            # a dropped box kept less than the visible share inside the image
            continue
        kept += 1
        x0, y0, x1, y1 = moved[0].tolist()
        # boxes stay inside the image
        assert 0 <= x0 < x1 <= SIZE and 0 <= y0 < y1 <= SIZE
        # and the object's pixels stay inside its moved box (within interpolation's pixel)
        assert lit[:, 1].min() >= x0 - 1 and lit[:, 1].max() + 1 <= x1 + 1
        assert lit[:, 0].min() >= y0 - 1 and lit[:, 0].max() + 1 <= y1 + 1
        if knob != "rotate":
            # an axis-aligned map keeps the box tight around the object
            assert lit[:, 1].min() <= x0 + 1.5 and lit[:, 1].max() + 1 >= x1 - 1.5
    # the object stays in view in most draws (a central box under moderate magnitudes)
    assert kept >= 12


def test_device_augment_same_seed_same_batch_other_epoch_differs():
    cfg = AugmentConfig(p=0.5, hflip=0.5, brightness=0.3, rotate=20)
    batch = torch.rand(8, 3, SIZE, SIZE)

    def run(epoch_seed: int) -> torch.Tensor:
        augment = DeviceAugment(cfg)
        augment.start_epoch(epoch_seed)
        torch.rand(5)  # other draws from the global generator do not change the augmentation
        return augment(batch)[0]

    # (epoch seed, batch count) decides the augmentation
    assert torch.equal(run(1), run(1))
    # another epoch draws other parameters
    assert not torch.equal(run(1), run(2))


def test_on_device_auto_keeps_cpu_only_knobs_on_the_cpu(caplog):
    cuda = torch.device("cuda")
    cfg = TrainConfig(augment={"elastic": 0.5, "brightness": 0.2})
    # auto with a knob that has no device transform stays on the CPU, even on a CUDA trial
    assert not on_device(cfg, None, cuda, batches_on_device=False)
    # and says which knob, once
    assert "augment.elastic" in caplog.text
    on_device(cfg, None, cuda, batches_on_device=False)
    assert caplog.text.count("augment.elastic") == 1
    # with device transforms for every knob, auto goes to the device on CUDA, not on a CPU-only trial
    cfg = TrainConfig(augment={"hflip": 0.5, "brightness": 0.2})
    assert on_device(cfg, None, cuda, batches_on_device=False)
    assert not on_device(cfg, None, torch.device("cpu"), batches_on_device=False)


def test_check_placement_refuses_gpu_with_a_cpu_only_knob():
    cfg = TrainConfig(augment={"elastic": 0.5, "device": "gpu"})
    # augment.device gpu needs a device transform for every enabled knob: the knob is named
    with pytest.raises(ConfigError) as error:
        check_placement(cfg)
    assert error.value.key == "augment.elastic"
    # data.cache device draws batches on the device, so its augmentation must run there too
    with pytest.raises(ConfigError) as error:
        check_placement(TrainConfig(data={"cache": "device"}, augment={"hflip": 0.5, "device": "cpu"}))
    assert error.value.key == "data.cache"
    # knobs that all have device transforms pass
    check_placement(TrainConfig(augment={"hflip": 0.5, "device": "gpu"}))


def test_check_cli_gpu_with_a_searched_cpu_only_knob_exits_2(minimal_space, write_space):
    minimal_space["base"]["augment"] = {"device": "gpu"}
    minimal_space["space"]["augment.elastic"] = {"uniform": [0.0, 0.5]}
    path = write_space(minimal_space, "gpu.yaml")
    result = subprocess.run([sys.executable, "-m", "search", "check", str(path)], capture_output=True, text=True)
    # a searched knob without a device transform under augment.device gpu is a user error: exit 2
    assert result.returncode == 2, result.stderr[-2000:]
    # on one line naming the file and the knob
    assert result.stderr.count("\n") == 1 and "gpu.yaml" in result.stderr and "augment.elastic" in result.stderr


def test_describe_says_where_augmentation_runs_and_which_knob_keeps_it_on_the_cpu():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    cfg = TrainConfig(augment={"brightness": 0.2})
    # a searched knob without a device transform keeps a CUDA trial's augmentation on the CPU, named
    assert "augment.elastic" in describe(cfg, ["elastic"], cuda, batches_on_device=False)
    # every knob with a device transform: batched on the device
    assert "batched" in describe(cfg, ["hflip"], cuda, batches_on_device=False)
    # a CPU-only trial keeps albumentations
    assert "on the CPU" in describe(cfg, ["hflip"], cpu, batches_on_device=False)


def test_detection_augment_batch_moves_each_images_boxes_and_labels_together():
    boxes = torch.tensor([[8.0, 10.0, 20.0, 18.0], [0.0, 0.0, 4.0, 4.0]])
    targets = [{"boxes": boxes.clone(), "labels": torch.tensor([1, 2])} for _ in range(8)]
    augment = DeviceAugment(AugmentConfig(p=1.0, hflip=0.5, translate=0.3, brightness=0.2), BOX_AWARE)
    augment.start_epoch(1)
    images, moved = augment_batch(augment, [_box_image((8, 10, 20, 18))] * 8, targets)
    # one image and one target per input, at the same size
    assert len(images) == len(moved) == 8 and all(i.shape == (3, SIZE, SIZE) for i in images)
    for image, target in zip(images, moved):
        # a label leaves with its box (the corner box is pushed out of view in some draws)
        assert len(target["boxes"]) == len(target["labels"]) and set(target["labels"].tolist()) <= {1, 2}
        # kept boxes stay inside the image
        assert (target["boxes"] >= 0).all() and (target["boxes"] <= SIZE).all()
        if 1 in target["labels"].tolist():
            # the object's box follows the object: it lands on the lit pixels (a reflected border may
            # mirror a copy of the object elsewhere, which no box covers, as on the CPU path)
            x0, y0, x1, y1 = target["boxes"][target["labels"] == 1][0].round().int().tolist()
            assert image[0, y0:y1, x0:x1].mean() > 0.6 and abs(x1 - x0 - 12) <= 1 and abs(y1 - y0 - 8) <= 1
    # the corner box is dropped from some images and kept in others: the filter acts per image
    assert 0 < sum(2 in t["labels"].tolist() for t in moved) < 8
