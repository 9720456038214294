"""What the search machinery costs: the same 16 configs trained (a) one after another by calling
`training.loop.fit.fit` directly, (b) through the hand-written peer glue a user would write (Ray Tune's
Tuner + Ray's own OptunaSearch + ASHA + Ray's MLflowLoggerCallback on SQLite, `reuse_actors=True`,
the trainable calling `fit` with a report callback) and (c) through our search (`run_search`: Ray
Tune, our OptunaSearch, MLflow on SQLite, journal, checkpoints), in one process, side by side.

    python -m benchmarks.overhead                      # 16 configs, trials of a few seconds each
    python -m benchmarks.overhead --task probe         # 16 probe trials (milliseconds): the machinery alone
    python -m benchmarks.overhead --smoke              # 4 configs of 1 short epoch
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from rich.console import Console

from benchmarks.common import RESULTS_DIR, load_space, print_table, run_our_search, scratch_results, write_figures

# Issue #7's anchors on a 2-core machine: hand-written Tune + OptunaSearch + ASHA + MLflowLoggerCallback.
ANCHORS_S_PER_TRIAL = {"tune_default_reuse_actors_false": 2.8, "tune_reuse_actors_true": 0.40, "tune_reuse_actors_true_no_mlflow": 0.23}
GOAL_S_PER_TRIAL = 0.2  # issue 13: at most this per trial with MLflow on, and at most half the peer glue's

# Each task's two searched keys and the fixed grid of the configs both ways train.
GRIDS = {
    "classification": ("optim.lr", 1.0e-3, "loss.focal_gamma", 0.5),
    "probe": ("optim.lr", 1.0e-2, "optim.weight_decay", 0.01),
}


def configs(count: int, task: str = "classification") -> list[dict[str, Any]]:
    """`count` distinct, fixed points (4 learning rates x a second key): the searches evaluate exactly
    these as baselines (`search.baseline`, Optuna's `points_to_evaluate`)."""
    first, lr, second, step = GRIDS[task]
    return [{first: lr * (1 + i % 4), second: step * (i // 4)} for i in range(count)]


def task_settings(task: str, images: int, size: int) -> dict[str, Any]:
    if task == "probe":  # a linear model on 64 random rows: the machinery's cost alone
        return {"data": {"batch_size": 16}, "base": {}}
    return {
        "data": {"kind": "synthetic", "image_size": size, "batch_size": 32, "synthetic": {"count": images, "seed": 0}},
        "base": {"model": {"name": "resnet10t"}, "loss": {"name": "focal"}, "optim": {"schedule": "constant"}},
    }


def space(
    name: str, points: list[dict[str, Any]], epochs: int, images: int, size: int, concurrency: int,
    task: str = "classification", checkpoint_every_s: float | None = None,
) -> dict[str, Any]:
    """The space file of our search. ASHA with its grace period at the last epoch stops nothing (the
    peer glue's ASHA is set the same way): both train every config to its last epoch.
    `checkpoint_every_s` (default: the search's) decides whether our trials save checkpoints: a trial
    shorter than it saves none; the peer glue never checkpoints (it cannot resume a trial)."""
    first, _, second, _ = GRIDS[task]
    metric, mode = ("val/loss", "min") if task == "probe" else ("val/macro_f1", "max")
    return {
        "name": name,
        "task": task,
        **task_settings(task, images, size),
        "space": {first: {"uniform": [1.0e-4, 1.0e-1]}, second: {"uniform": [0.0, 4.0]}},
        "search": {
            "metric": metric, "mode": mode, "num_samples": len(points), "max_concurrent": concurrency, "seed": 0, "baseline": points,
            "noise_seeds": 0, "confirm": False,  # the same 16 configs as the peer glue, nothing more
            **({} if checkpoint_every_s is None else {"checkpoint_every_s": checkpoint_every_s}),
        },
        "scheduler": {"name": "asha", "max_epochs": epochs, "grace_period": epochs, "brackets": 1},
        "resources": {"cpu": 1, "gpu": 0},
    }


def sequential(search_space: dict[str, Any], points: list[dict[str, Any]]) -> dict[str, Any]:
    """(a): the same trial configs through `fit`, one after another, on the trial's 1 CPU thread: each
    config's seconds and the seconds inside its epochs (`time/epoch_s`, what a trial reports)."""
    from search.space import apply_values
    from training.loop.fit import NonFiniteLossError, fit
    from training.schema.resources import TrialResources
    from training.loop.runtime import Runtime

    base = load_space(search_space).base
    seconds, epochs = [], []
    for point in points:
        cfg = apply_values(base, point)
        reported: list[float] = []
        began = time.perf_counter()
        try:
            fit(cfg, Runtime.for_trial(cfg, TrialResources(cpu=1, gpu=0)), on_epoch=lambda r: reported.append(r.metrics["time/epoch_s"]))
        except NonFiniteLossError:  # a diverged config stops there, as its trial fails in the search
            pass
        seconds.append(time.perf_counter() - began)
        epochs.append(sum(reported))
    return {"wall_s": sum(seconds), "config_s": seconds, "config_epochs_s": epochs, "epochs_s": sum(epochs)}


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


def split_wall(began: float, ended: float, runs: list[tuple[Any, float]], cpu_s: float) -> dict[str, Any]:
    """The trials' MLflow runs (opened at trial start, closed at its end, by the driver), each with the
    seconds inside its epochs, split a search's wall time into its set-up (to the first trial's start),
    the span of the trials and its wrap-up (after the last trial's end)."""
    spans = sorted((info.start_time / 1000 - began, info.end_time / 1000 - began, epochs) for info, epochs in runs)
    first, last = spans[0][0], max(end for _, end, _ in spans)
    return {
        "wall_s": ended - began, "setup_s": first, "trials_span_s": last - first, "wrapup_s": ended - began - last,
        "first_end_s": spans[0][1], "epochs_s": sum(e for _, _, e in spans), "later_epochs_s": sum(e for _, _, e in spans[1:]),
        "driver_cpu_s": cpu_s, "trial_spans_s": [[round(a, 3), round(b, 3), round(e, 3)] for a, b, e in spans],
    }


def timed_search(search_space: dict[str, Any], results: Path) -> dict[str, Any]:
    """(c): our search, Ray already up and the MLflow store already created."""
    from mlflow.tracking import MlflowClient

    began, cpu = time.time(), time.process_time()
    summary = run_our_search(search_space, results)
    ended, cpu = time.time(), time.process_time() - cpu
    client = MlflowClient(summary["tracking"]["uri"])
    runs = [(client.get_run(t["mlflow_run_id"]).info, sum(h.get("time/epoch_s", 0.0) for h in t["history"])) for t in summary["trials"]]
    return {**split_wall(began, ended, runs, cpu), "finished_trials": sum(t["status"] == "DONE" for t in summary["trials"])}


# What the peer glue runs under: Ray's defaults, but for what only changes what lands on disk or the
# console (auto CSV/JSON/TensorBoard loggers off, as ours: MLflow is the record of both; no console
# table). Our Tune controller settings (search/tuner.py) are unset while the peer runs; those Ray's
# workers read when they start (RAY_CHDIR_TO_TRIAL_DIR) are the same for both in one Ray session.
PEER_ENV = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1", "RAY_AIR_NEW_OUTPUT": "0"}
OUR_TUNE_ENV = ("TUNE_GLOBAL_CHECKPOINT_S", "TUNE_RESULT_BUFFER_LENGTH", "TUNE_RESULT_BUFFER_MAX_TIME_S", "TUNE_RESULT_BUFFER_MIN_TIME_S")


@contextlib.contextmanager
def peer_environment() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in (*PEER_ENV, *OUR_TUNE_ENV)}
    for key in OUR_TUNE_ENV:
        os.environ.pop(key, None)
    os.environ.update(PEER_ENV)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def peer_trainable(base: Any, keys: dict[str, str]):
    """The trainable a user writes: the trial's values into the config, `fit`, one report per epoch."""

    def trainable(config: dict[str, Any]) -> None:
        from ray import tune

        from search.space import apply_values
        from training.loop.fit import fit
        from training.schema.resources import TrialResources
        from training.loop.runtime import Runtime

        cfg = apply_values(base, {keys[k]: v for k, v in config.items()})
        fit(cfg, Runtime.for_trial(cfg, TrialResources(cpu=1, gpu=0)), on_epoch=lambda report: tune.report({"epoch": report.epoch, **report.metrics}))

    return trainable


def peer_glue(search_space: dict[str, Any], results: Path) -> dict[str, Any]:
    """(b): the hand-written Tune + OptunaSearch + ASHA + MLflowLoggerCallback glue, the same configs
    (the space's baselines) as Optuna's `points_to_evaluate`."""
    import optuna
    from mlflow.tracking import MlflowClient
    from ray import tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    from training.tracking import default_tracking_uri

    plan = load_space(search_space)
    settings, epochs = search_space["search"], search_space["scheduler"]["max_epochs"]
    points = settings["baseline"]
    keys = {key.replace(".", "__"): key for key in points[0]}  # Tune reads dots and slashes in keys as nesting
    uri, experiment = default_tracking_uri(results), search_space["name"]
    searcher = OptunaSearch(
        space={k: optuna.distributions.FloatDistribution(*search_space["space"][key]["uniform"]) for k, key in keys.items()},
        metric=settings["metric"],
        mode=settings["mode"],
        points_to_evaluate=[{k: point[key] for k, key in keys.items()} for point in points],
        sampler=optuna.samplers.TPESampler(seed=settings["seed"]),
    )
    tuner = tune.Tuner(
        tune.with_resources(peer_trainable(plan.base, keys), {"cpu": 1, "gpu": 0}),
        tune_config=tune.TuneConfig(
            metric=settings["metric"],
            mode=settings["mode"],
            search_alg=searcher,
            scheduler=ASHAScheduler(time_attr="epoch", max_t=epochs, grace_period=epochs),
            num_samples=len(points),
            max_concurrent_trials=settings["max_concurrent"],
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=experiment,
            storage_path=str(results / "peer"),
            callbacks=[MLflowLoggerCallback(tracking_uri=uri, experiment_name=experiment)],
            verbose=0,
        ),
    )
    with peer_environment():
        began, cpu = time.time(), time.process_time()
        grid = tuner.fit()
        ended, cpu = time.time(), time.process_time() - cpu
    client = MlflowClient(uri)
    infos = [r.info for r in client.search_runs([client.get_experiment_by_name(experiment).experiment_id])]
    # every epoch's time as the peer's MLflow runs hold it (Tune keeps no result files without its auto loggers)
    runs = [(info, sum(m.value for m in client.get_metric_history(info.run_id, "time/epoch_s"))) for info in infos]
    finished = sum(r.error is None and (r.metrics or {}).get("epoch") == epochs for r in grid)
    return {**split_wall(began, ended, runs, cpu), "finished_trials": finished}


def per_trial(run: dict[str, Any], plain: dict[str, Any], concurrency: int, n: int) -> None:
    """Seconds per trial the way adds to plain `fit` (its own round's). The ideal with c trials at once
    on c cores is 1/c of the sequential time.

    `overhead_s_per_trial`, the headline, is the machinery's steady state: from the first trial's end
    to the last one's, the time that is not inside the trials' epochs (their set-up, reports,
    checkpoints, Tune's result handling, actor reset, the next suggestion, MLflow, our callbacks),
    per trial, minus what plain `fit` spends outside its epochs per config (building the task). The
    first trial is left out: it also holds the one-time start of its actor and imports (in the set-up
    figure for ours, inside the first trial for the peer glue, whose trainable imports lazily); the
    wall figures keep it. Epochs run slower or faster under a drifting load of a shared machine: the
    `span` and `wall` figures include that, `epochs_vs_plain` shows it.
    """
    c, plain_s = concurrency, plain["wall_s"]
    run["ratio_vs_ideal"] = run["wall_s"] / (plain_s / c)
    run["span_overhead_s_per_trial"] = (run["trials_span_s"] - plain_s / c) * c / n
    run["wall_overhead_s_per_trial"] = (run["wall_s"] - plain_s / c) * c / n
    steady = run["setup_s"] + run["trials_span_s"] - run["first_end_s"]
    plain_outside = sum(a - e for a, e in zip(plain["config_s"][1:], plain["config_epochs_s"][1:])) / max(n - 1, 1)
    run["outside_epochs_s_per_trial"] = (steady * c - run["later_epochs_s"]) / max(n - 1, 1)
    run["overhead_s_per_trial"] = run["outside_epochs_s_per_trial"] - plain_outside
    run["epochs_vs_plain"] = run["epochs_s"] / plain["epochs_s"] if plain["epochs_s"] else float("nan")
    run["driver_cpu_s_per_trial"] = run["driver_cpu_s"] / n


def measure(args: argparse.Namespace, points: list[dict[str, Any]], results: Path) -> dict[str, Any]:
    """Per round: plain fit, then per concurrency the peer glue and ours (the load of a shared
    machine drifts: every round has its own plain reference, and rounds alternate the two glues)."""
    shape = (args.epochs, args.images, args.image_size)
    fixed = startup_costs(results)
    plains, ways = [], {}
    for r in range(args.rounds):
        plain = sequential(space("plain", points, *shape, 1, args.task), points)
        plain["outside_epochs_s_per_trial"] = (plain["wall_s"] - plain["epochs_s"]) / len(points)
        plains.append(plain)
        for c in args.concurrency:
            order = [("peer", peer_glue), ("ours", timed_search)]
            for way, run_way in order if r % 2 == 0 else order[::-1]:
                sp = space(f"{way}_c{c}_r{r}", points, *shape, c, args.task, args.checkpoint_every_s)
                run = run_way(sp, results)
                per_trial(run, plain, c, len(points))
                ways.setdefault(f"{way}_concurrency{c}", []).append(run)
    return {"plain": plains, "fixed_s": fixed, "runs": ways}


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median per-trial overhead (all rounds stay in the JSON)."""
    return sorted(runs, key=lambda r: r["overhead_s_per_trial"])[(len(runs) - 1) // 2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(GRIDS), default="classification", help="probe: milliseconds per trial, the machinery alone")
    parser.add_argument("--configs", type=int, default=16, help="configs trained by each way")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per trial")
    parser.add_argument("--images", type=int, default=600, help="synthetic images (75%% train): sets the trial length")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1], help="trials at once (ours and the peer glue)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of plain fit, peer glue and ours (the two glues in alternating order); the median round is shown")
    parser.add_argument(
        "--checkpoint-every-s", type=float, help="our search.checkpoint_every_s (default 10 s: shorter trials save no checkpoint)"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny settings for the test suite")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="where overhead.json goes")
    args = parser.parse_args(argv)
    if args.smoke:
        args.configs, args.epochs, args.images = 4, 1, 48
    console = Console(width=None if sys.stdout.isatty() else 200)  # a log keeps the whole table
    points = configs(args.configs, args.task)
    with scratch_results("bover") as results:
        measured = measure(args, points, results)
    n, fixed = args.configs, measured["fixed_s"]
    plain = sorted(measured["plain"], key=lambda p: p["wall_s"])[(args.rounds - 1) // 2]  # the median round's
    plain_s = plain["wall_s"]
    chosen = {way: median_run(runs) for way, runs in measured["runs"].items()}
    figures = {
        "task": args.task, "configs": n, "epochs": args.epochs, "images": args.images, "image_size": args.image_size,
        "rounds": args.rounds, "checkpoint_every_s": args.checkpoint_every_s, "trial_s": plain_s / n, "plain_sequential_s": plain_s, "plain": plain, "plain_rounds": measured["plain"], "fixed_s": fixed,
        **chosen, "all_rounds": measured["runs"],
        "anchors_s_per_trial": ANCHORS_S_PER_TRIAL, "goal_s_per_trial": GOAL_S_PER_TRIAL, "smoke": args.smoke,
    }
    names = {"peer": "(b) peer glue", "ours": "(c) our search"}
    print_table(
        console,
        f"overhead: {n} {args.task} configs x {args.epochs} epochs, {plain_s / n:.3g} s per trial by plain fit "
        "(peer glue = Tune + OptunaSearch + ASHA + MLflowLoggerCallback, reuse_actors=True)",
        ["way", "wall s", "x ideal", "set-up s", "wrap-up s", "overhead s/trial", "span overhead s/trial", "wall overhead s/trial", "epochs x plain", "outside epochs s/trial", "driver CPU s/trial"],
        [["(a) plain fit, sequential", plain_s, 1.0, "", "", "", "", "", 1.0, plain["outside_epochs_s_per_trial"], ""]]
        + [
            [
                f"{names[way.split('_')[0]]}, concurrency {way.rsplit('concurrency', 1)[1]}", r["wall_s"], r["ratio_vs_ideal"], r["setup_s"],
                r["wrapup_s"], r["overhead_s_per_trial"], r["span_overhead_s_per_trial"], r["wall_overhead_s_per_trial"], r["epochs_vs_plain"],
                r["outside_epochs_s_per_trial"], r["driver_cpu_s_per_trial"],
            ]
            for way, r in chosen.items()
        ]
        + [["start-up: Ray init", fixed["ray_init_s"], *[""] * 9], ["start-up: MLflow store", fixed["mlflow_setup_s"], *[""] * 9]],
    )
    path = write_figures("overhead", figures, args.out)
    console.print(f"figures: {path}")
    parts = []
    for c in args.concurrency:
        ours, peer = chosen[f"ours_concurrency{c}"], chosen[f"peer_concurrency{c}"]
        ratio = ours["overhead_s_per_trial"] / peer["overhead_s_per_trial"] if peer["overhead_s_per_trial"] > 0 else float("nan")
        parts.append(
            f"concurrency {c}: overhead ours {ours['overhead_s_per_trial']:.3f} vs peer {peer['overhead_s_per_trial']:.3f} s/trial "
            f"(ours/peer {ratio:.2f}), wall ours/peer {ours['wall_s'] / peer['wall_s']:.3f}, ours/plain {ours['ratio_vs_ideal']:.3f}, "
            f"peer/plain {peer['ratio_vs_ideal']:.3f} of ideal"
        )
    print(f"ratios: {'; '.join(parts)} (goal: ours <= {GOAL_S_PER_TRIAL} s/trial and <= 0.5x peer)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
