"""Soft Teacher pieces, independent of any one detector builder.

- `ema_update`: the teacher follows the student as an exponential moving average.
- `split_labeled`: which training images keep their labels (stratified, seeded).
- `UnlabeledDataset` + `MixedBatchSampler` + `collate_mixed`: batches of labeled images plus
  unlabeled images seen twice, weakly (the teacher's view) and strongly (the student's view: both
  defined in `training.augment.views`), with the affine matrix from the weak view to the strong one.
- `map_boxes`, `filter_pseudo_boxes`: teacher boxes -> the student's view -> per-stage targets.
- `teacher_pass`, `box_uncertainty`, `background_weigher`: what the Faster R-CNN teacher says beyond
  its boxes: how much jittered copies of a box move when it refines them (box regression learns from
  the steady ones), and how sure it is that a student's proposal is background (Soft Teacher's weights).
- `PSEUDO_LOSSES`: detector name -> the student's loss on pseudo targets (for Faster R-CNN, the RPN,
  the ROI classifier and the box regression learn from different target sets, as in Soft Teacher).
- `PseudoStats`: the teacher's kept ratios, background weights and score histogram over an epoch.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import albumentations as A
import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, Sampler
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss
from torchvision.models.detection.transform import resize_boxes
from torchvision.ops import clip_boxes_to_image

from training.augment.boxes import transform_boxes
from training.config import PseudoThresholds
from training.data.dataset import read_image
from training.data.samples import ImageSet
from training.data.split import class_sides
from training.detection.models import ignored_samples
from training.schema.metric_names import PSEUDO_STAGES, SCORE_STAGES

# Teacher boxes scoring below this are not proposals at all (torchvision's own box_score_thresh):
# the kept ratio is "kept / proposed above this floor".
SCORE_FLOOR = 0.05
# A pseudo box squeezed below this many pixels on a side by the strong view's geometry is dropped.
MIN_BOX_SIDE = 1.0
HISTOGRAM_BINS = 20


# ---------------------------------------------------------------- teacher


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """teacher_p = momentum * teacher_p + (1 - momentum) * student_p; buffers (BN statistics) copied."""
    for t, s in zip(teacher.parameters(), student.parameters()):
        t.lerp_(s.detach().to(t.dtype), 1.0 - momentum)
    for t, s in zip(teacher.buffers(), student.buffers()):
        t.copy_(s)


# ---------------------------------------------------------------- data


def split_labeled(images: ImageSet, fraction: float, seed: int) -> tuple[ImageSet, ImageSet]:
    """(labeled, unlabeled): `fraction` of each image label keeps its boxes, at least one image per
    label, so every class is seen labeled at least once (all of it, when that is all it has: unlike a
    validation split, nothing needs the rest). Deterministic from `seed`."""
    side = class_sides(images.labels, fraction, seed, held=lambda count, share: max(1, int(round(count * share))))
    return images.subset(np.flatnonzero(side == 1)), images.subset(np.flatnonzero(side == 0))


@dataclass
class UnlabeledView:
    """One unlabeled image as the teacher (weak) and the student (strong) see it."""

    weak: Tensor  # uint8 CHW
    strong: Tensor  # uint8 CHW
    matrix: Tensor  # float32 3x3: weak pixel coordinates -> strong pixel coordinates


def affine_matrix(applied: list[tuple[str, dict[str, Any]]]) -> np.ndarray:
    """The box matrix of the geometric transforms albumentations applied (identity if none)."""
    matrix = np.eye(3)
    for _, params in applied:
        if "bbox_matrix" in params:
            matrix = np.asarray(params["bbox_matrix"], np.float64) @ matrix
    return matrix


class UnlabeledDataset(Dataset):
    """Unlabeled images: `weak` (flip only) for the teacher, then `strong` (photometric + geometric,
    built with `save_applied_params`) on top of the weak view for the student."""

    def __init__(self, images: ImageSet, image_size: int, weak: A.Compose, strong: A.Compose):
        if not strong.save_applied_params:
            raise ValueError("the strong view needs save_applied_params=True to map the teacher's boxes")
        self.images, self.image_size, self.weak, self.strong = images, image_size, weak, strong

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> UnlabeledView:
        weak = self.weak(image=read_image(self.images.images[index], self.image_size))["image"]
        out = self.strong(image=weak)
        return UnlabeledView(_chw(weak), _chw(out["image"]), torch.from_numpy(affine_matrix(out["applied_transforms"])).float())


def _chw(image: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


class MixedDataset(Dataset):
    """Labeled items at indices [0, n_labeled), unlabeled views after them (see MixedBatchSampler)."""

    def __init__(self, labeled: Dataset, unlabeled: UnlabeledDataset):
        self.labeled, self.unlabeled = labeled, unlabeled

    def __len__(self) -> int:
        return len(self.labeled) + len(self.unlabeled)

    def __getitem__(self, index: int) -> Any:
        n = len(self.labeled)
        return self.labeled[index] if index < n else self.unlabeled[index - n]


class MixedBatchSampler(Sampler[list[int]]):
    """An epoch is one shuffled pass over the labeled images, `labeled_per_batch` at a time (a short
    last batch is dropped when there is more than one); each batch adds `unlabeled_per_batch`
    unlabeled images drawn from reshuffled passes over the unlabeled set."""

    def __init__(
        self, n_labeled: int, n_unlabeled: int, labeled_per_batch: int, unlabeled_per_batch: int, generator: torch.Generator
    ):
        self.n_labeled, self.n_unlabeled = n_labeled, n_unlabeled
        self.labeled_per_batch, self.unlabeled_per_batch = labeled_per_batch, unlabeled_per_batch
        self.generator = generator

    def __len__(self) -> int:
        return max(1, self.n_labeled // self.labeled_per_batch)

    def _unlabeled_stream(self):
        while self.n_unlabeled:
            yield from (self.n_labeled + torch.randperm(self.n_unlabeled, generator=self.generator)).tolist()

    def __iter__(self):
        labeled = torch.randperm(self.n_labeled, generator=self.generator).tolist()
        unlabeled = self._unlabeled_stream()
        for b in range(len(self)):
            extra = [next(unlabeled) for _ in range(self.unlabeled_per_batch)] if self.n_unlabeled else []
            yield labeled[b * self.labeled_per_batch : (b + 1) * self.labeled_per_batch] + extra


@dataclass
class MixedBatch:
    labeled: Any  # the labeled collate's batch
    weak: list[Tensor] = field(default_factory=list)
    strong: list[Tensor] = field(default_factory=list)
    matrices: list[Tensor] = field(default_factory=list)


def collate_mixed(labeled_collate: Callable[[list[Any]], Any]) -> Callable[[list[Any]], MixedBatch]:
    """A collate that batches labeled items with `labeled_collate` and keeps unlabeled views as lists."""

    def collate(items: list[Any]) -> MixedBatch:
        views = [item for item in items if isinstance(item, UnlabeledView)]
        labeled = [item for item in items if not isinstance(item, UnlabeledView)]
        return MixedBatch(
            labeled_collate(labeled), [v.weak for v in views], [v.strong for v in views], [v.matrix for v in views]
        )

    return collate


# ---------------------------------------------------------------- pseudo labels


def map_boxes(boxes: Tensor, matrix: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """(boxes in the strong view, mask of the boxes kept): `transform_boxes`, then boxes left thinner
    than MIN_BOX_SIDE are dropped."""
    mapped = transform_boxes(boxes, matrix, size)
    keep = ((mapped[:, 2:] - mapped[:, :2]) >= MIN_BOX_SIDE).all(-1)
    return mapped[keep], keep


def filter_pseudo_boxes(
    boxes: Tensor, labels: Tensor, scores: Tensor, thresholds: PseudoThresholds, uncertainty: Tensor | None = None
) -> dict[str, dict[str, Tensor]]:
    """Targets per stage: `initial` keeps boxes scoring above thresholds.initial; `cls` and `rpn`
    keep, among those, the ones above their own threshold (Soft Teacher's order: a stage threshold
    below `initial` therefore changes nothing); `reg` keeps the initial survivors whose `uncertainty`
    (see `box_uncertainty`) is below thresholds.reg, or, without uncertainties, the `cls` boxes.
    Each stage's "ignore" holds the boxes above thresholds.ignore that it does not keep: a weak
    teacher misses most objects at a strict threshold, and the student must not learn them as background."""
    first = scores > thresholds.initial
    keeps = {stage: first & (scores > getattr(thresholds, stage)) for stage in SCORE_STAGES}
    keeps["reg"] = keeps["cls"] if uncertainty is None else first & (uncertainty < thresholds.reg)
    uncertain = scores > thresholds.ignore
    return {
        stage: {"boxes": boxes[keep], "labels": labels[keep], "ignore": boxes[uncertain & ~keep]}
        for stage, keep in keeps.items()
    }


# ---------------------------------------------------------------- what the teacher says


@dataclass
class TeacherPass:
    """The teacher's detections (pixel coordinates of its input images) and, for a two-stage
    detector, the features and sizes its ROI heads need to score or refine other boxes."""

    detections: list[dict[str, Tensor]]
    features: OrderedDict[str, Tensor] | None = None
    sizes: list[tuple[int, int]] = field(default_factory=list)  # after the detector's own transform
    originals: list[tuple[int, int]] = field(default_factory=list)


@torch.no_grad()
def teacher_pass(teacher: nn.Module, images: list[Tensor]) -> TeacherPass:
    """GeneralizedRCNN.forward in eval mode, keeping the features; other detectors: their detections only."""
    if not isinstance(getattr(teacher, "roi_heads", None), RoIHeads):
        return TeacherPass(teacher(images))
    originals = [tuple(image.shape[-2:]) for image in images]
    image_list, _ = teacher.transform(images)
    features = teacher.backbone(image_list.tensors)
    if isinstance(features, Tensor):
        features = OrderedDict([("0", features)])
    proposals, _ = teacher.rpn(image_list, features)
    detections, _ = teacher.roi_heads(features, proposals, image_list.image_sizes)
    detections = teacher.transform.postprocess(detections, image_list.image_sizes, originals)
    return TeacherPass(detections, features, image_list.image_sizes, originals)


def _roi_outputs(heads: RoIHeads, features: OrderedDict, boxes: list[Tensor], sizes: list[tuple[int, int]]):
    """(class logits, box deltas) of the ROI heads for the given boxes."""
    return heads.box_predictor(heads.box_head(heads.box_roi_pool(features, boxes, sizes)))


def jitter_boxes(boxes: Tensor, times: int, scale: float) -> Tensor:
    """(times, n, 4) copies of `boxes`, each coordinate moved by N(0, scale * the box's side along it)."""
    sides = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1.0).repeat(1, 2)
    return boxes + torch.randn(times, *boxes.shape, device=boxes.device, dtype=boxes.dtype) * sides * scale


def regression_uncertainty(refined: Tensor) -> Tensor:
    """(n,) from (times, n, 4) refined copies: the std of each coordinate over the copies, divided
    by the mean box's side along it, averaged over the 4 coordinates (Soft Teacher's box reliability)."""
    mean = refined.mean(0)
    sides = (mean[:, 2:] - mean[:, :2]).clamp(min=1.0).repeat(1, 2)
    return (refined.std(0) / sides).mean(-1)


@torch.no_grad()
def box_uncertainty(
    teacher: nn.Module, seen: TeacherPass, boxes: list[Tensor], labels: list[Tensor], times: int, scale: float
) -> list[Tensor]:
    """Per image, the `regression_uncertainty` of each box (its detector label in 1..K): the teacher's
    ROI heads refine `times` jittered copies, each by its label's regressor."""
    heads = teacher.roi_heads
    jittered = [
        jitter_boxes(resize_boxes(b, o, s), times, scale) for b, o, s in zip(boxes, seen.originals, seen.sizes)
    ]
    flat = [clip_boxes_to_image(j.reshape(-1, 4), s) for j, s in zip(jittered, seen.sizes)]
    if not sum(len(f) for f in flat):
        return [b.new_zeros(0) for b in boxes]
    _, deltas = _roi_outputs(heads, seen.features, flat, seen.sizes)
    decoded = heads.box_coder.decode(deltas, flat).split([len(f) for f in flat])
    classes = deltas.shape[1] // 4
    out = []
    for refined, label, size in zip(decoded, labels, seen.sizes):
        if not len(label):
            out.append(refined.new_zeros(0))
            continue
        refined = clip_boxes_to_image(refined, size).reshape(times, len(label), classes, 4).float()
        out.append(regression_uncertainty(refined[:, torch.arange(len(label), device=label.device), label]))
    return out


BackgroundWeigher = Callable[[list[Tensor], list[Tensor], list[tuple[int, int]]], list[Tensor]]


def background_weigher(
    teacher: nn.Module, seen: TeacherPass, matrices: list[Tensor], student_sizes: list[tuple[int, int]],
    record: Callable[[Tensor], None] = lambda weights: None,
) -> BackgroundWeigher:
    """weigh(proposals, labels, sizes) -> per proposal, 1 for the student's foreground samples and,
    for its background samples, the teacher's background probability of that box (Soft Teacher's
    "soft teacher"). Proposals come in the student's detector coordinates (`sizes`, of images
    `student_sizes` large) and are carried back to the teacher's view through the inverse of the
    weak -> strong `matrices`. `record` receives the background samples' weights."""

    @torch.no_grad()
    def weigh(proposals: list[Tensor], labels: list[Tensor], sizes: list[tuple[int, int]]) -> list[Tensor]:
        boxes = []
        for box, size, strong, matrix, original, teacher_size in zip(
            proposals, sizes, student_sizes, matrices, seen.originals, seen.sizes
        ):
            weak = transform_boxes(resize_boxes(box.detach().float(), size, strong), torch.linalg.inv(matrix), original)
            boxes.append(resize_boxes(weak, original, teacher_size))
        logits, _ = _roi_outputs(teacher.roi_heads, seen.features, boxes, seen.sizes)
        background = torch.softmax(logits.float(), -1)[:, 0].split([len(b) for b in boxes])
        weights = [torch.where(label > 0, torch.ones_like(b), b) for label, b in zip(labels, background)]
        record(torch.cat([b[label == 0] for label, b in zip(labels, background)]))
        return weights

    return weigh


# ---------------------------------------------------------------- the student's loss on pseudo labels


def _resize_targets(targets: list[dict[str, Tensor]], before: list[tuple[int, int]], after: list[tuple[int, int]]):
    return [
        {**t, **{k: resize_boxes(t[k], b, a) for k in ("boxes", "ignore") if k in t}}
        for t, b, a in zip(targets, before, after)
    ]


def faster_rcnn_pseudo_losses(
    model: nn.Module, images: list[Tensor], targets: dict[str, list[dict]], weigh: BackgroundWeigher | None = None
) -> dict[str, Tensor]:
    """GeneralizedRCNN.forward in training mode, except that the RPN learns from targets["rpn"], the
    ROI classifier from targets["cls"] (its background samples weighted by `weigh` when given) and
    the box regression from targets["reg"] (when absent, from the classifier's samples); anchors and
    background proposals on a stage's "ignore" boxes do not count (`ignored_samples`)."""
    before = [tuple(image.shape[-2:]) for image in images]
    image_list, rpn_targets = model.transform(images, _without_ignore(targets["rpn"]))
    sizes = image_list.image_sizes
    for target, source, b, a in zip(rpn_targets, targets["rpn"], before, sizes):
        target["ignore"] = resize_boxes(source["ignore"], b, a)  # the RPN leaves anchors on it out (DetectionRPN)
    features = model.backbone(image_list.tensors)
    if isinstance(features, Tensor):
        features = OrderedDict([("0", features)])
    proposals, rpn_losses = model.rpn(image_list, features, rpn_targets)
    heads = model.roi_heads
    cls_targets = _resize_targets(targets["cls"], before, sizes)
    sampled, _, labels, regression = heads.select_training_samples(proposals, _without_ignore(cls_targets))
    logits, deltas = _roi_outputs(heads, features, sampled, sizes)
    weights = torch.cat(weigh(sampled, labels, sizes)) if weigh is not None else None
    ignored = ignored_samples(sampled, labels, cls_targets, heads.proposal_matcher.low_threshold)
    if ignored.any():
        weights = (torch.ones_like(ignored, dtype=torch.float) if weights is None else weights).masked_fill(ignored, 0.0)
    loss_classifier = heads.classifier_loss(logits, torch.cat(labels), weights)
    if "reg" in targets:  # a second sampling: the regression's positives are other boxes
        reg_targets = _resize_targets(targets["reg"], before, sizes)
        sampled, _, labels, regression = heads.select_training_samples(proposals, _without_ignore(reg_targets))
        logits, deltas = _roi_outputs(heads, features, sampled, sizes)
    _, loss_box_reg = fastrcnn_loss(logits, deltas, labels, regression)
    return {**rpn_losses, "loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}


def _without_ignore(targets: list[dict[str, Tensor]]) -> list[dict[str, Tensor]]:
    return [{k: v for k, v in t.items() if k != "ignore"} for t in targets]


def single_stage_pseudo_losses(
    model: nn.Module, images: list[Tensor], targets: dict[str, list[dict]], weigh: BackgroundWeigher | None = None
) -> dict[str, Tensor]:
    """A detector without an RPN (RetinaNet) learns from the cls-threshold targets only."""
    return model(images, _without_ignore(targets["cls"]))


@dataclass(frozen=True)
class PseudoLearner:
    """How a detector's student learns from pseudo labels."""

    loss: Callable[..., dict[str, Tensor]]  # (student, strong images, targets by stage, weigh) -> loss dict
    stages: tuple[str, ...]  # the target sets it uses
    refines: bool  # has ROI heads: box jitter and background weights apply


# stages and refinement as training.schema.metric_names declares them, which names the metrics they report
PSEUDO_LOSSES: dict[str, PseudoLearner] = {
    "faster_rcnn": PseudoLearner(faster_rcnn_pseudo_losses, *PSEUDO_STAGES["faster_rcnn"]),
    "retinanet": PseudoLearner(single_stage_pseudo_losses, *PSEUDO_STAGES["retinanet"]),
}


class PseudoStats:
    """The teacher's boxes over an epoch: proposed (above SCORE_FLOOR) and kept per stage, per class,
    and a histogram of their scores."""

    def __init__(self, class_names: list[str], stages: tuple[str, ...]):
        self.class_names, self.stages = class_names, ("initial", *stages)
        self.edges = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
        self.reset()

    def reset(self) -> None:
        n = len(self.class_names)
        self.images = 0
        self.proposed = np.zeros(n, np.int64)
        self.kept = {stage: np.zeros(n, np.int64) for stage in self.stages}
        self.counts = np.zeros((n, HISTOGRAM_BINS), np.int64)
        self.background = np.zeros(2)  # sum of the background samples' weights, their count
        self.uncertainty: list[np.ndarray] = []  # of the jittered initial survivors

    def add_background(self, weights: Tensor) -> None:
        """The teacher's background weights of the student's background samples."""
        self.background += (float(weights.sum()), len(weights))

    def add(
        self, labels: Tensor, scores: Tensor, targets: dict[str, dict[str, Tensor]], uncertainty: Tensor | None = None
    ) -> None:
        """One image: the teacher's detector labels (1..K, label l is class_names[l - 1]) and scores
        above the floor, the per-stage targets `filter_pseudo_boxes` made of them and, with box
        jitter, each box's `regression_uncertainty` (inf for boxes not refined)."""
        n = len(self.class_names)
        self.images += 1
        if uncertainty is not None:
            values = uncertainty.float().cpu().numpy()
            self.uncertainty.append(values[np.isfinite(values)])
        labels, scores = labels.cpu().numpy() - 1, scores.float().cpu().numpy()
        self.proposed += np.bincount(labels, minlength=n)
        for stage in self.stages:
            self.kept[stage] += np.bincount(targets[stage]["labels"].cpu().numpy() - 1, minlength=n)
        bins = np.clip(np.digitize(scores, self.edges) - 1, 0, HISTOGRAM_BINS - 1)
        np.add.at(self.counts, (labels, bins), 1)

    def metrics(self) -> dict[str, float]:
        """Kept ratios (omitted while undefined: nothing proposed), overall, per stage and per class,
        pseudo boxes per image, and the mean teacher weight of the student's background samples."""
        if not self.images:
            return {}
        out = {"train/pseudo_boxes_per_image": float(self.kept["initial"].sum() / self.images)}
        if self.proposed.sum():
            for stage in self.stages:
                suffix = "" if stage == "initial" else f"_{stage}"
                out[f"train/pseudo_kept_ratio{suffix}"] = float(self.kept[stage].sum() / self.proposed.sum())
        for i, name in enumerate(self.class_names):
            if self.proposed[i]:
                out[f"train/pseudo_kept_ratio/{name}"] = float(self.kept["initial"][i] / self.proposed[i])
                if "reg" in self.kept:
                    out[f"train/pseudo_kept_ratio_reg/{name}"] = float(self.kept["reg"][i] / self.proposed[i])
        if self.background[1]:
            out["train/pseudo_bg_weight"] = float(self.background[0] / self.background[1])
        refined = np.concatenate(self.uncertainty) if self.uncertainty else np.zeros(0)
        if len(refined):  # where thresholds.reg would keep half or a quarter of the refined boxes
            out["train/pseudo_box_uncertainty_p50"] = float(np.median(refined))
            out["train/pseudo_box_uncertainty_p25"] = float(np.quantile(refined, 0.25))
        return out

    def histogram(self, thresholds: PseudoThresholds) -> dict[str, Any]:
        """{"bins", "counts", "per_class", "marks"}: score bin edges, counts overall and per class,
        and the thresholds to draw over it."""
        return {
            "bins": [round(float(e), 4) for e in self.edges],
            "counts": self.counts.sum(0).tolist(),
            "per_class": {name: self.counts[i].tolist() for i, name in enumerate(self.class_names)},
            "marks": {stage: getattr(thresholds, stage) for stage in self.stages if stage in SCORE_STAGES},
        }


class StudentTeacher(nn.Module):
    """The student (trained) and its EMA teacher (no gradients, always in eval mode) in one module,
    so checkpoints, `resume` and the optimizer (which skips frozen parameters) see both rightly.
    Calling it calls the student."""

    def __init__(self, student: nn.Module):
        super().__init__()
        self.student = student
        self.teacher = copy.deepcopy(student).requires_grad_(False).eval()

    def train(self, mode: bool = True) -> StudentTeacher:
        super().train(mode)
        self.teacher.eval()  # the teacher predicts (eval-mode outputs, frozen BN) even while the student trains
        return self

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.student(*args, **kwargs)
