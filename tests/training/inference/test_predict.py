"""`python -m training predict`: a trained model's predictions on image files equal its outputs as
`evaluate` computes them, a broken file is a row with its error, and bad input is one line."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from tests.training.inference.tiny_runs import save_run, validation_images, write_images
from training.cli import main
from training.data.samples import ImageSet
from training.inference.evaluate import find_run
from training.inference.predict import PREDICTIONS
from training.loop.runtime import Runtime
from training.tasks import TASKS, get_task
from training.tasks.base import Task

pytestmark = pytest.mark.usefixtures("one_cpu_thread")

ROOT = Path(__file__).resolve().parents[3]


def predict_cli(capsys, *args: str) -> tuple[int, str, str]:
    """`python -m training predict ARGS --device cpu`, in this process: (exit code, stdout, stderr)."""
    code = main(["predict", *args, "--device", "cpu"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def task_outputs(run: Path, images: ImageSet):
    """`Task.outputs` of the saved run on `images`: what `evaluate` scores."""
    saved = find_run(run)
    return get_task(saved.cfg.task).outputs(saved.cfg, Runtime.from_config(saved.cfg.train), saved.model_state(), images)


def test_every_task_that_can_predict_has_its_predictions_written():
    can_predict = {name for name, cls in TASKS.items() if cls.loaded.__func__ is not Task.loaded.__func__}
    # predict knows (before torch loads) how to write each task whose model can be loaded to predict
    assert can_predict == set(PREDICTIONS)


def test_predict_classification_writes_a_row_per_image_with_the_probabilities_of_task_outputs(
    trained_run, tmp_path, capsys
):
    run = trained_run("classification")
    images = validation_images(run)
    paths = write_images(tmp_path / "images", images)
    (tmp_path / "images" / "broken.png").write_bytes(b"not a png at all")
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    output = ["-o", str(tmp_path / "p.csv"), "--batch-size", "7"]
    code, out, _ = predict_cli(capsys, str(run), str(tmp_path / "images"), *output)
    rows = read_rows(tmp_path / "p.csv")
    # one row per image file under the folder, found recursively in sorted order; other files are not images
    assert code == 0 and "1 could not be read" in out
    assert [r["path"] for r in rows] == [str(p) for p in paths] + [str(tmp_path / "images" / "broken.png")]
    # the probabilities are those evaluate computes on the same images (TTA included), to 1e-5
    probs = task_outputs(run, images).probs
    names = ["good", "scratch", "rust"]
    got = torch.tensor([[float(r[f"p_{name}"]) for name in names] for r in rows[:-1]])
    assert torch.allclose(got, probs, atol=1e-5)
    # P(defect) is 1 - P(good); without a threshold the prediction is the argmax and the decision follows it
    assert all(abs(float(r["p_defect"]) - (1 - float(r["p_good"]))) < 1e-6 for r in rows[:-1])
    assert [r["predicted"] for r in rows[:-1]] == [names[i] for i in probs.argmax(dim=1)]
    assert all(r["decision"] == ("good" if r["predicted"] == "good" else "defect") for r in rows[:-1])
    # the broken file is a row with its error and nothing else; the images after it were still predicted
    assert rows[-1]["error"].startswith("cannot read image") and rows[-1]["predicted"] == rows[-1]["p_good"] == ""
    assert all(r["error"] == "" for r in rows[:-1])


def test_predict_decision_follows_the_calibrated_threshold(trained_run, tmp_path, capsys):
    run = trained_run("classification")
    paths = write_images(tmp_path / "images", validation_images(run), nested=False)
    predict_cli(capsys, str(run), str(tmp_path / "images"), "-o", str(tmp_path / "argmax.csv"))
    p_defect = sorted(float(r["p_defect"]) for r in read_rows(tmp_path / "argmax.csv"))
    threshold = (p_defect[len(p_defect) // 2 - 1] + p_defect[len(p_defect) // 2]) / 2  # between two images' scores
    saved = find_run(run)
    cfg = saved.cfg.model_copy(update={"eval": saved.cfg.eval.model_copy(update={"decision_threshold": threshold})})
    calibrated = save_run(tmp_path / "calibrated", cfg, saved.model_state())
    code, _, _ = predict_cli(capsys, str(calibrated), *map(str, paths), "-o", str(tmp_path / "calibrated.csv"))
    rows = read_rows(tmp_path / "calibrated.csv")
    # an image is defective exactly when P(defect) >= eval.decision_threshold: here half of them
    assert code == 0 and len(rows) == len(paths)
    assert all(r["decision"] == ("defect" if float(r["p_defect"]) >= threshold else "good") for r in rows)
    assert {r["decision"] for r in rows} == {"good", "defect"}
    # its predicted class is the likeliest defect class then, and the good class otherwise
    for r in rows:
        likeliest_defect = max(["scratch", "rust"], key=lambda name: float(r[f"p_{name}"]))
        assert r["predicted"] == (likeliest_defect if r["decision"] == "defect" else "good")


def test_predict_multilabel_writes_each_class_probability_and_its_call_at_one_half(trained_run, tmp_path, capsys):
    run = trained_run("multilabel")
    images = validation_images(run)
    paths = write_images(tmp_path / "images", images)
    code, _, _ = predict_cli(capsys, str(run), str(tmp_path / "images"), "-o", str(tmp_path / "p.csv"))
    rows = read_rows(tmp_path / "p.csv")
    names = find_run(run).cfg.data.synthetic.classes[1:]  # the multi-label kind's classes are the defects
    probs = task_outputs(run, images).probs
    # one row per image with each class's sigmoid probability, as evaluate computes it
    assert code == 0 and [r["path"] for r in rows] == list(map(str, paths))
    got = torch.tensor([[float(r[f"p_{name}"]) for name in names] for r in rows])
    assert torch.allclose(got, probs, atol=1e-5)
    # and 1 where that probability is at least 0.5
    assert all(int(r[name]) == (float(r[f"p_{name}"]) >= 0.5) for r in rows for name in names)


@pytest.mark.parametrize("task", ["detection", "semi_supervised_detection"])
def test_predict_detection_writes_coco_results_in_each_image_s_own_pixels(task, trained_run, tmp_path, capsys):
    run = trained_run(task)
    images = validation_images(run, 6)
    wide = cv2.resize(np.asarray(images.images[0]), (48, 40), interpolation=cv2.INTER_LINEAR)  # 48 wide, 40 high
    images = ImageSet([*images.images, wide], np.append(images.labels, images.labels[0]),
                      [*images.boxes, images.boxes[0]], [*images.box_labels, images.box_labels[0]])  # fmt: skip
    paths = write_images(tmp_path / "images", images, nested=False)
    (tmp_path / "images" / "zz-empty.jpg").write_bytes(b"")
    code, _, _ = predict_cli(capsys, str(run), str(tmp_path / "images"), "-o", str(tmp_path / "p.json"))
    entries = json.loads((tmp_path / "p.json").read_text())
    outputs = task_outputs(run, images)  # the eval model's detections: the semi task's EMA teacher
    threshold = find_run(run).cfg.eval.score_threshold
    # the empty file is one entry with its error, after the images' boxes
    assert code == 0 and entries[-1] == {"image_id": len(paths), "file_name": str(tmp_path / "images" / "zz-empty.jpg"),
                                         "error": f"cannot read image {tmp_path / 'images' / 'zz-empty.jpg'}"}  # fmt: skip
    found = 0
    for index, (path, preds) in enumerate(zip(paths, outputs.preds)):
        mine = [e for e in entries if e["image_id"] == index]
        assert all(e["file_name"] == str(path) for e in mine)
        keep = preds["scores"] > threshold
        # every box above eval.score_threshold, with the detector's label and score, as evaluate finds it
        assert [e["category_id"] for e in mine] == preds["labels"][keep].tolist()
        assert torch.allclose(torch.tensor([e["score"] for e in mine]), preds["scores"][keep], atol=1e-5)
        # bbox [x, y, w, h] in the file's own pixels: evaluate's boxes are in the 32 px input's
        height, width = np.asarray(images.images[index]).shape[:2]
        xyxy = preds["boxes"][keep] * torch.tensor([width / 32, height / 32] * 2)
        got = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (e["bbox"] for e in mine)]).reshape(-1, 4)
        assert torch.allclose(got, xyxy, atol=1e-4)
        found += len(mine)
    # the comparison compared something, the non-square image included
    assert found > 0 and any(e["image_id"] == len(paths) - 1 for e in entries if "bbox" in e)


def test_predict_accepts_a_search_checkpoint_folder(trained_run, tmp_path, capsys):
    run = find_run(trained_run("classification"))
    (tmp_path / "checkpoint").mkdir()
    torch.save({"model": run.model_state(), "config": run.cfg.model_dump(mode="json")}, tmp_path / "checkpoint" / "state.pt")
    paths = write_images(tmp_path / "images", validation_images(run.folder, 4))
    code, _, _ = predict_cli(capsys, str(tmp_path / "checkpoint"), str(paths[0]), "-o", str(tmp_path / "p.csv"))
    # a search trial's checkpoint predicts as the train folder of the same model does
    assert code == 0 and len(read_rows(tmp_path / "p.csv")) == 1


def bad_inputs(run: Path, tmp: Path) -> dict[str, tuple[list[str], str]]:
    """case -> (predict arguments, what its one error line says)."""
    images, csv_out = str(tmp / "images"), ["-o", str(tmp / "p.csv")]
    return {
        "missing run": ([str(tmp / "nope"), images, *csv_out], "nope: run folder not found"),
        "no model file": ([str(tmp / "no-model"), images, *csv_out], "no model.pt"),
        "no images": ([str(run), str(tmp / "empty"), *csv_out], "no image files"),
        "missing image": ([str(run), str(tmp / "gone.png"), *csv_out], "gone.png: image or folder not found"),
        "json for classification": ([str(run), images, "-o", str(tmp / "p.json")], "-o: expected a .csv file"),
        "output under a file": ([str(run), images, "-o", str(tmp / "a-file" / "p.csv")], "is not a folder"),
        "output is a folder": ([str(run), images, "-o", str(tmp / "out.csv")], "is a folder"),
        "batch size": ([str(run), images, *csv_out, "--batch-size", "0"], "--batch-size: expected a positive"),
    }


@pytest.fixture
def bad_input_files(trained_run, tmp_path) -> Path:
    run = trained_run("classification")
    write_images(tmp_path / "images", validation_images(run, 2))
    (tmp_path / "no-model").mkdir()
    (tmp_path / "no-model" / "config.yaml").write_text((run / "config.yaml").read_text())
    (tmp_path / "empty").mkdir()
    (tmp_path / "a-file").write_text("")
    (tmp_path / "out.csv").mkdir()
    return run


@pytest.mark.parametrize("case", list(bad_inputs(Path("run"), Path("tmp"))))
def test_predict_bad_input_is_one_line_and_exit_2(case, bad_input_files, tmp_path, capsys):
    args, expected = bad_inputs(bad_input_files, tmp_path)[case]
    code, out, err = predict_cli(capsys, *args)
    # a user error: exit 2, one line naming what is wrong, nothing written
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and expected in err, err
    assert not (tmp_path / "p.csv").exists()


def test_predict_detection_wants_a_json_output(trained_run, tmp_path, capsys):
    run = trained_run("detection")
    write_images(tmp_path / "images", validation_images(run, 1))
    code, _, err = predict_cli(capsys, str(run), str(tmp_path / "images"), "-o", str(tmp_path / "p.csv"))
    # COCO results are JSON: a .csv output for a detector is refused before anything runs
    assert code == 2 and "-o: expected a .json file" in err


def test_predict_answers_bad_input_before_torch_loads(bad_input_files, tmp_path):
    cases = {case: args for case, (args, _) in bad_inputs(bad_input_files, tmp_path).items()}
    code = (
        "import json, sys\nfrom training.cli import main\n"
        f"codes = {{case: main(['predict', *args]) for case, args in {cases!r}.items()}}\n"
        "print(json.dumps({'codes': codes, 'torch': 'torch' in sys.modules}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # every input error of a train folder is answered without loading torch (seconds, not tens of them)
    assert set(result["codes"].values()) == {2} and result["torch"] is False


def test_predict_config_yaml_errors_name_the_run_config(trained_run, tmp_path, capsys):
    run = tmp_path / "probe-run"
    run.mkdir()
    cfg = yaml.safe_load((trained_run("classification") / "config.yaml").read_text()) | {"task": "probe"}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    torch.save({}, run / "model.pt")
    code, _, err = predict_cli(capsys, str(run), str(tmp_path), "-o", str(tmp_path / "p.csv"))
    # a task that cannot predict is named in its run's config
    assert code == 2 and err.strip() == f"error: {run / 'config.yaml'}: task: task 'probe' cannot predict on images"
