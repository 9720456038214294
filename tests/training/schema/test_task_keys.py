"""training.schema.task_keys: which settings a task (and its detector) never reads; the detector-only keys
follow from the detectors and their pseudo-label learners."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork

from training.config import DetectionLossPart, LossConfig, ModelConfig, TrainConfig
from training.detection import create_detector
from training.detection.models import DETECTORS
from training.detection.semi import PSEUDO_LOSSES
from training.schema.task_keys import DETECTOR_ONLY, only_detectors, reads, unread_settings


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


# ------------------------------------------------- DETECTOR_ONLY against the detectors and their learners
# A marked loss part: a detector reads `loss.<stage>` when its built model holds the part it was given.
MARKED = DetectionLossPart(name="focal", focal_gamma=1.7, weight=3.7)


def held_loss_parts(model: torch.nn.Module) -> list[DetectionLossPart]:
    """The loss parts the model's modules hold, directly (RetinaNet's head) or in a StageLoss."""
    values = [value for module in model.modules() for value in vars(module).values()]
    return [part for part in (getattr(v, "part", v) for v in values) if isinstance(part, DetectionLossPart)]


def built(detector: str, loss: LossConfig | None = None) -> torch.nn.Module:
    model = ModelConfig(name="resnet10t", detector=detector)
    return create_detector(model, loss or LossConfig(), num_classes=3, image_size=64)


def reads_loss_part(detector: str, stage: str) -> bool:
    return MARKED in held_loss_parts(built(detector, LossConfig(**{stage: MARKED})))


def keys_read(detector: str) -> dict[str, bool]:
    """Of the keys only some detectors might read, whether `detector` does: from its built model and
    its pseudo-label learner (PSEUDO_LOSSES), never from DETECTOR_ONLY."""
    learner = PSEUDO_LOSSES[detector]
    return {
        "loss.rpn": reads_loss_part(detector, "rpn"),
        "loss.roi": reads_loss_part(detector, "roi"),
        "semi.thresholds.initial": True,  # filter_pseudo_boxes' first filter, under every stage
        # a stage's score threshold keeps the boxes of a target set the learner uses
        **{f"semi.thresholds.{stage}": stage in learner.stages for stage in ("cls", "rpn", "reg")},
        # ignore boxes, box jitter and background weights act on the RPN's and ROI heads' samples
        "semi.thresholds.ignore": learner.refines,
        "semi.jitter": learner.refines,
        "semi.soft_background": learner.refines,
    }


@pytest.fixture(scope="module")
def read_by() -> dict[str, dict[str, bool]]:
    return {detector: keys_read(detector) for detector in DETECTORS}


def test_detector_only_keys_are_those_some_detector_does_not_read(read_by):
    derived = {key for table in read_by.values() for key in table}
    # every detector-only key is derived above: a new one comes with what makes a detector read it
    assert set(DETECTOR_ONLY) <= derived
    for key in sorted(derived):
        readers = {detector for detector, table in read_by.items() if table[key]}
        # the semi-supervised task reads the key at all, and some detector does
        assert reads("semi_supervised_detection", key) and readers, key
        # a key only some detectors read names exactly those (known) detectors; a key all read is not listed
        assert set(only_detectors(key)) == (readers if readers != set(DETECTORS) else set()), key


def test_a_learner_refines_exactly_when_its_detector_has_roi_heads_and_an_rpn(read_by):
    for detector in DETECTORS:
        model = built(detector)
        two_stage = isinstance(getattr(model, "rpn", None), RegionProposalNetwork) and isinstance(
            getattr(model, "roi_heads", None), RoIHeads
        )
        # box jitter and background weights need the teacher's ROI heads (semi.teacher_pass, box_uncertainty)
        assert PSEUDO_LOSSES[detector].refines == two_stage, detector
        # the RPN learns from its own pseudo targets only where there is an RPN, whose loss is loss.rpn
        assert ("rpn" in PSEUDO_LOSSES[detector].stages) == two_stage == read_by[detector]["loss.rpn"], detector
