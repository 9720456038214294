"""`python -m search check`: 3 seeded samples (baselines first), one timed training step and validation
batch, estimates built from them, no Ray; and the verb end to end as a subprocess."""

from __future__ import annotations

import io
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from search.check import CheckResult, Measurement, check_space_file, print_memory, sample_configs
from search.check.advice import Curve, grace_advice
from search.space import GeometricSet, parse_space
from search.spec import load_plan

REPO = Path(__file__).resolve().parents[2]
GiB = 2**30
# Every kind of distribution, so the bounds test covers each one.
WIDE_SPACE = {
    "optim.lr": {"loguniform": [1.0e-4, 1.0e-2]},
    "loss.focal_gamma": {"uniform": [0.0, 4.0]},
    "data.batch_size": {"int": [4, 16], "step": 4},
    "optim.name": {"choice": ["adamw", "sgd"]},
}


def cli(*args: str, python_flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *python_flags, "-m", "search", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def imported_modules(importtime_log: str) -> set[str]:
    """Module names from `python -X importtime` lines (`import time: self | cumulative | name`)."""
    return {line.rsplit("|", 1)[-1].strip() for line in importtime_log.splitlines() if line.startswith("import time:")}


# ---------------------------------------------------------------- sampling


def test_sample_configs_three_configs_inside_the_bounds(minimal_space, write_space):
    minimal_space["space"] = WIDE_SPACE
    plan = load_plan(write_space(minimal_space))
    samples = sample_configs(plan)
    # check shows three trial configs
    assert len(samples) == 3
    # each sample sets every searched key to a value its distribution allows
    assert all(sample.keys() == plan.space.keys() for sample in samples)
    assert all(plan.space[key].contains(value) for sample in samples for key, value in sample.items())


def test_sample_configs_baseline_first(minimal_space, write_space):
    minimal_space["space"] = WIDE_SPACE
    minimal_space["search"] = {"baseline": [{"optim.lr": 5.0e-3, "optim.name": "sgd"}]}
    plan = load_plan(write_space(minimal_space))
    samples = sample_configs(plan)
    # the baseline is the first config, completed with the base values, as the search evaluates it first
    assert samples[0] == {"optim.lr": 5.0e-3, "loss.focal_gamma": 2.0, "data.batch_size": 8, "optim.name": "sgd"}
    # the other two are sampled, not copies of the baseline
    assert samples[1] != samples[0] and samples[2] != samples[0]


def test_sample_configs_same_seed_same_samples(minimal_space, write_space):
    minimal_space["space"] = WIDE_SPACE
    minimal_space["search"] = {"seed": 7}
    first, second = load_plan(write_space(minimal_space, "a.yaml")), load_plan(write_space(minimal_space, "b.yaml"))
    minimal_space["search"] = {"seed": 8}
    other = load_plan(write_space(minimal_space, "c.yaml"))
    # the sampler is seeded by search.seed: the same seed samples the same configs
    assert sample_configs(first) == sample_configs(second)
    # and another seed samples others
    assert sample_configs(other) != sample_configs(first)


@pytest.mark.parametrize("sampler", ["tpe", "nsga2"])
def test_sample_configs_multi_objective_samples_like_the_search(minimal_space, write_space, sampler):
    minimal_space["space"] = WIDE_SPACE
    objectives = [{"metric": "val/miss_rate", "mode": "min"}, {"metric": "val/overkill_rate", "mode": "min"}]
    minimal_space["search"] = {"objectives": objectives, "sampler": sampler}
    plan = load_plan(write_space(minimal_space))
    samples = sample_configs(plan)
    # a two-objective plan with either sampler still shows three configs inside the space
    assert len(samples) == 3
    assert all(plan.space[key].contains(value) for sample in samples for key, value in sample.items())


# ---------------------------------------------------------------- measuring


def test_check_space_file_measures_and_estimates(minimal_space, write_space):
    import ray

    result = check_space_file(write_space(minimal_space))
    m = result.measurement
    # the step times are real measurements
    assert m.train_step_s > 0 and m.val_batch_s > 0
    # the batches per epoch are those of the trial's loaders (train drops its last partial batch)
    assert m.train_batches == m.train_images // 8 and m.val_batches == math.ceil(m.val_images / 64)
    # 40 images are split between train and val
    assert m.train_images + m.val_images == 40
    # an epoch is a training step per train batch plus a validation batch per val batch
    assert m.epoch_s == pytest.approx(m.train_step_s * m.train_batches + m.val_batch_s * m.val_batches)
    # a trial runs max_epochs (3) epochs; the search runs 8 trials, 2 noise seeds and 1 x 2 confirmation
    # seeds (the defaults), 2 at a time
    assert result.trial_s == pytest.approx(3 * m.epoch_s) and result.search_s == pytest.approx(6 * result.trial_s)
    # the first config trained its full budget: its curve beside the chance level proposes a grace period
    assert len(result.curve.values) == 3 and 0 < result.curve.chance < 1
    assert result.advice[0].startswith("grace period: ")
    # 10 validation images: k-fold is advised; no test split: the verdict would be optimistic
    assert any("data.folds: 5" in line for line in result.advice)
    assert any(line.startswith("no test split") for line in result.advice)
    # without CUDA the memory is the RSS increase on CPU, with no GPU share
    assert m.device == "cpu" and m.peak_memory_bytes >= 0 and m.gpu_fraction_suggested is None
    # the check never starts Ray
    assert not ray.is_initialized()


PROBE_SPACE = {
    "task": "probe",
    "data": {"batch_size": 16},
    "space": {"optim.lr": {"loguniform": [1.0e-3, 1.0e-1]}},
    "search": {"metric": "val/loss", "mode": "min"},
    "scheduler": {"name": "none", "max_epochs": 3},
}


def test_check_space_file_times_any_task_through_its_interface(write_space):
    result = check_space_file(write_space(PROBE_SPACE, "probe.yaml"))
    m = result.measurement
    # a task search/check never names is timed through its own train step and validation batch
    assert m.train_step_s > 0 and m.val_batch_s > 0
    # the probe's 48 training rows in batches of 16; its 16 validation rows in one batch
    assert (m.train_batches, m.val_batches, m.train_images, m.val_images) == (3, 1, 48, 16)
    # the probe says nothing about its data: no extra section
    assert result.data == []


def test_print_memory_warns_when_the_gpu_fraction_is_too_small(minimal_space, write_space):
    minimal_space["resources"] = {"gpu": 0.25}
    plan = load_plan(write_space(minimal_space))
    m = Measurement("cuda", 1, 30, 10, 3, 1, 32, 0.1, 0.1, True, peak_memory_bytes=30 * GiB, gpu_total_bytes=80 * GiB)
    out = io.StringIO()
    print_memory(CheckResult(plan, [], m), Console(file=out, width=200))
    # 30 GiB with 25% headroom is 0.47 of an 80 GiB card: rounded up to the next eighth, 0.5
    assert m.gpu_fraction_suggested == 0.5 and "suggested resources.gpu: 0.5" in out.getvalue()
    # the 0.25 asked for is too little: a warning suggests a batch that fits it (32 x 0.25 / 0.47 -> 16)
    assert "warning: resources.gpu 0.25" in out.getvalue() and "data.batch_size 16" in out.getvalue()


# ---------------------------------------------------------------- the verb


def test_check_cli_prints_the_time_per_epoch_without_ray(minimal_space, write_space):
    result = cli("check", str(write_space(minimal_space, "good.yaml")), python_flags=("-X", "importtime"))
    # a valid space file exits 0
    assert result.returncode == 0, result.stderr[-2000:]
    # and prints the estimated time per epoch
    assert "time per epoch: ~" in result.stdout
    modules = imported_modules(result.stderr)
    # the import log was read (torch is in it), so an absent Ray means something
    assert "torch" in modules
    # Ray is not even imported
    assert not {name for name in modules if name == "ray" or name.startswith("ray.")}


def test_check_cli_bad_space_file_exits_2_with_one_line(minimal_space, write_space):
    minimal_space["space"] = {"optim.lr": {"loguniform": [0.0, 1.0e-2]}}
    result = cli("check", str(write_space(minimal_space, "bad.yaml")))
    # a bad space file is a user error: exit 2
    assert result.returncode == 2
    # reported as one line naming the file and the key, no traceback
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "bad.yaml: space.optim.lr.loguniform" in result.stderr


def test_check_cli_quickstart_space_passes():
    result = cli("check", "spaces/quickstart.yaml")
    # the shipped quickstart space checks cleanly
    assert result.returncode == 0, result.stderr[-2000:]
    # its baseline is the first sampled config
    assert "#1 baseline" in result.stdout


# ---------------------------------------------------------------- box statistics (detection)

DETECTION_SPACE = {
    "task": "detection",
    "data": {
        "kind": "synthetic",
        "image_size": 64,
        "batch_size": 2,
        "synthetic": {"count": 24, "seed": 0, "max_defects": 3, "mixed_defects": 0.3, "along_x": 0.9},
    },
    "base": {"model": {"name": "resnet10t", "anchor_sizes": [8, 16, 32], "anchor_ratios": [1.0]}},
    "space": {"optim.lr": {"loguniform": [1.0e-4, 1.0e-2]}},
    "search": {"metric": "val/mAP50"},
    "scheduler": {"name": "asha", "max_epochs": 2},
}


def test_check_cli_detection_space_prints_the_box_section(write_space):
    # with a classification loss setting in base, which detection never reads
    space = {**DETECTION_SPACE, "base": {**DETECTION_SPACE["base"], "loss": {"focal_gamma": 3.0}}}
    result = cli("check", str(write_space(space, "det.yaml")))
    # a detection space checks cleanly and, besides the timings, prints what its task says about its
    # data: the box statistics
    assert result.returncode == 0, result.stderr[-2000:]
    # the unread setting is a one-line warning naming the file and key
    assert "warning: " in result.stderr and "det.yaml: base.loss.focal_gamma: task 'detection' does not read" in result.stderr
    assert "time per epoch: ~" in result.stdout and "box statistics:" in result.stdout
    # the suggested range pastes into a space file as a geometric ratio set
    line = next(line.strip() for line in result.stdout.splitlines() if line.strip().startswith("model.anchor_ratios:"))
    assert isinstance(parse_space(yaml.safe_load(line))["model.anchor_ratios"], GeometricSet)
    # with only square anchors, the flat defect boxes are poorly covered: the share is printed
    assert "of boxes have no anchor with IoU >= 0.5" in result.stdout


@pytest.mark.parametrize(
    "values, grace, expected",
    [
        ([0.114, 0.114, 0.30, 0.40], 1, "propose scheduler.grace_period: 3 (now 1"),
        ([0.114, 0.114, 0.30, 0.40], 3, "scheduler.grace_period 3 is fine"),
        ([0.114, 0.118, 0.116, 0.119], 1, "never left chance (0.114) in 4 epochs"),
    ],
)
def test_grace_advice_reads_the_epoch_the_curve_leaves_chance(minimal_space, write_space, values, grace, expected):
    minimal_space["scheduler"] = {"name": "asha", "max_epochs": 4, "grace_period": grace}
    plan = load_plan(write_space(minimal_space))
    # a gain of at least MIN_GAP over the constant prediction's score is leaving chance
    assert expected in grace_advice(plan, Curve("val/macro_f1", values, chance=0.114))


def test_grace_advice_without_a_chance_level_keeps_the_grace_period(minimal_space, write_space):
    plan = load_plan(write_space(minimal_space))
    assert "no chance level" in grace_advice(plan, Curve("val/macro_f1", [0.2, 0.3], chance=None))
