"""Training images/s of one epoch through our task code (`train_one_epoch` on a ClassificationTask)
against a minimal hand-written PyTorch loop with the same model, data, batch size and augmentations,
alternated in one run; and the data pipeline alone (synthetic generator; ImageFolder of PNGs read
with OpenCV and augmented with albumentations), with `num_workers` chosen from the trial's CPU share.

    python -m benchmarks.throughput           # resnet18 at 64 px, 512 images, 5 rounds
    python -m benchmarks.throughput --smoke   # resnet10t at 32 px, 64 images, 1 round
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import timm
import torch
from rich.console import Console
from torch.nn import functional as F
from torch.utils.data import DataLoader

from benchmarks.common import RESULTS_DIR, print_table, write_figures
from training.augment import MEAN, STD
from training.config import TrainConfig
from training.fit import train_one_epoch
from training.optim import create_optimizer, create_scheduler
from training.runtime import Runtime
from training.tasks import create_task

AUGMENT = {"brightness": 0.2, "contrast": 0.2, "hflip": 0.5, "rotate": 10.0}


def workers_for(cpu_share: float) -> int:
    """DataLoader workers a trial can afford: its CPUs beyond the one that trains (none below 2)."""
    return max(0, int(cpu_share) - 1)


def train_config(args: argparse.Namespace, data: dict[str, Any]) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "data": {"image_size": args.image_size, "batch_size": args.batch_size, "num_workers": workers_for(args.cpu), **data},
            "model": {"name": args.model},
            "loss": {"name": "cross_entropy"},
            "optim": {"name": "adamw", "lr": 1e-3, "schedule": "constant"},
            "augment": AUGMENT,
            "train": {"epochs": 1, "device": args.device},
        }
    )


class Ours:
    """One epoch as `fit` runs it: the task's loader, training_step, schedule, non-finite checks."""

    def __init__(self, cfg: TrainConfig, runtime: Runtime):
        self.task = create_task(cfg, runtime)
        self.optimizer = create_optimizer(self.task.model, cfg.optim)
        self.scheduler = create_scheduler(self.optimizer, cfg.optim, 1000, len(self.task.train_loader))
        self.scaler = runtime.grad_scaler()
        self.epoch = 0

    def images_per_epoch(self) -> int:
        return len(self.task.train_loader) * self.task.cfg.data.batch_size

    def run_epoch(self) -> None:
        self.epoch += 1
        self.task.start_epoch(self.epoch)
        train_one_epoch(self.task, self.optimizer, self.scheduler, self.scaler, None, self.epoch)


class HandWritten:
    """What a user writes by hand: timm model, DataLoader, normalize, forward, loss, backward, step."""

    def __init__(self, cfg: TrainConfig, runtime: Runtime, dataset, num_classes: int):
        self.runtime, self.device = runtime, runtime.device
        torch.manual_seed(cfg.seed)
        self.model = timm.create_model(cfg.model.name, pretrained=False, num_classes=num_classes).to(self.device)
        if runtime.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
        self.loader = DataLoader(
            dataset, batch_size=cfg.data.batch_size, shuffle=True, drop_last=True, num_workers=cfg.data.num_workers,
            persistent_workers=cfg.data.num_workers > 0, pin_memory=self.device.type == "cuda",
        )
        self.mean = torch.tensor(MEAN, device=self.device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(STD, device=self.device).view(1, 3, 1, 1) * 255

    def images_per_epoch(self) -> int:
        return len(self.loader) * self.loader.batch_size

    def run_epoch(self) -> None:
        self.model.train()
        fmt = torch.channels_last if self.runtime.channels_last else torch.preserve_format
        for images, labels in self.loader:
            images = (images.to(self.device, non_blocking=True, memory_format=fmt).float() - self.mean) / self.std
            with self.runtime.autocast():
                loss = F.cross_entropy(self.model(images), labels.to(self.device))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run: Callable[[], None], images: int, device: torch.device) -> float:
    """images/s of one call."""
    synchronize(device)
    began = time.perf_counter()
    run()
    synchronize(device)
    return images / (time.perf_counter() - began)


def compare_training(cfg: TrainConfig, runtime: Runtime, rounds: int) -> dict[str, Any]:
    """Alternate ours and the hand loop epoch by epoch (after one warm-up each), so load on a shared
    machine hits both alike; the medians."""
    ours = Ours(cfg, runtime)
    hand = HandWritten(cfg, runtime, ours.task.train_loader.dataset, len(ours.task.class_names))
    ours.run_epoch(), hand.run_epoch()
    rates: dict[str, list[float]] = {"ours": [], "hand": []}
    for _ in range(rounds):
        rates["ours"].append(timed(ours.run_epoch, ours.images_per_epoch(), runtime.device))
        rates["hand"].append(timed(hand.run_epoch, hand.images_per_epoch(), runtime.device))
    return {name: {"images_per_s": statistics.median(r), "rounds": r} for name, r in rates.items()}


def loading_rate(loader: DataLoader, rounds: int) -> float:
    """images/s of iterating the loader alone (decode/generate, resize, augment, collate)."""
    best = []
    for _ in range(rounds):
        began, count = time.perf_counter(), 0
        for images, _ in loader:
            count += len(images)
        best.append(count / (time.perf_counter() - began))
    return statistics.median(best)


def write_image_folder(cfg: TrainConfig, root: Path) -> None:
    """The synthetic images as PNGs in ROOT/<class>/, the layout `data.kind: imagefolder` reads."""
    from training.data import load_splits

    splits = load_splits(cfg.data)
    for part in (splits.train, splits.val):
        for i, (image, label) in enumerate(zip(part.images, part.labels)):
            folder = root / splits.class_names[int(label)]
            folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / f"{id(part)}_{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def compare_loading(args: argparse.Namespace, runtime: Runtime, rounds: int) -> dict[str, float]:
    synthetic_cfg = train_config(args, {"kind": "synthetic", "synthetic": {"count": args.images, "seed": 0}})
    rates = {"synthetic": loading_rate(create_task(synthetic_cfg, runtime).train_loader, rounds)}
    with tempfile.TemporaryDirectory() as folder:
        write_image_folder(synthetic_cfg, Path(folder))
        folder_cfg = train_config(args, {"kind": "imagefolder", "imagefolder": {"root": folder}})
        rates["imagefolder"] = loading_rate(create_task(folder_cfg, runtime).train_loader, rounds)
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--images", type=int, default=512, help="synthetic images (75%% train)")
    parser.add_argument("--rounds", type=int, default=5, help="timed epochs per side")
    parser.add_argument("--cpu", type=float, default=1, help="the trial's CPU share: torch threads and DataLoader workers")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--smoke", action="store_true", help="tiny settings for the test suite")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="where throughput.json goes")
    args = parser.parse_args(argv)
    if args.smoke:
        args.model, args.image_size, args.images, args.rounds, args.batch_size = "resnet10t", 32, 64, 1, 16
    console = Console()
    cfg = train_config(args, {"kind": "synthetic", "synthetic": {"count": args.images, "seed": 0}})
    runtime = Runtime.for_trial(cfg, cpu=args.cpu, gpu=1.0 if args.device != "cpu" else 0.0)
    runtime.apply()
    training = compare_training(cfg, runtime, args.rounds)
    loading = compare_loading(args, runtime, args.rounds)
    ratio = training["ours"]["images_per_s"] / training["hand"]["images_per_s"]
    figures = {
        "model": args.model, "image_size": args.image_size, "batch_size": args.batch_size, "images": args.images,
        "augment": AUGMENT, "device": str(runtime.device), "cpu_share": args.cpu, "num_workers": cfg.data.num_workers,
        "training": training, "ours_vs_hand": ratio,
        "loading_images_per_s": loading, "smoke": args.smoke,
    }
    print_table(
        console,
        f"throughput: {args.model} at {args.image_size} px, batch {args.batch_size}, {runtime.device}, "
        f"{args.cpu:g} CPU share -> {cfg.data.num_workers} workers",
        ["what", "images/s"],
        [
            ["train epoch: ours (train_one_epoch)", training["ours"]["images_per_s"]],
            ["train epoch: hand-written loop", training["hand"]["images_per_s"]],
            ["data alone: synthetic + augment", loading["synthetic"]],
            ["data alone: ImageFolder PNG + augment", loading["imagefolder"]],
        ],
    )
    path = write_figures("throughput", figures, args.out)
    bound = "data" if min(loading.values()) < training["ours"]["images_per_s"] else "compute"
    console.print(f"figures: {path}")
    print(f"ratios: ours/hand = {ratio:.3f}; data/train (ImageFolder) = {loading['imagefolder'] / training['ours']['images_per_s']:.1f}x ({bound}-bound)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
