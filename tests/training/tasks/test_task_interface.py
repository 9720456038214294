"""The Task interface the search layer calls (describe_data, exported_settings, report_tables,
train_step, eval_batch, device_batches_ok): its defaults, and what each task answers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from rich.table import Table

from training.config import TrainConfig
from training.loop.runtime import Runtime
from training.metrics.calibration import THRESHOLD_METRIC
from training.tasks import TASKS, Task, create_task, get_task

pytestmark = pytest.mark.usefixtures("one_cpu_thread")

CPU = Runtime(device=torch.device("cpu"))
CLASSIFICATION = {
    "task": "classification",
    "data": {"kind": "synthetic", "image_size": 32, "batch_size": 8, "synthetic": {"count": 40, "seed": 0}},
    "model": {"name": "resnet10t", "pretrained": False},
}
DETECTION = {
    "task": "detection",
    "data": {"kind": "synthetic", "image_size": 64, "batch_size": 2, "synthetic": {"count": 24, "seed": 0, "along_x": 0.9}},
    "model": {"name": "resnet10t", "pretrained": False, "anchor_sizes": [8, 16, 32], "anchor_ratios": [1.0]},
}
PROBE = {"task": "probe", "data": {"batch_size": 16}, "optim": {"lr": 0.1}}


def config(doc: dict) -> TrainConfig:
    return TrainConfig.model_validate(doc)


# ---------------------------------------------------------------- defaults and declarations


def test_task_base_defaults_say_and_set_nothing(tmp_path):
    cfg = config(PROBE)
    probe = get_task("probe")
    # a task that adds nothing prints nothing about its data, exports nothing and makes no report table
    assert probe.describe_data(cfg, ["optim.lr"]) == []
    assert probe.exported_settings({"val/loss": 0.1}) == []
    # the default report hook builds no task (a class method): a missing checkpoint is never read
    assert probe.report_tables(cfg, CPU, tmp_path / "missing.pt", "best trial t") == []


@pytest.mark.parametrize(("name", "expected"), [(name, name != "semi_supervised_detection") for name in TASKS])
def test_task_device_batches_ok_is_declared_by_every_task(name, expected):
    # every task answers whether its batches can be drawn on the device (a class attribute, no sniffing);
    # only the semi-supervised task needs a DataLoader for its mixed batches
    assert "device_batches_ok" in vars(Task) and get_task(name).device_batches_ok is expected


# ---------------------------------------------------------------- describe_data


def test_detection_describe_data_gives_the_box_statistics(rendered):
    parts = get_task("detection").describe_data(config(DETECTION), ["optim.lr"])
    text = rendered(parts)
    # the box section: counts with the config's anchors, the per-class table and the histogram
    assert text.startswith("box statistics:") and "ratios [1.0] x sizes [8.0, 16.0, 32.0]" in text
    assert sum(isinstance(part, Table) for part in parts) == 2
    # anchor_ratios is not searched: no note that the coverage is for a base value only
    assert "model.anchor_ratios is searched" not in text


def test_detection_describe_data_notes_searched_anchor_ratios(rendered):
    text = rendered(get_task("semi_supervised_detection").describe_data(config(DETECTION), ["model.anchor_ratios"]))
    # a subclass describes its data as detection does; a searched anchor_ratios gets its note
    assert "box statistics:" in text and "model.anchor_ratios is searched" in text


def test_image_tasks_describe_no_data():
    # classification data has no boxes: nothing beyond the timings
    assert get_task("classification").describe_data(config(CLASSIFICATION), []) == []


# ---------------------------------------------------------------- exported_settings


def test_classification_exports_its_calibrated_threshold():
    settings = get_task("classification").exported_settings({f"val/{THRESHOLD_METRIC}": 0.37, "val/loss": 0.2})
    # a reported calibrated threshold becomes eval.decision_threshold, with a header note saying so
    assert [(s.key, s.value) for s in settings] == [("eval.decision_threshold", 0.37)]
    assert settings[0].note.startswith("eval.decision_threshold = 0.37: in deployment")


def test_classification_without_calibration_exports_nothing():
    # no calibration metric (eval.target_miss_rate unset): the argmax rule stays
    assert get_task("classification").exported_settings({"val/loss": 0.2}) == []


# ---------------------------------------------------------------- report_tables


def test_classification_report_tables_confusion_matrix_of_the_checkpoint(tmp_path: Path):
    cfg = config(CLASSIFICATION)
    task = create_task(cfg, CPU)
    checkpoint = tmp_path / "state.pt"
    torch.save({"model": task.model.state_dict()}, checkpoint)
    tables = get_task("classification").report_tables(cfg, CPU, checkpoint, "best trial t1")
    # one table: the confusion matrix, a row per true class and a column per predicted class
    assert [t.name for t in tables] == ["confusion"]
    table = tables[0]
    assert table.header == ["true \\ predicted", *task.class_names]
    assert [row[0] for row in table.rows] == task.class_names
    # every validation image is counted once
    val_images = len(task.val_loader.dataset)
    assert sum(sum(row[1:]) for row in table.rows) == val_images
    # with its figure, titled with the label, and a console line
    assert table.figure is not None and table.figure.axes[0].get_title() == "best trial t1: validation confusion"
    assert table.summary == f"confusion matrix of best trial t1 over {val_images} validation images"


# ---------------------------------------------------------------- train_step, eval_batch


def test_train_step_updates_the_model_and_eval_batch_does_not():
    task = create_task(config(PROBE), CPU)
    before = [p.detach().clone() for p in task.model.parameters()]
    batch = next(iter(task.train_loader))
    task.train_step()(batch)
    after = [p.detach().clone() for p in task.model.parameters()]
    # one training step is an optimizer step: the weights move
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
    task.eval_batch(next(iter(task.val_loader)))
    # a validation batch leaves the weights alone and the model in eval mode
    assert all(torch.equal(a, p) for a, p in zip(after, task.model.parameters()))
    assert not task.model.training


def test_classification_eval_batch_runs_in_eval_mode_without_gradients():
    task = create_task(config(CLASSIFICATION), CPU)
    task.eval_batch(next(iter(task.val_loader)))
    # the validation forward (TTA included) ran in eval mode and kept no gradient
    assert not task.model.training
    assert all(p.grad is None for p in task.model.parameters())
