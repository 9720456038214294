"""training.task_keys: which settings a task (and its detector) never reads."""

from __future__ import annotations

from training.config import TrainConfig
from training.task_keys import unread_settings


def config(**sections) -> TrainConfig:
    return TrainConfig.model_validate(sections)


def test_a_setting_the_task_never_reads_is_named_with_what_it_reads_instead():
    cfg = config(task="detection", loss={"focal_gamma": 3.5, "rpn": {"focal_gamma": 2.5}}, optim={"lr": 0.01})
    (unread,) = unread_settings(cfg)  # loss.rpn and optim are read; loss.focal_gamma is not
    assert unread.key == "loss.focal_gamma"
    assert "task 'detection' does not read 'loss.focal_gamma'" in unread.message and "loss.rpn" in unread.message


def test_a_setting_only_another_detector_reads_is_named_with_that_detector():
    cfg = config(task="semi_supervised_detection", model={"detector": "retinanet"}, semi={"jitter": {"times": 5}})
    assert [(e.key, "retinanet" in e.message and "faster_rcnn" in e.message) for e in unread_settings(cfg, "retinanet")] == [
        ("semi.jitter.times", True)
    ]
    assert unread_settings(cfg) == []  # no detector given: every trial may use another one


def test_defaults_and_a_whole_dumped_config_raise_nothing():
    # an exported config writes every key; those at their defaults change nothing, read or not
    cfg = config(task="semi_supervised_detection", semi={"unsup_weight": 3.0}, loss={"roi": {"focal_gamma": 3.0}})
    assert unread_settings(TrainConfig.model_validate(cfg.model_dump(mode="json")), "faster_rcnn") == []
    assert unread_settings(config(task="multilabel")) == []
