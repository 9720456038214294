"""The shipped tuning spaces load and check, and a capacity space (backbone x resolution) trains."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from search.space import apply_values
from search.spec import load_plan
from training.loop.fit import fit

SPACES = Path(__file__).resolve().parents[2] / "spaces"


@pytest.mark.parametrize("name", sorted(path.stem for path in SPACES.glob("*.yaml")))
def test_shipped_space_passes_the_checks(name):
    plan = load_plan(SPACES / f"{name}.yaml")
    # every searched key, range end and baseline was checked against the training config, and the task
    # reads every searched key
    assert plan.space and plan.name == name


def test_robust_finetune_space_targets_phases():
    plan = load_plan(SPACES / "robust_finetune.yaml")
    # searched values reach into a phase by index, and the phases split the scheduler's epoch budget
    assert {"phases.0.epochs", "phases.1.lr_factor"} <= set(plan.space)
    assert len(plan.base.phases) == 2 and plan.base.train.epochs == plan.spec.scheduler.max_epochs


@pytest.mark.parametrize("model", ["resnet18", "mobilenetv2_100"])
@pytest.mark.parametrize("size", [32, 48])
def test_backbone_and_resolution_choices_train(write_space, minimal_space, model, size):
    minimal_space["space"] = {
        "model.name": {"choice": ["resnet18", "mobilenetv2_100"]},
        "data.image_size": {"choice": [32, 48]},
    }
    minimal_space["data"]["synthetic"]["count"] = 24
    plan = load_plan(write_space(minimal_space))
    cfg = apply_values(plan.base, {"model.name": model, "data.image_size": size})
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": 1, "device": "cpu"})})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        metrics = fit(cfg)
    finally:
        torch.set_num_threads(threads)
    # each backbone at each resolution a space can choose trains and reports finite metrics
    assert math.isfinite(metrics["train/loss"]) and 0.0 <= metrics["val/macro_f1"] <= 1.0


def test_the_space_file_page_shows_the_quickstart_file():
    readme = (SPACES.parent / "docs" / "space-file.md").read_text()
    intro = "This is `spaces/quickstart.yaml`, the space the quick start runs:\n\n```yaml\n"
    # the docs show the quick start's space file verbatim, so the example cannot drift from what runs
    assert intro in readme
    shown = readme.split(intro, 1)[1].split("```\n", 1)[0]
    assert shown == (SPACES / "quickstart.yaml").read_text()
