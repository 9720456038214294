"""`training.schema.model_names`: the committed timm list answers `model.name` as timm does, without importing
it, and leaves the answer to timm when it cannot tell."""

from __future__ import annotations

import json

import pytest
import timm
from timm.models import get_deprecated_models

from training.models.backbone import check_model_name
from training.schema import model_names
from training.schema.errors import ConfigError
from training.schema.model_names import check_listed_model_name, installed_timm, listed_models


@pytest.fixture(autouse=True)
def fresh_list():
    """Each test reads the list anew (it is cached per process)."""
    listed_models.cache_clear()
    yield
    listed_models.cache_clear()


def test_committed_list_is_the_installed_timms():
    listed = json.loads(model_names.TIMM_MODELS_FILE.read_text())
    # written from the installed timm: after an upgrade, run `python -m training.schema.write_timm_models` and commit
    assert listed["timm"] == installed_timm() == timm.__version__
    assert listed["models"] == timm.list_models() and listed["deprecated"] == sorted(get_deprecated_models())


@pytest.mark.parametrize("name", ["resnet10t", "resnet18.a1_in1k", "convnext_atto", sorted(get_deprecated_models())[0]])
def test_listed_name_passes_as_in_timm(name):
    # a model timm knows (with a pretrained tag, or by a deprecated name) passes both checks
    check_listed_model_name(name)
    check_model_name(name)


@pytest.mark.parametrize("name", ["resnet10", "mobilenetv2_10", "efficientnet_b9", "zzzz"])
def test_unknown_name_is_refused_with_timms_own_message(name):
    with pytest.raises(ConfigError) as listed:
        check_listed_model_name(name)
    with pytest.raises(ConfigError) as loaded:
        check_model_name(name)
    # the same key, message and suggestion as the check that loads timm
    assert str(listed.value) == str(loaded.value)


def test_another_timm_version_leaves_the_answer_to_timm(monkeypatch):
    monkeypatch.setattr(model_names, "installed_timm", lambda: "99.0")
    # a newer timm may know names the list does not: nothing is refused here
    check_listed_model_name("resnet10")


def test_missing_list_leaves_the_answer_to_timm(monkeypatch, tmp_path):
    monkeypatch.setattr(model_names, "TIMM_MODELS_FILE", tmp_path / "none.json")
    # an installation without the file still works: the task's own check decides
    check_listed_model_name("resnet10")
