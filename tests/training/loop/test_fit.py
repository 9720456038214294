"""The epoch loop end to end on tiny data: callbacks, determinism, divergence, resume, runtimes."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import timm
import torch

from training.config import TrainConfig, TrainLoopConfig
from training.loop.fit import CHECK_EVERY, EpochReport, ModelRun, NonFiniteLossError, fit, fold_configs, mean_metrics, train_one_epoch
from training.loop.optim import create_optimizer, create_scheduler
from training.loop.runtime import Runtime
from training.schema.errors import ConfigError
from training.tasks import get_task
from training.tasks.classification import ClassificationTask
from training.tasks.probe import TRAIN_ROWS, ProbeTask

MODEL = "resnet10t"


def tiny_config(**sections) -> TrainConfig:
    """48 synthetic 32x32 images, batches of 16, resnet10t on the CPU, 2 epochs; `sections` override."""
    data = {"image_size": 32, "batch_size": 16, "synthetic": {"count": 48}}
    raw = {"data": data, "model": {"name": MODEL}, "train": {"epochs": 2, "device": "cpu"}}
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    return TrainConfig.model_validate(raw)


def _comparable(metrics: dict[str, float]) -> dict[str, float]:
    """Metrics without wall-clock timings, which differ run to run by nature."""
    return {k: v for k, v in metrics.items() if not k.startswith("time/")}


class Recorder:
    """An on_epoch callback keeping each epoch's metrics; saves epoch `save_epoch`'s state like a trial."""

    def __init__(self, state_file: Path | None = None, save_epoch: int = 1):
        self.reports: list[EpochReport] = []
        self.metrics: list[dict[str, float]] = []
        self.state_file, self.save_epoch = state_file, save_epoch

    def __call__(self, report: EpochReport) -> None:
        self.reports.append(report)
        self.metrics.append(dict(report.metrics))
        if self.state_file and report.epoch == self.save_epoch:
            # serialise at once, as search.trainable does: state() holds live tensors
            torch.save(report.state(), self.state_file)

    @property
    def epochs(self) -> list[int]:
        return [r.epoch for r in self.reports]


pytestmark = pytest.mark.usefixtures("one_cpu_thread")


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """One 2-epoch run of `tiny_config()`, its epoch-1 state saved to a file."""
    recorder = Recorder(tmp_path_factory.mktemp("baseline") / "state.pt")
    final = fit(tiny_config(), on_epoch=recorder)
    return recorder, final


@pytest.fixture(scope="module")
def resumed(baseline):
    """`tiny_config()` resumed from the baseline's epoch-1 state."""
    recorder, _ = baseline
    state = torch.load(recorder.state_file, map_location="cpu", weights_only=False)
    again = Recorder()
    final = fit(tiny_config(), on_epoch=again, resume_state=state)
    return state, again, final


def test_timm_has_the_test_model():
    # the tests' tiny backbone exists in the installed timm
    assert timm.is_model(MODEL)


def test_fit_calls_back_once_per_epoch_in_order(baseline):
    recorder, _ = baseline
    # the callback runs once per epoch, numbered 1..N
    assert recorder.epochs == [1, 2]


def test_fit_reports_every_task_metric_finite(baseline):
    recorder, _ = baseline
    cfg = tiny_config()
    for metrics in recorder.metrics:
        for name in ClassificationTask.metric_names(cfg):
            # every metric the task advertises is reported each epoch
            assert name in metrics
            # and is a finite number
            assert math.isfinite(metrics[name]), name
        # the loop adds the LR and the epoch time
        assert metrics["train/lr"] > 0 and metrics["time/epoch_s"] > 0


def test_fit_returns_last_epoch_metrics(baseline):
    recorder, final = baseline
    # fit's return value is the last epoch's report
    assert final == recorder.metrics[-1]


def test_fit_same_seed_same_metrics(baseline):
    _, first = baseline
    second = fit(tiny_config())
    # same config and seed: bit-identical metrics on the CPU (timings aside)
    assert _comparable(second) == _comparable(first)


def test_fit_huge_lr_raises_non_finite_loss():
    cfg = tiny_config(optim={"name": "sgd", "lr": 1e6, "schedule": "constant"})
    # a diverging run stops with NonFiniteLossError instead of training on NaNs
    with pytest.raises(NonFiniteLossError, match=r"loss is (nan|inf|-inf) at epoch \d+, batch \d+"):
        fit(cfg)


def test_epoch_report_state_is_a_checkpoint(resumed):
    state, _, _ = resumed
    # the checkpoint holds its epoch, the model, optimizer, schedule and loss-scale states, and the config
    assert set(state) == {"epoch", "model", "optimizer", "scheduler", "scaler", "config"}
    # saved after epoch 1, it says so
    assert state["epoch"] == 1
    # its config is the run's config, round-trippable
    assert TrainConfig.model_validate(state["config"]) == tiny_config()


def test_last_epoch_state_holds_the_model_without_the_optimizer(baseline):
    recorder, _ = baseline
    last = recorder.reports[-1]
    state = last.state()
    # after the last epoch nothing is left to train: the optimizer's moments would only be copied
    assert last.epoch == tiny_config().train.epochs
    assert set(state) == {"epoch", "model", "config"}
    # resuming from it trains nothing and loads the model as it was
    again = Recorder()
    fit(tiny_config(), on_epoch=again, resume_state=state)
    assert again.epochs == []


def test_fit_resume_runs_only_remaining_epochs(resumed):
    _, again, final = resumed
    # resuming after epoch 1 of 2 trains epoch 2 only
    assert again.epochs == [2]
    # and reports finite metrics for it
    assert all(math.isfinite(v) for v in final.values())


def test_fit_resume_restores_schedule_position(baseline, resumed):
    recorder, _ = baseline
    _, again, _ = resumed
    # the LR schedule continues where it stopped: epoch 2 ends at the same LR as uninterrupted
    assert again.metrics[0]["train/lr"] == recorder.metrics[1]["train/lr"]


def test_fit_resume_matches_uninterrupted_run(baseline, resumed):
    recorder, _ = baseline
    _, again, _ = resumed
    # a resumed run continues exactly as the uninterrupted one (a retried trial reports the same numbers)
    assert _comparable(again.metrics[0]) == _comparable(recorder.metrics[1])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback")
@pytest.mark.parametrize("device", ["auto", "cpu"])
def test_runtime_from_config_on_cpu_machine(device):
    runtime = Runtime.from_config(TrainLoopConfig(device=device, amp=True, channels_last=True))
    # without CUDA, auto falls back to the CPU
    assert runtime.device == torch.device("cpu")
    # mixed precision and channels_last are CUDA-only: off even when the config asks for them
    assert runtime.amp is False and runtime.channels_last is False


def test_runtime_explicit_cpu_never_uses_amp():
    runtime = Runtime.from_config(TrainLoopConfig(device="cpu", amp=True, channels_last=True))
    # device cpu is honoured on any machine, with amp and channels_last off
    assert (runtime.device.type, runtime.amp, runtime.channels_last) == ("cpu", False, False)
    # the grad scaler is disabled when amp is
    assert not runtime.grad_scaler().is_enabled()


def _write_image_folder(root: Path, classes: list[str], per_class: int) -> None:
    rng = np.random.default_rng(0)
    for index, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            image = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
            image[:, :, index % 3] //= 4  # a little class signal
            if not cv2.imwrite(str(folder / f"{i}.png"), image):
                raise OSError(f"cannot write {folder / f'{i}.png'}")


def test_fit_imagefolder_dataset_trains_one_epoch(tmp_path):
    _write_image_folder(tmp_path / "images", ["good", "scratch"], per_class=6)
    cfg = tiny_config(
        data={"kind": "imagefolder", "imagefolder": {"root": str(tmp_path / "images")}}, train={"epochs": 1}
    )
    # the folder passes the task's up-front checks
    ClassificationTask.check(cfg)
    recorder = Recorder()
    final = fit(cfg, on_epoch=recorder)
    # one epoch ran and was reported
    assert recorder.epochs == [1]
    names = ClassificationTask.metric_names(cfg)
    # the metrics follow the folder's classes (good present: miss/overkill rates too)
    assert "val/f1/scratch" in names and "val/miss_rate" in names
    # and every one is reported finite
    assert all(math.isfinite(final[n]) for n in names)


def test_get_task_unknown_name_suggests_classification():
    with pytest.raises(ConfigError) as err:
        get_task("nope")
    # an unknown task is a config error on the `task` key
    assert err.value.key == "task"
    # naming the task that does exist
    assert "'nope'" in err.value.message and "classification" in err.value.message


class NanAtBatch(ProbeTask):
    """The probe task whose training loss turns NaN at batch `nan_batch` (1-based) of the epoch."""

    def __init__(self, cfg: TrainConfig, nan_batch: int):
        super().__init__(cfg, Runtime.from_config(cfg.train))
        self.nan_batch, self.calls, self.losses = nan_batch, 0, []

    def training_loss(self, batch):
        self.calls += 1
        loss = super().training_loss(batch)
        loss = loss * float("nan") if self.calls == self.nan_batch else loss
        self.losses.append(float(loss.detach()))  # the test's own look at each step (a sync the loop avoids)
        return loss


def run_one_epoch(task: ProbeTask) -> float:
    optimizer = create_optimizer(task.model, task.cfg.optim)
    scheduler = create_scheduler(optimizer, task.cfg.optim, 1, len(task.train_loader))
    return train_one_epoch(task, optimizer, scheduler, task.runtime.grad_scaler(), None, epoch=1)


@pytest.mark.parametrize(
    "batch_size, nan_batch",
    [(4, 3), (4, TRAIN_ROWS // 4), (5, TRAIN_ROWS // 5 + 1)],
    ids=["early", "last-full-window", "last-partial-window"],
)
def test_train_one_epoch_reports_a_late_non_finite_loss_by_its_batch(batch_size, nan_batch):
    cfg = TrainConfig(task="probe", data={"batch_size": batch_size}, train={"device": "cpu"})
    task = NanAtBatch(cfg, nan_batch)
    # a NaN loss still fails the epoch, naming the epoch and the batch where it first appeared
    with pytest.raises(NonFiniteLossError, match=rf"loss is nan at epoch 1, batch {nan_batch}$"):
        run_one_epoch(task)
    # the host does not wait on each step: it finds out a few steps later (or at the end of the epoch) ...
    assert task.calls > nan_batch or nan_batch == len(task.train_loader)
    # ... but never more than two check windows later
    assert task.calls <= nan_batch + 2 * CHECK_EVERY - 1


def test_train_one_epoch_mean_loss_is_the_mean_of_the_steps():
    cfg = TrainConfig(task="probe", data={"batch_size": 5}, train={"device": "cpu"})
    task = NanAtBatch(cfg, nan_batch=0)  # never NaN
    mean = run_one_epoch(task)
    # the loss summed on the device over whole and partial check windows is the plain mean of the steps
    assert len(task.losses) == len(task.train_loader) == TRAIN_ROWS // 5 + 1
    assert mean == pytest.approx(sum(task.losses) / len(task.losses), rel=1e-6)


# ---------------------------------------------------------------- k fold models in lockstep (data.folds)


def test_fit_with_folds_reports_the_mean_of_its_fold_models(tmp_path):
    cfg = tiny_config(data={"folds": 2})
    recorder = Recorder(tmp_path / "state.pt")
    fit(cfg, on_epoch=recorder)
    # each fold model alone, as fit builds it (fold i validating model i), run the same epochs
    alone = []
    for fold_cfg in fold_configs(cfg):
        run = ModelRun.start(fold_cfg, Runtime.from_config(fold_cfg.train))
        alone.append([run.epoch(epoch) for epoch in (1, 2)])
    assert [c.data.fold for c in fold_configs(cfg)] == [0, 1]
    # every epoch's metrics are the mean over the two folds (the two models differ: a real mean)
    for epoch, metrics in enumerate(recorder.metrics):
        first, second = alone[0][epoch], alone[1][epoch]
        assert first["val/loss"] != second["val/loss"]
        assert metrics["val/loss"] == pytest.approx((first["val/loss"] + second["val/loss"]) / 2, rel=1e-6)
        assert metrics["train/loss"] == pytest.approx((first["train/loss"] + second["train/loss"]) / 2, rel=1e-6)
    # the constant prediction's level is averaged the same way, and a checkpoint holds both models
    assert 0 < recorder.reports[0].chance["val/macro_f1"] < 1
    state = torch.load(tmp_path / "state.pt", map_location="cpu", weights_only=False)
    assert len(state["folds"]) == 2 and state["model"].keys() == state["folds"][0]["model"].keys()


def test_fit_with_folds_resumes_every_fold_model(tmp_path):
    cfg = tiny_config(data={"folds": 2})
    recorder = Recorder(tmp_path / "state.pt")
    fit(cfg, on_epoch=recorder)
    again = Recorder()
    fit(cfg, on_epoch=again, resume_state=torch.load(tmp_path / "state.pt", map_location="cpu", weights_only=False))
    # resumed at epoch 2 from the epoch-1 state of both models: what the uninterrupted run computed
    assert again.epochs == [2]
    assert _comparable(again.metrics[0]) == _comparable(recorder.metrics[1])


def test_mean_metrics_leaves_out_a_fold_without_a_value():
    # a fold without a defect image has no miss rate: the other fold's still counts
    assert mean_metrics([{"val/miss_rate": math.nan, "a": 1.0}, {"val/miss_rate": 0.2, "a": 3.0}]) == {"val/miss_rate": 0.2, "a": 2.0}
    assert math.isnan(mean_metrics([{"m": math.nan}, {"m": math.nan}])["m"])
