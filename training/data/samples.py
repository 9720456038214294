"""The in-memory form every data kind produces: images, labels and (when known) boxes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ImageSet:
    """Images as uint8 HxWx3 RGB arrays or file paths, one integer label each, optional boxes.

    `boxes[i]` is a float32 (k, 4) array of xyxy pixel boxes and `box_labels[i]` their int64 class
    indices; a good image has k = 0. Kinds that know no boxes leave both lists empty.
    """

    images: list[np.ndarray | str]
    labels: np.ndarray
    boxes: list[np.ndarray] = field(default_factory=list)
    box_labels: list[np.ndarray] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, indices: np.ndarray) -> ImageSet:
        """The images at `indices`, in that order."""
        pick = [int(i) for i in indices]
        return ImageSet(
            images=[self.images[i] for i in pick],
            labels=self.labels[pick],
            boxes=[self.boxes[i] for i in pick] if self.boxes else [],
            box_labels=[self.box_labels[i] for i in pick] if self.box_labels else [],
        )


@dataclass
class Splits:
    """A train/val split and the class names its labels index."""

    train: ImageSet
    val: ImageSet
    class_names: list[str]
