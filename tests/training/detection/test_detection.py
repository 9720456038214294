"""The detection task's pieces: anchors, per-stage focal losses, box-aware data, metrics, a short fit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchvision.models.detection.retinanet import RetinaNetClassificationHead
from torchvision.ops import sigmoid_focal_loss

from training.config import DetectionLossPart, LossConfig, ModelConfig, TrainConfig
from training.data.samples import ImageSet
from training.detection import (
    DetectionDataset,
    LabelMap,
    StageLoss,
    create_detector,
    detection_metrics,
    detection_transform,
)
from training.detection.models import ignored_samples
from training.loop.fit import fit
from training.schema.errors import ConfigError
from training.tasks import get_task

CLASSES = ["good", "scratch", "rust"]
DEFECTS = ["scratch", "rust"]
FOCAL = DetectionLossPart(name="focal", focal_gamma=2.5, focal_alpha=0.75, weight=2.0)


def detector(detector: str = "faster_rcnn", loss: LossConfig | None = None, **model) -> torch.nn.Module:
    cfg = ModelConfig(name="resnet10t", detector=detector, **model)
    return create_detector(cfg, loss or LossConfig(), num_classes=3, image_size=64)


@pytest.mark.parametrize("kind", ["faster_rcnn", "retinanet"])
@pytest.mark.parametrize("ratios", [[1.0], [0.2, 0.35, 0.5, 1.0, 2.0], [0.2, 0.35, 0.45, 0.55, 0.65, 1.0, 2.0]])
def test_detector_anchors_follow_the_configured_ratios(kind, ratios):
    model = detector(kind, anchor_ratios=ratios, anchor_sizes=[16, 32, 64, 128])
    generator = model.rpn.anchor_generator if kind == "faster_rcnn" else model.anchor_generator
    # one anchor per ratio at every location of each of the 4 levels (one size per level)
    assert generator.num_anchors_per_location() == [len(ratios)] * 4
    # the heads predict for exactly that many anchors per location
    if kind == "faster_rcnn":
        assert model.rpn.head.cls_logits.out_channels == len(ratios)
    else:
        assert model.head.classification_head.cls_logits.out_channels == len(ratios) * 3
    # the anchors' height / width are the ratios (coarsest level: 128 px, rounding is negligible)
    anchors = generator.cell_anchors[-1]
    measured = (anchors[:, 3] - anchors[:, 1]) / (anchors[:, 2] - anchors[:, 0])
    assert torch.allclose(measured, torch.tensor(ratios), rtol=0.03)


def test_detector_has_one_fpn_level_per_anchor_size():
    for sizes in ([8, 16, 32], [8, 16, 32, 64, 128]):
        model = detector(anchor_sizes=sizes)
        features = model.backbone(torch.zeros(1, 3, 64, 64))
        # the FPN yields exactly len(anchor_sizes) maps, which the anchor generator pairs one to one
        assert len(features) == len(sizes)


def test_stage_loss_is_weighted_sigmoid_focal_loss():
    logits, targets = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 0, 1])
    one_hot = torch.nn.functional.one_hot(targets, 3).float()
    expected = sigmoid_focal_loss(logits, one_hot, alpha=0.75, gamma=2.5, reduction="sum") / 6
    # focal = torchvision's sigmoid focal loss on one-hot targets, per sample, times the stage weight
    assert torch.allclose(StageLoss(FOCAL)(logits, targets), 2.0 * expected)
    # cross_entropy keeps torchvision's softmax CE, weighted too
    ce = DetectionLossPart(name="cross_entropy", weight=0.5)
    assert torch.allclose(StageLoss(ce)(logits, targets), 0.5 * torch.nn.functional.cross_entropy(logits, targets))


@pytest.mark.parametrize("gamma", [0.0, 0.3, 0.5, 1.0, 2.0, 5.0])
def test_stage_focal_loss_has_finite_loss_and_gradients_on_saturated_logits(gamma):
    part = DetectionLossPart(name="focal", focal_gamma=gamma, focal_alpha=0.25)
    # saturated both ways, right and wrong: p_t is exactly 1 or 0 in float32
    for logits, targets in (
        (torch.tensor([[100.0, -100.0, -100.0], [-100.0, -100.0, 100.0], [100.0, -100.0, 0.0]]), torch.tensor([0, 2, 1])),
        (torch.tensor([100.0, -100.0, 100.0, -100.0]), torch.tensor([1, 0, 0, 1])),  # RPN objectness
    ):
        logits.requires_grad_(True)
        loss = StageLoss(part)(logits, targets)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(logits.grad).all(), logits.dim()


@pytest.mark.parametrize("gamma", [0.0, 0.3, 0.5, 1.0, 2.0, 5.0])
def test_retinanet_focal_head_has_finite_loss_and_gradients_on_saturated_logits(gamma):
    head = detector("retinanet", loss=LossConfig(roi=DetectionLossPart(focal_gamma=gamma))).head.classification_head
    logits = torch.tensor([[[100.0, -100.0, -100.0], [-100.0, 100.0, -100.0], [100.0, 100.0, -100.0]]], requires_grad=True)
    matched = [torch.tensor([0, -1, 0])]
    loss = head.compute_loss([{"labels": torch.tensor([1])}], {"cls_logits": logits}, matched)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_stage_loss_sample_weights_give_the_weighted_mean():
    logits, targets = torch.randn(4, 3), torch.tensor([1, 0, 0, 2])
    per_sample = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    weights = torch.tensor([1.0, 0.5, 0.25, 1.0])
    part = DetectionLossPart(name="cross_entropy", weight=2.0)
    # weighted sum over the sum of weights (mmdetection's Soft Teacher normalisation), times the stage weight
    by_hand = 2.0 * (per_sample * weights).sum() / weights.sum()
    assert torch.allclose(StageLoss(part)(logits, targets, weights), by_hand)
    # weights summing below 1 are not blown up: the divisor is at least 1
    small = torch.tensor([0.1, 0.1, 0.1, 0.1])
    assert torch.allclose(StageLoss(part)(logits, targets, small), 2.0 * (per_sample * small).sum())


def test_rpn_objectness_loss_is_focal_when_configured():
    rpn = detector(loss=LossConfig(rpn=FOCAL)).rpn
    # hand-made anchor labels: 1 object, 0 background, -1 ignored; few enough that all are sampled
    labels = [torch.tensor([1.0, 0.0, -1.0, 0.0, 1.0]), torch.tensor([0.0, -1.0, 1.0, 0.0, 0.0])]
    objectness, deltas = torch.randn(10, 1), torch.randn(10, 4)
    targets = [torch.zeros(5, 4), torch.zeros(5, 4)]
    loss, _ = rpn.compute_loss(objectness, deltas, labels, targets)
    flat, sampled = torch.cat(labels), torch.cat(labels) >= 0
    expected = sigmoid_focal_loss(objectness.flatten()[sampled], flat[sampled], alpha=0.75, gamma=2.5, reduction="sum")
    assert torch.allclose(loss, 2.0 * expected / int(sampled.sum()))


def test_rpn_leaves_out_background_anchors_on_an_ignore_box():
    rpn = detector().rpn
    anchors = [
        torch.tensor([[0.0, 0.0, 10.0, 10.0], [40.0, 40.0, 50.0, 50.0], [42.0, 40.0, 52.0, 50.0], [0.0, 50.0, 8.0, 58.0]])
    ]
    target = {"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "labels": torch.tensor([1])}
    plain, _ = rpn.assign_targets_to_anchors(anchors, [target])
    assert plain[0].tolist() == [1.0, 0.0, 0.0, 0.0]
    # IoU with the ignore box: anchor 1 = 1, anchor 2 = 80/120 (>= the RPN's 0.3), anchor 3 = 0
    ignore = torch.tensor([[40.0, 40.0, 50.0, 50.0]])
    ignoring, _ = rpn.assign_targets_to_anchors(anchors, [{**target, "ignore": ignore}])
    assert ignoring[0].tolist() == [1.0, -1.0, -1.0, 0.0]


def test_ignored_samples_are_background_samples_near_an_ignore_box():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0], [30.0, 30.0, 40.0, 40.0]])
    samples = [boxes, torch.zeros(0, 4)]
    labels = [torch.tensor([2, 0, 0, 0]), torch.zeros(0, dtype=torch.int64)]
    targets = [{"ignore": torch.tensor([[0.0, 0.0, 10.0, 10.0]])}, {"ignore": torch.zeros(0, 4)}]
    # sample 0 is foreground (kept), 1 overlaps fully, 2 by IoU 50/150 = 1/3, 3 not at all
    assert ignored_samples(samples, labels, targets, iou=0.3).tolist() == [False, True, True, False]
    assert ignored_samples(samples, labels, targets, iou=0.5).tolist() == [False, True, False, False]
    assert not ignored_samples(samples, labels, [{}, {}], iou=0.3).any()


def test_roi_classifier_loss_is_focal_when_configured():
    torch.manual_seed(0)
    model = detector(loss=LossConfig(roi=FOCAL)).train()
    heads = model.roi_heads
    features = model.backbone(torch.rand(1, 3, 64, 64))
    gt = {"boxes": torch.tensor([[4.0, 4.0, 20.0, 40.0], [30.0, 10.0, 60.0, 20.0]]), "labels": torch.tensor([1, 2])}
    # proposals = the ground truth: with the ground truth added again, all 4 are positives, all sampled
    _, losses = heads(features, [gt["boxes"]], [(64, 64)], [gt])
    proposals = [torch.cat([gt["boxes"], gt["boxes"]])]
    logits, _ = heads.box_predictor(heads.box_head(heads.box_roi_pool(features, proposals, [(64, 64)])))
    one_hot = torch.nn.functional.one_hot(torch.tensor([1, 2, 1, 2]), 3).float()
    expected = sigmoid_focal_loss(logits, one_hot, alpha=0.75, gamma=2.5, reduction="sum") / 4
    assert torch.allclose(losses["loss_classifier"], 2.0 * expected, rtol=1e-4)


def test_retinanet_focal_head_matches_torchvision_and_applies_the_config():
    torch.manual_seed(0)
    logits = torch.randn(2, 12, 3)
    targets = [{"labels": torch.tensor([1, 2])}, {"labels": torch.tensor([2])}]
    matched = [torch.tensor([0, 1, -1, -2] * 3), torch.tensor([0, -1, -1, -2] * 3)]
    reference = RetinaNetClassificationHead(8, 1, 3).compute_loss(targets, {"cls_logits": logits}, matched)
    head = detector("retinanet", loss=LossConfig(roi=DetectionLossPart(focal_alpha=0.25, weight=1.0))).head
    ours = head.classification_head.compute_loss(targets, {"cls_logits": logits}, matched)
    # torchvision's gamma 2 / alpha 0.25 give torchvision's loss exactly
    assert torch.allclose(ours, reference)
    weighted = detector("retinanet", loss=LossConfig(roi=DetectionLossPart(focal_alpha=0.25, weight=2.5))).head
    # the stage weight multiplies it
    weighted_loss = weighted.classification_head.compute_loss(targets, {"cls_logits": logits}, matched)
    assert torch.allclose(weighted_loss, 2.5 * reference)


def test_dataset_resizes_boxes_and_maps_defects_to_detector_labels():
    images = ImageSet(
        images=[np.zeros((128, 96, 3), np.uint8), np.zeros((128, 96, 3), np.uint8)],
        labels=np.array([2, 0]),
        boxes=[np.array([[12.0, 32.0, 48.0, 64.0]], np.float32), np.zeros((0, 4), np.float32)],
        box_labels=[np.array([2]), np.zeros(0, np.int64)],
    )
    dataset = DetectionDataset(images, LabelMap(CLASSES, "good"), detection_transform(None, 64))
    image, target = dataset[0]
    # the image is resized to 64 x 64 and the box scaled with it (x by 64/96, y by 64/128)
    assert image.shape == (3, 64, 64) and image.dtype == torch.uint8
    assert torch.allclose(target["boxes"], torch.tensor([[8.0, 16.0, 32.0, 32.0]]))
    # class index 2 ('rust') is detector label 2: good is not a detector class, 0 is background
    assert target["labels"].tolist() == [2]
    # a good image has no boxes
    assert dataset[1][1]["boxes"].shape == (0, 4)


def test_augmentation_moves_boxes_with_the_image():
    box = np.array([[4.0, 8.0, 20.0, 16.0]], np.float32)
    images = ImageSet([np.zeros((64, 64, 3), np.uint8)], np.array([1]), [box], [np.array([1])])
    flip = TrainConfig(augment={"hflip": 1.0}).augment
    _, target = DetectionDataset(images, LabelMap(CLASSES, "good"), detection_transform(flip, 64, seed=0))[0]
    # a horizontal flip mirrors x: [4, 20] -> [44, 60]
    assert torch.allclose(target["boxes"], torch.tensor([[44.0, 8.0, 60.0, 16.0]]))


def boxes(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)


TARGETS = [
    {"boxes": boxes([2, 2, 20, 10]), "labels": torch.tensor([1])},
    {"boxes": boxes([30, 30, 40, 60], [5, 40, 25, 50]), "labels": torch.tensor([2, 1])},
    {"boxes": boxes(), "labels": torch.zeros(0, dtype=torch.int64)},
]


def test_metrics_of_perfect_predictions_are_one():
    preds = [{**t, "scores": torch.ones(len(t["labels"]))} for t in TARGETS]
    metrics = detection_metrics(preds, TARGETS, DEFECTS, score_threshold=0.5, iou_threshold=0.5)
    # every box found, exactly: AP 1 at every IoU, for every class; nothing missed, nothing overkilled
    assert metrics["mAP50"] == pytest.approx(1.0) and metrics["mAP"] == pytest.approx(1.0)
    assert metrics["AP50/scratch"] == pytest.approx(1.0) and metrics["AP50/rust"] == pytest.approx(1.0)
    assert metrics["miss_rate"] == 0.0 and metrics["overkill_rate"] == 0.0


def test_metrics_of_empty_predictions_are_zero():
    empty = [{"boxes": boxes(), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)} for _ in TARGETS]
    metrics = detection_metrics(empty, TARGETS, DEFECTS, score_threshold=0.5, iou_threshold=0.5)
    # nothing found: AP 0 everywhere and every defect image missed
    assert metrics["mAP50"] == 0.0 and metrics["mAP"] == 0.0 and metrics["AP50/rust"] == 0.0
    assert metrics["miss_rate"] == 1.0 and metrics["overkill_rate"] == 0.0


def test_miss_and_overkill_rates_on_a_hand_made_case():
    preds = [
        # image 0: the right box but the wrong class -> missed
        {"boxes": boxes([2, 2, 20, 10]), "scores": torch.tensor([0.9]), "labels": torch.tensor([2])},
        # image 1: one right box above the threshold -> found (the other box is not needed)
        {"boxes": boxes([30, 30, 40, 58]), "scores": torch.tensor([0.8]), "labels": torch.tensor([2])},
        # image 2 (good): a box above the threshold -> overkill
        {"boxes": boxes([1, 1, 5, 5]), "scores": torch.tensor([0.6]), "labels": torch.tensor([1])},
    ]
    metrics = detection_metrics(preds, TARGETS, DEFECTS, score_threshold=0.5, iou_threshold=0.5)
    assert metrics["miss_rate"] == pytest.approx(1 / 2)
    assert metrics["overkill_rate"] == pytest.approx(1.0)
    # a higher score threshold clears the good image and misses the second defect image too
    strict = detection_metrics(preds, TARGETS, DEFECTS, score_threshold=0.85, iou_threshold=0.5)
    assert strict["miss_rate"] == pytest.approx(1.0) and strict["overkill_rate"] == 0.0


def tiny_config(**overrides) -> TrainConfig:
    raw = {
        "task": "detection",
        "data": {"image_size": 32, "batch_size": 8, "synthetic": {"count": 24, "seed": 0}},
        "model": {"name": "resnet10t", "anchor_sizes": [8, 16, 32]},
        "train": {"epochs": 1},
        "augment": {"hflip": 0.5, "brightness": 0.2, "autocontrast": 0.3, "scale": 0.1},
    }
    raw.update(overrides)
    return TrainConfig.model_validate(raw)


@pytest.mark.parametrize("kind", ["faster_rcnn", "retinanet"])
def test_fit_one_epoch_reports_every_metric_finite(kind):
    cfg = tiny_config(model={"name": "resnet10t", "anchor_sizes": [8, 16, 32], "detector": kind}, loss={
        "rpn": {"name": "focal"}, "roi": {"name": "focal"}
    })
    metrics = fit(cfg)
    expected = set(get_task("detection").metric_names(cfg))
    # the task reports exactly the metrics it declares (plus the loop's lr and time), all finite
    assert expected <= set(metrics) and set(metrics) - expected == {"train/lr", "time/epoch_s"}
    assert "val/AP50/scratch" in expected and "val/AP50/good" not in expected
    assert all(math.isfinite(v) for v in metrics.values())


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"data": {"kind": "imagefolder"}}, "data.kind"),
        ({"model": {"name": "resnet10t", "anchor_sizes": [4, 8, 16, 32, 64, 128]}}, "model.anchor_sizes"),
        ({"model": {"name": "resnet10t", "anchor_sizes": [32, 16]}}, "model.anchor_sizes"),
        ({"model": {"name": "resnet10t", "anchor_ratios": [0.5, 0.0]}}, "model.anchor_ratios"),
        ({"model": {"name": "resnet_nope"}}, "model.name"),
        ({"augment": {"elastic": 0.5}}, "augment.elastic"),
    ],
)
def test_check_rejects_what_the_detector_cannot_run(overrides, key):
    # each bad setting is a ConfigError naming its key, before any trial
    with pytest.raises(ConfigError) as err:
        get_task("detection").check(tiny_config(**overrides))
    assert err.value.key == key


def test_focal_stages_start_from_a_low_foreground_prior():
    focal = DetectionLossPart(name="focal")
    model = detector(loss=LossConfig(rpn=focal, roi=focal))
    assert torch.allclose(model.roi_heads.box_predictor.cls_score.bias.sigmoid(), torch.tensor(0.01))
    assert torch.allclose(model.rpn.head.cls_logits.bias.sigmoid(), torch.tensor(0.01))
