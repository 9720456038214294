"""Boxes through an augmentation's geometry: the box around the moved corners, clipped, and the one
rule that turns kornia's pixel-centre matrices into pixel-edge ones for boxes."""

from __future__ import annotations

import math

import pytest
import torch

from training.augment.boxes import edge_matrix, move_boxes, transform_boxes

SIZE = (32, 40)  # height, width


def _affine(angle: float = 0.0, shift: tuple[float, float] = (0.0, 0.0), zoom: float = 1.0) -> torch.Tensor:
    c, s = math.cos(math.radians(angle)) * zoom, math.sin(math.radians(angle)) * zoom
    return torch.tensor([[c, -s, shift[0]], [s, c, shift[1]], [0.0, 0.0, 1.0]])


def test_transform_boxes_encloses_the_moved_corners_then_clips():
    boxes = torch.tensor([[2.0, 4.0, 10.0, 8.0], [30.0, 20.0, 38.0, 30.0]])
    # a shift moves a box whole; the second box, pushed past the right and bottom edges, is clipped there
    moved = transform_boxes(boxes, _affine(shift=(5.0, 3.0)), SIZE)
    assert moved.tolist() == [[7.0, 7.0, 15.0, 11.0], [35.0, 23.0, 40.0, 32.0]]
    # a quarter turn about the origin, shifted back into view: the box around the turned corners
    turned = transform_boxes(boxes[:1], _affine(angle=90.0, shift=(20.0, 0.0)), SIZE)
    assert turned[0].tolist() == pytest.approx([12.0, 2.0, 16.0, 10.0], abs=1e-5)


def test_edge_matrix_turns_kornia_s_flip_into_the_flip_of_box_edges():
    width = 40
    centre_flip = torch.tensor([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    # kornia maps pixel centre x to W - 1 - x; a box edge at x goes to W - x
    assert edge_matrix(centre_flip)[0].tolist() == [-1.0, 0.0, float(width)]
    # no geometry stays no geometry
    assert torch.equal(edge_matrix(torch.eye(3)), torch.eye(3))


@pytest.mark.parametrize("seed", range(4))
def test_move_boxes_is_transform_boxes_through_the_edge_matrix_less_the_hidden_boxes(seed):
    g = torch.Generator().manual_seed(seed)
    corner = torch.rand(20, 2, generator=g) * 40 - 4
    boxes = torch.cat([corner, corner + 1 + torch.rand(20, 2, generator=g) * 15], 1)
    matrix = _affine(angle=float(torch.randn(1, generator=g)) * 20, shift=(3.0, -2.0), zoom=1.1)
    moved, keep = move_boxes(boxes, matrix, SIZE, min_visibility=0.3)
    # one implementation: the kept boxes are where the pixel-edge twin of the matrix puts them
    assert torch.equal(moved, transform_boxes(boxes, edge_matrix(matrix), SIZE)[keep])
    # boxes pushed out of view (under 30 % of their area inside) are dropped, the others kept
    assert 0 < keep.sum() < len(boxes)
