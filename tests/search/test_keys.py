"""`python -m search keys`: every key a task reads, with type, default, allowed values and description,
read from the training config's pydantic models; filtered by a pattern; a table on a terminal."""

from __future__ import annotations

import pytest
from rich.console import Console

from search.cli import main
from search.keys import KeyInfo, config_keys, print_keys, task_keys
from search.space import check_dotted_key
from training.config import AugmentConfig, TrainConfig
from training.schema.config_file import flatten
from training.schema.errors import ConfigError
from training.schema.task_keys import TASK_KEYS, reads


def by_key(task: str | None = None, pattern: str | None = None) -> dict[str, KeyInfo]:
    return {info.key: info for info in task_keys(task, pattern)}


def test_keys_optim_lr_has_type_default_range_and_description():
    # a row is read from the field itself: its type, default, bound and docstring
    assert by_key()["optim.lr"] == KeyInfo("optim.lr", "float", "0.001", "> 0", "peak learning rate")


@pytest.mark.parametrize(
    "task, key, allowed",
    [
        ("detection", "model.detector", "faster_rcnn | retinanet"),
        ("classification", "augment.device", "auto | cpu | gpu"),
        ("classification", "eval.tta", "hflip | vflip"),
        ("classification", "augment.hflip", "[0, 1]"),
        ("classification", "data.val_fraction", "(0, 1)"),
        ("classification", "model.drop_rate", "[0, 1)"),
        ("classification", "data.num_workers", ">= 0"),
        ("classification", "data.synthetic.classes", "at least 2 items"),
    ],
)
def test_keys_show_choices_and_ranges(task, key, allowed):
    # choices come from the Literal, ranges from the bounds (brackets: closed, parentheses: open)
    assert by_key(task)[key].allowed == allowed


def test_keys_follow_what_each_task_reads():
    classification, detection, semi = by_key("classification"), by_key("detection"), by_key("semi_supervised_detection")
    # focal gamma of the image loss is a classification knob; detection has one per stage instead
    assert "loss.focal_gamma" in classification and "loss.focal_gamma" not in detection
    assert "loss.roi.focal_gamma" in detection and "loss.roi.focal_gamma" not in classification
    # the pseudo-label thresholds belong to semi-supervised detection alone
    assert "semi.thresholds.cls" in semi and not {"semi.thresholds.cls"} & (classification.keys() | detection.keys())
    # the detector is chosen by the detection tasks only
    assert "model.detector" in detection and "model.detector" not in classification
    # the task itself is set at the top of a space file, not a key to search
    assert "task" not in classification


def test_keys_mark_what_only_some_detectors_read():
    semi = by_key("semi_supervised_detection")
    # RetinaNet has no RPN and no ROI heads: these keys are Faster R-CNN's alone, and the list says so
    assert semi["loss.rpn.weight"].only == ("faster_rcnn",) and semi["semi.jitter.times"].only == ("faster_rcnn",)
    # keys every detector reads carry no mark
    assert semi["semi.thresholds.cls"].only == () and semi["loss.roi.weight"].only == ()


@pytest.mark.parametrize("task", list(TASK_KEYS))
def test_keys_list_every_config_value_a_task_reads(task):
    listed = by_key(task)
    # every value of the default config that the task reads has its row (a new field cannot be missed)
    assert {key for key in flatten(TrainConfig().model_dump(mode="json")) if reads(task, key)} <= set(listed)
    # and every row is a key a space file can search (`phases.<i>` stands for an item number)
    for key in listed:
        check_dotted_key(key.replace("<i>", "0"), key)


def test_keys_pattern_is_a_glob_or_a_part_of_the_key():
    # a glob matches the whole key: augment.* is the augment section, all of it
    assert set(by_key(pattern="augment.*")) == {f"augment.{name}" for name in AugmentConfig.model_fields}
    # other text is a part of the key
    assert set(by_key(pattern="lr")) == {"optim.lr", "phases.<i>.lr_factor"}
    # an item number stands for any item, as space files write it
    assert set(by_key(pattern="phases.1.lr_factor")) == {"phases.<i>.lr_factor"}


def test_keys_pattern_matching_nothing_is_an_error_with_a_suggestion():
    # detection has no loss.focal_gamma: one line naming the pattern and the close key it does read
    with pytest.raises(ConfigError) as caught:
        task_keys("detection", "loss.focal_gamma")
    assert caught.value.key == "PATTERN" and "did you mean 'loss.rpn.focal_gamma'?" in caught.value.message


def test_keys_unknown_task_is_an_error_on_the_flag():
    with pytest.raises(ConfigError) as caught:
        task_keys("clasification")
    # the error names --task and suggests the task meant
    assert caught.value.key == "--task" and caught.value.message == "unknown task 'clasification'; did you mean 'classification'?"


def test_keys_cli_prints_one_plain_line_per_key_off_a_terminal(capsys):
    # not a terminal (a pipe, a file): plain lines, one per key, for grep
    assert main(["keys", "--task", "detection", "optim.lr"]) == 0
    assert capsys.readouterr().out == "optim.lr (float, default 0.001, > 0): peak learning rate\n"
    # an unknown task: exit 2 and one error line
    assert main(["keys", "--task", "detektion"]) == 2
    assert capsys.readouterr().err == "error: --task: unknown task 'detektion'; did you mean 'detection'?\n"


def test_keys_terminal_gets_a_table():
    console = Console(force_terminal=True, record=True, width=200, color_system=None)
    print_keys("semi_supervised_detection", "semi.jitter.*", console)
    text = console.export_text()
    # a table titled by the task, with a column per field of a row and the detector mark in the description
    assert "keys task 'semi_supervised_detection' reads" in text
    assert all(header in text for header in ("key", "type", "default", "allowed", "description"))
    assert "semi.jitter.scale" in text and "[faster_rcnn only]" in text


def test_config_keys_follow_the_declaration_order():
    keys = [info.key for info in config_keys()]
    # rows come in the order the config declares its fields, as the README's tables do
    assert keys[:3] == ["task", "seed", "data.kind"] and keys.index("optim.lr") < keys.index("loss.name")
