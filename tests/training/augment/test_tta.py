"""Test-time augmentation: mean softmax over flipped views."""

from __future__ import annotations

import pytest
import torch

from training.augment.tta import TTA_VIEWS, tta_logits


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(3)).eval()


@pytest.mark.parametrize("views", [["hflip"], ["vflip"], ["hflip", "vflip"]])
def test_tta_on_symmetric_images_equals_no_tta(views):
    model = _model()
    half = torch.randn(2, 3, 8, 4)
    quarter = torch.cat([half, half.flip(-1)], dim=-1)
    images = torch.cat([quarter, quarter.flip(-2)], dim=-2)  # symmetric under both flips
    with torch.no_grad():
        plain, tta = tta_logits(model, images, []), tta_logits(model, images, views)
    # every view of a symmetric image is the image: TTA gives the plain softmax
    assert torch.allclose(tta.softmax(dim=1), plain.softmax(dim=1), atol=1e-6)


def test_tta_averages_softmax_over_views():
    model = _model()
    images = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        out = tta_logits(model, images, ["hflip"]).softmax(dim=1)
        expected = (model(images).softmax(dim=1) + model(images.flip(-1)).softmax(dim=1)) / 2
    # the result's softmax is the mean of the original's and the flipped view's
    assert torch.allclose(out, expected, atol=1e-6)


def test_tta_registry_matches_config_choices():
    from typing import get_args

    from training.config import EvalConfig

    # every name eval.tta accepts has a view and every view a name
    assert set(get_args(get_args(EvalConfig.model_fields["tta"].annotation)[0])) == set(TTA_VIEWS)
