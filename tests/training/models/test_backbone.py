"""Model builders: timm by name, clear errors for unknown names and unreachable pretrained weights."""

from __future__ import annotations

import time

import pytest
import torch

from training.config import ModelConfig
from training.models.attention import CBAM
from training.models.backbone import (
    backbone_of,
    check_freeze_stages,
    check_model_name,
    create_model,
    set_frozen_stages,
    stage_count,
)
from training.schema.errors import ConfigError


pytestmark = pytest.mark.usefixtures("one_cpu_thread")


def test_create_model_outputs_one_logit_per_class():
    model = create_model(ModelConfig(name="resnet10t"), num_classes=5)
    # the classifier head has num_classes outputs
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 5)


def test_check_model_name_suggests_a_close_timm_model():
    with pytest.raises(ConfigError) as info:
        check_model_name("resnet1O")
    # the error names the key and suggests a real model
    assert info.value.key == "model.name" and "did you mean 'resnet1" in info.value.message


def test_create_model_pretrained_offline_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    began = time.monotonic()
    with pytest.raises(ConfigError) as info:
        create_model(ModelConfig(name="resnet10t", pretrained=True), num_classes=2)
    # asking for weights offline is a clear error on model.pretrained, without download retries
    assert info.value.key == "model.pretrained" and "pretrained: false" in info.value.message
    assert time.monotonic() - began < 10


def _bn_stats(model: torch.nn.Module, prefix: str) -> list[torch.Tensor]:
    return [b.clone() for n, b in model.named_buffers() if n.startswith(prefix) and "running" in n]


@pytest.mark.parametrize("attention", ["none", "cbam"])
def test_freeze_stages_freezes_stem_and_first_stages(attention):
    model = create_model(ModelConfig(name="resnet10t", freeze_stages=2, attention=attention), num_classes=3)
    inner = backbone_of(model)
    before_frozen, before_free = _bn_stats(inner, "layer2"), _bn_stats(inner, "layer3")
    model.train()
    model(torch.randn(4, 3, 32, 32)).sum().backward()
    grads = {n: p.grad for n, p in inner.named_parameters()}
    # stem and stages 1-2 get no gradient; stage 3 and the head do
    assert all(grads[n] is None for n in grads if n.startswith(("conv1", "bn1", "layer1", "layer2")))
    assert all(grads[n] is not None for n in grads if n.startswith(("layer3", "fc")))
    # the frozen stages' BatchNorm stays in eval mode: a training forward leaves its statistics alone
    assert all(torch.equal(a, b) for a, b in zip(before_frozen, _bn_stats(inner, "layer2")))
    assert not all(torch.equal(a, b) for a, b in zip(before_free, _bn_stats(inner, "layer3")))


def test_set_frozen_stages_zero_unfreezes_everything():
    model = create_model(ModelConfig(name="resnet10t", freeze_stages=3), num_classes=2)
    set_frozen_stages(model, 0)
    before = _bn_stats(model, "layer1")
    model.train()
    model(torch.randn(2, 3, 32, 32))
    # every parameter trains again and the BatchNorm statistics move again
    assert all(p.requires_grad for p in model.parameters())
    assert not all(torch.equal(a, b) for a, b in zip(before, _bn_stats(model, "layer1")))


@pytest.mark.parametrize("name,stages", [("resnet18", 4), ("mobilenetv2_100", 7), ("convnext_tiny", 4)])
def test_stage_count_from_timm_group_matcher(name, stages):
    with torch.device("meta"):
        model = create_model(ModelConfig(name=name), num_classes=2)
    # stages between the stem and the head, as timm groups them
    assert stage_count(model) == stages


def test_check_freeze_stages_refuses_more_stages_than_the_model_has():
    with pytest.raises(ConfigError) as info:
        check_freeze_stages("resnet10t", 5)
    # the error names the key and the model's stage count
    assert info.value.key == "model.freeze_stages" and "has 4 stages" in info.value.message


def test_drop_path_rate_reaches_timm():
    model = create_model(ModelConfig(name="resnet10t", drop_path_rate=0.2), num_classes=2)
    rates = [m.drop_prob for m in model.modules() if type(m).__name__ == "DropPath"]
    # timm builds stochastic-depth layers, the deepest at the given rate
    assert rates and max(rates) == pytest.approx(0.2)


@pytest.mark.parametrize("channels_last", [False, True])
def test_cbam_keeps_shapes_and_trains(channels_last):
    block = CBAM(64)
    x = torch.randn(2, 64, 5, 7)
    # CBAM rescales a feature map: same shape out
    assert block(x).shape == x.shape
    model = create_model(ModelConfig(name="resnet10t", attention="cbam"), num_classes=3)
    images = torch.randn(4, 3, 32, 32)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.clone() for p in model.block.parameters()]
    loss = torch.nn.functional.cross_entropy(model(images), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    optimizer.step()
    # the wrapped model outputs one logit per class, and a training step updates the CBAM weights
    assert model(images).shape == (4, 3)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.block.parameters()))
