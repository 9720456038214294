"""Two image-only albumentations transforms that keep the image size: a random resized crop and a
scale-down-and-pad (the robust fine-tuning project's "object smaller than in training" view).

They draw from the transform's own seeded generators (`py_random`), so `A.Compose(seed=...)`
reproduces them like the built-in transforms.
"""

from __future__ import annotations

import math
from typing import Any

import albumentations as A
import cv2
import numpy as np

PAD_MODES = {"constant": cv2.BORDER_CONSTANT, "reflect": cv2.BORDER_REFLECT_101}


class ResizedCrop(A.ImageOnlyTransform):
    """Crop a random area fraction in [scale_min, 1] with aspect ratio in [ratio, 1/ratio] (log-uniform),
    resized back to the input size (torchvision's RandomResizedCrop without a fixed output size)."""

    def __init__(self, scale_min: float, ratio: float, p: float):
        super().__init__(p=p)
        self.scale_min = scale_min
        self.ratio = ratio

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        area = self.py_random.uniform(self.scale_min, 1.0) * height * width
        aspect = math.exp(self.py_random.uniform(math.log(self.ratio), -math.log(self.ratio)))
        w = min(width, max(1, round(math.sqrt(area * aspect))))
        h = min(height, max(1, round(math.sqrt(area / aspect))))
        return {"x": self.py_random.randint(0, width - w), "y": self.py_random.randint(0, height - h), "w": w, "h": h}

    def apply(self, img: np.ndarray, x: int, y: int, w: int, h: int, **params: Any) -> np.ndarray:
        crop = img[y : y + h, x : x + w]
        return cv2.resize(crop, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)


class ShrinkAndPad(A.ImageOnlyTransform):
    """Scale the image down by a factor in [scale_min, 1] and pad it back to size at a random position."""

    def __init__(self, scale_min: float, pad_mode: str, p: float):
        super().__init__(p=p)
        self.scale_min = scale_min
        self.pad_mode = pad_mode

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        scale = self.py_random.uniform(self.scale_min, 1.0)
        w, h = max(1, round(width * scale)), max(1, round(height * scale))
        return {"x": self.py_random.randint(0, width - w), "y": self.py_random.randint(0, height - h), "w": w, "h": h}

    def apply(self, img: np.ndarray, x: int, y: int, w: int, h: int, **params: Any) -> np.ndarray:
        small = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        bottom, right = img.shape[0] - h - y, img.shape[1] - w - x
        return cv2.copyMakeBorder(small, y, bottom, x, right, PAD_MODES[self.pad_mode], value=0)
