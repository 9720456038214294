"""Multi-phase fine-tuning: phase boundaries, LR factor and freezing switch there, resume mid-phase."""

from __future__ import annotations

import pytest
import torch

from training.config import TrainConfig
from training.loop.fit import fit
from training.loop.phases import check_phases, phase_at, phase_epochs
from training.schema.errors import ConfigError


def config(epochs: int, phases: list[dict], **extra) -> TrainConfig:
    """Tiny CPU run: 48 synthetic 32x32 images, resnet10t, constant LR (so a factor shows as is)."""
    raw = {
        "data": {"image_size": 32, "batch_size": 16, "synthetic": {"count": 48}},
        "model": {"name": "resnet10t"},
        "optim": {"schedule": "constant", "lr": 1e-3},
        "train": {"epochs": epochs, "device": "cpu"},
        "phases": phases,
    }
    for section, values in extra.items():
        raw[section] = {**raw.get(section, {}), **values}
    return TrainConfig.model_validate(raw)


pytestmark = pytest.mark.usefixtures("one_cpu_thread")


def test_phase_at_follows_epoch_boundaries_and_merges_overrides():
    phases = [{"epochs": 2, "freeze_stages": 2}, {"lr_factor": 0.1, "augment": {"hflip": 0.5}}]
    cfg = config(5, phases, augment={"rotate": 10})
    # the last phase without epochs takes the rest of train.epochs
    assert phase_epochs(cfg) == [2, 3]
    # epochs 1-2 are phase 0, 3-5 phase 1
    assert [phase_at(cfg, e).index for e in range(1, 6)] == [0, 0, 1, 1, 1]
    late = phase_at(cfg, 3)
    # a phase's augment overrides apply on top of the run's augment; unset freeze keeps model.freeze_stages
    assert late.augment.hflip == 0.5 and late.augment.rotate == 10 and late.freeze_stages == 0
    assert phase_at(cfg, 1).freeze_stages == 2 and phase_at(cfg, 1).augment.hflip == 0


def test_no_phases_is_one_phase_of_train_epochs():
    cfg = config(4, [], model={"freeze_stages": 1})
    # without phases every epoch is phase 0 with the run's own settings
    assert phase_epochs(cfg) == [4]
    assert phase_at(cfg, 3).lr_factor == 1.0 and phase_at(cfg, 3).freeze_stages == 1


@pytest.mark.parametrize(
    "phases,key",
    [
        ([{"epochs": 2}, {"epochs": 2}], "phases"),  # 4 != 3
        ([{"epochs": 3}, {}], "phases"),  # nothing left for the last phase
        ([{}, {"epochs": 1}], "phases.0.epochs"),  # only the last phase may leave epochs out
    ],
)
def test_check_phases_refuses_epochs_that_do_not_split_train_epochs(phases, key):
    with pytest.raises(ConfigError) as info:
        check_phases(config(3, phases))
    # the error names the offending key
    assert info.value.key == key


def test_phases_switch_lr_factor_and_freezing_at_the_boundary():
    cfg = config(2, [{"epochs": 1}, {"lr_factor": 0.1, "freeze_stages": 2}])
    states = []
    def record(report):
        states.append((report.metrics["train/lr"], {k: v.clone() for k, v in report.state()["model"].items()}))

    fit(cfg, on_epoch=record)
    (lr1, first), (lr2, second) = states
    # the constant LR is scaled by the phase's factor from the boundary on
    assert lr1 == pytest.approx(1e-3) and lr2 == pytest.approx(1e-4)
    # phase 2 freezes the stem and stages 1-2: their weights and BatchNorm statistics stop moving
    for key in ("conv1.0.weight", "layer2.0.conv1.weight", "layer2.0.bn1.running_mean"):
        assert torch.equal(first[key], second[key]), key
    # while stage 3 keeps training
    assert not torch.equal(first["layer3.0.conv1.weight"], second["layer3.0.conv1.weight"])


def test_resume_mid_phase_equals_uninterrupted_run(tmp_path):
    phases = [{"epochs": 2, "freeze_stages": 1}, {"lr_factor": 0.1, "augment": {"mixup_alpha": 0.0}}]
    extra = {
        "augment": {"mixup_alpha": 0.4, "hflip": 0.5},
        "data": {
            "image_size": 32,
            "batch_size": 16,
            "synthetic": {"count": 48},
            "weighted_sampler": True,
            "class_weight_power": 0.5,
        },
    }
    full, again, saved = [], [], tmp_path / "state.pt"

    def record(into: list):
        def on_epoch(report):
            into.append({k: v for k, v in report.metrics.items() if not k.startswith("time/")})
            if report.epoch == 1 and into is full:
                torch.save(report.state(), saved)

        return on_epoch

    fit(config(3, phases, **extra), on_epoch=record(full))
    fit(config(3, phases, **extra), resume_state=torch.load(saved, weights_only=False), on_epoch=record(again))
    # resumed after epoch 1 (inside phase 0), epochs 2 and 3 (across the boundary) match exactly
    assert again == full[1:]
