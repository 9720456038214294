"""`python -m training train CONFIG.yaml`: one training run outside Ray, logged to MLflow.
`python -m training evaluate RUN_DIR...`: trained models scored on a split, with bootstrap intervals.
`python -m training predict RUN_DIR IMAGES... -o OUT`: a trained model's predictions on image files.
`python -m training export-model RUN_DIR -o model.onnx|model.ts`: a trained model as one deployable file.

Configs are read and checked before torch loads (seconds), so a mistake is answered at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from rich.console import Console

from training.config import TrainConfig
from training.data.registry import check_data
from training.schema.config_file import flatten, load_config
from training.schema.errors import ConfigError
from training.schema.task_keys import check_task_name, unread_settings

if TYPE_CHECKING:
    from training.loop.fit import EpochReport

EXIT_OK, EXIT_USER = 0, 2
SHOWN = ("train/loss", "val/loss", "val/accuracy", "val/macro_f1", "val/miss_rate", "val/overkill_rate", "val/mAP50")


def _parser() -> argparse.ArgumentParser:
    description = "Train one config, score trained models, predict with one or export it; no Ray needed."
    parser = argparse.ArgumentParser(prog="python -m training", description=description)
    verbs = parser.add_subparsers(dest="verb", required=True)
    train = verbs.add_parser("train", help="train a config YAML (e.g. one exported by `python -m search export`)")
    train.add_argument("config", type=Path, help="training config YAML")
    train.add_argument("--epochs", type=int, help="override train.epochs")
    train.add_argument("--tracking-uri", help="MLflow tracking URI (default: the config's, else sqlite:///results/mlflow.db)")
    train.add_argument("--out", type=Path, help="output folder (default: results/train/<config name>-<time>)")
    evaluate = verbs.add_parser(
        "evaluate", help="score trained models on a split: each metric with its 95%% bootstrap interval"
    )
    evaluate.add_argument(
        "runs", type=Path, nargs="+", metavar="RUN_DIR",
        help="folders of `training train` (config.yaml, model.pt) or search checkpoints (state.pt): one config's seeds",
    )  # fmt: skip
    evaluate.add_argument("--split", help="test (the default when the data has one) or val")
    evaluate.add_argument(
        "--data", type=Path, help="YAML file whose data: section replaces the runs' data (keys it leaves out stay the runs')"
    )
    evaluate.add_argument(
        "--against", type=Path, nargs="+", metavar="RUN_DIR", help="a second group (e.g. the baseline's seeds): A - B per metric"
    )
    evaluate.add_argument(
        "--resamples", type=int, help="bootstrap resamples (default: the task's; fewer for detection, each costs two mAPs per model)"
    )
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    evaluate.add_argument("--device", default="auto", help="auto (CUDA when there is one), cpu or cuda")
    evaluate.add_argument("-o", "--output", type=Path, help="write the results to this JSON file")
    run_help = "a `training train` folder (config.yaml, model.pt) or a search checkpoint folder (state.pt)"
    predict = verbs.add_parser(
        "predict", help="a trained model's predictions on images: a CSV row per image (detection: COCO results JSON)"
    )
    predict.add_argument("run", type=Path, metavar="RUN_DIR", help=run_help)
    predict.add_argument(
        "images", type=Path, nargs="+", metavar="IMAGES_OR_FOLDER", help="image files, or folders searched recursively"
    )
    predict.add_argument(
        "-o", "--output", type=Path, required=True, help="predictions.csv (classification, multilabel) or .json (detection)"
    )
    predict.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default: 32)")
    predict.add_argument("--device", default="auto", help="auto (CUDA when there is one), cpu or cuda")
    export = verbs.add_parser(
        "export-model", help="a trained model as one ONNX or TorchScript file, its class names and thresholds inside"
    )
    export.add_argument("run", type=Path, metavar="RUN_DIR", help=run_help)
    export.add_argument("-o", "--output", type=Path, required=True, help="model.onnx (ONNX) or model.ts (TorchScript)")
    return parser


def _prepare(args: argparse.Namespace) -> TrainConfig:
    cfg = load_config(args.config)
    if args.epochs is not None:
        if args.epochs < 1:
            raise ConfigError("--epochs", f"expected a positive number of epochs, got {args.epochs}")
        cfg.train.epochs = args.epochs
    try:
        check_task_name(cfg.task)
        check_data(cfg.data)
        from training.tasks import get_task  # the task's own checks load torch

        get_task(cfg.task).check(cfg)
    except ConfigError as exc:
        raise exc.with_file(args.config) from None
    # a warning, not an error: the run is not wasted, and a config shared between tasks still trains
    for unread in unread_settings(cfg, cfg.model.detector):
        print(f"warning: {unread.with_file(args.config)}", file=sys.stderr)
    return cfg


def artifact_root(uri: str) -> Path | None:
    """Where a new experiment keeps its artifacts: beside a sqlite store (its folder's mlartifacts/),
    never in the working directory; a tracking server or file store decides for itself."""
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts"
    return None


def epoch_line(report: EpochReport, epochs: int) -> str:
    shown = "  ".join(f"{k}={report.metrics[k]:.4f}" for k in SHOWN if k in report.metrics)
    return f"epoch {report.epoch}/{epochs}  {shown}  ({report.metrics.get('time/epoch_s', 0):.1f}s)"


def train(args: argparse.Namespace, console: Console) -> int:
    cfg = _prepare(args)
    import torch

    from training.loop.fit import fit
    from training.tracking import Tracker, default_tracking_uri

    out = args.out or Path("results/train") / f"{args.config.stem}-{datetime.now():%Y%m%d-%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    uri = args.tracking_uri or cfg.tracking.uri or default_tracking_uri(Path("results"))
    tracker = Tracker(uri, cfg.tracking.experiment, artifact_root=artifact_root(uri))
    run_id = tracker.start_run(f"train {args.config.stem}", tags={"config_file": str(args.config), "kind": "retrain"})
    tracker.log(run_id, params=flatten(cfg.model_dump(mode="json")))
    history: list[dict] = []

    def on_epoch(report: EpochReport) -> None:
        history.append({"epoch": report.epoch, **report.metrics})
        tracker.log(run_id, metrics=report.metrics, step=report.epoch)
        tracker.log_extras(run_id, report.extras, report.epoch)
        console.print(epoch_line(report, cfg.train.epochs))
        if report.epoch == cfg.train.epochs:
            torch.save(report.state()["model"], out / "model.pt")

    try:
        final = fit(cfg, on_epoch=on_epoch)
    except BaseException:
        tracker.end_run(run_id, "FAILED")
        raise
    (out / "metrics.json").write_text(json.dumps({"final": final, "history": history}, indent=2))
    for name in ("config.yaml", "metrics.json", "model.pt"):
        tracker.log_artifact(run_id, out / name)
    tracker.end_run(run_id)
    console.print(f"done: weights {out / 'model.pt'}, metrics {out / 'metrics.json'}, MLflow run {run_id} in {uri}")
    return EXIT_OK


def evaluate(args: argparse.Namespace, console: Console) -> int:
    from training.inference.evaluate import DEVICES, plan, report, score  # per verb, as search/cli.py imports

    if args.resamples is not None and args.resamples < 1:
        raise ConfigError("--resamples", f"expected a positive number of resamples, got {args.resamples}")
    if args.device not in DEVICES:
        raise ConfigError("--device", f"expected one of {', '.join(DEVICES)}, got '{args.device}'")
    planned = plan(args.runs, args.against or [], args.split, args.data)
    evaluation = score(planned, args.resamples, seed=args.seed, device=args.device)
    if not console.is_terminal:  # a log or a pipe has no width to fit: one line per metric
        console.width = max(console.width, 120)
    for part in report(evaluation):
        console.print(part)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(evaluation.to_json(), indent=2))
        console.print(f"written: {args.output}")
    return EXIT_OK


def predict(args: argparse.Namespace, console: Console) -> int:
    from rich.progress import Progress

    from training.inference.evaluate import DEVICES
    from training.inference.predict import plan, predict as predict_images

    if args.batch_size < 1:
        raise ConfigError("--batch-size", f"expected a positive number of images, got {args.batch_size}")
    if args.device not in DEVICES:
        raise ConfigError("--device", f"expected one of {', '.join(DEVICES)}, got '{args.device}'")
    planned = plan(args.run, args.images, args.output)
    with Progress(console=console, disable=not console.is_terminal, transient=True) as progress:
        bar = progress.add_task("predicting", total=len(planned.images))
        errors = predict_images(planned, args.batch_size, args.device, lambda n: progress.advance(bar, n))
    unread = f" ({errors} could not be read: see their error)" if errors else ""
    console.print(f"written: {args.output}: {len(planned.images)} images{unread}")
    return EXIT_OK


def export_model(args: argparse.Namespace, console: Console) -> int:
    from training.inference.deploy import export, plan_export

    run, classes = plan_export(args.run, args.output)
    info = export(run, classes, args.output)
    height, width = info["input_size"]
    console.print(f"written: {args.output}: {info['task']}, input {height}x{width}, outputs {', '.join(info['outputs'])}")
    return EXIT_OK


VERBS = {"train": train, "evaluate": evaluate, "predict": predict, "export-model": export_model}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console(highlight=False, soft_wrap=True)  # one line per epoch, also in a plain log
    try:
        return VERBS[args.verb](args, console)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER


if __name__ == "__main__":
    sys.exit(main())
