"""The typed training config: every knob, its default and a one-line doc, in one place.

A search space's dotted key (``optim.lr``) is the path of a field here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal


from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# The defect-free class's name: `eval.good_class`'s default, and the name the data kinds that make their
# own good class give it (the synthetic generator's clean images, a COCO file's images without boxes).
GOOD_CLASS = "good"


class Section(BaseModel):
    """A config group: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_is_default(cls, value: Any) -> Any:
        """A section written with nothing under it (`optim:`) means all defaults, as YAML users expect."""
        return {} if value is None else value


# Named settings of the generator: a preset fills the keys a config leaves out (a key written beside it wins).
SYNTHETIC_PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    # Detection where labels are the bottleneck (benchmarks/semi_gain.py, issue 26): many looks per defect
    # class, fainter and smaller defects, several per image, more images: a few labeled images cannot show
    # every look, so true labels on the rest add >= 0.15 mAP50 (measured in benchmarks/README.md).
    "label_hungry": {
        "count": 1000, "good_fraction": 0.2, "difficulty": 0.35, "variety": 1.0, "max_defects": 3,
        "mixed_defects": 0.3,
    },
}  # fmt: skip


class SyntheticData(Section):
    """The embedded synthetic defect dataset (no download, deterministic from `seed`)."""

    preset: Literal["default", "label_hungry"] = Field(
        "default",
        description="a named setting of the generator that fills the keys left out: label_hungry = many looks per "
        "defect class, faint small defects, 1000 images (detection where labels are the bottleneck)",
    )
    count: int = Field(800, ge=8, description="images generated in total (train + val + test)")
    classes: list[str] = Field(
        default_factory=lambda: [GOOD_CLASS, "scratch", "rust", "chip", "crack"],
        min_length=2,
        description="class names; 'good' is drawn defect-free, the others as defects of that kind",
    )
    good_fraction: float = Field(0.4, gt=0, lt=1, description="share of good (defect-free) images")
    imbalance: float = Field(
        0.25, gt=0, le=1, description="rarest defect class count / commonest defect class count"
    )
    difficulty: float = Field(0.5, ge=0, le=1, description="0 = bold defects, 1 = faint, small ones")
    max_defects: int = Field(3, ge=1, le=10, description="most defects on one defect image (1 to max, fewer more likely)")
    mixed_defects: float = Field(
        0.0, ge=0, le=1, description="chance that each extra defect on an image is of another defect class (detection)"
    )
    along_x: float = Field(
        0.5, ge=0, le=1,
        description="share of defects following the x axis (lines and rust run along it, chips flatten): "
        "wide, flat boxes (h/w < 1); 0.5 = no preferred direction",
    )
    variety: float = Field(
        0.0, ge=0, le=1,
        description="how much each defect's size, contrast and stroke vary within its class: 0 = one look per "
        "class; 1 = sizes x0.5-1.6, contrast x0.4-1.3, strokes up to 2 px wider (a few labeled images miss looks)",
    )
    seed: int = Field(0, description="seed of the generator: same seed, same images")

    @model_validator(mode="before")
    @classmethod
    def _fill_from_preset(cls, value: Any) -> Any:
        if not isinstance(value, dict) or value.get("preset") not in SYNTHETIC_PRESETS:
            return value  # no preset, or an unknown one: the Literal check names it
        return SYNTHETIC_PRESETS[value["preset"]] | value


class ImageFolderData(Section):
    """Real images as ROOT/<class>/*.png (split: random) or ROOT/{train,val[,test]}/<class>/* (split: folders)."""

    root: Path | None = Field(None, description="folder holding one sub-folder per class (or train, val, test ones)")
    split: Literal["random", "folders"] = Field(
        "random",
        description="random: stratified split by data.val_fraction (a test split by data.test_fraction); "
        "folders: ROOT/train and ROOT/val, and ROOT/test as the test split when present",
    )


class CocoData(Section):
    """A COCO JSON detection dataset (the format mmdetection users already have)."""

    annotations: Path | None = Field(
        None, description="COCO JSON of the training images (split by data.test_fraction, then val_fraction or folds)"
    )
    images: Path | None = Field(None, description="folder the JSON's file_name entries are relative to")
    val_annotations: Path | None = Field(
        None, description="COCO JSON of a fixed validation set (same image folder); none = random split"
    )
    test_annotations: Path | None = Field(
        None,
        description="COCO JSON of a fixed test set (same image folder and categories, no image of the other JSONs); "
        "none = no test set",
    )


class CsvData(Section):
    """Multi-label images listed in a Severstal-style CSV: ImageId, ClassId, EncodedPixels (RLE)."""

    file: Path | None = Field(None, description="the CSV; a row with a non-empty RLE marks its class present")
    images: Path | None = Field(
        None, description="folder of the images; its images absent from the CSV are clean (no class)"
    )
    classes: list[str] | None = Field(
        None, min_length=1, description="names of ClassId 1, 2, ...; none = class_<id> up to the largest ClassId"
    )
    test_file: Path | None = Field(None, description="CSV of the test images (same columns); needs test_images")
    test_images: Path | None = Field(
        None,
        description="folder of the test images (not data.csv.images): each one is a test image, clean if not in "
        "test_file; needs test_file",
    )


class DataConfig(Section):
    """Where images come from and how they are batched."""

    kind: Literal["synthetic", "imagefolder", "coco", "synthetic_multilabel", "csv"] = Field(
        "synthetic", description="data source (synthetic_multilabel and csv: multi-label, for the multilabel task)"
    )
    image_size: int = Field(64, ge=16, description="images are resized to image_size x image_size")
    image_width: int | None = Field(
        None, ge=16, description="multilabel task: resize to image_size (height) x image_width; none = square"
    )
    batch_size: int = Field(32, ge=1, description="training batch size")
    val_fraction: float = Field(
        0.25, gt=0, lt=1, description="share of the non-test images held out for validation (when folds is 1)"
    )
    split_seed: int = Field(0, description="seed of the train/val split and of the folds")
    test_fraction: float = Field(
        0.0, ge=0, lt=1,
        description="share of all images (of the training ones when a val folder or JSON is given) held out as a "
        "test split no search trial reads, stratified, by test_seed whatever split_seed, folds and fold are; "
        "0 = none, or the data's own test file or folder",
    )
    test_seed: int = Field(
        0, description="seed of the test hold-out, apart from split_seed: no split_seed moves an image in or out of it"
    )
    folds: int = Field(
        1, ge=1, le=20,
        description="cross-validation in a trial: 1 = one train/val split by val_fraction; k > 1 = the non-test "
        "images in k stratified folds (by split_seed; not with a val folder or JSON), fold model i validating on "
        "fold i",
    )
    fold: int = Field(
        0, ge=0, description="the fold that validates (0 to folds - 1); set per fold model by the training loop"
    )
    num_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        "auto", description="DataLoader worker processes (0 = in the trial process); auto = the trial's CPUs - 1"
    )
    cache: Literal["auto", "none", "ram", "device"] = Field(
        "auto",
        description="decoded, resized images kept for the trial process's later trials: ram, device (one uint8 "
        "tensor on the trial's GPU, batches drawn there), none; auto = device if it fits, else ram",
    )
    class_weight_power: float = Field(
        0.0, ge=0, le=1, description="loss class weights (1/freq)^power, mean 1 over samples; 0 = off, 0.5 = damped"
    )
    weighted_sampler: bool = Field(False, description="draw training images so that classes come near uniformly")
    synthetic: SyntheticData = Field(default_factory=SyntheticData)
    imagefolder: ImageFolderData = Field(default_factory=ImageFolderData)
    coco: CocoData = Field(default_factory=CocoData)
    csv: CsvData = Field(default_factory=CsvData)

    def image_shape(self) -> tuple[int, int]:
        """(height, width) every image is resized to."""
        return self.image_size, self.image_width or self.image_size

    def worker_count(self, cpu_share: int) -> int:
        """DataLoader workers for a trial holding `cpu_share` CPUs: auto leaves one for the trial itself."""
        return max(0, cpu_share - 1) if self.num_workers == "auto" else self.num_workers


class ModelConfig(Section):
    """The network: a timm backbone with a classification head."""

    name: str = Field("resnet18", description="timm model name")
    pretrained: bool = Field(False, description="load pretrained weights (needs them in the local cache)")
    init_from: Path | None = Field(
        None, description="start the backbone (and whatever else matches) from a local model.pt or timm weights file"
    )
    drop_rate: float = Field(0.0, ge=0, lt=1, description="dropout before the classifier")
    drop_path_rate: float = Field(0.0, ge=0, lt=1, description="stochastic depth rate (timm drop_path_rate)")
    freeze_stages: int = Field(0, ge=0, description="freeze the stem and the first N backbone stages (0 = none)")
    attention: Literal["none", "cbam"] = Field("none", description="cbam = a CBAM block on the last feature map")
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
        "cross_entropy", description="focal = sigmoid focal loss (training/losses/focal.py) instead of cross-entropy"
    )
    focal_gamma: float = Field(2.0, ge=0, description="focal focusing parameter")
    focal_alpha: float | None = Field(0.25, gt=0, lt=1, description="focal weight of positives; none = unweighted")
    weight: float = Field(1.0, ge=0, description="multiplier of this stage's classification loss")


class LossConfig(Section):
    """Classification loss (and, for detection, per-stage losses under rpn / roi)."""

    name: Literal["cross_entropy", "focal"] = Field("cross_entropy", description="loss function")
    focal_gamma: float = Field(2.0, ge=0, description="focal loss focusing parameter (0 = cross-entropy)")
    focal_alpha: float | Literal["auto"] | None = Field(
        None,
        description="focal weight of defect classes (good gets 1 - alpha); none = unweighted; "
        "multilabel: weight of positives, auto = 1 - the class's frequency in the training split",
    )
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="cross-entropy label smoothing")
    rpn: DetectionLossPart = Field(default_factory=DetectionLossPart, description="detection: RPN objectness loss")
    roi: DetectionLossPart = Field(
        default_factory=DetectionLossPart, description="detection: ROI classifier loss (RetinaNet: its head's focal loss)"
    )

    @field_validator("focal_alpha", mode="before")
    @classmethod
    def _alpha_number_or_auto(cls, value: Any) -> Any:
        # one error naming every accepted form, instead of one per member of the union
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if value is None or value == "auto" or (number and 0 < value < 1):
            return value
        raise ValueError(f"expected a number in (0, 1), 'auto' or none, got {value!r}")


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
    shear: float = Field(0.0, ge=0, le=45, description="max shear in degrees")
    perspective: float = Field(0.0, ge=0, le=0.3, description="max perspective corner shift (fraction of the image)")
    blur: float = Field(0.0, ge=0, le=5, description="max Gaussian blur sigma in pixels")
    erasing: float = Field(0.0, ge=0, le=0.5, description="max erased area as a fraction of the image (random erasing)")
    rrc_p: float = Field(0.0, ge=0, le=1, description="RandomResizedCrop probability")
    rrc_scale_min: float = Field(0.5, gt=0, le=1, description="RandomResizedCrop: smallest crop area (fraction)")
    rrc_ratio: float = Field(0.75, gt=0, le=1, description="RandomResizedCrop: aspect ratios in [ratio, 1/ratio]")
    shrink_p: float = Field(0.0, ge=0, le=1, description="probability of scaling the image down and padding it back")
    shrink_scale_min: float = Field(0.6, gt=0, le=1, description="scale-down-and-pad: smallest scale (up to 1)")
    shrink_pad: Literal["constant", "reflect"] = Field("constant", description="scale-down-and-pad: border fill")
    mixup_alpha: float = Field(0.0, ge=0, description="MixUp Beta(alpha, alpha) parameter (0 = off)")
    cutmix_alpha: float = Field(0.0, ge=0, description="CutMix Beta(alpha, alpha) parameter (0 = off)")
    mix_prob: float = Field(1.0, ge=0, le=1, description="probability a batch is mixed (MixUp or CutMix, 50/50)")
    device: Literal["auto", "cpu", "gpu"] = Field(
        "auto",
        description="where augmentation runs: gpu = batched on the trial's device (kornia; every enabled knob needs "
        "a device transform), cpu = per image (albumentations), auto = the device on CUDA when every knob has one",
    )


class TrainLoopConfig(Section):
    """The epoch loop and the hardware knobs."""

    epochs: int = Field(10, ge=1, description="training epochs")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda when available")
    amp: bool = Field(True, description="mixed precision on CUDA (bf16 where supported, else fp16)")
    channels_last: bool = Field(True, description="channels_last memory format on CUDA")
    grad_clip: float | None = Field(None, gt=0, description="clip the gradient norm to this value")
    cpu_threads: int | None = Field(
        None, ge=1,
        description="torch CPU threads (float sums depend on it); none = all cores, or in a search the trial's "
        "resources.cpu, which the search writes here so that an exported config retrains the same",
    )
    compile: bool = Field(False, description="torch.compile the model (slower first epoch; for long GPU runs)")


class EvalConfig(Section):
    """Evaluation settings."""

    good_class: str = Field(GOOD_CLASS, description="the defect-free class: miss and overkill rates count against it")
    tta: list[Literal["hflip", "vflip"]] = Field(
        default_factory=list, description="test-time augmentation: average softmax over the image and these flips"
    )
    score_threshold: float = Field(
        0.5, gt=0, lt=1, description="detection: a box scoring above this counts for image-level miss/overkill"
    )
    iou_threshold: float = Field(0.5, gt=0, lt=1, description="detection: IoU at which a predicted box is correct")
    target_miss_rate: float | None = Field(
        None, ge=0, lt=1, description="calibrate P(defect) on validation to this miss rate; none = off"
    )
    decision_threshold: float | None = Field(
        None, ge=0, le=1, description="deployment: defect when P(defect) = 1 - P(good) >= this; none = argmax"
    )


class PseudoThresholds(Section):
    """Teacher score thresholds that keep a pseudo box (Soft Teacher's initial / cls / rpn)."""

    initial: float = Field(0.5, ge=0, le=1, description="first filter of the teacher's boxes")
    # the paper's 0.9: at 0.4 a teacher trained on 32 images fed back its own false positives (8-16 boxes
    # per image; benchmarks/README.md, semi_gain)
    cls: float = Field(0.9, ge=0, le=1, description="pseudo boxes that train the student's ROI classifier")
    rpn: float = Field(0.9, ge=0, le=1, description="pseudo boxes that train the student's RPN")
    ignore: float = Field(
        1.0, ge=0, le=1, description="Faster R-CNN: a teacher box scoring above this but not kept by a stage "
        "is uncertain: the student's anchors and proposals on it are not taught background by that stage; 1 = off",
    )
    reg: float = Field(
        0.02, gt=0, description="Faster R-CNN: box regression learns from initial survivors whose jittered "
        "refinements vary less than this (mean std / box side); used when semi.jitter.times > 0",
    )


class JitterConfig(Section):
    """Soft Teacher's box jittering: the teacher refines jittered copies of each pseudo box, and the
    spread of the refined boxes says how reliable the box is for regression (Faster R-CNN)."""

    times: int = Field(10, ge=0, description="jittered copies per pseudo box; 0 = off (regression uses the cls boxes)")
    scale: float = Field(0.06, gt=0, le=0.5, description="jitter std as a fraction of the box's width / height")


class SemiConfig(Section):
    """Semi-supervised detection: an EMA teacher pseudo-labels unlabeled images for the student."""

    ema_momentum: float = Field(0.999, ge=0, lt=1, description="teacher = momentum * teacher + (1 - momentum) * student")
    thresholds: PseudoThresholds = Field(default_factory=PseudoThresholds)
    soft_background: bool = Field(
        True, description="Faster R-CNN: weight the student's background proposals by the teacher's background score"
    )
    jitter: JitterConfig = Field(default_factory=JitterConfig)
    unsup_weight: float = Field(1.0, ge=0, description="weight of the loss on pseudo-labeled images")
    unsup_ramp_epochs: int = Field(
        0, ge=0, description="the weight rises linearly to unsup_weight over this many epochs after burn-in; 0 = at once"
    )
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


class PhaseConfig(Section):
    """One phase of a multi-phase fine-tuning run (e.g. general, then domain data at 10x lower LR)."""

    epochs: int | None = Field(None, ge=1, description="epochs of this phase; none (last phase only) = the rest")
    lr_factor: float = Field(1.0, gt=0, description="multiplies the scheduled learning rate during this phase")
    freeze_stages: int | None = Field(None, ge=0, description="model.freeze_stages during this phase; none = keep it")
    augment: dict[str, float] = Field(
        default_factory=dict, description="augment keys overridden during this phase (e.g. {rotate: 0})"
    )

    @field_validator("augment")
    @classmethod
    def _known_augment_keys(cls, overrides: dict[str, float]) -> dict[str, float]:
        for key, value in overrides.items():
            if key not in AugmentConfig.model_fields:
                known = ", ".join(AugmentConfig.model_fields)
                raise ValueError(f"unknown augment key '{key}'; expected one of: {known}")
            AugmentConfig.model_validate({key: value})
        return overrides


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
    phases: list[PhaseConfig] = Field(
        default_factory=list, description="fine-tuning phases run in order; empty = one phase of train.epochs"
    )
    semi: SemiConfig = Field(default_factory=SemiConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
