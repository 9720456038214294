"""Tests of the synthetic defect generator: determinism, counts, boxes, visibility, learnability."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from training.config import SyntheticData
from training.data import synthetic
from training.data.synthetic import class_counts, generate, good_index

SIZE = 32


def _fresh(cfg: SyntheticData, size: int = SIZE):
    """Generate bypassing the cache, so two calls really run the generator twice."""
    return synthetic._generate_cached.__wrapped__(cfg.model_dump_json(), size)


def _box_sides(data, label: int) -> np.ndarray:
    """(width, height) of every box of class `label`."""
    boxes = [b for b, labels in zip(data.boxes, data.box_labels) for b, lab in zip(b, labels) if lab == label]
    boxes = np.array(boxes)
    return np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], axis=1)


def _defect_contrast(data) -> float:
    """Mean over defect images of |pixel - image median colour| inside the boxes minus outside."""
    gaps = []
    for image, boxes in zip(data.images, data.boxes):
        if len(boxes) == 0:
            continue
        pixels = image.astype(np.float32)
        deviation = np.abs(pixels - np.median(pixels.reshape(-1, 3), axis=0)).mean(axis=2)
        inside = np.zeros(image.shape[:2], bool)
        for x0, y0, x1, y1 in boxes.astype(int):
            inside[y0:y1, x0:x1] = True
        gaps.append(deviation[inside].mean() - deviation[~inside].mean())
    return float(np.mean(gaps))


def _features(image: np.ndarray) -> list[float]:
    """Hand-made cues a linear model can use: fine-detail extremes and a red-minus-blue excess."""
    pixels = image.astype(np.float32)
    gray = pixels.mean(axis=2)
    detail = np.sort((gray - cv2.GaussianBlur(gray, (0, 0), 2)).ravel())
    warmth = np.sort((pixels[..., 0] - pixels[..., 2]).ravel())
    warmth -= warmth[len(warmth) // 2]
    tail = len(detail) // 100
    return [detail.std(), detail[0], detail[-1], detail[tail], detail[-tail], warmth[-1], warmth[-tail], gray.std()]


def _held_out_accuracy(difficulty: float) -> tuple[float, float]:
    """Logistic regression on `_features`: (held-out accuracy, majority-class rate of that part)."""
    data = generate(SyntheticData(count=400, difficulty=difficulty), SIZE)
    features = np.array([_features(image) for image in data.images])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    model.fit(features[:300], data.labels[:300])
    held_out = data.labels[300:]
    return model.score(features[300:], held_out), np.bincount(held_out).max() / len(held_out)


def test_generate_same_seed_is_identical():
    cfg = SyntheticData(count=40, seed=7)
    first, second = _fresh(cfg), _fresh(cfg)
    # the same config and size give byte-identical images, labels and boxes
    assert all(np.array_equal(a, b) for a, b in zip(first.images, second.images))
    assert np.array_equal(first.labels, second.labels)
    assert all(np.array_equal(a, b) for a, b in zip(first.boxes, second.boxes))
    assert all(np.array_equal(a, b) for a, b in zip(first.box_labels, second.box_labels))


def test_generate_different_seed_differs():
    first, second = _fresh(SyntheticData(count=40, seed=1)), _fresh(SyntheticData(count=40, seed=2))
    # another seed gives other images, not a reordering of the same ones
    assert not any(np.array_equal(a, b) for a, b in zip(first.images, second.images))


def test_generate_negative_seed_is_deterministic():
    cfg = SyntheticData(count=16, seed=-3)
    # negative seeds are valid config values and must still be reproducible
    assert all(np.array_equal(a, b) for a, b in zip(_fresh(cfg).images, _fresh(cfg).images))


@pytest.mark.parametrize("size", [32, 64])
def test_generate_shapes_and_dtypes(size):
    cfg = SyntheticData(count=24)
    data = generate(cfg, size)
    # one uint8 HxWx3 image per requested count
    assert len(data) == cfg.count
    assert all(image.shape == (size, size, 3) and image.dtype == np.uint8 for image in data.images)
    # labels are int64 indices into cfg.classes
    assert data.labels.dtype == np.int64 and data.labels.shape == (cfg.count,)
    assert data.labels.min() >= 0 and data.labels.max() < len(cfg.classes)
    # one float32 (k, 4) box array and one int64 (k,) label array per image
    assert len(data.boxes) == len(data.box_labels) == cfg.count
    assert all(b.dtype == np.float32 and b.ndim == 2 and b.shape[1] == 4 for b in data.boxes)
    assert all(lab.dtype == np.int64 and lab.shape == (len(b),) for b, lab in zip(data.boxes, data.box_labels))


@pytest.mark.parametrize(
    "count, good_fraction, imbalance",
    [(800, 0.4, 0.25), (1000, 0.3, 0.1), (500, 0.6, 1.0), (800, 0.5, 0.5)],
)
def test_class_counts_match_good_fraction_and_imbalance(count, good_fraction, imbalance):
    cfg = SyntheticData(count=count, good_fraction=good_fraction, imbalance=imbalance)
    counts = class_counts(cfg)
    defects = np.delete(counts, good_index(cfg.classes))
    # counts are exact: they add up to `count`
    assert counts.sum() == count
    # the good share is good_fraction of all images
    assert counts[good_index(cfg.classes)] == round(good_fraction * count)
    # defect shares decay in class order, and rarest / commonest is about `imbalance`
    assert np.all(np.diff(defects) <= 0)
    assert defects.min() / defects.max() == pytest.approx(imbalance, rel=0.1)


def test_class_counts_keep_every_class_present():
    cfg = SyntheticData(count=8, good_fraction=0.9, imbalance=0.01)
    counts = class_counts(cfg)
    # even a tiny, extreme config gives each class at least one image, and still adds up
    assert counts.min() >= 1 and counts.sum() == 8


def test_generate_labels_follow_class_counts():
    cfg = SyntheticData(count=200)
    data = generate(cfg, SIZE)
    # the generated labels have exactly the planned per-class counts
    assert np.array_equal(np.bincount(data.labels, minlength=len(cfg.classes)), class_counts(cfg))
    # and they are shuffled, not in class blocks
    assert np.any(np.diff(data.labels) < 0) and not np.all(np.diff(data.labels) <= 0)


def test_generate_boxes_match_labels():
    cfg = SyntheticData(count=200)
    data = generate(cfg, SIZE)
    good = good_index(cfg.classes)
    for label, boxes, box_labels in zip(data.labels, data.boxes, data.box_labels):
        if label == good:
            # good images carry no boxes, as a (0, 4) array
            assert boxes.shape == (0, 4)
            continue
        # a defect image carries 1 to 3 defects, all of its own class
        assert 1 <= len(boxes) <= 3
        assert np.all(box_labels == label)
        # boxes are non-empty and lie inside the image
        assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2:] <= SIZE)
        assert np.all(boxes[:, 2:] > boxes[:, :2])


def test_generate_scratch_boxes_are_narrow():
    cfg = SyntheticData(count=400)
    sides = _box_sides(generate(cfg, 64), cfg.classes.index("scratch"))
    ratio = sides.min(axis=1) / sides.max(axis=1)
    # scratches are long and thin: the typical box is much longer than wide (detection relies on it)
    assert np.median(ratio) < 0.5


def test_generate_chip_boxes_are_small():
    cfg = SyntheticData(count=400)
    sides = _box_sides(generate(cfg, 64), cfg.classes.index("chip"))
    # chips are small pits: their boxes stay under a quarter of the image side
    assert np.median(sides.max(axis=1)) < 64 / 4


def test_generate_defects_fade_with_difficulty():
    bold = _defect_contrast(generate(SyntheticData(count=200, difficulty=0.0), SIZE))
    faint = _defect_contrast(generate(SyntheticData(count=200, difficulty=1.0), SIZE))
    # boxed pixels stand out from the surface far more at difficulty 0 than at difficulty 1
    assert bold > 5.0
    assert bold > 3 * faint


def test_generate_good_images_are_textured():
    cfg = SyntheticData(count=100)
    data = generate(cfg, SIZE)
    good_images = [image for image, label in zip(data.images, data.labels) if label == good_index(cfg.classes)]
    # a good image is a textured surface, not a flat fill
    assert min(float(image.astype(np.float32).std()) for image in good_images) > 2.0
    # and surfaces vary from image to image in brightness
    assert np.std([image.mean() for image in good_images]) > 5.0


def test_generate_learnable_at_low_difficulty():
    accuracy, majority = _held_out_accuracy(0.0)
    # at difficulty 0 simple image statistics already beat always guessing the commonest class
    assert accuracy > majority + 0.2


def test_generate_without_good_class_draws_defects_everywhere():
    cfg = SyntheticData(count=30, classes=["scratch", "rust"])
    data = generate(cfg, SIZE)
    # with no class named good, every image is a defect image with boxes
    assert all(len(boxes) >= 1 for boxes in data.boxes)
    # and the split follows imbalance over both classes
    assert np.array_equal(np.bincount(data.labels), class_counts(cfg))


def test_generate_good_class_name_is_case_insensitive():
    cfg = SyntheticData(count=40, classes=["Scratch", "GOOD"])
    data = generate(cfg, SIZE)
    # "GOOD" is the good class: its images carry no boxes, the others do
    assert all((len(boxes) == 0) == (label == 1) for boxes, label in zip(data.boxes, data.labels))


def test_generate_unknown_defect_names_get_distinct_styles():
    cfg = SyntheticData(count=120, classes=["good", "dent", "bubble"], difficulty=0.0)
    data = generate(cfg, SIZE)
    shift = {1: [], 2: []}
    for image, boxes, label in zip(data.images, data.boxes, data.labels):
        if label == 0:
            continue
        pixels = image.astype(np.float32)
        x0, y0, x1, y1 = boxes[0].astype(int)
        shift[label].append(pixels[y0:y1, x0:x1].reshape(-1, 3).mean(axis=0) - np.median(pixels.reshape(-1, 3), axis=0))
    # unknown names still get drawn defects with boxes
    assert all(len(boxes) >= 1 for boxes, label in zip(data.boxes, data.labels) if label != 0)
    # and the two unknown classes look different: their mean colour shifts inside boxes differ
    assert np.abs(np.mean(shift[1], axis=0) - np.mean(shift[2], axis=0)).max() > 10.0


def test_generate_cached_arrays_are_shared_and_read_only():
    cfg = SyntheticData(count=16, seed=11)
    first, second = generate(cfg, SIZE), generate(cfg, SIZE)
    # a repeated call is served from the cache: the very same arrays
    assert first.images[0] is second.images[0]
    # shared arrays are read-only, so one caller cannot corrupt another's data
    assert not first.images[0].flags.writeable and not first.labels.flags.writeable
    assert not first.boxes[0].flags.writeable
    # while each call gets its own lists
    first.images.pop()
    assert len(second.images) == cfg.count


# --- detection-style data: several mixed defects, flat boxes ------------------------------------

DETECTION = dict(count=240, max_defects=4, mixed_defects=0.4, along_x=0.9)


def _height_over_width(data, label: int) -> np.ndarray:
    width, height = _box_sides(data, label).T
    return height / width


def test_generate_detection_config_is_deterministic():
    cfg = SyntheticData(**DETECTION, seed=5)
    first, second = _fresh(cfg), _fresh(cfg)
    # the detection knobs keep the generator deterministic: same seed, same images and boxes
    assert all(np.array_equal(a, b) for a, b in zip(first.images, second.images))
    assert all(np.array_equal(a, b) for a, b in zip(first.box_labels, second.box_labels))
    assert all(np.array_equal(a, b) for a, b in zip(first.boxes, second.boxes))


def test_generate_mixed_defects_put_several_classes_on_one_image():
    cfg = SyntheticData(**DETECTION)
    data = generate(cfg, SIZE)
    good = good_index(cfg.classes)
    defect_images = [(label, classes) for label, classes in zip(data.labels, data.box_labels) if label != good]
    # several defects per image, up to max_defects
    assert max(len(classes) for _, classes in defect_images) == cfg.max_defects
    # some images carry defects of more than one class, never the good class
    assert sum(len(set(classes)) > 1 for _, classes in defect_images) >= 10
    assert all(good not in classes for _, classes in defect_images)
    # the image label is the class of its first box, so stratified splits still work
    assert all(classes[0] == label for label, classes in defect_images)
    # good images still have no boxes at all
    assert all(len(b) == 0 for b, label in zip(data.boxes, data.labels) if label == good)


def test_generate_along_x_makes_narrow_classes_flat():
    cfg = SyntheticData(**DETECTION)
    data = generate(cfg, 64)
    for name in ("scratch", "crack", "rust"):
        # elongated classes following x have flat boxes: median h/w well below 1, like the seed's defects
        assert np.median(_height_over_width(data, cfg.classes.index(name))) < 0.6, name
    # chips flatten too, but stay stubbier than the line-like classes
    assert np.median(_height_over_width(data, cfg.classes.index("chip"))) < 0.9


def test_generate_default_direction_has_no_preference():
    data = generate(SyntheticData(count=400), 64)
    ratios = _height_over_width(data, SyntheticData().classes.index("scratch"))
    # along_x 0.5 (the default) keeps scratches running either way: both flat and tall boxes are common
    assert 0.3 < np.mean(ratios < 1) < 0.7


def test_generate_detection_set_is_fast():
    began = time.process_time()  # CPU time, so a busy machine does not fail the test
    _fresh(SyntheticData(count=300, max_defects=4, mixed_defects=0.4, along_x=0.9), 128)
    # a few hundred detection images generate well within a test's budget (about 0.3 s on one core)
    assert time.process_time() - began < 3.0


def _length_spread(data, label: int) -> float:
    """Relative spread (std / mean) of the longest box side of class `label`."""
    longest = _box_sides(data, label).max(axis=1)
    return float(longest.std() / longest.mean())


def test_variety_spreads_each_class_over_more_looks():
    plain = generate(SyntheticData(count=400, difficulty=0.35), 64)
    varied = generate(SyntheticData(count=400, difficulty=0.35, variety=1.0), 64)
    for name in ("scratch", "rust", "chip", "crack"):
        label = SyntheticData().classes.index(name)
        # one class's defects come in many more sizes (x0.5-1.6 at variety 1): more looks than a few labels show
        assert _length_spread(varied, label) > 1.5 * _length_spread(plain, label), name


def test_variety_keeps_the_generator_deterministic_and_leaves_labels_alone():
    cfg = SyntheticData(count=120, variety=0.7, seed=3)
    first, second = _fresh(cfg), _fresh(cfg)
    assert all(np.array_equal(a, b) for a, b in zip(first.images, second.images))
    # variety changes how defects look, not which images carry which classes
    assert np.array_equal(first.labels, _fresh(SyntheticData(count=120, seed=3)).labels)


def test_a_preset_fills_the_keys_left_out_and_a_written_key_wins():
    hungry = SyntheticData.model_validate({"preset": "label_hungry"})
    assert (hungry.count, hungry.variety, hungry.difficulty) == (1000, 1.0, 0.35)
    own = SyntheticData.model_validate({"preset": "label_hungry", "count": 300, "seed": 4})
    assert (own.count, own.seed, own.variety) == (300, 4, 1.0)
    # the default preset is the defaults: existing configs keep their images
    assert SyntheticData.model_validate({"preset": "default"}) == SyntheticData()
    with pytest.raises(ValueError, match="label_hungry"):
        SyntheticData.model_validate({"preset": "hungry"})


def test_the_preset_choices_are_the_presets_written():
    # the config's Literal and SYNTHETIC_PRESETS name the same presets, and each one validates
    from typing import get_args

    from training.config import SYNTHETIC_PRESETS

    assert set(get_args(SyntheticData.model_fields["preset"].annotation)) == set(SYNTHETIC_PRESETS)
    for name in SYNTHETIC_PRESETS:
        assert SyntheticData.model_validate({"preset": name}).preset == name
