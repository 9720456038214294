"""Boxes through an augmentation's geometry: xyxy pixel-edge boxes moved by a 3x3 affine matrix, as
the box enclosing their moved corners, clipped to the image. One implementation for the detection
batches augmented on the device (`move_boxes`, kornia's pixel-centre matrices) and for Soft Teacher's
pseudo boxes (`transform_boxes`, the weak -> strong views' pixel-edge matrices)."""

from __future__ import annotations

import torch
from torch import Tensor


def edge_matrix(matrix: Tensor) -> Tensor:
    """A pixel-centre matrix (kornia's) as the same map of pixel-edge coordinates (boxes,
    albumentations' `bbox_matrix`): shift by half a pixel, map, shift back."""
    shift = torch.eye(3, device=matrix.device, dtype=matrix.dtype)
    shift[:2, 2] = 0.5
    unshift = shift.clone()
    unshift[:2, 2] = -0.5
    return shift @ matrix @ unshift


def _enclosing(boxes: Tensor, matrix: Tensor) -> Tensor:
    """The box around each box's four corners moved by the affine pixel-edge `matrix` (not clipped)."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    corners = torch.stack([torch.stack([x, y], -1) for x, y in ((x0, y0), (x1, y0), (x0, y1), (x1, y1))], 1)
    matrix = matrix.to(boxes)
    moved = corners @ matrix[:2, :2].T + matrix[:2, 2]
    return torch.cat([moved.amin(1), moved.amax(1)], -1)


def _clipped(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """A copy of `boxes` clipped to an image of (height, width)."""
    clipped = boxes.clone()
    clipped[:, 0::2] = clipped[:, 0::2].clamp(0, size[1])
    clipped[:, 1::2] = clipped[:, 1::2].clamp(0, size[0])
    return clipped


def transform_boxes(boxes: Tensor, matrix: Tensor, size: tuple[int, int]) -> Tensor:
    """Boxes through the affine pixel-edge `matrix` (the hull of their moved corners), clipped to the
    image (height, width); one box out per box in."""
    return _clipped(_enclosing(boxes, matrix), size)


def move_boxes(
    boxes: Tensor, matrix: Tensor, size: tuple[int, int], min_visibility: float
) -> tuple[Tensor, Tensor]:
    """(boxes after the geometry, mask of those kept): xyxy pixel-edge boxes through a pixel-centre
    `matrix` (kornia's), enclosed, clipped to (height, width); a box keeping less than `min_visibility` of its
    area inside the image, or thinner than a pixel, is dropped (albumentations' rule)."""
    mapped = _enclosing(boxes, edge_matrix(matrix.to(boxes)))
    area = (mapped[:, 2:] - mapped[:, :2]).prod(-1)
    clipped = _clipped(mapped, size)
    sides = clipped[:, 2:] - clipped[:, :2]
    keep = (sides >= 1).all(-1) & (sides.prod(-1) >= min_visibility * area)
    return clipped[keep], keep
