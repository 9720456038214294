"""Semi-supervised detection, Soft Teacher style: an EMA teacher pseudo-labels unlabeled images for
the student.

- A training batch holds `data.batch_size` labeled images (supervised detection loss) and
  `round(batch_size * semi.unlabeled_per_labeled)` unlabeled ones (at least 1); an epoch is one pass
  over the labeled images. `semi.labeled_fraction` of each image label keeps its boxes.
- The teacher sees an unlabeled image weakly augmented (the configured flip); the student sees it
  strongly augmented (photometric magnitudes + an affine zoom/shift) and learns from the teacher's
  boxes mapped into its view: above `thresholds.initial`, then `thresholds.rpn` for the RPN and
  `thresholds.cls` for the ROI classifier (RetinaNet: cls only), weighted by `semi.unsup_weight`
  (reached linearly over `semi.unsup_ramp_epochs` epochs after burn-in: logged as `train/unsup_weight`).
- Faster R-CNN, as in Soft Teacher: with `semi.soft_background` the classifier's background samples
  are weighted by the teacher's background probability of the same box (carried back to the
  teacher's view), not taken as sure negatives; with `semi.jitter.times` > 0 the teacher refines that
  many jittered copies (`semi.jitter.scale`) of each initial survivor, and only boxes whose refined
  copies vary less than `thresholds.reg` train the box regression.
- During the first `semi.burn_in_epochs` epochs training is supervised only and the teacher is a
  copy of the student (Unbiased Teacher's burn-in: an EMA of a barely trained student is useless on
  a short run); after that the teacher is an EMA with `semi.ema_momentum`, updated every step.
- Validation evaluates the teacher (as Soft Teacher does): `val/...` are the teacher's metrics,
  `val/student_mAP50` the student's. Per epoch after burn-in: the teacher's kept ratios
  (`train/pseudo_kept_ratio...`, `_reg` per class for the regression's share), the mean background
  weight (`train/pseudo_bg_weight`), the median and lower quartile of the refined boxes' uncertainty
  (`train/pseudo_box_uncertainty_p50/_p25`: where to set `thresholds.reg`), pseudo boxes per
  unlabeled image, and the score histogram of its boxes as `epoch_extras()["pseudo_scores"]`. Every
  epoch, burn-in included: the box precision and recall of the teacher on the (labeled) validation
  images above each score threshold (`val/pseudo_precision_cls`, `val/pseudo_recall_cls`, ...): how
  right the pseudo labels are, and how many defects they leave to be taught as background.
- `semi.unsup_weight: 0` skips the teacher entirely: supervised-only training on the labeled part,
  with the same batches and EMA (the baseline of benchmarks/semi_gain.py); unlabeled images are not
  loaded then, nor during burn-in.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from training.augment.views import DeviceViews, strong_transform, weak_transform
from training.config import AugmentConfig, TrainConfig
from training.data.loading import loader_options
from training.detection import DetectionDataset, collate
from training.detection.semi import (
    PSEUDO_LOSSES,
    SCORE_FLOOR,
    MixedBatch,
    MixedBatchSampler,
    MixedDataset,
    PseudoStats,
    StudentTeacher,
    TeacherPass,
    UnlabeledDataset,
    background_weigher,
    box_uncertainty,
    collate_mixed,
    ema_update,
    teacher_pass,
    filter_pseudo_boxes,
    map_boxes,
    split_labeled,
)
from training.loop.runtime import Runtime, epoch_seed_of
from training.metrics.detection import average_precision, box_precision_recall
from training.schema.errors import ConfigError
from training.schema.metric_names import score_stages
from training.tasks import register_task
from training.tasks.detection import DetectionTask

log = logging.getLogger(__name__)

# The teacher's box precision above `cls` when burn-in ends below which pseudo labels were measured to
# cost accuracy or gain nothing (benchmarks/README.md, semi_gain): where labels were the bottleneck 0.43
# and 0.50 cost 0.11 and 0.08 mAP50, 0.86 cost 0.015; at 10 % labeled 0.47-0.67 left it level.
TRUSTED_PRECISION = 0.9


def unsure_teacher_note(metrics: dict[str, float], cls_threshold: float) -> str | None:
    """A warning when the teacher's boxes above `cls` are too often wrong to be taught as defects, else None."""
    precision, recall = metrics["val/pseudo_precision_cls"], metrics["val/pseudo_recall_cls"]
    if precision >= TRUSTED_PRECISION:
        return None
    return (
        f"semi: burn-in ends with the teacher's boxes above thresholds.cls {cls_threshold:g} at precision "
        f"{precision:.0%}, recall {recall:.0%} on the validation images; below {TRUSTED_PRECISION:.0%} precision "
        "pseudo labels cost up to 0.11 mAP50 or gained nothing in benchmarks/README.md (semi_gain): compare "
        "with semi.unsup_weight 0, or train longer before pseudo-labeling (semi.burn_in_epochs)"
    )


@register_task("semi_supervised_detection")
class SemiDetectionTask(DetectionTask):
    model: StudentTeacher
    device_batches_ok = False  # its mixed batches come from a DataLoader

    def __init__(self, cfg: TrainConfig, runtime: Runtime):
        super().__init__(cfg, runtime)  # the supervised task: labels, val loader, the student and its teacher
        labeled, unlabeled = split_labeled(
            self.train_loader.dataset.images, cfg.semi.labeled_fraction, cfg.data.split_seed
        )
        if not len(unlabeled):
            raise ConfigError("semi.labeled_fraction", f"{cfg.semi.labeled_fraction} leaves no unlabeled training image")
        self.views = DeviceViews(cfg.augment) if self.device_augment is not None else None
        views = AugmentConfig() if self.views else cfg.augment  # made on the device: the loader hands raw images
        self.weak, self.strong = weak_transform(views, cfg.seed), strong_transform(views, cfg.seed)
        self.train_loader = self._mixed_loader(labeled, unlabeled)
        self.learner = PSEUDO_LOSSES[cfg.model.detector]
        self.stats = PseudoStats(self.labels.defect_names, self.learner.stages)
        self.epoch = 0
        # supervised loss, unsupervised loss, batches of this epoch; on the device: read once per epoch,
        # not synced every step
        self.loss_sums = torch.zeros(3, device=runtime.device)

    def _create_model(self) -> StudentTeacher:
        return StudentTeacher(super()._create_model())

    def _mixed_loader(self, labeled, unlabeled) -> DataLoader:
        data, size = self.cfg.data, self.cfg.data.image_size
        dataset = MixedDataset(
            DetectionDataset(labeled, self.labels, self.augment), UnlabeledDataset(unlabeled, size, self.weak, self.strong)
        )
        self.unlabeled_per_batch = max(1, round(data.batch_size * self.cfg.semi.unlabeled_per_labeled))
        sampler = MixedBatchSampler(
            len(labeled), len(unlabeled), data.batch_size, self.unlabeled_per_batch, self.shuffle_generator
        )
        return DataLoader(
            dataset, batch_sampler=sampler, collate_fn=collate_mixed(collate), **loader_options(data, self.runtime, seeded=False)
        )

    @property
    def burning_in(self) -> bool:
        return self.epoch <= self.cfg.semi.burn_in_epochs

    def start_epoch(self, epoch: int) -> None:
        super().start_epoch(epoch)
        epoch_seed = epoch_seed_of(self.cfg.seed, epoch)
        # distinct streams: the views must not share the labeled pipeline's random draws
        self.weak.set_random_seed(epoch_seed + 1)
        self.strong.set_random_seed(epoch_seed + 2)
        if self.views is not None:
            self.views.start_epoch(epoch_seed)
        self.epoch = epoch
        # unlabeled images only load when they are used: burn-in and supervised-only runs skip them
        pseudo_labels = not self.burning_in and self.cfg.semi.unsup_weight > 0
        self.train_loader.batch_sampler.unlabeled_per_batch = self.unlabeled_per_batch if pseudo_labels else 0
        self.stats.reset()
        self.loss_sums.zero_()

    @classmethod
    def check(cls, cfg: TrainConfig) -> None:
        super().check(cfg)
        if cfg.semi.labeled_fraction >= 1:
            raise ConfigError("semi.labeled_fraction", "1.0 leaves no unlabeled image; use task 'detection' for fully labeled data")
        thresholds = cfg.semi.thresholds
        for stage in score_stages(cfg.model.detector):
            if getattr(thresholds, stage) >= 1:
                raise ConfigError(f"semi.thresholds.{stage}", "must be < 1: a pseudo box must score above it")
        if cfg.semi.jitter.times == 1:
            raise ConfigError("semi.jitter.times", "0 (off) or at least 2: one jittered copy has no spread")

    def training_loss(self, batch: MixedBatch) -> torch.Tensor:
        supervised = super().training_loss(batch.labeled)
        unsupervised = torch.zeros((), device=self.runtime.device)
        if not self.burning_in and batch.weak and self.cfg.semi.unsup_weight > 0:
            unsupervised = self.unsupervised_loss(batch)
        one = self.loss_sums.new_ones(())
        self.loss_sums += torch.stack([supervised.detach().float(), unsupervised.detach().float(), one])
        return supervised + self.unsup_weight * unsupervised

    @property
    def unsup_weight(self) -> float:
        """This epoch's weight of the unsupervised loss: 0 during burn-in, then `semi.unsup_weight`,
        reached in equal steps over the first `semi.unsup_ramp_epochs` epochs (a young teacher's
        gradient on unlabeled images would otherwise outweigh the labeled one at once)."""
        semi = self.cfg.semi
        since_burn_in = self.epoch - semi.burn_in_epochs
        if since_burn_in <= 0:
            return 0.0
        return semi.unsup_weight * min(1.0, since_burn_in / max(semi.unsup_ramp_epochs, 1))

    def _images(self, images: list[torch.Tensor]) -> list[torch.Tensor]:
        return list(self.runtime.to_device(torch.stack(images)).float() / 255)

    def _views(self, batch: MixedBatch) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """(weak, strong, weak -> strong box matrices) of the unlabeled images, on the device."""
        if self.views is None:
            return self._images(batch.weak), self._images(batch.strong), batch.matrices
        weak, strong, matrices = self.views(torch.stack(self._images(batch.weak)))
        return list(weak), list(strong), list(matrices)

    def unsupervised_loss(self, batch: MixedBatch) -> torch.Tensor:
        """The student's detection loss on its strong views against the teacher's pseudo boxes."""
        semi = self.cfg.semi
        weak, strong, matrices = self._views(batch)
        seen = teacher_pass(self.model.teacher, weak)
        size = tuple(strong[0].shape[-2:])
        jitter = self.learner.refines and semi.jitter.times > 0
        targets = self.pseudo_targets(seen, matrices, size, jitter)
        stages = [s for s in ("initial", *self.learner.stages) if s != "reg" or jitter]
        by_stage = {stage: [t[stage] for t in targets] for stage in stages}
        weigh = None
        if self.learner.refines and semi.soft_background:
            weigh = background_weigher(self.model.teacher, seen, matrices, [size] * len(strong), self.stats.add_background)
        return sum(self.learner.loss(self.model.student, strong, by_stage, weigh).values())

    def pseudo_targets(
        self, seen: TeacherPass, matrices: list[torch.Tensor], size: tuple[int, int], jitter: bool
    ) -> list[dict[str, dict[str, torch.Tensor]]]:
        """Per image, the per-stage targets in the student's view; counts the teacher's boxes."""
        semi = self.cfg.semi
        found = []
        for prediction in seen.detections:
            above = prediction["scores"] > SCORE_FLOOR
            found.append([prediction[k][above].detach() for k in ("boxes", "labels", "scores")])
        uncertainties: list[torch.Tensor | None] = [None] * len(found)
        if jitter:  # only initial survivors can train the regression: refine just those
            survivors = [scores > semi.thresholds.initial for _, _, scores in found]
            refined = box_uncertainty(
                self.model.teacher, seen, [b[m] for (b, _, _), m in zip(found, survivors)],
                [lab[m] for (_, lab, _), m in zip(found, survivors)], semi.jitter.times, semi.jitter.scale,
            )  # fmt: skip
            uncertainties = [
                torch.full_like(scores, float("inf")).masked_scatter(m, u.to(scores))
                for (_, _, scores), m, u in zip(found, survivors, refined)
            ]
        targets = []
        for (boxes, labels, scores), uncertainty, matrix in zip(found, uncertainties, matrices):
            counted = filter_pseudo_boxes(boxes, labels, scores, semi.thresholds, uncertainty)  # the teacher's view
            self.stats.add(labels, scores, counted, uncertainty)
            mapped, inside = map_boxes(boxes.float(), matrix, size)
            kept = None if uncertainty is None else uncertainty[inside]
            targets.append(filter_pseudo_boxes(mapped, labels[inside], scores[inside], semi.thresholds, kept))
        return targets

    def after_step(self) -> None:
        momentum = 0.0 if self.burning_in else self.cfg.semi.ema_momentum
        ema_update(self.model.teacher, self.model.student, momentum)

    @property
    def eval_model(self) -> nn.Module:
        """The teacher: Soft Teacher evaluates (and deploys) the EMA model."""
        return self.model.teacher

    @torch.no_grad()
    def eval_batch(self, batch: Any) -> None:
        super().eval_batch(batch)  # the teacher's detections
        self._detect(self.model.student, batch)  # `evaluate` scores the student too

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        teacher, targets = self.predictions()  # `eval_model`: the teacher
        metrics = self.scores(teacher, targets)
        student, _ = self.predictions(self.model.student)
        metrics["val/student_mAP50"] = average_precision(student, targets, len(self.labels.defect_names))["mAP50"]
        for stage in score_stages(self.cfg.model.detector):
            score = getattr(self.cfg.semi.thresholds, stage)
            precision, recall = box_precision_recall(teacher, targets, score, self.cfg.eval.iou_threshold)
            metrics[f"val/pseudo_precision_{stage}"], metrics[f"val/pseudo_recall_{stage}"] = precision, recall
        if self.epoch == self.cfg.semi.burn_in_epochs and self.cfg.semi.unsup_weight > 0:
            note = unsure_teacher_note(metrics, self.cfg.semi.thresholds.cls)
            if note:
                log.warning(note)
        supervised, unsupervised, batches = self.loss_sums.tolist()
        metrics["train/sup_loss"] = supervised / max(batches, 1)
        metrics["train/unsup_loss"] = unsupervised / max(batches, 1)
        metrics["train/unsup_weight"] = self.unsup_weight
        return {**metrics, **self.stats.metrics()}

    def epoch_extras(self) -> dict[str, Any]:
        if not self.stats.images:
            return {}
        return {"pseudo_scores": self.stats.histogram(self.cfg.semi.thresholds)}
