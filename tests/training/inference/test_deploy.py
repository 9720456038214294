"""`python -m training export-model`: the ONNX file in onnxruntime and the TorchScript file in a
process without this project return what `predict` writes, and carry the run's metadata."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from tests.training.inference.tiny_runs import save_run, validation_images, write_images
from training.augment.knobs import MEAN, STD
from training.cli import main
from training.inference import deploy
from training.inference.evaluate import find_run

pytestmark = pytest.mark.usefixtures("one_cpu_thread")

SITE_PACKAGES = Path(torch.__file__).resolve().parents[1]
THRESHOLD = 0.3


def export_cli(capsys, run: Path, output: Path) -> tuple[int, str]:
    """`python -m training export-model RUN -o OUTPUT` in this process: (exit code, stderr)."""
    code = main(["export-model", str(run), "-o", str(output)])
    return code, capsys.readouterr().err


def predicted(capsys, run: Path, folder: Path, output: Path) -> Path:
    assert main(["predict", str(run), str(folder), "-o", str(output), "--device", "cpu"]) == 0
    capsys.readouterr()
    return output


def batch_of(paths: list[Path]) -> np.ndarray:
    """The image files as the exported model takes them: float32 RGB in [0, 1], NCHW."""
    import cv2

    pixels = np.stack([cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB).transpose(2, 0, 1) for p in paths])
    return pixels.astype(np.float32) / 255


def onnx_metadata(path: Path) -> dict:
    return {prop.key: json.loads(prop.value) for prop in onnx.load(str(path)).metadata_props}


def in_fresh_process(model: Path, images: Path, out: Path, imports: str = "") -> dict:
    """Run the TorchScript `model` on each image of the .npy batch `images` (batch = 1 at a time)
    in a Python that has torch but not this project (no site hooks, no editable install, no working
    directory on its path); save the outputs to `out`. Returns the file's metadata."""
    code = f"""
import importlib.util, json, sys
sys.path.append({str(SITE_PACKAGES)!r})
assert importlib.util.find_spec("training") is None, "the project is importable"
import numpy, torch{imports}
files = {{"metadata.json": ""}}
model = torch.jit.load({str(model)!r}, _extra_files=files)
meta = json.loads(files["metadata.json"])
batch = torch.from_numpy(numpy.load({str(images)!r}))
size = meta["batch_size"] or len(batch)
with torch.no_grad():
    outputs = [model(batch[i : i + size]) for i in range(0, len(batch), size)]
torch.save(outputs, {str(out)!r})
print(json.dumps(meta))
"""
    command = [sys.executable, "-I", "-S", "-c", code]
    proc = subprocess.run(command, cwd=out.parent, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def calibrated(trained_run, tmp_path_factory) -> Path:
    """The tiny classifier (hflip TTA) with a decision threshold, as an exported config sets it."""
    saved = find_run(trained_run("classification"))
    cfg = saved.cfg.model_copy(update={"eval": saved.cfg.eval.model_copy(update={"decision_threshold": THRESHOLD})})
    return save_run(tmp_path_factory.mktemp("calibrated") / "run", cfg, saved.model_state())


def test_exported_classifier_returns_predict_s_probabilities_and_carries_its_metadata(calibrated, tmp_path, capsys):
    paths = write_images(tmp_path / "images", validation_images(calibrated, 12), nested=False)
    with (predicted(capsys, calibrated, tmp_path / "images", tmp_path / "p.csv")).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    names = ["good", "scratch", "rust"]
    expected = np.array([[float(r[f"p_{n}"]) for n in names] for r in rows])
    np.save(tmp_path / "images.npy", batch_of(paths))
    assert export_cli(capsys, calibrated, tmp_path / "model.onnx")[0] == 0
    assert export_cli(capsys, calibrated, tmp_path / "model.ts")[0] == 0
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    (probs,) = session.run(["probs"], {"images": np.load(tmp_path / "images.npy")})
    # onnxruntime on the images in [0, 1] gives predict's probabilities (normalization and TTA inside)
    assert np.allclose(probs, expected, atol=1e-4)
    meta = in_fresh_process(tmp_path / "model.ts", tmp_path / "images.npy", tmp_path / "ts.pt")
    (scripted,) = torch.load(tmp_path / "ts.pt")[0]
    # so does the TorchScript file, in a process that has only torch
    assert np.allclose(scripted.numpy(), expected, atol=1e-4)
    # both files say what a deployment needs: classes, input size, normalization, good class, threshold
    for info in (onnx_metadata(tmp_path / "model.onnx"), meta):
        assert info["class_names"] == names and info["input_size"] == [32, 32] and info["outputs"] == ["probs"]
        assert info["mean"] == list(MEAN) and info["std"] == list(STD)
        assert info["good_class"] == "good" and info["decision_threshold"] == THRESHOLD and info["tta"] == ["hflip"]


def test_exported_detector_returns_predict_s_boxes_and_carries_its_metadata(trained_run, tmp_path, capsys):
    run = trained_run("detection")
    paths = write_images(tmp_path / "images", validation_images(run, 6), nested=False)
    entries = json.loads(predicted(capsys, run, tmp_path / "images", tmp_path / "p.json").read_text())
    np.save(tmp_path / "images.npy", batch_of(paths))
    assert export_cli(capsys, run, tmp_path / "model.onnx")[0] == 0
    assert export_cli(capsys, run, tmp_path / "model.ts")[0] == 0
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    images = np.load(tmp_path / "images.npy")
    from_onnx = [session.run(["boxes", "scores", "labels"], {"images": images[i : i + 1]}) for i in range(len(paths))]
    meta = in_fresh_process(tmp_path / "model.ts", tmp_path / "images.npy", tmp_path / "ts.pt", ", torchvision")
    from_ts = [[t.numpy() for t in found] for found in torch.load(tmp_path / "ts.pt")]
    threshold = meta["score_threshold"]
    compared = 0
    for index in range(len(paths)):
        mine = [e for e in entries if e["image_id"] == index]
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (e["bbox"] for e in mine)]).reshape(-1, 4)
        for found in (from_onnx[index], from_ts[index]):
            keep = found[1] > threshold
            # above the score threshold, the boxes, scores and labels predict wrote (32 px images: same pixels)
            assert found[2][keep].tolist() == [e["category_id"] for e in mine]
            assert np.allclose(found[1][keep], [e["score"] for e in mine], atol=1e-4)
            assert np.allclose(found[0][keep], boxes, atol=1e-4)
        compared += len(mine)
    assert compared > 0
    # the metadata maps labels to class names and holds the input, normalization and score threshold
    for info in (onnx_metadata(tmp_path / "model.onnx"), meta):
        assert info["label_names"] == ["scratch", "rust", "chip", "crack"] and info["batch_size"] == 1
        assert info["input_size"] == [32, 32] and info["mean"] == list(MEAN) and info["std"] == list(STD)
        assert info["score_threshold"] == 0.06 and info["outputs"] == ["boxes", "scores", "labels"]


def test_export_model_bad_input_is_one_line_and_exit_2(trained_run, tmp_path, capsys, monkeypatch):
    run = trained_run("classification")
    cases = {
        tmp_path / "model.pt": "-o: expected a .onnx file (an ONNX model; .ts for TorchScript), got 'model.pt'",
        tmp_path / "file" / "model.onnx": "is not a folder",
    }
    (tmp_path / "file").write_text("")
    for output, expected in cases.items():
        code, err = export_cli(capsys, run, output)
        # a user error: exit 2 and one line saying what is wrong
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and expected in err, err
    code, err = export_cli(capsys, tmp_path / "nope", tmp_path / "model.onnx")
    assert code == 2 and "nope: run folder not found" in err
    monkeypatch.setitem(deploy.NEEDS, ".onnx", ["onnx_not_installed_here"])
    code, err = export_cli(capsys, run, tmp_path / "model.onnx")
    # a missing exporter package is named, with the extra that installs it
    assert code == 2 and "needs the package 'onnx_not_installed_here'" in err and ".[deploy]" in err
    assert not list(tmp_path.glob("*.onnx"))
