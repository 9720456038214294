"""The typed training config: every knob, its default and a one-line doc, in one place.

A search space's dotted key (``optim.lr``) is the path of a field here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal


from pydantic import BaseModel, ConfigDict, Field, model_validator


class Section(BaseModel):
    """A config group: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_is_default(cls, value: Any) -> Any:
        """A section written with nothing under it (`optim:`) means all defaults, as YAML users expect."""
        return {} if value is None else value


class SyntheticData(Section):
    """The embedded synthetic defect dataset (no download, deterministic from `seed`)."""

    count: int = Field(800, ge=8, description="images generated in total (train + val)")
    classes: list[str] = Field(
        default_factory=lambda: ["good", "scratch", "rust", "chip", "crack"],
        min_length=2,
        description="class names; 'good' is drawn defect-free, the others as defects of that kind",
    )
    good_fraction: float = Field(0.4, gt=0, lt=1, description="share of good (defect-free) images")
    imbalance: float = Field(
        0.25, gt=0, le=1, description="rarest defect class count / commonest defect class count"
    )
    difficulty: float = Field(0.5, ge=0, le=1, description="0 = bold defects, 1 = faint, small ones")
    seed: int = Field(0, description="seed of the generator: same seed, same images")


class ImageFolderData(Section):
    """Real images as ROOT/<class>/*.png (split: random) or ROOT/{train,val}/<class>/* (split: folders)."""

    root: Path | None = Field(None, description="folder holding one sub-folder per class")
    split: Literal["random", "folders"] = Field(
        "random", description="random: stratified split by data.val_fraction; folders: ROOT/train and ROOT/val"
    )


class CocoData(Section):
    """A COCO JSON detection dataset (the format mmdetection users already have)."""

    annotations: Path | None = Field(None, description="COCO JSON of the training images (split by data.val_fraction)")
    images: Path | None = Field(None, description="folder the JSON's file_name entries are relative to")
    val_annotations: Path | None = Field(
        None, description="COCO JSON of a fixed validation set (same image folder); none = random split"
    )


class DataConfig(Section):
    """Where images come from and how they are batched."""

    kind: Literal["synthetic", "imagefolder", "coco"] = Field("synthetic", description="data source")
    image_size: int = Field(64, ge=16, description="images are resized to image_size x image_size")
    batch_size: int = Field(32, ge=1, description="training batch size")
    val_fraction: float = Field(0.25, gt=0, lt=1, description="share of images held out for validation")
    split_seed: int = Field(0, description="seed of the train/val split")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes (0 = in the trial process)")
    synthetic: SyntheticData = Field(default_factory=SyntheticData)
    imagefolder: ImageFolderData = Field(default_factory=ImageFolderData)
    coco: CocoData = Field(default_factory=CocoData)


class ModelConfig(Section):
    """The network: a timm backbone with a classification head."""

    name: str = Field("resnet18", description="timm model name")
    pretrained: bool = Field(False, description="load pretrained weights (needs them in the local cache)")
    drop_rate: float = Field(0.0, ge=0, lt=1, description="dropout before the classifier")
    detector: Literal["faster_rcnn", "retinanet"] = Field(
        "faster_rcnn", description="detection tasks: torchvision detector on an FPN over the `name` backbone"
    )
    anchor_ratios: list[float] = Field(
        default_factory=lambda: [0.5, 1.0, 2.0],
        min_length=1,
        description="detection: anchor aspect ratios (height / width) at every FPN level",
    )
    anchor_sizes: list[float] = Field(
        default_factory=lambda: [8, 16, 32, 64, 128],
        min_length=1,
        description="detection: anchor side in pixels, one per FPN level, finest level first",
    )


class OptimConfig(Section):
    """Optimizer and learning-rate schedule."""

    name: Literal["adamw", "sgd"] = Field("adamw", description="optimizer")
    lr: float = Field(1e-3, gt=0, description="peak learning rate")
    weight_decay: float = Field(0.01, ge=0, description="decoupled (adamw) or L2 (sgd) weight decay")
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd momentum")
    schedule: Literal["onecycle", "cosine", "constant"] = Field("onecycle", description="LR schedule")
    warmup_epochs: float = Field(0.0, ge=0, description="linear warm-up for cosine/constant, in epochs")


class DetectionLossPart(Section):
    """The classification loss of one detector stage (RPN objectness or ROI classifier)."""

    name: Literal["cross_entropy", "focal"] = Field(
        "cross_entropy", description="focal = torchvision's sigmoid_focal_loss instead of cross-entropy"
    )
    focal_gamma: float = Field(2.0, ge=0, description="focal focusing parameter")
    focal_alpha: float | None = Field(0.25, gt=0, lt=1, description="focal weight of positives; none = unweighted")
    weight: float = Field(1.0, ge=0, description="multiplier of this stage's classification loss")


class LossConfig(Section):
    """Classification loss (and, for detection, per-stage losses under rpn / roi)."""

    name: Literal["cross_entropy", "focal"] = Field("cross_entropy", description="loss function")
    focal_gamma: float = Field(2.0, ge=0, description="focal loss focusing parameter (0 = cross-entropy)")
    focal_alpha: float | None = Field(
        None, gt=0, lt=1, description="focal weight of defect classes (good gets 1 - alpha); none = unweighted"
    )
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="cross-entropy label smoothing")
    rpn: DetectionLossPart = Field(default_factory=DetectionLossPart, description="detection: RPN objectness loss")
    roi: DetectionLossPart = Field(
        default_factory=DetectionLossPart, description="detection: ROI classifier loss (RetinaNet: its head's focal loss)"
    )


class AugmentConfig(Section):
    """Training augmentation magnitudes; 0 switches a transform off."""

    p: float = Field(0.5, ge=0, le=1, description="probability that each enabled magnitude transform fires")
    brightness: float = Field(0.0, ge=0, le=1, description="max relative brightness change")
    contrast: float = Field(0.0, ge=0, le=1, description="max relative contrast change")
    saturation: float = Field(0.0, ge=0, le=1, description="max relative saturation change")
    hue: float = Field(0.0, ge=0, le=0.5, description="max hue shift (fraction of the colour circle)")
    sharpness: float = Field(0.0, ge=0, le=1, description="max sharpening blend (0..1)")
    rotate: float = Field(0.0, ge=0, le=180, description="max rotation in degrees")
    hflip: float = Field(0.0, ge=0, le=1, description="horizontal flip probability")
    vflip: float = Field(0.0, ge=0, le=1, description="vertical flip probability")
    elastic: float = Field(0.0, ge=0, le=1, description="elastic distortion strength")
    grid_distortion: float = Field(0.0, ge=0, le=1, description="grid distortion limit")
    clahe: float = Field(0.0, ge=0, le=16, description="max CLAHE clip limit")
    coarse_dropout: float = Field(0.0, ge=0, le=0.5, description="max hole side as a fraction of the image")
    autocontrast: float = Field(0.0, ge=0, le=1, description="autocontrast probability")
    equalize: float = Field(0.0, ge=0, le=1, description="histogram equalization probability")
    posterize: int = Field(0, ge=0, le=7, description="max bits removed per channel by posterize")
    scale: float = Field(0.0, ge=0, le=0.5, description="max relative zoom in or out (box-aware for detection)")
    translate: float = Field(0.0, ge=0, le=0.5, description="max shift as a fraction of the image (box-aware)")


class TrainLoopConfig(Section):
    """The epoch loop and the hardware knobs."""

    epochs: int = Field(10, ge=1, description="training epochs")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda when available")
    amp: bool = Field(True, description="mixed precision on CUDA (bf16 where supported, else fp16)")
    channels_last: bool = Field(True, description="channels_last memory format on CUDA")
    grad_clip: float | None = Field(None, gt=0, description="clip the gradient norm to this value")


class EvalConfig(Section):
    """Evaluation settings."""

    good_class: str = Field("good", description="the defect-free class: miss and overkill rates count against it")
    score_threshold: float = Field(
        0.5, gt=0, lt=1, description="detection: a box scoring above this counts for image-level miss/overkill"
    )
    iou_threshold: float = Field(0.5, gt=0, lt=1, description="detection: IoU at which a predicted box is correct")


class PseudoThresholds(Section):
    """Teacher score thresholds that keep a pseudo box (Soft Teacher's initial / cls / rpn)."""

    initial: float = Field(0.5, ge=0, le=1, description="first filter of the teacher's boxes")
    cls: float = Field(0.4, ge=0, le=1, description="pseudo boxes that train the student's ROI classifier")
    rpn: float = Field(0.4, ge=0, le=1, description="pseudo boxes that train the student's RPN")


class SemiConfig(Section):
    """Semi-supervised detection: an EMA teacher pseudo-labels unlabeled images for the student."""

    ema_momentum: float = Field(0.999, ge=0, lt=1, description="teacher = momentum * teacher + (1 - momentum) * student")
    thresholds: PseudoThresholds = Field(default_factory=PseudoThresholds)
    unsup_weight: float = Field(1.0, ge=0, description="weight of the loss on pseudo-labeled images")
    labeled_fraction: float = Field(
        0.25, gt=0, le=1, description="share of training images that keep their labels; the rest are unlabeled"
    )
    unlabeled_per_labeled: float = Field(
        1.0, gt=0, description="unlabeled images per labeled image in each training batch (sampling ratio)"
    )
    burn_in_epochs: int = Field(1, ge=0, description="supervised-only epochs before the teacher starts pseudo-labeling")


class TrackingConfig(Section):
    """Where MLflow runs go."""

    uri: str | None = Field(None, description="MLflow tracking URI; none = sqlite:///<results>/mlflow.db")
    experiment: str = Field("defect-search", description="MLflow experiment name")


class TrainConfig(Section):
    """A whole training run: what `python -m training train` reads and a search trial resolves to."""

    task: str = Field("classification", description="task name (see training.tasks)")
    seed: int = Field(0, description="seed of weights init, shuffling and augmentation")
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    train: TrainLoopConfig = Field(default_factory=TrainLoopConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    semi: SemiConfig = Field(default_factory=SemiConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
