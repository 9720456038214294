"""`load_plan`: a valid space file becomes a plan; every bad one is a ConfigError naming file and key."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import BaseModel

from search.space import LogUniform
from search.spec import SchedulerSettings, load_plan, read_plan
from training.config import TrainConfig
from training.schema.errors import ConfigError
from training.schema.task_keys import DETECTOR_ONLY, TASK_KEYS
from training.tasks import TASKS


def class_folders(root: Path, names: list[str]) -> Path:
    """ROOT/<name>/img.png for each class name (empty files: the checks look at names only)."""
    for name in names:
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "img.png").write_bytes(b"")
    return root


def edited(spec: dict[str, Any], edits: dict[str, Any]) -> dict[str, Any]:
    """`spec` with each top-level section updated by `edits` (mappings merged one level deep)."""
    for section, value in edits.items():
        if isinstance(value, dict) and isinstance(spec.get(section), dict):
            spec[section] = {**spec[section], **value}
        else:
            spec[section] = value
    return spec


# ---------------------------------------------------------------- valid files


def test_load_plan_minimal_space_builds_the_plan(minimal_space, write_space):
    path = write_space(minimal_space, "tiny-search.yaml")
    plan = load_plan(path)
    # the plan remembers the file it came from
    assert plan.path == path
    # without `name`, the search is named after the space file's stem
    assert plan.name == "tiny-search"
    # scheduler.max_epochs is the epoch budget of every trial: it becomes base train.epochs
    assert plan.base.train.epochs == 3 and plan.epochs == 3
    # the top-level data section lands in the base training config
    assert (plan.base.data.image_size, plan.base.data.synthetic.count) == (32, 40)
    # base values land in the base training config
    assert plan.base.model.name == "resnet10t"
    # keys set nowhere keep the training config's defaults
    assert plan.base.optim == TrainConfig().optim and plan.base.augment == TrainConfig().augment
    # the space is parsed into distributions keyed by dotted key
    assert plan.space == {"optim.lr": LogUniform(1.0e-4, 1.0e-2)}


def test_load_plan_name_in_file_wins_over_stem(minimal_space, write_space):
    plan = load_plan(write_space({**minimal_space, "name": "nightly.v2"}, "space.yaml"))
    # an explicit `name` replaces the file-stem default
    assert plan.name == "nightly.v2"


@pytest.mark.parametrize(
    ("scheduler", "base_train", "epochs"),
    [
        pytest.param({"max_epochs": 4}, {}, 4, id="max_epochs-sets-epochs"),
        pytest.param({"max_epochs": 4}, {"epochs": 9}, 4, id="max_epochs-overrides-base-epochs"),
        pytest.param({"name": "none"}, {"epochs": 5}, 5, id="no-max_epochs-keeps-base-epochs"),
        pytest.param({"name": "none"}, {}, TrainConfig().train.epochs, id="no-max_epochs-keeps-default"),
    ],
)
def test_load_plan_epoch_budget(minimal_space, write_space, scheduler, base_train, epochs):
    minimal_space["scheduler"] = scheduler
    minimal_space["base"]["train"] = base_train
    plan = load_plan(write_space(minimal_space))
    # a trial's epoch budget is scheduler.max_epochs when given, else base train.epochs (else its default)
    assert plan.base.train.epochs == epochs == plan.epochs


@pytest.mark.parametrize(
    "space",
    [
        pytest.param({"optim.lr": {"uniform": [1.0e-4, 1.0e-2]}}, id="uniform"),
        pytest.param({"train.epochs": {"int": [1, 5]}}, id="int"),
        pytest.param({"data.batch_size": {"int": [8, 32], "step": 8}}, id="int-step"),
        pytest.param({"optim.name": {"choice": ["adamw", "sgd"]}}, id="choice"),
        pytest.param({"loss.focal_alpha": {"choice": [None, 0.25]}}, id="choice-with-null"),
        pytest.param({"data.synthetic.classes": {"choice": [["good", "bad"], ["good", "a", "b"]]}}, id="choice-lists"),
    ],
)
def test_load_plan_accepts_each_kind_of_distribution(minimal_space, write_space, space):
    minimal_space["space"] = space
    plan = load_plan(write_space(minimal_space))
    # every key of the space file is searched, nothing else
    assert list(plan.space) == list(space)


@pytest.mark.parametrize("gpu", [0, 0.125, 0.25, 0.333, 0.5, 1])
def test_load_plan_gpu_share_that_divides_a_card_is_fine(minimal_space, write_space, gpu):
    minimal_space["resources"] = {"cpu": 1, "gpu": gpu}
    plan = load_plan(write_space(minimal_space))
    # 1/n packs n trials on one card (0.333 counts as a third), 1 gives a trial the card
    assert plan.spec.resources.gpu == gpu


@pytest.mark.parametrize(
    "gpu, expected",
    [(0.3, "0.3 does not divide a card"), (0.7, "0.7 does not divide a card"), (2, "a trial trains on one GPU")],
)
def test_load_plan_gpu_share_that_wastes_a_card_is_refused(minimal_space, write_space, gpu, expected):
    minimal_space["resources"] = {"cpu": 1, "gpu": gpu}
    # a share that leaves part of a card idle, or a second card no trial uses, is refused with one line on the key
    with pytest.raises(ConfigError) as err:
        read_plan(write_space(minimal_space))
    assert err.value.key == "resources.gpu" and expected in err.value.message and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "task, key, reads",
    [
        ("detection", "loss.focal_gamma", "of loss it reads: loss.rpn, loss.roi"),
        ("detection", "model.drop_rate", "of model it reads: model.name"),
        ("classification", "loss.rpn.focal_gamma", "of loss it reads: loss.name, loss.focal_gamma"),
        ("classification", "semi.unsup_weight", "reads no semi.* key; it reads: seed, data"),
        ("classification", "eval.decision_threshold", "of eval it reads: eval.good_class"),
    ],
)
def test_read_plan_refuses_a_searched_key_the_task_ignores(minimal_space, write_space, task, key, reads):
    minimal_space["task"] = task
    minimal_space["space"] = {"optim.lr": {"loguniform": [1e-4, 1e-2]}, key: {"uniform": [0.1, 0.2]}}
    # a key the task never reads is refused on the space entry, naming the keys the task does read there
    with pytest.raises(ConfigError) as err:
        read_plan(write_space(minimal_space))
    assert err.value.key == f"space.{key}" and reads in err.value.message, str(err.value)


@pytest.mark.parametrize(
    "task, key", [("detection", "loss.rpn.focal_gamma"), ("semi_supervised_detection", "semi.jitter.scale")]
)
def test_read_plan_refuses_a_key_only_another_detector_reads(minimal_space, write_space, task, key):
    minimal_space.update(task=task, base={"model": {"name": "resnet10t", "detector": "retinanet"}}, search={"metric": "val/mAP50"})
    minimal_space["space"] = {"optim.lr": {"loguniform": [1e-4, 1e-2]}, key: {"uniform": [0.1, 0.2]}}
    # RetinaNet has no RPN and no ROI heads: every trial would ignore the key
    with pytest.raises(ConfigError) as err:
        read_plan(write_space(minimal_space))
    assert err.value.key == f"space.{key}" and "'retinanet' does not read" in err.value.message, str(err.value)
    # Faster R-CNN reads it, and so do some trials of a search over the detector
    minimal_space["base"]["model"]["detector"] = "faster_rcnn"
    assert key in read_plan(write_space(minimal_space)).space
    minimal_space["base"]["model"]["detector"] = "retinanet"
    minimal_space["space"]["model.detector"] = {"choice": ["faster_rcnn", "retinanet"]}
    assert key in read_plan(write_space(minimal_space)).space


def test_read_plan_lists_base_settings_no_trial_reads(minimal_space, write_space):
    minimal_space.update(task="detection", base={"model": {"name": "resnet10t"}, "loss": {"focal_gamma": 3.5, "rpn": {"focal_gamma": 2.5}}})
    minimal_space["search"] = {"metric": "val/mAP50"}
    plan = read_plan(write_space(minimal_space))
    # detection reads loss.rpn, never loss.focal_gamma: shown with what it reads, not refused
    assert [e.key for e in plan.unread] == ["base.loss.focal_gamma"] and "loss.rpn" in plan.unread[0].message
    assert plan.unread[0].file == str(write_space(minimal_space))
    # a searched key overrides its base value: nothing to say
    minimal_space["space"]["loss.rpn.focal_gamma"] = {"uniform": [1.0, 3.0]}
    minimal_space["base"]["loss"] = {"rpn": {"focal_gamma": 2.5}}
    assert read_plan(write_space(minimal_space)).unread == []


def is_config_path(prefix: str) -> bool:
    current = TrainConfig
    for part in prefix.split("."):
        if current is None or part not in current.model_fields:
            return False
        annotation = current.model_fields[part].annotation
        current = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return True


def test_every_task_declares_keys_of_the_training_config():
    # each declared prefix is a path of the training config (a renamed field cannot leave a stale declaration)
    for task, prefixes in TASK_KEYS.items():
        for prefix in prefixes:
            assert is_config_path(prefix), (task, prefix)
    # so is each detector-only key, and it names detectors the config knows
    detectors = set(get_args(TrainConfig.model_fields["model"].annotation.model_fields["detector"].annotation))
    for prefix, readers in DETECTOR_ONLY.items():
        assert is_config_path(prefix) and set(readers) < detectors, prefix
    # and every registered task has a declaration (register_task refuses one without)
    assert set(TASKS) <= set(TASK_KEYS)


def test_load_plan_imagefolder_with_two_classes_is_fine(minimal_space, write_space, tmp_path):
    root = class_folders(tmp_path / "images", ["good", "scratch"])
    minimal_space["data"] = {"kind": "imagefolder", "image_size": 32, "imagefolder": {"root": str(root)}}
    plan = load_plan(write_space(minimal_space))
    # a root with two class folders holding images passes the up-front data check
    assert plan.base.data.imagefolder.root == root


def test_load_plan_baseline_inside_the_space_is_fine(minimal_space, write_space):
    minimal_space["space"]["optim.name"] = {"choice": ["adamw", "sgd"]}
    minimal_space["search"] = {"baseline": [{"optim.lr": 1.0e-3, "optim.name": "sgd"}]}
    plan = load_plan(write_space(minimal_space))
    # a baseline point whose values are all inside the searched ranges is kept
    assert plan.spec.search.baseline == [{"optim.lr": 1.0e-3, "optim.name": "sgd"}]


def test_load_plan_baseline_left_out_keys_take_the_base_value(minimal_space, write_space):
    minimal_space["space"]["optim.name"] = {"choice": ["adamw", "sgd"]}
    minimal_space["base"]["optim"] = {"lr": 2.0e-3}
    minimal_space["search"] = {"baseline": [{"optim.name": "sgd"}]}
    plan = load_plan(write_space(minimal_space))
    # a searched key a baseline leaves out is evaluated at its base value
    assert plan.baseline == [{"optim.lr": 2.0e-3, "optim.name": "sgd"}]


def test_load_plan_objectives_set_the_default_metric_and_parse_constraints(minimal_space, write_space):
    minimal_space["search"] = {
        "objectives": [{"metric": "val/miss_rate", "mode": "min"}, {"metric": "val/overkill_rate", "mode": "min"}],
        "sampler": "nsga2",
        "constraints": ["val/miss_rate <= 0.02", "val/accuracy>.5"],
    }
    plan = load_plan(write_space(minimal_space))
    # without an explicit metric, ASHA's metric and mode are the first objective's
    assert (plan.spec.search.metric, plan.spec.search.mode) == ("val/miss_rate", "min")
    # constraints are parsed into metric, operator and bound (spaces optional)
    assert [(c.metric, c.op, c.bound) for c in plan.constraints] == [("val/miss_rate", "<=", 0.02), ("val/accuracy", ">", 0.5)]

    minimal_space["search"]["metric"] = "val/macro_f1"
    # an explicit metric stays the one ASHA uses, with its own mode (default max)
    plan = load_plan(write_space(minimal_space))
    assert (plan.spec.search.metric, plan.spec.search.mode) == ("val/macro_f1", "max")


@pytest.mark.parametrize("path", sorted(Path(__file__).resolve().parents[2].glob("spaces/*.yaml")), ids=lambda p: p.name)
def test_load_plan_shipped_space_files_are_valid(path):
    # every example space file in spaces/ passes the checks
    assert load_plan(path).space


@pytest.mark.parametrize("scheduler, stopper", [("none", "none"), ({"brackets": 1}, "ASHA"), ({}, "Hyperband")])
def test_scheduler_settings_name_what_stops_a_trial_early(scheduler, stopper):
    # the progress lines and the summary name the scheduler the settings make: one bracket is ASHA, more
    # (the default) asynchronous Hyperband, none stops no trial
    assert SchedulerSettings.model_validate(scheduler).stopper() == stopper


# ---------------------------------------------------------------- errors

MISSING = object()  # no file written at all

# (content: section edits | raw YAML text | callable(tmp_path) -> edits | MISSING, expected key, message fragment)
ERRORS = [
    pytest.param(MISSING, None, "file not found", id="missing-file"),
    pytest.param("space: {optim.lr: [1, 2\n", None, "invalid YAML (line", id="invalid-yaml"),
    pytest.param(
        'space: !!python/object/apply:os.system ["echo hi"]\n',
        "space",
        "YAML tag !!python/object/apply:os.system is not allowed (line 1)",
        id="python-tag-refused",
    ),
    pytest.param({"serach": {"metric": "val/loss"}}, "serach", "unknown key; did you mean 'search'?", id="unknown-top-key"),
    pytest.param({"search": {"metrc": "val/loss"}}, "search.metrc", "did you mean 'metric'?", id="unknown-nested-key"),
    pytest.param({"base": {"optim": {"lrr": 0.1}}}, "base.optim.lrr", "did you mean 'lr'?", id="unknown-base-key"),
    pytest.param(
        {"space": {"optim.lrr": {"uniform": [0.1, 0.2]}}},
        "space.optim.lrr",
        "not a training config key; did you mean 'optim.lr'?",
        id="space-key-not-in-config",
    ),
    pytest.param({"space": {"optim": {"uniform": [0.1, 0.2]}}}, "space.optim", "is a config section", id="space-key-is-section"),
    pytest.param({"space": {"optim.lr": {"uniform": [0.2, 0.1]}}}, "space.optim.lr.uniform", "expected lo < hi", id="lo-ge-hi"),
    pytest.param({"space": {"optim.lr": {"uniform": [0.1, 0.1]}}}, "space.optim.lr.uniform", "expected lo < hi", id="lo-eq-hi"),
    pytest.param(
        {"space": {"optim.lr": {"loguniform": [0.0, 0.1]}}}, "space.optim.lr.loguniform", "needs lo > 0", id="loguniform-lo-0"
    ),
    pytest.param(
        {"space": {"augment.hflip": {"loguniform": [-0.5, 0.5]}}},
        "space.augment.hflip.loguniform",
        "needs lo > 0",
        id="loguniform-lo-negative",
    ),
    pytest.param({"space": {"optim.name": {"choice": []}}}, "space.optim.name.choice", "non-empty list", id="choice-empty"),
    pytest.param({"space": {"train.epochs": {"int": [1.5, 4]}}}, "space.train.epochs.int", "two integers", id="int-not-integers"),
    pytest.param(
        {"space": {"optim.name": {"choice": ["adamw", "rmsprop"]}}},
        "space.optim.name",
        "value 'rmsprop' does not fit optim.name",
        id="choice-value-does-not-fit",
    ),
    pytest.param(
        {"search": {"metric": "val/accuracy_top5"}},
        "search.metric",
        "task 'classification' does not report 'val/accuracy_top5'",
        id="metric-not-reported",
    ),
    pytest.param({"search": {"mode": "maximize"}}, "search.mode", "'max' or 'min'", id="mode-not-min-max"),
    pytest.param({"search": {"num_samples": 0}}, "search.num_samples", "greater than or equal to 1", id="num-samples-0"),
    pytest.param({"resources": {"gpu": 1.5}}, "resources.gpu", "a trial trains on one GPU", id="gpu-1.5"),
    pytest.param(
        lambda tmp: {"data": {"kind": "imagefolder", "imagefolder": {"root": str(tmp / "no-such-folder")}}},
        "data.imagefolder.root",
        "folder not found",
        id="imagefolder-root-missing",
    ),
    pytest.param(
        lambda tmp: {"data": {"kind": "imagefolder", "imagefolder": {"root": str(class_folders(tmp / "one", ["good"]))}}},
        "data.imagefolder.root",
        "expected at least 2 class folders",
        id="imagefolder-one-class",
    ),
    pytest.param(
        {"search": {"baseline": [{"optim.lr": 1.0e-3, "optim.weight_decay": 0.1}]}},
        "search.baseline.0.optim.weight_decay",
        "not a searched key",
        id="baseline-key-not-searched",
    ),
    pytest.param(
        {"search": {"baseline": [{"optim.lr": 1.0e-3}, {"optim.lr": 0.5}]}},
        "search.baseline.1.optim.lr",
        "outside the searched range of optim.lr",
        id="baseline-value-outside-range",
    ),
    pytest.param(
        {"space": {"optim.lr": {"loguniform": [1.0e-2, 1.0e-1]}}, "search": {"baseline": [{}]}},
        "search.baseline.0.optim.lr",
        "(the base value; give one in the baseline) is outside the searched range",
        id="baseline-base-value-outside-range",
    ),
    pytest.param(
        {"search": {"objectives": [{"metric": "val/miss_rat", "mode": "min"}, {"metric": "val/overkill_rate", "mode": "min"}]}},
        "search.objectives.0.metric",
        "does not report 'val/miss_rat'; did you mean 'val/miss_rate'?",
        id="first-objective-metric-not-reported",
    ),
    pytest.param(
        {"search": {"objectives": [{"metric": "val/miss_rate", "mode": "lower"}]}},
        "search.objectives.0.mode",
        "'max' or 'min'",
        id="objective-mode-not-min-max",
    ),
    pytest.param(
        {"search": {"objectives": [{"metric": "val/miss_rate", "mode": "min"}, {"metric": "val/miss_rate", "mode": "max"}]}},
        "search.objectives.1.metric",
        "already an objective",
        id="objective-twice",
    ),
    pytest.param({"search": {"sampler": "cmaes"}}, "search.sampler", "'tpe' or 'nsga2'", id="sampler-unknown"),
    pytest.param(
        {"search": {"constraints": ["val/miss_rate <= 0.02", "val/miss_rate == 0.02"]}},
        "search.constraints.1",
        "expected '<metric> <op> <number>' with op one of <=, >=, <, >",
        id="constraint-bad-operator",
    ),
    pytest.param(
        {"search": {"constraints": ["val/miss_rate <= __import__('os')"]}},
        "search.constraints.0",
        "expected '<metric> <op> <number>'",
        id="constraint-not-a-number-is-not-evaluated",
    ),
    pytest.param(
        {"search": {"constraints": ["val/mis_rate < 0.1"]}},
        "search.constraints.0",
        "does not report 'val/mis_rate'; did you mean 'val/miss_rate'?",
        id="constraint-metric-not-reported",
    ),
]


@pytest.mark.parametrize(("content", "key", "fragment"), ERRORS)
def test_load_plan_error_names_file_key_and_problem(minimal_space, write_space, tmp_path, content, key, fragment):
    if content is MISSING:
        path = tmp_path / "missing.yaml"
    elif isinstance(content, str):
        path = write_space(content)
    else:
        edits = content(tmp_path) if callable(content) else content
        path = write_space(edited(minimal_space, edits))
    with pytest.raises(ConfigError) as caught:
        load_plan(path)
    error = caught.value
    # the error is attributed to the space file
    assert error.file == str(path)
    # it names the dotted key at fault (None: the file as a whole)
    assert error.key == key
    # and says what is wrong
    assert fragment in error.message
    # its text is the one line the CLI prints: FILE: KEY: message
    assert str(error) == ": ".join(p for p in (str(path), key, error.message) if p)


def test_load_plan_python_tag_is_not_executed(write_space, tmp_path):
    marker = tmp_path / "executed"
    path = write_space(f'space: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(ConfigError, match="YAML tag !!python/object/apply:os.system is not allowed"):
        load_plan(path)
    # YAML is read with safe_load: the tag is refused, the command never runs
    assert not marker.exists()




@pytest.mark.parametrize(
    "space",
    [
        pytest.param({"train.epochs": {"uniform": [1, 5]}}, id="uniform-on-int"),
        pytest.param({"data.batch_size": {"loguniform": [8, 64]}}, id="loguniform-on-int"),
    ],
)
def test_load_plan_float_range_on_int_field_is_refused(minimal_space, write_space, space):
    minimal_space["space"] = space
    key = next(iter(space))
    # a continuous range over an integer field samples non-integers that no trial can run: refuse it up front
    with pytest.raises(ConfigError) as caught:
        load_plan(write_space(minimal_space))
    assert caught.value.key.startswith(f"space.{key}")


def test_load_plan_bad_value_under_base_data_names_base_key(minimal_space, write_space):
    minimal_space["base"]["data"] = {"batch_size": 0}
    del minimal_space["data"]["batch_size"]
    with pytest.raises(ConfigError) as caught:
        load_plan(write_space(minimal_space))
    # the key names where the bad value is written in the file: base.data.batch_size
    assert caught.value.key == "base.data.batch_size"
