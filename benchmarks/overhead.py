"""What the search machinery costs: the same 16 configs trained (a) one after another by calling
`training.fit.fit` directly and (b) through our search (`run_search`: Ray Tune, OptunaSearch, MLflow
on SQLite, journal, checkpoints) with no early stopping, at concurrency 1 and 2, in one process.

    python -m benchmarks.overhead             # 16 configs, trials of a few seconds each
    python -m benchmarks.overhead --smoke     # 4 configs of 1 short epoch
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from benchmarks.common import RESULTS_DIR, load_space, print_table, run_our_search, scratch_results, write_figures

# Issue #7's anchors on a 2-core machine: hand-written Tune + OptunaSearch + ASHA + MLflowLoggerCallback.
ANCHORS_S_PER_TRIAL = {"tune_default_reuse_actors_false": 2.8, "tune_reuse_actors_true": 0.40, "tune_reuse_actors_true_no_mlflow": 0.23}


def configs(count: int) -> list[dict[str, Any]]:
    """`count` distinct, fixed (lr, focal gamma) points: the search evaluates exactly these as baselines."""
    return [{"optim.lr": 1.0e-3 * (1 + i % 4), "loss.focal_gamma": 0.5 * (i // 4)} for i in range(count)]


def space(name: str, points: list[dict[str, Any]], epochs: int, images: int, size: int, concurrency: int) -> dict[str, Any]:
    return {
        "name": name,
        "task": "classification",
        "data": {"kind": "synthetic", "image_size": size, "batch_size": 32, "synthetic": {"count": images, "seed": 0}},
        "base": {"model": {"name": "resnet10t"}, "loss": {"name": "focal"}, "optim": {"schedule": "constant"}},
        "space": {"optim.lr": {"uniform": [1.0e-4, 1.0e-2]}, "loss.focal_gamma": {"uniform": [0.0, 4.0]}},
        "search": {"metric": "val/macro_f1", "num_samples": len(points), "max_concurrent": concurrency, "seed": 0, "baseline": points},
        "scheduler": {"name": "none", "max_epochs": epochs},
        "resources": {"cpu": 1, "gpu": 0},
    }


def sequential(search_space: dict[str, Any], points: list[dict[str, Any]]) -> float:
    """(a): the same trial configs through `fit`, one after another, on the trial's 1 CPU thread."""
    from search.space import apply_values
    from training.fit import NonFiniteLossError, fit
    from training.runtime import Runtime

    base = load_space(search_space).base
    began = time.perf_counter()
    for point in points:
        cfg = apply_values(base, point)
        try:
            fit(cfg, Runtime.for_trial(cfg, cpu=1, gpu=0))
        except NonFiniteLossError:  # a diverged config stops there, as its trial fails in the search
            pass
    return time.perf_counter() - began


def startup_costs(results: Path) -> dict[str, float]:
    """The fixed costs a search pays once: a local Ray, and MLflow's SQLite store (schema migrations)."""
    from search.tuner import init_ray
    from training.tracking import Tracker, default_tracking_uri

    began = time.perf_counter()
    init_ray(None, results)
    ray_s = time.perf_counter() - began
    began = time.perf_counter()
    Tracker(default_tracking_uri(results), "overhead-setup")
    return {"ray_init_s": ray_s, "mlflow_setup_s": time.perf_counter() - began}


def timed_search(search_space: dict[str, Any], results: Path) -> dict[str, Any]:
    """(b): our search, Ray already up and the MLflow store already created. The trials' MLflow runs
    (opened at trial start, closed at its end, by the driver) split the wall time into the search's
    set-up (plan to first trial), the span of the trials, and its wrap-up (summary, best config)."""
    from mlflow.tracking import MlflowClient

    began = time.time()
    summary = run_our_search(search_space, results)
    ended = time.time()
    client = MlflowClient(summary["tracking"]["uri"])
    runs = [client.get_run(t["mlflow_run_id"]).info for t in summary["trials"]]
    first, last = min(r.start_time for r in runs) / 1000, max(r.end_time for r in runs) / 1000
    return {
        "wall_s": ended - began,
        "setup_s": first - began,
        "trials_span_s": last - first,
        "wrapup_s": ended - last,
        "finished_trials": sum(t["status"] == "DONE" for t in summary["trials"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=16, help="configs trained by each way")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per trial")
    parser.add_argument("--images", type=int, default=600, help="synthetic images (75%% train): sets the trial length")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--smoke", action="store_true", help="tiny settings for the test suite")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="where overhead.json goes")
    args = parser.parse_args(argv)
    if args.smoke:
        args.configs, args.epochs, args.images = 4, 1, 48
    console = Console()
    points = configs(args.configs)
    shape = (args.epochs, args.images, args.image_size)
    with scratch_results("bover") as results:
        fixed = startup_costs(results)
        plain_s = sequential(space("plain", points, *shape, 1), points)
        searches = {c: timed_search(space(f"ours_c{c}", points, *shape, c), results) for c in (1, 2)}
    n = args.configs
    for c, run in searches.items():
        # the ideal with c trials at once on c cores is 1/c of the sequential time
        run["ratio_vs_ideal"] = run["wall_s"] / (plain_s / c)
        run["overhead_s_per_trial"] = (run["trials_span_s"] - plain_s / c) * c / n
    fixed["search_setup_s"] = searches[1]["setup_s"]
    fixed["search_wrapup_s"] = searches[1]["wrapup_s"]
    figures = {
        "configs": n, "epochs": args.epochs, "images": args.images, "image_size": args.image_size,
        "trial_s": plain_s / n, "plain_sequential_s": plain_s, "fixed_s": fixed,
        "ours_concurrency1": searches[1], "ours_concurrency2": searches[2],
        "ratio_with_ray_and_mlflow_startup": (searches[1]["wall_s"] + fixed["ray_init_s"] + fixed["mlflow_setup_s"]) / plain_s,
        "anchors_s_per_trial": ANCHORS_S_PER_TRIAL, "smoke": args.smoke,
    }
    print_table(
        console,
        f"overhead: {n} configs x {args.epochs} epochs, {plain_s / n:.1f} s per trial by plain fit",
        ["way", "wall s", "x ideal", "set-up s", "wrap-up s", "overhead s/trial"],
        [["(a) plain fit, sequential", plain_s, 1.0, "", "", ""]]
        + [
            [f"(b) our search, concurrency {c}", r["wall_s"], r["ratio_vs_ideal"], r["setup_s"], r["wrapup_s"], r["overhead_s_per_trial"]]
            for c, r in searches.items()
        ]
        + [["start-up: Ray init", fixed["ray_init_s"], "", "", "", ""], ["start-up: MLflow store", fixed["mlflow_setup_s"], "", "", "", ""]],
    )
    path = write_figures("overhead", figures, args.out)
    console.print(f"figures: {path}")
    c1, c2 = searches[1], searches[2]
    print(
        f"ratios: ours/plain = {c1['ratio_vs_ideal']:.3f} (concurrency 1), {c2['ratio_vs_ideal']:.3f} of ideal (concurrency 2); "
        f"overhead {c1['overhead_s_per_trial']:.2f} s/trial (anchor: {ANCHORS_S_PER_TRIAL['tune_reuse_actors_true']} s with reuse_actors=True)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
