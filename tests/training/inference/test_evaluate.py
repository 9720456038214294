"""Scoring trained models on images: each task's outputs equal its validation metrics, the
`python -m training evaluate` verb end to end on real tiny runs, and its one-line input errors."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from training.cli import main
from training.config import DataConfig, EvalConfig, TrainConfig
from training.data import load_splits, load_test
from training.inference.evaluate import CHECKPOINT_FILE
from training.loop.fit import CHECKPOINT_FILE as FIT_CHECKPOINT_FILE
from training.loop.fit import fit
from training.loop.runtime import Runtime
from training.metrics.classification import classification_metrics
from training.tasks import create_task, get_task
from training.tasks.classification import ClassificationOutputs

pytestmark = pytest.mark.usefixtures("one_cpu_thread")

CLASSES = ["good", "scratch", "rust"]


def classification_config(seed: int = 0) -> TrainConfig:
    """60 synthetic 32x32 images of 3 classes, resnet10t on the CPU, 1 epoch."""
    return TrainConfig.model_validate(
        {
            "seed": seed,
            "data": {"image_size": 32, "batch_size": 16, "synthetic": {"count": 60, "classes": CLASSES}},
            "model": {"name": "resnet10t"},
            "train": {"epochs": 1, "device": "cpu"},
        }
    )


def trained(cfg: TrainConfig) -> tuple[dict[str, float], dict]:
    """(the last epoch's metrics, its fit state) of a real run of `cfg`."""
    states = []
    final = fit(cfg, on_epoch=lambda report: states.append(report.state()))
    return final, states[-1]


def validation(metrics: dict[str, float]) -> dict[str, float]:
    """`val/...` metrics without the prefix, and without the loss (outputs have no training data)."""
    return {k.removeprefix("val/"): v for k, v in metrics.items() if k.startswith("val/") and k != "val/loss"}


def assert_close(got: dict[str, float], expected: dict[str, float]) -> None:
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-6, nan_ok=True), key


def save_run(folder: Path, cfg: TrainConfig, final: dict[str, float], state: dict) -> Path:
    """The folder `python -m training train` writes: config.yaml, model.pt (the state_dict), metrics.json."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    torch.save(state["model"], folder / "model.pt")
    (folder / "metrics.json").write_text(json.dumps({"final": final}))
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[Path, dict[str, float]]]:
    """Two seeds of `classification_config` saved as train folders, and seed 0 as a search checkpoint."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for seed in (0, 1):
        cfg = classification_config(seed)
        final, state = trained(cfg)
        out[f"seed{seed}"] = (save_run(root / f"seed{seed}", cfg, final, state), final)
        if seed == 0:
            (root / "checkpoint").mkdir()
            torch.save(state, root / "checkpoint" / CHECKPOINT_FILE)
            out["checkpoint"] = (root / "checkpoint", final)
    return out


def evaluate_cli(capsys, *args: str) -> tuple[int, str, str]:
    """`python -m training evaluate ARGS --device cpu`, in this process: (exit code, stdout, stderr)."""
    code = main(["evaluate", *args, "--device", "cpu"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_evaluate_names_the_checkpoint_file_as_fit_does():
    # evaluate restates fit's checkpoint name (fit would load torch before the input is checked)
    assert CHECKPOINT_FILE == FIT_CHECKPOINT_FILE


@pytest.mark.parametrize("task", ["classification", "multilabel"])
def test_image_task_outputs_equal_its_validation_metrics(task):
    cfg = classification_config()
    if task == "multilabel":
        data = {"kind": "synthetic_multilabel", "image_size": 32, "batch_size": 8, "synthetic": {"count": 40}}
        cfg = cfg.model_copy(update={"task": task, "data": cfg.data.model_validate(data)})
    final, state = trained(cfg)
    images = load_splits(cfg.data).val
    outputs = get_task(task).outputs(cfg, Runtime.from_config(cfg.train), state["model"], images)
    # the model's outputs on its own validation split score what fit reported for it
    assert len(outputs) == len(images)
    assert_close(outputs.metrics(), validation(final))


DETECTION = {
    "data": {"image_size": 32, "batch_size": 4, "synthetic": {"count": 24, "seed": 1, "difficulty": 0.2}},
    "model": {"name": "resnet10t", "anchor_sizes": [8, 16, 32]},
    "optim": {"schedule": "constant"},
    # no burn-in: the semi task's teacher is an EMA of its student, not a copy of it
    "semi": {"labeled_fraction": 0.5, "burn_in_epochs": 0, "jitter": {"times": 0}},
    "train": {"epochs": 1, "device": "cpu"},
    "eval": {"score_threshold": 0.06},  # below the untrained detector's scores: miss and overkill rates count boxes
}


def same_detections(a: list[dict[str, torch.Tensor]], b: list[dict[str, torch.Tensor]]) -> bool:
    return len(a) == len(b) and all(x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x) for x, y in zip(a, b))


@pytest.mark.parametrize("task", ["detection", "semi_supervised_detection"])
def test_detection_outputs_are_what_evaluate_reported(task):
    cfg = TrainConfig.model_validate({"task": task, **DETECTION})
    final, state = trained(cfg)
    runtime = Runtime.from_config(cfg.train)
    images = load_splits(cfg.data).val
    outputs = get_task(task).outputs(cfg, runtime, state["model"], images)
    # its metrics are those the task's evaluate() reported (all of them but the semi task's own extras)
    reported = validation(final)
    assert_close(outputs.metrics(), {k: reported[k] for k in outputs.metrics()})
    assert task != "detection" or outputs.metrics().keys() == reported.keys()
    assert type(outputs).headline == "mAP50" and len(outputs) == len(images)
    # made of the very detections validation scores: the eval model's (the semi task's teacher)
    full = create_task(cfg, runtime)
    full.model.load_state_dict(state["model"])
    preds, targets = full.predictions()
    assert same_detections(outputs.preds, preds) and same_detections(outputs.targets, targets)
    if task == "semi_supervised_detection":
        assert not same_detections(outputs.preds, full.predictions(full.model.student)[0])
    # a resample repeating one image is scored as that many images
    assert outputs.metrics(np.zeros(len(images), dtype=int)).keys() == outputs.metrics().keys()


def test_classification_outputs_score_a_resample_as_its_images():
    logits, targets = torch.randn(12, 3, generator=torch.Generator().manual_seed(0)), torch.arange(12) % 3
    outputs = ClassificationOutputs(logits, targets, CLASSES, EvalConfig())
    indices = np.array([0, 0, 3, 5, 5, 5, 7, 11])
    # a resample (repeats included) is scored like the images it draws, by the metric functions
    assert outputs.metrics(indices) == classification_metrics(logits[indices], targets[indices], CLASSES, "good")


@pytest.mark.filterwarnings("ignore:No positive samples")  # no rust image: its AUROC is undefined
def test_classification_outputs_rate_miss_and_overkill_at_the_decision_threshold():
    # P(good) per image; the rest goes to scratch. Truth: 3 good then 3 defect images
    p_good = torch.tensor([0.9, 0.6, 0.3, 0.8, 0.5, 0.2])
    probs = torch.stack([p_good, 1 - p_good, torch.zeros(6)], dim=1).clamp_min(1e-6)
    targets = torch.tensor([0, 0, 0, 1, 1, 1])
    argmax = ClassificationOutputs(probs.log(), targets, CLASSES, EvalConfig()).metrics()
    # at the argmax: good image 3 (P(good) 0.3) is overkill, defect image 1 (0.8) is missed (0.5 ties: good wins)
    assert (argmax["overkill_rate"], argmax["miss_rate"]) == pytest.approx((1 / 3, 2 / 3))
    at = ClassificationOutputs(probs.log(), targets, CLASSES, EvalConfig(decision_threshold=0.35)).metrics()
    # defect when P(defect) = 1 - P(good) >= 0.35: good images 2, 3 are overkill, only defect image 1 is missed
    assert (at["overkill_rate"], at["miss_rate"]) == pytest.approx((2 / 3, 1 / 3))
    # the threshold changes nothing else
    assert {k: v for k, v in at.items() if "rate" not in k} == {k: v for k, v in argmax.items() if "rate" not in k}


def test_cli_scores_a_run_as_fit_validated_it(runs, capsys, tmp_path):
    folder, final = runs["seed0"]
    code, out, err = evaluate_cli(capsys, str(folder), "--split", "val", "--resamples", "200", "-o", str(tmp_path / "e.json"))
    assert code == 0, err
    result = json.loads((tmp_path / "e.json").read_text())
    # the model's metrics on its own validation split are those fit reported
    assert_close(result["models"][str(folder)], validation(final))
    # a single model's estimate is its metric, inside its interval
    for name, estimate in result["metrics"].items():
        assert estimate["value"] == pytest.approx(validation(final)[name], abs=1e-6)
        assert estimate["lo"] <= estimate["value"] <= estimate["hi"], name
    # the table prints each metric with its interval, one row per metric
    macro = result["metrics"]["macro_f1"]
    row = next(line for line in out.splitlines() if " macro_f1 " in line)
    assert f"{macro['value']:.3f} [{macro['lo']:.3f}, {macro['hi']:.3f}]" in row
    assert result["split"] == "val" and result["images"] == len(load_splits(classification_config().data).val)


def test_cli_scores_a_search_checkpoint_folder_like_its_train_folder(runs, capsys, tmp_path):
    (checkpoint, _), (folder, _) = runs["checkpoint"], runs["seed0"]
    code, _, err = evaluate_cli(capsys, str(checkpoint), "--split", "val", "--resamples", "10", "-o", str(tmp_path / "e.json"))
    assert code == 0, err
    models = json.loads((tmp_path / "e.json").read_text())["models"]
    code, _, _ = evaluate_cli(capsys, str(folder), "--split", "val", "--resamples", "10", "-o", str(tmp_path / "f.json"))
    # state.pt's model and config are the ones the train folder holds
    assert models[str(checkpoint)] == json.loads((tmp_path / "f.json").read_text())["models"][str(folder)]


def test_cli_against_the_same_run_gives_a_zero_difference(runs, capsys, tmp_path):
    folder, _ = runs["seed0"]
    code, out, err = evaluate_cli(
        capsys, str(folder), "--split", "val", "--against", str(folder), "--resamples", "100", "-o", str(tmp_path / "e.json")
    )
    assert code == 0, err
    result = json.loads((tmp_path / "e.json").read_text())
    # paired on the same images, a model against itself differs by exactly 0 on every resample
    for name, comparison in result["metrics"].items():
        assert comparison["difference"] == {"value": 0.0, "lo": 0.0, "hi": 0.0}, name
        assert comparison["a"] == comparison["b"]
    # and the verdict on the headline metric says so; the table holds both groups and A - B on one line
    assert "no evidence that A beats B on macro_f1: A - B = +0.000 [+0.000, +0.000]" in out
    macro = result["metrics"]["macro_f1"]["a"]
    row = next(line for line in out.splitlines() if " macro_f1 " in line)
    assert row.count(f"{macro['value']:.3f} [{macro['lo']:.3f}, {macro['hi']:.3f}]") == 2 and "+0.000 [+0.000, +0.000]" in row
    assert result["verdict"].startswith("no evidence")


def test_cli_seeds_of_one_config_are_one_group_averaged(runs, capsys, tmp_path):
    (a, final_a), (b, final_b) = runs["seed0"], runs["seed1"]
    code, out, err = evaluate_cli(capsys, str(a), str(b), "--split", "val", "--resamples", "100", "-o", str(tmp_path / "e.json"))
    assert code == 0, err
    result = json.loads((tmp_path / "e.json").read_text())
    # the group's estimate is the mean of its models' metrics
    expected = (validation(final_a)["accuracy"] + validation(final_b)["accuracy"]) / 2
    assert result["metrics"]["accuracy"]["value"] == pytest.approx(expected, abs=1e-6)
    assert "A = 2 models" in out


def test_cli_scores_another_dataset_given_by_a_data_file(runs, capsys, tmp_path):
    folder, _ = runs["seed0"]
    # other images of the same classes: only the generator's seed and count change, the rest is the run's
    (tmp_path / "d.yaml").write_text(yaml.safe_dump({"data": {"synthetic": {"seed": 7, "count": 40}}}))
    code, _, err = evaluate_cli(
        capsys, str(folder), "--split", "val", "--data", str(tmp_path / "d.yaml"), "--resamples", "10", "-o", str(tmp_path / "e.json")
    )
    assert code == 0, err
    result = json.loads((tmp_path / "e.json").read_text())
    data = classification_config().data.model_dump()
    other = DataConfig.model_validate({**data, "synthetic": {**data["synthetic"], "seed": 7, "count": 40}})
    assert result["images"] == len(load_splits(other).val) == 10
    assert math.isfinite(result["metrics"]["accuracy"]["value"])


def _bad_inputs(root: Path, folder: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (arguments, what the error line holds), each with the files it needs under `root`."""
    (root / "empty").mkdir()
    bad_config = root / "bad_config"
    bad_config.mkdir()
    (bad_config / "model.pt").write_bytes((folder / "model.pt").read_bytes())
    (bad_config / "config.yaml").write_text(yaml.safe_dump({"model": {"nme": "resnet10t"}}))
    other_model = root / "other_model"
    other_model.mkdir()
    (other_model / "model.pt").write_bytes((folder / "model.pt").read_bytes())
    cfg = yaml.safe_load((folder / "config.yaml").read_text())
    (other_model / "config.yaml").write_text(yaml.safe_dump({**cfg, "model": {"name": "resnet18"}}))
    (root / "classes.yaml").write_text(yaml.safe_dump({"data": {"synthetic": {"classes": ["good", "dent"]}}}))
    (root / "no_data.yaml").write_text(yaml.safe_dump({"model": {"name": "resnet10t"}}))
    run = str(folder)
    return {
        "missing folder": ([str(root / "nope")], f"error: {root / 'nope'}: run folder not found"),
        "no model file": ([str(root / "empty")], f"error: {root / 'empty'}: no model.pt"),
        "invalid config": ([str(bad_config)], f"error: {bad_config / 'config.yaml'}: model.nme: unknown key"),
        "weights of another model": ([str(other_model)], f"error: {other_model / 'config.yaml'}: model: the saved weights do not fit"),
        "unknown split": ([run, "--split", "train"], "error: --split: expected one of test, val, got 'train'"),
        "other classes": ([run, "--data", str(root / "classes.yaml")], f"error: {root / 'classes.yaml'}: data: classes ['good', 'dent'] differ"),
        "no data section": ([run, "--data", str(root / "no_data.yaml")], f"error: {root / 'no_data.yaml'}: model: unknown key"),
        "missing data file": ([run, "--data", str(root / "nope.yaml")], f"error: {root / 'nope.yaml'}: file not found"),
        "no resamples": ([run, "--resamples", "0"], "error: --resamples: expected a positive number"),
        "unknown device": ([run, "--device", "tpu"], "error: --device: expected one of auto, cpu, cuda, got 'tpu'"),
    }


BAD_INPUTS = [
    "missing folder", "no model file", "invalid config", "weights of another model", "unknown split", "other classes",
    "no data section", "missing data file", "no resamples", "unknown device",
]  # fmt: skip


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_cli_answers_bad_input_with_one_line_and_exit_2(runs, capsys, tmp_path, name):
    arguments, expected = _bad_inputs(tmp_path, runs["seed0"][0])[name]
    defaults = [*([] if "--split" in arguments else ["--split", "val"]), *([] if "--device" in arguments else ["--device", "cpu"])]
    code = main(["evaluate", *arguments, *defaults])
    captured = capsys.readouterr()
    # exit code 2, one line on stderr naming the file and key, no traceback, nothing scored
    assert code == 2
    assert captured.err.count("\n") == 1 and captured.err.startswith(expected), captured.err
    assert captured.out == ""


def test_cli_scores_the_test_split_by_default_when_the_data_has_one(runs, capsys, tmp_path):
    folder, _ = runs["seed0"]
    (tmp_path / "d.yaml").write_text(yaml.safe_dump({"data": {"test_fraction": 0.2}}))
    code, _, err = evaluate_cli(capsys, str(folder), "--data", str(tmp_path / "d.yaml"), "--resamples", "10", "-o", str(tmp_path / "e.json"))
    assert code == 0, err
    result = json.loads((tmp_path / "e.json").read_text())
    # no --split: the test split, since this data holds one
    data = classification_config().data.model_copy(update={"test_fraction": 0.2})
    assert result["split"] == "test" and result["images"] == len(load_test(data))
    # without one, the validation split
    code, _, err = evaluate_cli(capsys, str(folder), "--resamples", "10", "-o", str(tmp_path / "f.json"))
    assert code == 0, err
    assert json.loads((tmp_path / "f.json").read_text())["split"] == "val"


def test_cli_answers_input_errors_before_torch_loads(tmp_path):
    # a mistake in the input is answered without importing torch (seconds, not the model's start-up)
    script = (
        "import sys; from training.cli import main; "
        f"code = main(['evaluate', {str(tmp_path / 'nope')!r}]); "
        "sys.exit(10 + code if 'torch' in sys.modules else code)"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == f"error: {tmp_path / 'nope'}: run folder not found\n"


def test_cli_refuses_a_test_split_the_data_lacks(runs, capsys):
    folder, _ = runs["seed0"]
    code = main(["evaluate", str(folder), "--split", "test", "--device", "cpu"])
    captured = capsys.readouterr()
    # the run's synthetic data holds no test split: one line naming its config
    assert code == 2 and captured.err.startswith(f"error: {folder / 'config.yaml'}: data: has no test split")
