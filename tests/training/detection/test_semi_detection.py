"""Soft Teacher pieces (EMA, pseudo-label filtering, labeled split, box mapping) and a tiny real fit."""

from __future__ import annotations

import json
import logging
import math
from collections import OrderedDict
from types import SimpleNamespace

import albumentations as A
import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models.detection._utils import BoxCoder

from training.config import LossConfig, ModelConfig, PseudoThresholds, SyntheticData, TrainConfig
from training.data import synthetic
from training.data.samples import ImageSet
from training.data.split import stratified_split
from training.detection import create_detector
from training.detection.semi import (
    MixedBatchSampler,
    PseudoStats,
    TeacherPass,
    UnlabeledDataset,
    background_weigher,
    box_uncertainty,
    ema_update,
    faster_rcnn_pseudo_losses,
    filter_pseudo_boxes,
    jitter_boxes,
    map_boxes,
    regression_uncertainty,
    split_labeled,
)
from training.loop.fit import fit
from training.loop.runtime import Runtime
from training.schema.errors import ConfigError
from training.tasks import create_task, get_task
from training.tasks.semi_detection import TRUSTED_PRECISION, unsure_teacher_note


def test_ema_update_moves_parameters_by_the_formula_and_copies_buffers():
    torch.manual_seed(0)
    student, teacher = nn.BatchNorm1d(3), nn.BatchNorm1d(3)
    with torch.no_grad():
        student.weight.copy_(torch.tensor([1.0, 2.0, 3.0]))
        teacher.weight.copy_(torch.tensor([0.0, 0.0, 6.0]))
        student.running_mean.copy_(torch.tensor([5.0, 6.0, 7.0]))
    ema_update(teacher, student, momentum=0.9)
    # teacher_p = m * teacher_p + (1 - m) * student_p
    assert torch.allclose(teacher.weight, torch.tensor([0.1, 0.2, 0.9 * 6 + 0.3]))
    # buffers (BN statistics) are copied, not averaged
    assert torch.equal(teacher.running_mean, student.running_mean)
    # momentum 0 makes the teacher a copy of the student
    ema_update(teacher, student, momentum=0.0)
    assert torch.equal(teacher.weight, student.weight)


SCORES = torch.tensor([0.95, 0.6, 0.45, 0.38, 0.3, 0.1])


@pytest.mark.parametrize(
    ("initial", "cls", "rpn", "expected"),
    [
        # each stage keeps exactly the initial survivors scoring above its own threshold
        (0.4, 0.5, 0.9, {"initial": [0, 1, 2], "cls": [0, 1], "rpn": [0]}),
        # a stage threshold below `initial` changes nothing (Soft Teacher's order)
        (0.4, 0.35, 0.35, {"initial": [0, 1, 2], "cls": [0, 1, 2], "rpn": [0, 1, 2]}),
        # "above" is strict: a box scoring exactly the threshold is dropped
        (0.45, 0.6, 0.0, {"initial": [0, 1], "cls": [0], "rpn": [0, 1]}),
        (0.99, 0.1, 0.1, {"initial": [], "cls": [], "rpn": []}),
    ],
)
def test_filter_pseudo_boxes_keeps_exactly_the_boxes_above_each_threshold(initial, cls, rpn, expected):
    boxes = torch.arange(24, dtype=torch.float32).view(6, 4)
    labels = torch.arange(6)
    targets = filter_pseudo_boxes(boxes, labels, SCORES, PseudoThresholds(initial=initial, cls=cls, rpn=rpn))
    for stage, kept in expected.items():
        assert targets[stage]["labels"].tolist() == kept
        assert torch.equal(targets[stage]["boxes"], boxes[kept])


def test_filter_pseudo_boxes_keeps_steady_initial_survivors_for_regression():
    boxes, labels = torch.arange(24, dtype=torch.float32).view(6, 4), torch.arange(6)
    uncertainty = torch.tensor([0.01, 0.05, 0.019, 0.0, 0.001, 0.03])
    thresholds = PseudoThresholds(initial=0.4, cls=0.5, rpn=0.5, reg=0.02)
    targets = filter_pseudo_boxes(boxes, labels, SCORES, thresholds, uncertainty)
    # reg: the initial survivors (0, 1, 2) whose uncertainty is below 0.02, whatever their cls score;
    # box 3 is steady but scored below `initial`
    assert targets["reg"]["labels"].tolist() == [0, 2]
    assert targets["cls"]["labels"].tolist() == [0, 1]
    # without uncertainties (jitter off) the regression learns from the cls boxes, as before
    assert filter_pseudo_boxes(boxes, labels, SCORES, thresholds)["reg"]["labels"].tolist() == [0, 1]


def test_filter_pseudo_boxes_marks_uncertain_boxes_to_ignore_per_stage():
    boxes, labels = torch.arange(24, dtype=torch.float32).view(6, 4), torch.arange(6)
    # scores 0.95, 0.6, 0.45, 0.38, 0.3, 0.1: above `ignore` (0.35) are boxes 0-3
    targets = filter_pseudo_boxes(boxes, labels, SCORES, PseudoThresholds(initial=0.4, cls=0.5, rpn=0.9, ignore=0.35))
    # each stage ignores the boxes above `ignore` that it does not keep
    assert torch.equal(targets["initial"]["ignore"], boxes[[3]])
    assert torch.equal(targets["cls"]["ignore"], boxes[[2, 3]])
    assert torch.equal(targets["rpn"]["ignore"], boxes[[1, 2, 3]])
    # the default (1) ignores nothing: every box the teacher does not keep is background
    assert all(not len(t["ignore"]) for t in filter_pseudo_boxes(boxes, labels, SCORES, PseudoThresholds()).values())


def test_regression_uncertainty_is_the_coordinate_std_over_the_mean_box_side():
    # two refined copies of one box: x0 in {0, 2}, y0 in {0, 0}, x1 in {10, 12}, y1 in {20, 24}
    refined = torch.tensor([[[0.0, 0.0, 10.0, 20.0]], [[2.0, 0.0, 12.0, 24.0]]])
    # mean box [1, 0, 11, 22]: width 10, height 22; unbiased std of two values a, b is |a - b| / sqrt(2)
    by_hand = (2 / math.sqrt(2) / 10 + 0 / 22 + 2 / math.sqrt(2) / 10 + 4 / math.sqrt(2) / 22) / 4
    assert regression_uncertainty(refined).tolist() == pytest.approx([by_hand])


def test_jitter_boxes_moves_each_coordinate_by_the_scale_times_its_side():
    torch.manual_seed(0)
    box = torch.tensor([[10.0, 20.0, 50.0, 30.0]])  # width 40, height 10
    copies = jitter_boxes(box, 20000, 0.06)
    # centred on the box, with std 0.06 * width along x and 0.06 * height along y
    assert torch.allclose(copies.mean(0), box, atol=0.05)
    assert torch.allclose(copies.std(0)[0], torch.tensor([2.4, 0.6, 2.4, 0.6]), rtol=0.03)


def pseudo_losses_with(ignore: torch.Tensor) -> dict[str, torch.Tensor]:
    """Faster R-CNN's pseudo losses on one image with one cls/rpn/reg pseudo box and `ignore` boxes,
    the samplers' random draws fixed."""
    torch.manual_seed(0)
    model = create_detector(ModelConfig(name="resnet10t"), LossConfig(), num_classes=3, image_size=64).train()
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(1))
    target = {"boxes": torch.tensor([[4.0, 4.0, 20.0, 20.0]]), "labels": torch.tensor([1]), "ignore": ignore}
    torch.manual_seed(2)
    return faster_rcnn_pseudo_losses(model, [image], {stage: [target] for stage in ("rpn", "cls", "reg")})


def test_pseudo_losses_leave_out_background_samples_on_ignore_boxes():
    plain = pseudo_losses_with(torch.zeros(0, 4))
    # an ignore box that no anchor or proposal overlaps changes nothing
    assert all(torch.equal(plain[k], v) for k, v in pseudo_losses_with(torch.tensor([[0.0, 0.0, 0.5, 0.5]])).items())
    # one over the rest of the image takes background anchors and proposals out of both classifiers
    covered = pseudo_losses_with(torch.tensor([[20.0, 20.0, 64.0, 64.0], [0.0, 20.0, 64.0, 64.0], [20.0, 0.0, 64.0, 64.0]]))
    assert not torch.equal(covered["loss_objectness"], plain["loss_objectness"])
    assert not torch.equal(covered["loss_classifier"], plain["loss_classifier"])
    assert all(torch.isfinite(v) for v in covered.values())


def hand_made_teacher(predictor) -> SimpleNamespace:
    """A teacher whose ROI heads see each box itself as its feature: `predictor(boxes)` gives
    (class logits, box deltas); boxes decode like torchvision's (weights 10, 10, 5, 5)."""
    heads = SimpleNamespace(
        box_roi_pool=lambda features, boxes, sizes: torch.cat(boxes),
        box_head=lambda boxes: boxes,
        box_predictor=predictor,
        box_coder=BoxCoder((10.0, 10.0, 5.0, 5.0)),
    )
    return SimpleNamespace(roi_heads=heads)


def test_box_uncertainty_keeps_the_boxes_the_teacher_refines_steadily():
    steady = torch.tensor([[8.0, 8.0, 40.0, 24.0]])
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))

    def predictor(boxes):
        # class 1: every copy is refined onto `steady`; class 2: copies left where jitter put them
        deltas = torch.zeros(len(boxes), 3, 4)
        deltas[:, 1] = coder.encode_single(steady.expand(len(boxes), 4), boxes)
        return torch.zeros(len(boxes), 3), deltas.reshape(len(boxes), -1)

    seen = TeacherPass([], OrderedDict(), sizes=[(64, 64)], originals=[(64, 64)])
    boxes, labels = torch.tensor([[10.0, 10.0, 38.0, 22.0], [10.0, 10.0, 38.0, 22.0]]), torch.tensor([1, 2])
    torch.manual_seed(0)
    (uncertainty,) = box_uncertainty(hand_made_teacher(predictor), seen, [boxes], [labels], times=10, scale=0.2)
    # the class-1 box is refined to one place (uncertainty 0): kept; the class-2 box keeps the jitter
    # spread (about 0.2 of its side per coordinate): dropped at Soft Teacher's 0.02
    assert uncertainty[0].item() == pytest.approx(0.0, abs=1e-5)
    assert 0.1 < uncertainty[1].item() < 0.3
    kept = filter_pseudo_boxes(boxes, labels, torch.tensor([0.9, 0.9]), PseudoThresholds(reg=0.02), uncertainty)
    assert kept["reg"]["labels"].tolist() == [1]
    # an image without boxes beside one with boxes gets an empty result (a batch often mixes both)
    seen = TeacherPass([], OrderedDict(), sizes=[(64, 64)] * 2, originals=[(64, 64)] * 2)
    empty, full = box_uncertainty(hand_made_teacher(predictor), seen, [boxes[:0], boxes], [labels[:0], labels], 10, 0.2)
    assert empty.shape == (0,) and full.shape == (2,)


def test_background_weigher_weights_background_samples_by_the_teachers_background_score():
    # the teacher's background logit is x0 / 4 of the box it sees; the two class logits are 0
    def predictor(boxes):
        return torch.stack([boxes[:, 0] / 4, torch.zeros(len(boxes)), torch.zeros(len(boxes))], 1), None

    # the strong view is the weak one shifted 8 px right: the teacher sees each proposal 8 px left
    shift = torch.tensor([[1.0, 0.0, 8.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    seen = TeacherPass([], OrderedDict(), sizes=[(64, 64)], originals=[(64, 64)])
    recorded = []
    weigh = background_weigher(hand_made_teacher(predictor), seen, [shift], [(64, 64)], recorded.append)
    proposals = [torch.tensor([[16.0, 0.0, 30.0, 10.0], [24.0, 4.0, 40.0, 20.0], [12.0, 0.0, 20.0, 8.0]])]
    (weights,) = weigh(proposals, [torch.tensor([0, 2, 0])], [(64, 64)])

    def background(x0: float) -> float:
        return math.exp(x0 / 4) / (math.exp(x0 / 4) + 2)

    # foreground samples weigh 1; background ones the teacher's background probability at x0 - 8
    assert weights.tolist() == pytest.approx([background(8.0), 1.0, background(4.0)], rel=1e-5)
    # the background samples' weights are what the epoch's mean background weight is made of
    assert torch.cat(recorded).tolist() == pytest.approx([background(8.0), background(4.0)], rel=1e-5)


def test_split_labeled_keeps_the_fraction_of_each_label_deterministically():
    images = synthetic.generate(SyntheticData(count=200, seed=3), 32)
    labeled, unlabeled = split_labeled(images, 0.25, seed=7)
    # every image lands on exactly one side
    assert len(labeled) + len(unlabeled) == len(images)
    for label in np.unique(images.labels):
        total = int((images.labels == label).sum())
        # each label keeps round(fraction * its count) labeled images, at least one
        assert int((labeled.labels == label).sum()) == max(1, round(0.25 * total))
    # same seed, same split; another seed, another split
    again, _ = split_labeled(images, 0.25, seed=7)
    other, _ = split_labeled(images, 0.25, seed=8)
    assert [id(i) for i in again.images] == [id(i) for i in labeled.images]
    assert [id(i) for i in other.images] != [id(i) for i in labeled.images]


def test_split_labeled_keeps_one_labeled_image_of_a_rare_label():
    images = synthetic.generate(SyntheticData(count=40, seed=0, imbalance=0.1), 32)
    labeled, _ = split_labeled(images, 0.05, seed=0)
    # every label (even one whose share rounds to zero) keeps a labeled image
    assert set(labeled.labels.tolist()) == set(images.labels.tolist())


def _images_of(split: ImageSet, label: int) -> list[str]:
    return [image for image, its in zip(split.images, split.labels) if its == label]


@pytest.mark.parametrize("seed", range(4))
def test_split_labeled_draws_as_the_validation_split_but_labels_every_class(seed):
    labels = np.random.default_rng(seed).permutation([0] * 30 + [1] * 9 + [2] * 1 + [3] * 4)
    images = ImageSet([f"{i}.png" for i in range(len(labels))], labels)
    labeled, unlabeled = split_labeled(images, 0.25, seed)
    # every image on exactly one side
    assert sorted(labeled.images + unlabeled.images) == sorted(images.images)
    assert not set(labeled.images) & set(unlabeled.images)
    # stratified: each label keeps round(fraction * its count) labeled, at least one (the lone image of label 2)
    assert [int((labeled.labels == label).sum()) for label in range(4)] == [8, 2, 1, 1]
    # the same seed, the same split
    assert split_labeled(images, 0.25, seed)[0].images == labeled.images
    # one stratification for the package: a label the validation split also divides gets its images
    _, val = stratified_split(images, 0.25, seed)
    for label in (0, 1, 3):
        assert _images_of(labeled, label) == _images_of(val, label), label


def test_split_labeled_labels_everything_at_fraction_1():
    images = ImageSet([f"{i}.png" for i in range(6)], np.array([0, 0, 0, 1, 1, 2]))
    labeled, unlabeled = split_labeled(images, 1.0, seed=0)
    # no unlabeled image is left (the task then refuses the fraction), where a validation split keeps one back
    assert labeled.images == images.images and len(unlabeled) == 0


def test_mixed_batch_sampler_adds_unlabeled_images_at_the_ratio():
    sampler = MixedBatchSampler(10, 7, labeled_per_batch=4, unlabeled_per_batch=8, generator=torch.Generator().manual_seed(0))
    batches = list(sampler)
    # an epoch is one pass over the labeled images (the short last batch dropped) ...
    assert len(batches) == len(sampler) == 2
    labeled = [i for b in batches for i in b if i < 10]
    assert len(labeled) == len(set(labeled)) == 8
    # ... and every batch carries unlabeled_per_batch unlabeled indices, each after the labeled ones
    assert all(sum(i >= 10 for i in b) == 8 for b in batches)
    assert all(10 <= i < 17 for b in batches for i in b if i >= 10)


def test_map_boxes_follows_the_strong_views_geometry():
    image = np.zeros((32, 32, 3), np.uint8)
    image[8:12, 4:20] = 255  # a bright bar: its box is [4, 8, 20, 12]
    strong = A.Compose(
        [A.Affine(scale=(1.2, 1.2), translate_percent=(0.1, 0.1), border_mode=0, p=1.0)], save_applied_params=True
    )
    dataset = UnlabeledDataset(ImageSet([image], np.zeros(1, np.int64)), 32, A.Compose([]), strong)
    view = dataset[0]
    mapped, keep = map_boxes(torch.tensor([[4.0, 8.0, 20.0, 12.0]]), view.matrix, (32, 32))
    bright = np.argwhere(view.strong[0].numpy() > 128)
    y0, x0 = bright.min(0)
    y1, x1 = bright.max(0) + 1
    # the mapped box lands on the bar as the student sees it (within a pixel of interpolation)
    assert keep.tolist() == [True]
    assert torch.allclose(mapped[0], torch.tensor([x0, y0, x1, y1], dtype=torch.float32), atol=1.0)
    # a box pushed out of the image is dropped
    _, keep = map_boxes(torch.tensor([[31.0, 31.0, 32.0, 32.0]]), view.matrix, (32, 32))
    assert keep.tolist() == [False]


def test_pseudo_stats_count_kept_ratios_per_class():
    stats = PseudoStats(["scratch", "rust"], ("cls", "rpn"))
    thresholds = PseudoThresholds(initial=0.5, cls=0.7, rpn=0.4)
    labels, scores = torch.tensor([1, 1, 1, 2]), torch.tensor([0.9, 0.6, 0.2, 0.3])  # detector labels
    stats.add(labels, scores, filter_pseudo_boxes(torch.zeros(4, 4), labels, scores, thresholds))
    metrics = stats.metrics()
    # kept / proposed, overall and per class; a class with proposals but none kept reads 0
    assert metrics["train/pseudo_kept_ratio"] == 2 / 4
    assert metrics["train/pseudo_kept_ratio_cls"] == 1 / 4
    assert metrics["train/pseudo_kept_ratio/scratch"] == 2 / 3 and metrics["train/pseudo_kept_ratio/rust"] == 0.0
    assert metrics["train/pseudo_boxes_per_image"] == 2.0
    # the histogram counts every proposed score once, per class too
    histogram = stats.histogram(thresholds)
    assert sum(histogram["counts"]) == 4 and sum(histogram["per_class"]["rust"]) == 1
    assert histogram["marks"] == {"initial": 0.5, "cls": 0.7, "rpn": 0.4}


def test_pseudo_stats_report_where_the_refined_boxes_uncertainty_lies():
    stats = PseudoStats(["scratch"], ("cls", "rpn", "reg"))
    thresholds = PseudoThresholds(initial=0.5, reg=0.02)
    labels, scores = torch.ones(3, dtype=torch.long), torch.tensor([0.9, 0.8, 0.2])
    # the third box was not refined (below `initial`): inf, left out of the quantiles
    uncertainty = torch.tensor([0.01, 0.05, float("inf")])
    stats.add(labels, scores, filter_pseudo_boxes(torch.zeros(3, 4), labels, scores, thresholds, uncertainty), uncertainty)
    labels, scores, uncertainty = torch.ones(2, dtype=torch.long), torch.tensor([0.7, 0.6]), torch.tensor([0.03, 0.07])
    stats.add(labels, scores, filter_pseudo_boxes(torch.zeros(2, 4), labels, scores, thresholds, uncertainty), uncertainty)
    metrics = stats.metrics()
    # over the epoch's refined boxes 0.01, 0.03, 0.05, 0.07
    assert metrics["train/pseudo_box_uncertainty_p50"] == pytest.approx(0.04)
    assert metrics["train/pseudo_box_uncertainty_p25"] == pytest.approx(0.025)
    assert metrics["train/pseudo_kept_ratio_reg"] == 1 / 5
    stats.reset()
    stats.add(labels, scores, filter_pseudo_boxes(torch.zeros(2, 4), labels, scores, thresholds))
    assert "train/pseudo_box_uncertainty_p50" not in stats.metrics()  # no jitter, no figure


def tiny_config(**semi) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "task": "semi_supervised_detection",
            "data": {"image_size": 64, "batch_size": 4, "synthetic": {"count": 24, "seed": 1, "difficulty": 0.2}},
            "model": {"name": "resnet10t", "anchor_sizes": [8, 16, 32]},
            "augment": {"hflip": 0.5, "brightness": 0.3, "scale": 0.1, "translate": 0.1},
            "optim": {"schedule": "constant"},
            "semi": {"labeled_fraction": 0.5, "thresholds": {"initial": 0.1, "cls": 0.1, "rpn": 0.1}, **semi},
            "train": {"epochs": 2, "device": "cpu"},
        }
    )


def test_fit_two_epochs_with_burn_in_reports_finite_metrics_and_the_kept_ratio(caplog):
    cfg = tiny_config(burn_in_epochs=1)
    reports = []
    with caplog.at_level(logging.WARNING, logger="training.tasks.semi_detection"):
        fit(cfg, Runtime.from_config(cfg.train, cpu_threads=1), on_epoch=reports.append)
    burn_in, semi = reports
    # a teacher two epochs old is unsure: the user is told once, when burn-in ends, with its figures
    notes = [r.getMessage() for r in caplog.records if r.name == "training.tasks.semi_detection"]
    assert len(notes) == 1 and f"recall {burn_in.metrics['val/pseudo_recall_cls']:.0%}" in notes[0]
    names = get_task(cfg.task).metric_names(cfg)
    # every reported key is announced by metric_names, and every value is finite
    for report in reports:
        assert set(report.metrics) - {"train/lr", "time/epoch_s"} <= set(names)
        assert all(math.isfinite(v) for v in report.metrics.values())
    # burn-in is supervised only: no unsupervised loss, no pseudo labels, no histogram
    assert burn_in.metrics["train/unsup_loss"] == 0.0 and "train/pseudo_kept_ratio" not in burn_in.metrics
    assert burn_in.extras == {}
    # after burn-in the teacher pseudo-labels: kept ratios (overall, per stage, per class) and the histogram
    assert 0.0 <= semi.metrics["train/pseudo_kept_ratio"] <= 1.0
    assert {"train/pseudo_kept_ratio_cls", "train/pseudo_kept_ratio_rpn", "val/student_mAP50", "val/AP50/scratch"} <= set(semi.metrics)
    # the Soft Teacher parts (on by default) report what they did: the mean background weight of
    # the student's background samples, and the share of boxes kept for regression, per class too
    assert 0.0 < semi.metrics["train/pseudo_bg_weight"] < 1.0
    assert 0.0 <= semi.metrics["train/pseudo_kept_ratio_reg"] <= semi.metrics["train/pseudo_kept_ratio"]
    assert any(k.startswith("train/pseudo_kept_ratio_reg/") for k in semi.metrics)
    assert 0.0 < semi.metrics["train/pseudo_box_uncertainty_p25"] <= semi.metrics["train/pseudo_box_uncertainty_p50"]
    assert semi.metrics["train/unsup_loss"] > 0.0
    # how right the teacher's boxes are on the validation images, per score stage, burn-in included
    for report in reports:
        for key in ("val/pseudo_precision_initial", "val/pseudo_recall_cls", "val/pseudo_recall_rpn"):
            assert 0.0 <= report.metrics[key] <= 1.0
    assert (burn_in.metrics["train/unsup_weight"], semi.metrics["train/unsup_weight"]) == (0.0, 1.0)
    histogram = semi.extras["pseudo_scores"]
    assert len(histogram["bins"]) == len(histogram["counts"]) + 1 and sum(histogram["counts"]) > 0
    json.dumps(semi.extras)  # JSON-able, as the MLflow artifact needs


def test_teacher_copies_the_student_during_burn_in_then_follows_by_ema():
    cfg = tiny_config(burn_in_epochs=1, ema_momentum=0.9)
    task = create_task(cfg, Runtime.from_config(cfg.train))
    student, teacher = task.model.student, task.model.teacher
    # the teacher never trains: frozen, in eval mode even when the task's model is put in train mode
    task.model.train()
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    with torch.no_grad():
        next(student.parameters()).add_(1.0)
    task.start_epoch(1)
    task.after_step()
    # during burn-in the teacher is a copy of the student
    assert torch.equal(next(teacher.parameters()), next(student.parameters()))
    before = next(teacher.parameters()).clone()
    with torch.no_grad():
        next(student.parameters()).add_(1.0)
    task.start_epoch(2)
    task.after_step()
    # after burn-in it moves by (1 - momentum) toward the student
    assert torch.allclose(next(teacher.parameters()), 0.9 * before + 0.1 * next(student.parameters()))


@pytest.mark.parametrize(
    ("key", "semi"),
    [("semi.labeled_fraction", {"labeled_fraction": 1.0}), ("semi.thresholds.cls", {"thresholds": {"cls": 1.0}})],
)
def test_check_rejects_a_config_that_cannot_pseudo_label(key, semi):
    with pytest.raises(ConfigError) as error:
        get_task("semi_supervised_detection").check(tiny_config(**semi))
    # the error names the key
    assert error.value.key == key


def test_zero_unsupervised_weight_trains_on_the_labeled_part_only(caplog):
    cfg = tiny_config(burn_in_epochs=1, unsup_weight=0.0)
    reports = []
    with caplog.at_level(logging.WARNING, logger="training.tasks.semi_detection"):
        fit(cfg, Runtime.from_config(cfg.train, cpu_threads=1), on_epoch=reports.append)
    (report,) = reports[-1:]
    # the teacher never pseudo-labels: no unsupervised loss, no kept ratios (the supervised baseline)
    assert report.metrics["train/unsup_loss"] == 0.0 and "train/pseudo_kept_ratio" not in report.metrics
    # and nobody is warned about pseudo labels that are never used
    assert not [r for r in caplog.records if r.name == "training.tasks.semi_detection"]


def test_an_unsure_teacher_is_named_with_its_figures_and_a_sure_one_is_not():
    sure = {"val/pseudo_precision_cls": TRUSTED_PRECISION, "val/pseudo_recall_cls": 0.3}
    assert unsure_teacher_note(sure, 0.9) is None
    note = unsure_teacher_note({"val/pseudo_precision_cls": 0.43, "val/pseudo_recall_cls": 0.11}, 0.9)
    assert "thresholds.cls 0.9 at precision 43%, recall 11%" in note and "semi.unsup_weight 0" in note


def test_check_refuses_a_single_jittered_copy():
    with pytest.raises(ConfigError) as error:
        get_task("semi_supervised_detection").check(tiny_config(jitter={"times": 1}))
    # one copy has no spread: the error names the key
    assert error.value.key == "semi.jitter.times"


@pytest.mark.parametrize("unsup_weight", [1.0, 0.0])
def test_unlabeled_images_load_only_when_they_are_pseudo_labeled(unsup_weight):
    cfg = tiny_config(burn_in_epochs=1, unsup_weight=unsup_weight, unlabeled_per_labeled=0.5)
    task = create_task(cfg, Runtime.from_config(cfg.train, cpu_threads=1))
    task.start_epoch(1)  # burn-in: labeled images only
    burn_in = next(iter(task.train_loader))
    task.start_epoch(2)
    after = next(iter(task.train_loader))
    assert burn_in.weak == [] and len(burn_in.labeled[0]) == 4
    # then round(4 * 0.5) unlabeled images a batch, unless nothing learns from them
    assert len(after.weak) == (2 if unsup_weight else 0) and len(after.labeled[0]) == 4
    # an epoch started again draws the same labeled batch (resume sees what an unbroken run saw)
    task.start_epoch(1)
    assert all(torch.equal(a, b) for a, b in zip(next(iter(task.train_loader)).labeled[0], burn_in.labeled[0]))


@pytest.mark.parametrize(("ramp", "expected"), [(3, [0.0, 1.0, 2.0, 3.0, 3.0]), (0, [0.0, 3.0, 3.0, 3.0, 3.0])])
def test_unsupervised_weight_ramps_up_after_burn_in(ramp, expected):
    cfg = tiny_config(burn_in_epochs=1, unsup_weight=3.0, unsup_ramp_epochs=ramp)
    task = create_task(cfg, Runtime.from_config(cfg.train, cpu_threads=1))
    weights = []
    for epoch in range(1, 6):
        task.start_epoch(epoch)
        weights.append(task.unsup_weight)
    # 0 during burn-in, then unsup_weight in `ramp` equal steps (at once without a ramp)
    assert weights == pytest.approx(expected)
