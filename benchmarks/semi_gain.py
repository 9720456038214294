"""What unlabeled images buy: at one labeled fraction of the synthetic defects, with the same epochs,
batches, EMA teacher and backbone init (`model.init_from`: a classifier trained on a separate
synthetic set, like ImageNet weights brought in without a network), three arms per seed:

- `supervised`: `semi.unsup_weight: 0`, i.e. the labeled part only (same batches, same EMA teacher);
- `thresholds`: Soft Teacher as before issue 14, pseudo boxes filtered by score thresholds only;
- `soft_teacher`: plus background weighting and box-jitter reliability (the paper's defaults).

Reports the teacher's val/mAP50 and AP50 per class at the last epoch, its mAP50 averaged over the
last TAIL epochs (one epoch's value moves by +-0.05 on this validation set), the pseudo-label kept
ratios and mean background weight, the teacher's box precision and recall on the validation images
above `initial` and `cls` (when burn-in ends and at the last epoch), and each semi arm's gain over
`supervised` on both, per seed and on average.

    python -m benchmarks.semi_gain            # the CPU setting recorded in benchmarks/README.md
    python -m benchmarks.semi_gain --smoke    # seconds: the plumbing only
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from benchmarks.common import RESULTS_DIR, print_table, write_figures
from training.config import TrainConfig
from training.fit import EpochReport, fit
from training.runtime import Runtime

ARMS: dict[str, dict[str, Any]] = {
    "supervised": {"unsup_weight": 0.0},
    "thresholds": {"soft_background": False, "jitter": {"times": 0}},
    # the paper's jitter; its reg threshold 0.02 keeps under 1 % of boxes here (a teacher trained on 32
    # images refines 5-20 px boxes loosely: median uncertainty 0.04, train/pseudo_box_uncertainty_p50),
    # so the regression would learn from nothing; 0.04 keeps about half the initial survivors
    "soft_teacher": {"soft_background": True, "jitter": {"times": 10, "scale": 0.06}, "thresholds": {"reg": 0.04}},
}
PSEUDO_KEYS = (
    "train/pseudo_kept_ratio", "train/pseudo_kept_ratio_cls", "train/pseudo_kept_ratio_rpn",
    "train/pseudo_kept_ratio_reg", "train/pseudo_bg_weight", "train/pseudo_boxes_per_image",
    "train/pseudo_box_uncertainty_p50",
)  # fmt: skip
QUALITY_KEYS = tuple(f"val/pseudo_{m}_{stage}" for stage in ("initial", "cls") for m in ("precision", "recall"))


TAIL = 5  # epochs averaged for the steadier mAP50


@dataclass(frozen=True)
class Setting:
    image_size: int
    count: int  # synthetic images, train + val
    epochs: int
    burn_in: int
    pretrain_epochs: int
    seeds: tuple[int, ...]
    pretrain_count: int = 400
    labeled_fraction: float = 0.1
    unsup_weight: float = 2.0
    unsup_ramp_epochs: int = 0  # the semi arms' semi.unsup_ramp_epochs
    ignore: float = 1.0  # the semi arms' semi.thresholds.ignore (1 = off, the paper's)
    arms: tuple[str, ...] = tuple(ARMS)
    unlabeled_per_labeled: float = 2.0
    thresholds: tuple[float, float, float] = (0.5, 0.9, 0.9)  # initial, cls, rpn of both semi arms (the paper's)


# Sized for this 2-core CPU VM (about 45 minutes, three seeds side by side): see benchmarks/README.md.
# 10 % labeled (32 images): at 20 % the labeled part is hardly a bottleneck on this data (all labels
# add +0.00 to +0.10 mAP50). 40 burn-in epochs: an earlier teacher pseudo-labels too little to help.
FULL = Setting(image_size=64, count=400, epochs=80, burn_in=40, pretrain_epochs=6, seeds=(0, 1, 2))
SMOKE = Setting(image_size=48, count=40, epochs=2, burn_in=1, pretrain_epochs=1, seeds=(0,), pretrain_count=40)
SYNTHETIC = {"good_fraction": 0.2, "difficulty": 0.2, "max_defects": 3, "mixed_defects": 0.3}


def pretrain_config(s: Setting) -> TrainConfig:
    """A classifier on a synthetic set of its own (generator seed 5): no image of the detection runs."""
    return TrainConfig.model_validate(
        {
            "task": "classification",
            "data": {"image_size": s.image_size, "batch_size": 16, "num_workers": 0,
                     "synthetic": {"count": s.pretrain_count, "seed": 5, "difficulty": 0.2, "good_fraction": 0.2}},
            "model": {"name": "resnet10t"},
            "optim": {"lr": 3e-3, "schedule": "onecycle"},
            "train": {"epochs": s.pretrain_epochs, "device": "auto"},
        }
    )  # fmt: skip


def detection_config(s: Setting, arm: str, seed: int, init_from: Path) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "task": "semi_supervised_detection",
            "seed": seed,
            "data": {"image_size": s.image_size, "batch_size": 2, "split_seed": seed, "num_workers": 0,
                     "synthetic": {"count": s.count, "seed": 0, **SYNTHETIC}},
            "model": {"name": "resnet10t", "anchor_sizes": [8, 16, 32], "init_from": str(init_from)},
            "optim": {"lr": 1e-3, "schedule": "cosine", "warmup_epochs": 0.5},
            "augment": {"p": 0.5, "hflip": 0.5, "brightness": 0.3, "contrast": 0.3, "scale": 0.1, "translate": 0.1},
            "semi": {"labeled_fraction": s.labeled_fraction, "burn_in_epochs": s.burn_in, "ema_momentum": 0.99,
                     "unsup_weight": s.unsup_weight, "unsup_ramp_epochs": s.unsup_ramp_epochs,
                     "unlabeled_per_labeled": s.unlabeled_per_labeled,
                     "thresholds": common_thresholds(s)}
            | merge_semi(ARMS[arm], s),
            "train": {"epochs": s.epochs, "device": "auto"},
        }
    )  # fmt: skip


def common_thresholds(s: Setting) -> dict[str, float]:
    return dict(zip(("initial", "cls", "rpn"), s.thresholds)) | {"ignore": s.ignore}


def merge_semi(arm: dict[str, Any], s: Setting) -> dict[str, Any]:
    """The arm's semi keys; its thresholds are merged into the common ones, not replacing them."""
    out = dict(arm)
    if "thresholds" in out:
        out["thresholds"] = {**common_thresholds(s), **out["thresholds"]}
    return out


def pretrain(s: Setting, out: Path, threads: int) -> tuple[Path, dict[str, float]]:
    """model.pt of the classifier, as `python -m training train` writes it, and its last metrics."""
    cfg = pretrain_config(s)
    path = out / "classifier_model.pt"

    def save(report: EpochReport) -> None:
        if report.epoch == cfg.train.epochs:
            torch.save(report.state()["model"], path)

    metrics = fit(cfg, Runtime.from_config(cfg.train, cpu_threads=threads), on_epoch=save)
    return path, metrics


def run_arm(s: Setting, arm: str, seed: int, init_from: Path, threads: int) -> dict[str, Any]:
    cfg = detection_config(s, arm, seed, init_from)
    history: list[dict[str, float]] = []
    began = time.perf_counter()
    fit(cfg, Runtime.from_config(cfg.train, cpu_threads=threads), on_epoch=lambda r: history.append(r.metrics))
    last = history[-1]
    return {
        "arm": arm,
        "seed": seed,
        "wall_s": round(time.perf_counter() - began, 1),
        "mAP50": last["val/mAP50"],
        "mAP50_tail": _mean([h["val/mAP50"] for h in history[-TAIL:]]),
        "student_mAP50": last["val/student_mAP50"],
        "AP50": {k.split("/", 2)[2]: v for k, v in last.items() if k.startswith("val/AP50/")},
        "mAP50_by_epoch": [round(h["val/mAP50"], 4) for h in history],
        # the mean over the epochs with pseudo labels: one epoch's ratio is noisy
        "pseudo": {k: _mean([h[k] for h in history if k in h]) for k in PSEUDO_KEYS},
        "pseudo_by_class": {k: v for k, v in last.items() if k.startswith("train/pseudo_kept_ratio") and "/" in k[6:]},
        # how right the teacher's boxes are (validation images): what pseudo-labeling starts from, and ends at
        "pseudo_quality": {k: {"burn_in_end": history[s.burn_in - 1][k], "last": last[k]} for k in QUALITY_KEYS},
    }


def run_seed(s: Setting, seed: int, init_from: Path, threads: int, out: Path) -> list[dict[str, Any]]:
    """The arms of one seed, in a worker process; each arm's figures are also appended to
    out/semi_gain_runs.jsonl as it ends, so a run cut short still leaves what it measured."""
    runs = []
    for arm in s.arms:
        runs.append(run_arm(s, arm, seed, init_from, threads))
        with open(out / "semi_gain_runs.jsonl", "a") as log:
            log.write(json.dumps(runs[-1]) + "\n")
    return runs


def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 4) if values else None


def gains(runs: list[dict[str, Any]], key: str = "mAP50") -> dict[str, Any]:
    """Per semi arm: `key` minus supervised's per seed, their mean and min, and on how many seeds it is
    > 0 (seeds without a supervised run are left out)."""
    base = {r["seed"]: r[key] for r in runs if r["arm"] == "supervised"}
    out = {}
    for arm in ARMS:
        per_seed = {r["seed"]: round(r[key] - base[r["seed"]], 4) for r in runs if r["arm"] == arm and r["seed"] in base}
        if arm == "supervised" or not per_seed:
            continue
        values = list(per_seed.values())
        out[arm] = {"per_seed": per_seed, "mean": _mean(values), "min": min(values), "wins": sum(v > 0 for v in values)}
    return out


def cls_quality(run: dict[str, Any]) -> list[str]:
    """The teacher's precision and recall above `cls`, "when burn-in ends -> last epoch"."""
    quality = run["pseudo_quality"]
    return [
        "{burn_in_end:.2f} -> {last:.2f}".format(**quality[f"val/pseudo_{m}_cls"]) for m in ("precision", "recall")
    ]


def setting(args: argparse.Namespace) -> Setting:
    """The smoke or full setting with the command line's overrides."""
    overrides = {
        "seeds": tuple(range(args.first_seed, args.first_seed + args.seeds)) if args.seeds else None,
        "epochs": args.epochs, "burn_in": args.burn_in,
        "count": args.count, "image_size": args.size, "unsup_weight": args.unsup_weight,
        "unsup_ramp_epochs": args.ramp, "ignore": args.ignore, "arms": tuple(args.arms) if args.arms else None,
        "labeled_fraction": args.labeled_fraction, "unlabeled_per_labeled": args.unlabeled_per_labeled,
        "thresholds": tuple(args.thresholds) if args.thresholds else None,
    }  # fmt: skip
    base = SMOKE if args.smoke else FULL
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny setting, one seed (a test runs it)")
    parser.add_argument("--seeds", type=int, help="number of seeds (default: the setting's)")
    parser.add_argument("--first-seed", type=int, default=0, help="with --seeds N: run seeds K..K+N-1 (more seeds later)")
    parser.add_argument("--epochs", type=int, help="detection epochs (default: the setting's)")
    parser.add_argument("--burn-in", type=int, help="supervised-only epochs first (default: the setting's)")
    parser.add_argument("--count", type=int, help="synthetic detection images, train + val (default: the setting's)")
    parser.add_argument("--size", type=int, help="image side in pixels, detection and classifier (default: the setting's)")
    parser.add_argument("--unsup-weight", type=float, help="semi.unsup_weight of the semi arms (default: the setting's)")
    parser.add_argument("--ramp", type=int, help="semi.unsup_ramp_epochs of the semi arms (default: the setting's)")
    parser.add_argument("--ignore", type=float, help="semi.thresholds.ignore of the semi arms (default: off)")
    parser.add_argument("--arms", nargs="+", choices=tuple(ARMS), help="the arms to run (default: all; gains need supervised)")
    parser.add_argument("--labeled-fraction", type=float, help="semi.labeled_fraction (default: the setting's)")
    parser.add_argument("--unlabeled-per-labeled", type=float, help="semi.unlabeled_per_labeled (default: the setting's)")
    parser.add_argument(
        "--thresholds", type=float, nargs=3, metavar=("INITIAL", "CLS", "RPN"), help="semi.thresholds of both semi arms"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per run")
    parser.add_argument("--workers", type=int, default=3, help="seeds run side by side (processes)")
    parser.add_argument("--init-from", type=Path, help="a classifier model.pt to start from (default: train one)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    s = setting(args)
    console = Console(highlight=False, soft_wrap=True)
    args.out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    if args.init_from:
        init_from, classifier = args.init_from, {"model.pt": str(args.init_from)}
    else:
        init_from, classifier = pretrain(s, args.out, args.threads)
        console.print(f"classifier: val/accuracy {classifier.get('val/accuracy', float('nan')):.3f}")
    runs: list[dict[str, Any]] = []
    # one process per seed, one thread each: the seeds' arms run side by side
    with ProcessPoolExecutor(min(args.workers, len(s.seeds)), mp_context=get_context("spawn")) as pool:
        jobs = [(s, seed, init_from, args.threads, args.out) for seed in s.seeds]
        for seed_runs in pool.map(run_seed, *zip(*jobs)):
            runs += seed_runs
            for r in seed_runs:
                pseudo = r["pseudo"]["train/pseudo_kept_ratio"]
                console.print(f"seed {r['seed']} {r['arm']}: mAP50 {r['mAP50']:.4f} kept {pseudo} ({r['wall_s']}s)")
            figures = {
                "setting": s.__dict__, "classifier": classifier, "runs": runs,
                "gains": gains(runs), "gains_tail": gains(runs, "mAP50_tail"),
            }  # fmt: skip
            write_figures("semi_gain", figures | {"wall_s": round(time.perf_counter() - began, 1)}, args.out)
    shown = ("train/pseudo_kept_ratio", "train/pseudo_kept_ratio_reg", "train/pseudo_bg_weight")
    rows = [[r["arm"], r["seed"], r["mAP50"], r["mAP50_tail"], *(r["pseudo"][k] for k in shown), *cls_quality(r)] for r in runs]
    header = ["arm", "seed", "mAP50", f"last {TAIL}", "kept", "kept_reg", "bg_weight", "precision_cls", "recall_cls"]
    print_table(console, "teacher val/mAP50 (last epoch, mean of the last epochs); pseudo: mean over epochs", header, rows)
    for name, key in ((f"gains, mean of the last {TAIL} epochs", "mAP50_tail"), ("gains", "mAP50")):
        summary = gains(runs, key).items()
        line = (f"{arm} mean {g['mean']:+.4f} min {g['min']:+.4f} wins {g['wins']}/{len(s.seeds)}" for arm, g in summary)
        print(f"{name}: " + "  ".join(line))


if __name__ == "__main__":
    main()
