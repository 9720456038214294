"""Epochs to a good config, at equal total epoch budget and over several seeds, on a synthetic defect
classification task where the learning rate, weight decay, focal gamma and augmentation magnitudes
matter. Compared in one run:

- ours: `run_search` = Optuna TPE + ASHA through Ray Tune (MLflow on);
- ours_hyperband: the same search with `scheduler.brackets: 3` (asynchronous Hyperband);
- ours_no_asha: the same search with `scheduler: none` (TPE alone);
- random: Tune's BasicVariantGenerator, every trial its full epochs, no scheduler, our trainable;
- optuna_hyperband: plain Optuna (TPESampler + HyperbandPruner), no Ray, calling `training.fit.fit`
  with a per-epoch callback that reports and prunes (what a user would write instead).

    python -m benchmarks.search_efficiency           # 3 seeds, 64 epochs each, trials of 8 epochs, 600 images
    python -m benchmarks.search_efficiency --smoke   # 1 seed, 4 epochs, trials of 2 epochs
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
import optuna.distributions as od  # noqa: E402
from rich.console import Console  # noqa: E402

from search.layout import JOURNAL_FILE  # noqa: E402
from search.space import optuna_space  # noqa: E402
from search.tuner import resourced_trainable, tune  # noqa: E402  (search.tuner sets Ray's env first)
from benchmarks.common import RESULTS_DIR, load_space, print_table, run_our_search, scratch_results, write_figures  # noqa: E402

METRIC = "val/macro_f1"
SPACE = {
    "optim.lr": {"loguniform": [1.0e-4, 3.0e-1]},
    "optim.weight_decay": {"loguniform": [1.0e-5, 3.0e-1]},
    "loss.focal_gamma": {"uniform": [0.0, 5.0]},
    "augment.brightness": {"uniform": [0.0, 0.8]},
    "augment.rotate": {"uniform": [0.0, 90.0]},
}
TARGET_SHARE = 0.99  # epochs to reach 99% of the best metric any method found


# early stopping of each "ours" variant (scheduler section of the space file)
SCHEDULERS = {
    "ours": {"name": "asha", "grace_period": 1, "reduction_factor": 2},
    "ours_hyperband": {"name": "asha", "grace_period": 1, "reduction_factor": 2, "brackets": 3},
    "ours_no_asha": {"name": "none"},
}


def space(name: str, args: argparse.Namespace, seed: int, trials: int, scheduler: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "task": "classification",
        "data": {
            "kind": "synthetic", "image_size": 32, "batch_size": 32,
            "synthetic": {"count": args.images, "seed": 0, "difficulty": 0.5},
        },
        "base": {"model": {"name": "resnet10t"}, "loss": {"name": "focal"}, "optim": {"name": "adamw", "schedule": "onecycle"}},
        "space": SPACE,
        "search": {"metric": METRIC, "mode": "max", "num_samples": trials, "max_concurrent": args.concurrency, "seed": seed},
        "scheduler": {**scheduler, "max_epochs": args.max_epochs},
        "resources": {"cpu": 1, "gpu": 0},
    }


def journal_curve(out_dir: Path) -> list[float]:
    """The metric of every epoch, in the order the driver received them (the trial journal's order)."""
    lines = (out_dir / JOURNAL_FILE).read_text().splitlines()
    events = [json.loads(line) for line in lines if line.strip()]
    return [e["metrics"].get(METRIC, 0.0) for e in events if "epoch" in e]


def run_ours(args: argparse.Namespace, seed: int, results: Path, variant: str) -> list[float]:
    # ASHA stops most trials early: about 2.5 epochs per trial at reduction 2 (synchronous estimate);
    # a few more trials than that, and the curve is cut at the budget.
    scheduler = SCHEDULERS[variant]
    trials = math.ceil(args.budget / 2) if scheduler["name"] == "asha" else args.budget // args.max_epochs
    summary = run_our_search(space(f"{variant}_s{seed}", args, seed, trials, scheduler), results)
    return journal_curve(Path(summary["out_dir"]))


# Optuna distribution (what our space compiles to) -> the equivalent Tune domain, for random search.
TUNE_DOMAINS: dict[type, Callable[[Any], Any]] = {
    od.FloatDistribution: lambda d: tune.loguniform(d.low, d.high) if d.log else tune.uniform(d.low, d.high),
    od.IntDistribution: lambda d: tune.randint(d.low, d.high + 1),
    od.CategoricalDistribution: lambda d: tune.choice(list(d.choices)),
}

# The same distributions through Optuna's public suggest API, as a user's objective would ask for them.
SUGGEST: dict[type, Callable[[optuna.Trial, str, Any], Any]] = {
    od.FloatDistribution: lambda t, k, d: t.suggest_float(k, d.low, d.high, log=d.log),
    od.IntDistribution: lambda t, k, d: t.suggest_int(k, d.low, d.high, step=d.step, log=d.log),
    od.CategoricalDistribution: lambda t, k, d: t.suggest_categorical(k, list(d.choices)),
}


def run_random(args: argparse.Namespace, seed: int, results: Path) -> list[float]:
    """Tune's BasicVariantGenerator over the same space and trainable, full epochs per trial."""
    from ray.tune.search.basic_variant import BasicVariantGenerator

    class EpochLog(tune.Callback):
        def __init__(self):
            self.values: list[float] = []

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.values.append(result.get(METRIC, 0.0))

    plan = load_space(space(f"random_s{seed}", args, seed, args.budget // args.max_epochs, SCHEDULERS["ours_no_asha"]))
    log = EpochLog()
    tuner = tune.Tuner(
        resourced_trainable(plan, 0.0),
        param_space={k: TUNE_DOMAINS[type(d)](d) for k, d in optuna_space(plan.space).items()},
        tune_config=tune.TuneConfig(
            metric=METRIC, mode="max", search_alg=BasicVariantGenerator(random_state=seed),
            num_samples=plan.spec.search.num_samples, max_concurrent_trials=args.concurrency, reuse_actors=True,
        ),
        run_config=tune.RunConfig(name=plan.name, storage_path=str(results), callbacks=[log], verbose=0),
    )
    tuner.fit()
    return log.values


def run_optuna_hyperband(args: argparse.Namespace, seed: int) -> list[float]:
    """Plain Optuna, no Ray: TPE + HyperbandPruner, `fit` reporting each epoch, until the budget is spent."""
    from search.trainable import trial_config
    from training.fit import EpochReport, NonFiniteLossError, fit
    from training.runtime import Runtime

    plan = load_space(space(f"optuna_s{seed}", args, seed, 1, SCHEDULERS["ours_no_asha"]))
    values: list[float] = []

    def objective(trial: optuna.Trial) -> float:
        params = {k: SUGGEST[type(d)](trial, k, d) for k, d in optuna_space(plan.space).items()}
        cfg = trial_config(plan.base, plan.space, params)

        def report(epoch: EpochReport) -> None:
            values.append(epoch.metrics[METRIC])
            trial.report(epoch.metrics[METRIC], epoch.epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        return fit(cfg, Runtime.for_trial(cfg, cpu=1, gpu=0), on_epoch=report)[METRIC]

    def stop_at_budget(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if len(values) >= args.budget:
            study.stop()

    pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=args.max_epochs, reduction_factor=2)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruner)
    # a diverged trial (NaN loss) fails alone, as it does in our search
    study.optimize(objective, callbacks=[stop_at_budget], catch=(NonFiniteLossError,))
    return values


def run_methods(args: argparse.Namespace, results: Path, after_seed: Callable) -> tuple[dict[str, list[list[float]]], dict[str, float]]:
    """Every method for every seed, seed by seed (so load on a shared machine hits all alike):
    the metric per epoch in the order spent, and the wall seconds per method; `after_seed(raw,
    seconds)` after each seed, so a long run stopped early keeps the seeds it finished."""
    methods: dict[str, Callable[[int], list[float]]] = {
        **{variant: partial(run_ours, args, results=results, variant=variant) for variant in SCHEDULERS},
        "random": lambda seed: run_random(args, seed, results),
        "optuna_hyperband": lambda seed: run_optuna_hyperband(args, seed),
    }
    raw: dict[str, list[list[float]]] = {m: [] for m in methods}
    seconds: dict[str, float] = {m: 0.0 for m in methods}
    for seed in range(args.seeds):
        for method, run in methods.items():
            began = time.perf_counter()
            raw[method].append(run(seed))
            seconds[method] += time.perf_counter() - began
        after_seed(raw, seconds)
    return raw, seconds


def anytime(values: list[float], budget: int) -> list[float]:
    """Best metric found after each epoch spent, cut (or held flat) at `budget` epochs."""
    best, curve = -math.inf, []
    for value in values[:budget]:
        best = max(best, value)
        curve.append(best)
    return curve + [curve[-1] if curve else 0.0] * (budget - len(curve))


def epochs_to(curve: list[float], target: float) -> int | None:
    return next((i + 1 for i, v in enumerate(curve) if v >= target), None)


def plot(curves: dict[str, list[list[float]]], budget: int, path: Path) -> None:
    figure, axes = plt.subplots(figsize=(6, 4))
    for method, per_seed in curves.items():
        mean = [statistics.mean(c[i] for c in per_seed) for i in range(budget)]
        axes.plot(range(1, budget + 1), mean, label=method)
    axes.set_xlabel("epochs spent")
    axes.set_ylabel(f"best {METRIC} so far (mean over seeds)")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def summarize(args: argparse.Namespace, raw: dict[str, list[list[float]]], seconds: dict[str, float]) -> tuple[dict[str, Any], list[list[Any]]]:
    """Anytime curves, the common target, epochs to it per method and seed, and the ratios to ours."""
    curves = {m: [anytime(v, args.budget) for v in per_seed] for m, per_seed in raw.items()}
    best = max(max(c[-1] for c in per_seed) for per_seed in curves.values())
    target = TARGET_SHARE * best
    rows, per_method = [], {}
    for method, per_seed in curves.items():
        reached = [epochs_to(c, target) for c in per_seed]
        # a seed that never reached the target counts as the whole budget (a lower bound)
        mean_epochs = statistics.mean(r if r is not None else args.budget for r in reached)
        per_method[method] = {
            "epochs_to_target": reached, "mean_epochs_to_target": mean_epochs,
            "reached_all_seeds": all(r is not None for r in reached),
            "final_best": [c[-1] for c in per_seed], "epochs_spent": [min(len(v), args.budget) for v in raw[method]],
            "epochs_run": [len(v) for v in raw[method]], "wall_s": seconds[method],
            "curve_mean": [statistics.mean(c[i] for c in per_seed) for i in range(args.budget)],
            "curves": per_seed,
        }
        rows.append([method, statistics.mean(per_method[method]["final_best"]), mean_epochs, f"{sum(r is not None for r in reached)}/{len(reached)}", seconds[method]])
    ours = per_method["ours"]["mean_epochs_to_target"]
    ratios = {f"{m}/ours": per_method[m]["mean_epochs_to_target"] / ours for m in per_method if m != "ours"}
    figures = {
        "metric": METRIC, "space": SPACE, "seeds": args.seeds, "seeds_done": len(raw["ours"]), "budget_epochs": args.budget,
        "max_epochs": args.max_epochs, "images": args.images, "concurrency": args.concurrency, "best_found": best,
        "target": target, "methods": per_method, "ratios_epochs_to_target": ratios, "smoke": args.smoke,
    }
    return figures, rows


def save(summary: tuple[dict[str, Any], list], args: argparse.Namespace) -> tuple[Path, Path]:
    """The JSON and the anytime plot beside it."""
    figures = summary[0]
    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / "search_efficiency.png"
    plot({m: r["curves"] for m, r in figures["methods"].items()}, args.budget, png)
    return write_figures("search_efficiency", {**figures, "plot": str(png)}, args.out), png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=int, default=64, help="total epochs per method and seed")
    parser.add_argument("--max-epochs", type=int, default=8, help="epochs of a full trial")
    parser.add_argument("--images", type=int, default=600, help="synthetic images (75%% train)")
    parser.add_argument("--concurrency", type=int, default=2, help="trials at once for the Ray methods")
    parser.add_argument("--smoke", action="store_true", help="tiny settings for the test suite")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="where search_efficiency.json/.png go")
    args = parser.parse_args(argv)
    if args.smoke:
        args.seeds, args.budget, args.max_epochs, args.images = 1, 4, 2, 48
    console = Console()
    with scratch_results("beff") as results:
        raw, seconds = run_methods(args, results, lambda raw, seconds: save(summarize(args, raw, seconds), args))
    figures, rows = summarize(args, raw, seconds)
    path, png = save((figures, rows), args)
    print_table(
        console,
        f"search efficiency: {args.budget} epochs per method, {args.seeds} seeds, target {figures['target']:.3f} "
        f"({TARGET_SHARE:.0%} of {figures['best_found']:.3f})",
        ["method", "best (mean)", "epochs to target", "seeds reached", "wall s"], rows,
    )
    console.print(f"figures: {path}, curve: {png}")
    print("ratios (epochs to target): " + ", ".join(f"{k} = {v:.2f}" for k, v in figures["ratios_epochs_to_target"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
