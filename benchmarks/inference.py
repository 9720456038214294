"""Inference images/s on the CPU of a trained run: `predict` end to end (image files decoded, resized,
scored, the CSV or JSON written; the model's load included), and the model alone on images already
decoded at its input size: torch as `predict` runs it (`Task.infer`), the `export-model` ONNX file in
onnxruntime and its TorchScript file; for a classifier (resnet18 at 64 px) and the Faster R-CNN
(resnet18-FPN) detector at 256 px, each trained for one epoch on synthetic images first. Rounds
alternate the methods; medians.

    python -m benchmarks.inference            # resnet18 at 64 px, Faster R-CNN at 256 px
    python -m benchmarks.inference --smoke    # resnet10t at 32 px, Faster R-CNN at 64 px, 1 round
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import onnxruntime
import torch
from rich.console import Console

from benchmarks.common import RESULTS_DIR, print_table, write_figures
from training.config import TrainConfig
from training.data import load_splits
from training.inference.deploy import export
from training.inference.evaluate import find_run
from training.inference.predict import plan, predict
from training.loop.fit import fit
from training.loop.runtime import Runtime
from training.tasks import get_task

METHODS = ["predict", "torch", "onnx", "torchscript"]


def run_config(task: str, model: str, size: int, images: int, batch_size: int) -> TrainConfig:
    detector = {"detector": "faster_rcnn"} if task == "detection" else {}
    return TrainConfig.model_validate({
        "task": task,
        "data": {"image_size": size, "batch_size": batch_size, "synthetic": {"count": images, "seed": 0}},
        "model": {"name": model, **detector},
        "optim": {"name": "adamw", "lr": 1e-3, "schedule": "constant"},
        "train": {"epochs": 1, "device": "cpu"},
    })  # fmt: skip


def trained_run(cfg: TrainConfig, folder: Path) -> Path:
    """A `training train` folder of `cfg` after its one epoch (weights that score like a model's)."""
    import yaml

    states = []
    fit(cfg, on_epoch=lambda report: states.append(report.state()))
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    torch.save(states[-1]["model"], folder / "model.pt")
    return folder


def image_files(cfg: TrainConfig, count: int, folder: Path) -> list[Path]:
    """`count` synthetic images of the run's data as PNG files at its input size (repeated if needed)."""
    images = load_splits(cfg.data).train.images
    folder.mkdir(parents=True)
    paths = []
    for index in range(count):
        path = folder / f"{index:05d}.png"
        cv2.imwrite(str(path), cv2.cvtColor(np.asarray(images[index % len(images)]), cv2.COLOR_RGB2BGR))
        paths.append(path)
    return paths


def per_second(count: int, work: Callable[[], Any]) -> float:
    start = time.perf_counter()
    work()
    return count / (time.perf_counter() - start)


def measure(name: str, task: str, model: str, size: int, args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    """images/s of each method (median over the rounds) for one trained run."""
    cfg = run_config(task, model, size, args.train_images, args.batch_size)
    run = trained_run(cfg, scratch / name)
    paths = image_files(cfg, args.images, scratch / f"{name}-images")
    suffix = ".json" if task == "detection" else ".csv"
    planned = plan(run, [scratch / f"{name}-images"], scratch / f"{name}-predictions{suffix}")
    saved = find_run(run)
    for path in (scratch / f"{name}.onnx", scratch / f"{name}.ts"):
        export(saved, planned.classes, path)
    batch = args.batch_size if task != "detection" else 1  # the exported detector takes one image
    pixels = np.stack([cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB).transpose(2, 0, 1) for p in paths])
    inputs = [pixels[i : i + batch].astype(np.float32) / 255 for i in range(0, len(pixels), batch)]
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # the same cores as torch
    # its threads would otherwise spin-wait after each run, taking the cores from the next method
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(str(scratch / f"{name}.onnx"), options, providers=["CPUExecutionProvider"])
    scripted = torch.jit.load(str(scratch / f"{name}.ts"))
    start = time.perf_counter()
    loaded = get_task(task).loaded(cfg, Runtime(torch.device("cpu")), saved.model_state())
    load_s = time.perf_counter() - start

    def eager() -> None:
        with torch.no_grad():
            for x in inputs:
                loaded.infer(torch.from_numpy(x) * 255)

    def in_torchscript() -> None:
        with torch.no_grad():
            for x in inputs:
                scripted(torch.from_numpy(x))

    work = {
        "predict": lambda: predict(planned, args.batch_size, "cpu"),
        "torch": eager,
        "onnx": lambda: [session.run(None, {"images": x}) for x in inputs],
        "torchscript": in_torchscript,
    }
    for run_once in work.values():  # warm-up: first-call allocations, TorchScript's profiling runs
        run_once()
    rates: dict[str, list[float]] = {method: [] for method in METHODS}
    for _ in range(args.rounds):
        for method in METHODS:
            rates[method].append(per_second(len(paths), work[method]))
    medians = {method: statistics.median(values) for method, values in rates.items()}
    return {
        "name": name, "task": task, "model": model, "image_size": size, "images": len(paths),
        "batch_size": batch, "model_load_s": load_s, "images_per_s": medians, "rounds": rates,
    }  # fmt: skip


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18", help="the classifier's and the detector's backbone")
    parser.add_argument("--image-size", type=int, default=64, help="the classifier's input size")
    parser.add_argument("--detection-size", type=int, default=256, help="the detector's input size")
    parser.add_argument("--images", type=int, default=256, help="image files timed per method and round")
    parser.add_argument("--detection-images", type=int, default=32, help="the same for the detector")
    parser.add_argument("--train-images", type=int, default=64, help="synthetic images of the one training epoch")
    parser.add_argument("--batch-size", type=int, default=32, help="predict's and the classifier's batch")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per method")
    parser.add_argument("--threads", type=int, default=None, help="torch and onnxruntime threads (default: torch's)")
    parser.add_argument("--smoke", action="store_true", help="tiny settings for the test suite")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="where inference.json goes")
    args = parser.parse_args(argv)
    if args.smoke:
        args.model, args.image_size, args.detection_size = "resnet10t", 32, 64
        args.images, args.detection_images, args.train_images, args.batch_size, args.rounds = 16, 4, 16, 8, 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    console = Console(width=None if sys.stdout.isatty() else 160)  # a log keeps the whole table
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="inference-") as folder:
        scratch = Path(folder)
        classifier = measure("classifier", "classification", args.model, args.image_size, args, scratch)
        detector_args = argparse.Namespace(**{**vars(args), "images": args.detection_images, "batch_size": 8})
        detector = measure("detector", "detection", args.model, args.detection_size, detector_args, scratch)
    results = [classifier, detector]
    rows = [
        [f"{r['model']} {r['task']} @{r['image_size']}", r["images"], f"{r['model_load_s']:.2f}",
         *(r["images_per_s"][m] for m in METHODS)]
        for r in results
    ]  # fmt: skip
    header = ["model", "images", "load s", "predict (files)", "torch", "onnxruntime", "torchscript"]
    print_table(console, f"images/s on the CPU, {torch.get_num_threads()} threads", header, rows)
    figures = {"device": "cpu", "threads": torch.get_num_threads(), "smoke": args.smoke, "results": results}
    path = write_figures("inference", figures, args.out)
    console.print(f"figures: {path}")
    ratios = "; ".join(
        f"{r['name']} onnx/torch = {r['images_per_s']['onnx'] / r['images_per_s']['torch']:.2f}, "
        f"torchscript/torch = {r['images_per_s']['torchscript'] / r['images_per_s']['torch']:.2f}, "
        f"predict/torch = {r['images_per_s']['predict'] / r['images_per_s']['torch']:.2f}"
        for r in results
    )
    print(f"ratios: {ratios}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
