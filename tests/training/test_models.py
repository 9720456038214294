"""Model builders: timm by name, clear errors for unknown names and unreachable pretrained weights."""

from __future__ import annotations

import time

import pytest
import torch

from training.config import ModelConfig
from training.errors import ConfigError
from training.models import check_model_name, create_model


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
