"""torchvision detectors (Faster R-CNN with FPN, RetinaNet) on a timm backbone, with configured anchors
and per-stage classification losses.

Stage losses are set by subclassing the stage (RPN, ROI heads, RetinaNet classification head) and
overriding its loss, never by patching torchvision: trials share processes through actor reuse.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Callable

import timm
import torch
from torch import nn
from torchvision.models.detection import RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.retinanet import RetinaNetClassificationHead, RetinaNetHead
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign, box_iou
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from training.augment.knobs import MEAN, STD
from training.config import DetectionLossPart, LossConfig, ModelConfig
from training.losses.detection import StageLoss
from training.losses.focal import sigmoid_focal_terms
from training.models.backbone import check_model_name, check_pretrained
from training.models.init_from import initialise
from training.schema.errors import ConfigError

# Sized for small inspection images on modest hardware: 64 FPN channels and a 256-wide box head keep
# a 64 px Faster R-CNN trainable on a CPU core; torchvision's 256/1024 are for 800 px COCO images.
FPN_CHANNELS = 64
BOX_HEAD_WIDTH = 256
# The finest FPN level has stride 4 (stride-2 features cost 4x more and add little for boxes >= 4 px).
FINEST_STRIDE = 4
# RPN proposals kept before/after NMS (train, eval) and ROI samples per image: fewer than torchvision's
# COCO settings because a small image has only a few thousand anchors.
PRE_NMS_TOP_N = {"training": 1000, "testing": 500}
POST_NMS_TOP_N = {"training": 500, "testing": 300}
ROI_SAMPLES_PER_IMAGE = 128
BOX_SCORE_THRESH = 0.05  # boxes below this are dropped before NMS (torchvision's default)
DETECTIONS_PER_IMAGE = 100


def backbone_levels(name: str) -> list[int]:
    """Indices of the timm backbone's feature levels usable by the FPN (stride >= FINEST_STRIDE)."""
    with torch.device("meta"):  # only the feature layout is needed: no weights are allocated
        probe = timm.create_model(name, pretrained=False, features_only=True)
    return [i for i, r in enumerate(probe.feature_info.reduction()) if r >= FINEST_STRIDE]


def max_fpn_levels(name: str) -> int:
    """The backbone's usable levels plus the max-pooled extra level on top."""
    return len(backbone_levels(name)) + 1


def check_detector(cfg: ModelConfig) -> None:
    """Raise a ConfigError for a backbone or anchor setting the detector cannot be built with."""
    check_model_name(cfg.name)
    check_pretrained(cfg)
    if any(r <= 0 for r in cfg.anchor_ratios):
        raise ConfigError("model.anchor_ratios", f"ratios (height / width) must be > 0, got {cfg.anchor_ratios}")
    if any(s <= 0 for s in cfg.anchor_sizes):
        raise ConfigError("model.anchor_sizes", f"sizes must be > 0 pixels, got {cfg.anchor_sizes}")
    if list(cfg.anchor_sizes) != sorted(cfg.anchor_sizes):
        raise ConfigError("model.anchor_sizes", f"sizes must ascend (finest level first), got {cfg.anchor_sizes}")
    most = max_fpn_levels(cfg.name)
    if len(cfg.anchor_sizes) > most:
        raise ConfigError(
            "model.anchor_sizes",
            f"one size per FPN level: '{cfg.name}' gives at most {most} levels, got {len(cfg.anchor_sizes)} sizes",
        )


class TimmFPN(nn.Module):
    """A timm `features_only` backbone under a FeaturePyramidNetwork: `levels` maps of FPN_CHANNELS."""

    def __init__(self, name: str, pretrained: bool, levels: int):
        super().__init__()
        usable = backbone_levels(name)
        with_pool = levels > len(usable)  # the coarsest level is a max-pool of the last backbone level
        indices = usable[: levels - with_pool]
        self.body = timm.create_model(name, pretrained=pretrained, features_only=True, out_indices=indices)
        self.fpn = FeaturePyramidNetwork(
            self.body.feature_info.channels(), FPN_CHANNELS, extra_blocks=LastLevelMaxPool() if with_pool else None
        )
        self.out_channels = FPN_CHANNELS
        self.feature_names = [str(i) for i in range(len(indices))]

    def forward(self, images: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return self.fpn(OrderedDict(zip(self.feature_names, self.body(images))))


def ignored_samples(
    samples: list[torch.Tensor], labels: list[torch.Tensor], targets: list[dict[str, torch.Tensor]], iou: float
) -> torch.Tensor:
    """Mask over the concatenated samples: background ones overlapping a target's "ignore" box by at
    least `iou` (where, were that box a target, they would not be background)."""
    masks = []
    for boxes, label, target in zip(samples, labels, targets):
        ignore = target.get("ignore")
        near = torch.zeros_like(label, dtype=torch.bool)
        if ignore is not None and len(ignore) and len(boxes):
            near = box_iou(boxes, ignore.to(boxes)).amax(1) >= iou
        masks.append(near & (label == 0))
    return torch.cat(masks)


class DetectionRPN(RegionProposalNetwork):
    """The RPN with its objectness loss from the config (BCE or sigmoid focal, times the stage weight)."""

    def __init__(self, *args, objectness_loss: StageLoss, **kwargs):
        super().__init__(*args, **kwargs)
        self.objectness_loss = objectness_loss

    def assign_targets_to_anchors(
        self, anchors: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """torchvision's labels (1 object, 0 background, -1 left out), with the background anchors on a
        target's "ignore" boxes (semi-supervised: uncertain pseudo boxes) left out too."""
        labels, matched = super().assign_targets_to_anchors(anchors, targets)
        if any(len(t.get("ignore", ())) for t in targets):
            ignored = ignored_samples(anchors, labels, targets, self.proposal_matcher.low_threshold)
            for label, mask in zip(labels, ignored.split([len(a) for a in anchors])):
                label[mask] = -1.0
        return labels, matched

    def compute_loss(
        self,
        objectness: torch.Tensor,
        pred_bbox_deltas: torch.Tensor,
        labels: list[torch.Tensor],
        regression_targets: list[torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # torchvision's sampling and box loss, with the objectness term swapped
        sampled_pos, sampled_neg = self.fg_bg_sampler(labels)
        sampled_pos = torch.where(torch.cat(sampled_pos, dim=0))[0]
        sampled_neg = torch.where(torch.cat(sampled_neg, dim=0))[0]
        sampled = torch.cat([sampled_pos, sampled_neg], dim=0)
        labels_all = torch.cat(labels, dim=0)
        targets_all = torch.cat(regression_targets, dim=0)
        box_loss = nn.functional.smooth_l1_loss(
            pred_bbox_deltas[sampled_pos], targets_all[sampled_pos], beta=1 / 9, reduction="sum"
        ) / sampled.numel()
        return self.objectness_loss(objectness.flatten()[sampled], labels_all[sampled]), box_loss


class DetectionRoIHeads(RoIHeads):
    """Box ROI heads with the classifier loss from the config (softmax CE, or sigmoid focal on one-hot
    targets over all classes, background included). Inference is torchvision's: boxes are scored by a
    softmax over the classes and the background also after focal training, because the background
    column carries what a per-class sigmoid ignores (on the synthetic data, after 6 epochs of the
    detection_quick baseline: mAP50 0.21 with softmax scores against 0.12 with per-class sigmoids)."""

    def __init__(self, *args, classifier_loss: StageLoss, **kwargs):
        super().__init__(*args, **kwargs)
        self.classifier_loss = classifier_loss

    def forward(self, features, proposals, image_shapes, targets=None):
        if not self.training:
            return super().forward(features, proposals, image_shapes, targets)
        proposals, _, labels, regression_targets = self.select_training_samples(proposals, targets)
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        _, box_loss = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
        losses = {"loss_classifier": self.classifier_loss(class_logits, torch.cat(labels)), "loss_box_reg": box_loss}
        return [], losses


class FocalClassificationHead(RetinaNetClassificationHead):
    """RetinaNet's classification head with the configured focal gamma, alpha and weight."""

    def __init__(self, in_channels: int, num_anchors: int, num_classes: int, part: DetectionLossPart):
        super().__init__(in_channels, num_anchors, num_classes)
        self.part = part

    def compute_loss(self, targets, head_outputs, matched_idxs):
        # torchvision's loss (per image: focal summed over valid anchors / foreground count), configured
        losses = []
        for target, logits, matched in zip(targets, head_outputs["cls_logits"], matched_idxs):
            foreground = matched >= 0
            one_hot = torch.zeros_like(logits)
            one_hot[foreground, target["labels"][matched[foreground]]] = 1.0
            valid = matched != self.BETWEEN_THRESHOLDS
            part = self.part
            loss = sigmoid_focal_terms(logits[valid].float(), one_hot[valid].float(), part.focal_gamma, part.focal_alpha)
            losses.append(loss.sum() / max(1, int(foreground.sum())))
        return self.part.weight * sum(losses) / len(targets)


def anchor_generator(cfg: ModelConfig) -> AnchorGenerator:
    """One size per FPN level, every ratio (height / width) at every level."""
    sizes = tuple((float(s),) for s in cfg.anchor_sizes)
    return AnchorGenerator(sizes=sizes, aspect_ratios=(tuple(float(r) for r in cfg.anchor_ratios),) * len(sizes))


def _transform(image_size: int) -> GeneralizedRCNNTransform:
    # min/max size = the data's image size: torchvision would otherwise upscale small images to 800 px
    return GeneralizedRCNNTransform(image_size, image_size, list(MEAN), list(STD))


FOCAL_PRIOR = 0.01  # initial foreground probability of a focal-trained classifier (RetinaNet's prior)


def _focal_prior(layer: nn.Module, part: DetectionLossPart) -> nn.Module:
    """Start a focal-trained classifier at a low foreground probability, as RetinaNet does: with a zero
    bias every anchor or proposal would start at 0.5 and the easy negatives would swamp the loss."""
    if part.name == "focal":
        nn.init.constant_(layer.bias, -math.log((1 - FOCAL_PRIOR) / FOCAL_PRIOR))
    return layer


def _faster_rcnn(backbone: TimmFPN, anchors: AnchorGenerator, loss: LossConfig, num_classes: int, image_size: int):
    rpn_head = RPNHead(backbone.out_channels, anchors.num_anchors_per_location()[0])
    _focal_prior(rpn_head.cls_logits, loss.rpn)
    predictor = FastRCNNPredictor(BOX_HEAD_WIDTH, num_classes)
    _focal_prior(predictor.cls_score, loss.roi)
    rpn = DetectionRPN(
        anchors,
        rpn_head,
        fg_iou_thresh=0.7,
        bg_iou_thresh=0.3,
        batch_size_per_image=256,
        positive_fraction=0.5,
        pre_nms_top_n=PRE_NMS_TOP_N,
        post_nms_top_n=POST_NMS_TOP_N,
        nms_thresh=0.7,
        objectness_loss=StageLoss(loss.rpn),
    )
    pool = MultiScaleRoIAlign(featmap_names=backbone.feature_names, output_size=7, sampling_ratio=2)
    roi_heads = DetectionRoIHeads(
        pool,
        TwoMLPHead(backbone.out_channels * 7 * 7, BOX_HEAD_WIDTH),
        predictor,
        fg_iou_thresh=0.5,
        bg_iou_thresh=0.5,
        batch_size_per_image=ROI_SAMPLES_PER_IMAGE,
        positive_fraction=0.25,
        bbox_reg_weights=None,
        score_thresh=BOX_SCORE_THRESH,
        nms_thresh=0.5,
        detections_per_img=DETECTIONS_PER_IMAGE,
        classifier_loss=StageLoss(loss.roi),
    )
    # FasterRCNN is this GeneralizedRCNN with stages it builds itself; ours carry the configured losses.
    return GeneralizedRCNN(backbone, rpn, roi_heads, _transform(image_size))


def _retinanet(backbone: TimmFPN, anchors: AnchorGenerator, loss: LossConfig, num_classes: int, image_size: int):
    num_anchors = anchors.num_anchors_per_location()[0]
    head = RetinaNetHead(backbone.out_channels, num_anchors, num_classes)
    head.classification_head = FocalClassificationHead(backbone.out_channels, num_anchors, num_classes, loss.roi)
    return RetinaNet(
        backbone,
        num_classes,
        min_size=image_size,
        max_size=image_size,
        image_mean=list(MEAN),
        image_std=list(STD),
        anchor_generator=anchors,
        head=head,
        score_thresh=BOX_SCORE_THRESH,
        detections_per_img=DETECTIONS_PER_IMAGE,
    )


DetectorBuilder = Callable[[TimmFPN, AnchorGenerator, LossConfig, int, int], nn.Module]
DETECTORS: dict[str, DetectorBuilder] = {"faster_rcnn": _faster_rcnn, "retinanet": _retinanet}


def create_detector(model: ModelConfig, loss: LossConfig, num_classes: int, image_size: int) -> nn.Module:
    """A torchvision detector for `num_classes` labels (background 0 included) on `image_size` images.

    In train mode it takes (images, targets) and returns a loss dict; in eval mode it returns boxes,
    labels and scores per image. Images are float RGB in [0, 1]; normalization happens inside.
    """
    check_detector(model)
    backbone = TimmFPN(model.name, model.pretrained, len(model.anchor_sizes))
    detector = DETECTORS[model.detector](backbone, anchor_generator(model), loss, num_classes, image_size)
    if model.init_from is not None:
        initialise(detector, model.init_from, backbone.body)
    return detector
