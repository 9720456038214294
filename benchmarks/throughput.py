"""Training images/s of one epoch through our task code (`train_one_epoch` on the task) against the
ceiling (the same model's training step on one fixed batch already on the device: no data work, no
host sync) and a minimal hand-written PyTorch loop with the same model, images, batch size and
augmentations, alternated in one run; the Faster R-CNN (resnet18-FPN) detector's ceiling and ours;
and the data pipeline alone (synthetic generator; ImageFolder of PNGs), images/s and images/s per
CPU core, with `num_workers` = 0 and = the machine's cores minus one.

    python -m benchmarks.throughput                 # resnet18 at 64 px, detector at 256 px
    python -m benchmarks.throughput --device cuda   # the same on the GPU
    python -m benchmarks.throughput --smoke         # resnet10t at 32 px, detector at 64 px, 1 round
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import albumentations as A
import cv2
import numpy as np
import timm
import torch
from rich.console import Console
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from benchmarks.common import RESULTS_DIR, print_table, write_figures
from search.resources import resolve_resources
from training.augment.knobs import MEAN, STD
from training.config import AugmentConfig, TrainConfig
from training.data import load_splits
from training.loop.fit import train_one_epoch
from training.loop.optim import create_optimizer, create_scheduler
from training.loop.runtime import Runtime
from training.schema.resources import TrialResources
from training.tasks import create_task

AUGMENT = {"brightness": 0.2, "contrast": 0.2, "hflip": 0.5, "rotate": 10.0}


def cores() -> int:
    """CPU cores this process may run on (os.cpu_count() counts the host's in a container)."""
    return len(os.sched_getaffinity(0))


def workers_for(cpu_share: float) -> int:
    """DataLoader workers a trial can afford: its CPUs beyond the one that trains (none below 2)."""
    return max(0, int(cpu_share) - 1)


def train_config(args: argparse.Namespace, data: dict[str, Any], workers: int | None = None) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "data": {
                "image_size": args.image_size, "batch_size": args.batch_size,
                "num_workers": workers_for(args.cpu) if workers is None else workers, **data,
            },
            "model": {"name": args.model},
            "loss": {"name": "cross_entropy"},
            "optim": {"name": "adamw", "lr": 1e-3, "schedule": "constant"},
            "augment": AUGMENT,
            "train": {"epochs": 1, "device": args.device},
        }
    )


def detection_config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "task": "detection",
            "data": {"image_size": args.detection_size, "batch_size": args.detection_batch,
                     "num_workers": workers_for(args.cpu), "synthetic": {"count": args.detection_images, "seed": 0}},
            "model": {"name": "resnet18", "detector": "faster_rcnn"},
            "optim": {"name": "adamw", "lr": 1e-4, "schedule": "constant"},
            "train": {"epochs": 1, "device": args.device},
        }
    )


def on_device(batch: Any, device: torch.device) -> Any:
    """Every tensor of a (nested) batch moved to `device`, the rest as it is."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, (list, tuple)):
        return type(batch)(on_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: on_device(v, device) for k, v in batch.items()}
    return batch


class Ceiling:
    """The most this device can do for the run's model: its training step (forward, loss, backward,
    optimizer step, under the run's autocast and loss scaling) repeated on one batch that already
    sits on the device. Its own task, without augmentation (that is data work) or loader workers; no
    host sync inside the timed steps."""

    def __init__(self, cfg: TrainConfig, runtime: Runtime):
        plain = cfg.model_copy(update={
            "augment": AugmentConfig(), "phases": [], "data": cfg.data.model_copy(update={"num_workers": 0}),
        })
        self.task = create_task(plain, runtime)
        self.optimizer = create_optimizer(self.task.model, cfg.optim)
        self.scaler = runtime.grad_scaler()
        self.batch = on_device(next(iter(self.task.train_loader)), runtime.device)
        self.batch_size = len(self.batch[0])

    def step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        with self.task.runtime.autocast():
            loss = self.task.training_loss(self.batch)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def run(self, steps: int) -> None:
        self.task.model.train()
        for _ in range(steps):
            self.step()

    def rate(self, seconds: float) -> float:
        """images/s over at least `seconds` after two warm-up steps (cuDNN autotuning, allocator)."""
        self.run(2)
        device = self.task.runtime.device
        synchronize(device)
        began, steps = time.perf_counter(), 0
        while time.perf_counter() - began < seconds or steps < 3:
            self.step()  # on a GPU the host runs ahead; the final sync charges every queued step
            steps += 1
        synchronize(device)
        return steps * self.batch_size / (time.perf_counter() - began)


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


def hand_augment() -> A.Compose:
    """AUGMENT as a user writes it in albumentations (the meaning of each magnitude as in ours)."""
    return A.Compose([
        A.ColorJitter(brightness=AUGMENT["brightness"], contrast=0, saturation=0, hue=0, p=0.5),
        A.ColorJitter(brightness=0, contrast=AUGMENT["contrast"], saturation=0, hue=0, p=0.5),
        A.HorizontalFlip(p=AUGMENT["hflip"]),
        A.Rotate(limit=AUGMENT["rotate"], border_mode=cv2.BORDER_REFLECT_101, p=0.5),
    ])


class HandDataset(Dataset):
    """uint8 HWC arrays -> augmented uint8 CHW tensors and labels, nothing else."""

    def __init__(self, images: list[np.ndarray], labels: np.ndarray, size: int):
        self.images, self.labels, self.size, self.augment = images, labels, size, hand_augment()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = cv2.resize(self.images[i], (self.size, self.size), interpolation=cv2.INTER_AREA)
        return torch.from_numpy(self.augment(image=image)["image"]).permute(2, 0, 1), int(self.labels[i])


class HandWritten:
    """What a user writes by hand: timm model, DataLoader, normalize, forward, loss, backward, step."""

    def __init__(self, cfg: TrainConfig, runtime: Runtime, num_classes: int):
        self.runtime, self.device = runtime, runtime.device
        torch.manual_seed(cfg.seed)
        self.model = timm.create_model(cfg.model.name, pretrained=False, num_classes=num_classes).to(self.device)
        if runtime.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
        train = load_splits(cfg.data).train
        workers = int(cfg.data.num_workers)
        self.loader = DataLoader(
            HandDataset(train.images, train.labels, cfg.data.image_size), batch_size=cfg.data.batch_size,
            shuffle=True, drop_last=True, num_workers=workers, persistent_workers=workers > 0,
            pin_memory=self.device.type == "cuda",
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


def alternate(runs: dict[str, tuple[Callable[[], None], int]], device: torch.device, rounds: int) -> dict[str, Any]:
    """Each run once as a warm-up, then all of them in turn `rounds` times, so load on a shared
    machine hits them alike; the medians."""
    for run, _ in runs.values():
        run()
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, (run, images) in runs.items():
            rates[name].append(timed(run, images, device))
    return {name: {"images_per_s": statistics.median(r), "rounds": r} for name, r in rates.items()}


def compare_training(cfg: TrainConfig, runtime: Runtime, rounds: int) -> dict[str, Any]:
    """Ours, the hand-written loop and the ceiling, each an epoch's worth of batches per round."""
    ours, ceiling = Ours(cfg, runtime), Ceiling(cfg, runtime)
    hand = HandWritten(cfg, runtime, len(ours.task.class_names))
    steps, epoch = len(ours.task.train_loader), ours.images_per_epoch()
    runs = {"ours": (ours.run_epoch, epoch), "hand": (hand.run_epoch, hand.images_per_epoch()),
            "ceiling": (lambda: ceiling.run(steps), steps * ceiling.batch_size)}
    return alternate(runs, runtime.device, rounds)


def compare_detection(args: argparse.Namespace, runtime: Runtime, rounds: int) -> dict[str, Any]:
    """Faster R-CNN on a resnet18 FPN: our epoch against the ceiling of the same detector."""
    cfg = detection_config(args)
    ours, ceiling = Ours(cfg, runtime), Ceiling(cfg, runtime)
    steps, epoch = len(ours.task.train_loader), ours.images_per_epoch()
    runs = {"ours": (ours.run_epoch, epoch), "ceiling": (lambda: ceiling.run(steps), steps * ceiling.batch_size)}
    rates = alternate(runs, runtime.device, rounds)
    share = rates["ours"]["images_per_s"] / rates["ceiling"]["images_per_s"]
    return {"image_size": args.detection_size, "batch_size": args.detection_batch, "images": args.detection_images,
            **rates, "ours_share_of_ceiling": share}


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and its live children, the DataLoader workers (Linux
    /proc; a live child's time is not in getrusage's RUSAGE_CHILDREN)."""
    me, tick = os.getpid(), os.sysconf("SC_CLK_TCK")
    total = sum(os.times()[:2])
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "(comm)": state, ppid, ...
        except OSError:  # a process that ended meanwhile
            continue
        if int(fields[1]) == me:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def loading_rate(loader: DataLoader, rounds: int) -> tuple[float, float]:
    """Iterating the loader alone (decode/generate, resize, augment, collate), after one pass that
    starts its workers and fills any cache: the median images/s of `rounds` passes, and images per
    CPU-second over all of them (per core: what the pipeline costs, whoever runs it)."""
    for _ in loader:
        pass
    rates, count, cpu = [], 0, -cpu_seconds()
    for _ in range(rounds):
        began, images = time.perf_counter(), 0
        for batch, _ in loader:
            images += len(batch)
        rates.append(images / (time.perf_counter() - began))
        count += images
    # CPU time comes in clock ticks: a tiny smoke run can spend less than one, which is not zero cost
    spent = max(cpu + cpu_seconds(), 1 / os.sysconf("SC_CLK_TCK"))
    return statistics.median(rates), count / spent


def write_image_folder(cfg: TrainConfig, root: Path) -> None:
    """The synthetic images as PNGs in ROOT/<class>/, the layout `data.kind: imagefolder` reads."""
    splits = load_splits(cfg.data)
    for part in (splits.train, splits.val):
        for i, (image, label) in enumerate(zip(part.images, part.labels)):
            folder = root / splits.class_names[int(label)]
            folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / f"{id(part)}_{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def compare_loading(args: argparse.Namespace, runtime: Runtime, rounds: int) -> list[dict[str, Any]]:
    """Our training loader alone for each data kind and worker count: images/s, and per CPU core
    (images per CPU-second of the trial process and its workers)."""
    synthetic = {"kind": "synthetic", "synthetic": {"count": args.images, "seed": 0}}
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        write_image_folder(train_config(args, synthetic), Path(folder))
        kinds = {"synthetic": synthetic, "imagefolder": {"kind": "imagefolder", "imagefolder": {"root": folder}}}
        for workers in sorted({0, max(0, cores() - 1)}):
            for kind, data in kinds.items():
                task = create_task(train_config(args, data, workers), runtime)
                rate, per_core = loading_rate(task.train_loader, rounds)
                rows.append({"kind": kind, "num_workers": workers, "images_per_s": rate, "images_per_s_per_core": per_core})
                del task
    return rows


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--images", type=int, default=512, help="synthetic images (75%% train)")
    parser.add_argument("--rounds", type=int, default=5, help="timed epochs per side")
    parser.add_argument("--cpu", type=float, default=1, help="the trial's CPU share: torch threads and DataLoader workers")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--detection-size", type=int, default=256, help="the detector's image size")
    parser.add_argument("--detection-batch", type=int, default=8)
    parser.add_argument("--detection-images", type=int, default=64, help="synthetic images for the detector (75%% train)")
    parser.add_argument("--detection-rounds", type=int, default=2, help="timed epochs per side for the detector")
    parser.add_argument("--no-detection", dest="detection", action="store_false", help="skip the detector")
    parser.add_argument("--smoke", action="store_true", help="tiny settings for the test suite")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="where throughput.json goes")
    args = parser.parse_args(argv)
    if args.smoke:
        args.model, args.image_size, args.images, args.rounds, args.batch_size = "resnet10t", 32, 64, 1, 16
        args.detection_size, args.detection_images, args.detection_batch, args.detection_rounds = 64, 24, 4, 1
    return args


def report(console: Console, args: argparse.Namespace, runtime: Runtime, cfg: TrainConfig, figures: dict[str, Any]) -> None:
    training, detection = figures["training"], figures.get("detection")
    rows = [
        ["train: ceiling (fixed batch on the device)", training["ceiling"]["images_per_s"], 1.0, ""],
        ["train: ours (train_one_epoch)", training["ours"]["images_per_s"], figures["ours_share_of_ceiling"], ""],
        ["train: hand-written loop", training["hand"]["images_per_s"], training["hand"]["images_per_s"] / training["ceiling"]["images_per_s"], ""],
    ]
    if detection:
        rows += [
            [f"detector @{detection['image_size']}: ceiling", detection["ceiling"]["images_per_s"], 1.0, ""],
            [f"detector @{detection['image_size']}: ours", detection["ours"]["images_per_s"], detection["ours_share_of_ceiling"], ""],
        ]
    rows += [[f"data alone: {r['kind']}, {r['num_workers']} workers", r["images_per_s"], "", r["images_per_s_per_core"]]
             for r in figures["loading"]]
    print_table(
        console,
        f"throughput: {args.model} at {args.image_size} px, batch {args.batch_size}, {runtime.device}, "
        f"{args.cpu:g} CPU share -> {cfg.data.num_workers} workers; {cores()} cores",
        ["what", "images/s", "of ceiling", "per core"], rows,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    console = Console(width=None if sys.stdout.isatty() else 160)  # a log keeps the whole table
    cfg = train_config(args, {"kind": "synthetic", "synthetic": {"count": args.images, "seed": 0}})
    requested = TrialResources(cpu=args.cpu, gpu=1.0 if args.device != "cpu" else 0.0)
    runtime = Runtime.for_trial(cfg, resolve_resources(requested, torch.cuda.device_count()))
    runtime.apply()
    training = compare_training(cfg, runtime, args.rounds)
    detection = compare_detection(args, runtime, args.detection_rounds) if args.detection else None
    loading = compare_loading(args, runtime, args.rounds)
    ours = training["ours"]["images_per_s"]
    figures = {
        "model": args.model, "image_size": args.image_size, "batch_size": args.batch_size, "images": args.images,
        "augment": AUGMENT, "device": str(runtime.device), "cores": cores(), "cpu_share": args.cpu,
        "num_workers": cfg.data.num_workers, "training": training, "ours_vs_hand": ours / training["hand"]["images_per_s"],
        "ours_share_of_ceiling": ours / training["ceiling"]["images_per_s"], "detection": detection,
        "loading": loading, "smoke": args.smoke,
    }
    report(console, args, runtime, cfg, figures)
    path = write_figures("throughput", figures, args.out)
    console.print(f"figures: {path}")
    slowest = min(r["images_per_s"] for r in loading if r["num_workers"] == 0)
    detector = f"; detector ours/ceiling = {detection['ours_share_of_ceiling']:.3f}" if detection else ""
    print(f"ratios: ours/hand = {figures['ours_vs_hand']:.3f}; ours/ceiling = {figures['ours_share_of_ceiling']:.3f}{detector}; "
          f"data (0 workers)/train = {slowest / ours:.1f}x ({'data' if slowest < ours else 'compute'}-bound)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
