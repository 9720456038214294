"""Which rung rule picks better configs per epoch? Replayed on full learning curves (issue 23, point 5).

A random sample of the overtuning benchmark's space (benchmarks/overtuning.py: the synthetic defects
at 32 px, a few hundred training images, a large test split) runs its full budget once, with no early
stopping, and each reference config (its `null` and `weak` baselines) runs with several seeds; every
run's last model is scored on the test split. Then the search's own scheduler
(`search.rungs.NoiseAwareHyperband`, the shipped brackets) replays over those curves, once per rule,
in many random draws of 16 configs, arrival orders and bracket seeds: the reference's runs first
(as the search runs the baseline and its noise seeds first), then each config epoch by epoch until
the rule stops it. Each replay reports the epochs spent and the config the search would pick (the
best `ema` score over the epochs a trial ran); its quality is that config's test score (a full-budget
run of it) against the best config's in the draw (regret) and the baseline's (gain).

Rules (scheduler settings):
- `plain`: ASHA as before issue 23 (no noise margin, no chance rule, no noise seeds);
- `margin`: stop only beyond one seed-noise sd below the cut;
- `gate`: `margin` + no stop before the reference's mean left chance by 2 sds (the first default);
- `gate_min`: `margin` + no stop before the reference's mean left chance by MIN_GAP;
- `pace`: `margin` + never stop a trial within the noise of the reference's value at that epoch;
- `none`: no early stopping (every trial its full budget).

    python -m benchmarks.rung_rules            # 32 configs + 2 x 3 reference seeds at 8 epochs (about 15 min on 2 cores)
    python -m benchmarks.rung_rules --smoke
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from benchmarks.common import RESULTS_DIR, print_table, write_figures
from benchmarks.overtuning import BASELINES, FULL, METRIC, SMOKE, Setting, space_file

RULES: dict[str, dict[str, Any] | None] = {
    "plain": {"margin_sds": 0.0, "wait_for_learning": False, "pace": False},
    "margin": {"margin_sds": 1.0, "wait_for_learning": False, "pace": False},
    "gate": {"margin_sds": 1.0, "wait_for_learning": True, "chance_sds": 2.0, "pace": False},
    "gate_min": {"margin_sds": 1.0, "wait_for_learning": True, "chance_sds": 0.0, "pace": False},
    "pace": {"margin_sds": 1.0, "wait_for_learning": False, "pace": True},
    "pace_gate_min": {"margin_sds": 1.0, "wait_for_learning": True, "chance_sds": 0.0, "pace": True},
    "pace_only": {"margin_sds": 0.0, "wait_for_learning": False, "pace": True},
    "none": None,
}
DRAWN = 16  # configs per replayed search (the overtuning benchmark's num_samples)
REFERENCE_SEEDS = 3  # the baseline and its 2 noise seeds


def full_run(s: Setting, params: dict[str, Any], seed: int) -> dict[str, Any]:
    """One config's full-budget curve (the search metric per epoch), chance level, and test score."""
    import torch

    from search.space import apply_values
    from training.config import TrainConfig
    from training.data import load_test
    from training.loop.fit import fit
    from training.loop.runtime import Runtime
    from training.tasks import get_task

    torch.set_num_threads(1)
    space = space_file(s, "curve", None, 0, "confirmed")
    base = TrainConfig.model_validate({**space["base"], "task": "classification", "data": space["data"],
                                       "seed": seed, "train": {"epochs": s.epochs, "cpu_threads": 1}})  # fmt: skip
    cfg = apply_values(base, params)
    curve: list[float] = []
    kept: dict[str, Any] = {}

    def on_epoch(report) -> None:
        curve.append(report.metrics[METRIC])
        kept["chance"] = report.chance.get(METRIC)
        if report.epoch == cfg.train.epochs:
            kept["state"] = report.state()

    fit(cfg, on_epoch=on_epoch)
    outputs = get_task(cfg.task).outputs(cfg, Runtime.from_config(cfg.train), kept["state"]["model"], load_test(cfg.data))
    return {"params": params, "seed": seed, "curve": curve, "chance": kept["chance"], "test": outputs.metrics()["macro_f1"]}


def sample_configs(count: int, seed: int) -> list[dict[str, Any]]:
    """`count` random points of the space (what TPE's start-up draws)."""
    import optuna

    from search.space import decode_trial, optuna_space, parse_space
    from benchmarks.overtuning import SPACE

    space = parse_space(SPACE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [decode_trial(space, study.ask(optuna_space(space)).params) for _ in range(count)]


@dataclass
class Trial:
    """What the scheduler reads of a Tune trial."""

    trial_id: str
    index: int
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def experiment_tag(self) -> str:
        return f"{self.index}_replay"


def ema(values: list[float]) -> float:
    from search.score import moving_average

    return moving_average([{"epoch": i, METRIC: v} for i, v in enumerate(values, 1)], METRIC, "max")[METRIC]


def replay(rule: dict[str, Any] | None, reference: list[dict[str, Any]], configs: list[dict[str, Any]], s: Setting, seed: int) -> dict[str, Any]:
    """One search replayed: the epochs it spends and the config it picks (index into `configs`, -1 = the baseline)."""
    from ray.tune.schedulers import TrialScheduler

    from search.roles import REPLICA_KEY
    from search.rungs import NoiseAwareHyperband

    scheduler = None if rule is None else NoiseAwareHyperband(
        METRIC, "max", max_t=s.epochs, grace_period=1, reduction_factor=2, brackets=3, seed=seed, **rule
    )  # fmt: skip
    noise_seeds = rule is not None and rule is not RULES["plain"]  # plain ASHA ran without noise seeds
    runs = reference if noise_seeds else reference[:1]
    index, spent, sampled, scores = 0, 0, 0, {}
    for i, run in enumerate(runs):
        index += 1
        entry = {"role": "baseline" if i == 0 else "noise", "group": "ref", "reference": noise_seeds, "seed": run["seed"]}
        trial = Trial(f"ref{i}", index, {REPLICA_KEY: entry})
        spent += feed(scheduler, trial, run, s)
        if i == 0:
            scores[-1] = ema(run["curve"])
    for k, run in enumerate(configs):
        index += 1
        epochs = feed(scheduler, Trial(f"c{k}", index), run, s)
        spent, sampled = spent + epochs, sampled + epochs
        scores[k] = ema(run["curve"][:epochs])
    return {"spent": spent, "sampled": sampled, "pick": max(scores, key=scores.get)}


def feed(scheduler, trial: Trial, run: dict[str, Any], s: Setting) -> int:
    """The run's epochs through the scheduler until it says stop; the epochs it ran."""
    from ray.tune.schedulers import TrialScheduler

    if scheduler is None:
        return s.epochs
    scheduler.on_trial_add(None, trial)
    for epoch, value in enumerate(run["curve"], start=1):
        result = {"epoch": epoch, METRIC: value, f"chance/{METRIC}": run["chance"]}
        if scheduler.on_trial_result(None, trial, result) == TrialScheduler.STOP:
            scheduler.on_trial_complete(None, trial, result)
            return epoch
    scheduler.on_trial_complete(None, trial, result)
    return s.epochs


def compare(runs: dict[str, Any], s: Setting, replays: int, drawn: int = DRAWN) -> dict[str, dict[str, dict[str, float]]]:
    """Per reference and rule: mean epochs, test score of the pick, regret and gain over the baseline,
    over `replays` searches of `drawn` configs each."""
    rng = np.random.default_rng(0)
    configs = runs["configs"]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, reference in runs["references"].items():
        baseline_test = reference[0]["test"]
        rows: dict[str, list[tuple[int, float, float, int]]] = {rule: [] for rule in RULES}
        for r in range(replays):
            sample = [configs[i] for i in rng.permutation(len(configs))[: min(drawn, len(configs))]]
            best = max([baseline_test, *(c["test"] for c in sample)])
            for rule, settings in RULES.items():
                result = replay(settings, reference, sample, s, seed=r)
                test = baseline_test if result["pick"] == -1 else sample[result["pick"]]["test"]
                rows[rule].append((result["spent"], test, best - test, result["sampled"]))
        out[name] = {
            rule: {
                "epochs": statistics.fmean(v[0] for v in values),
                "sampled_epochs": statistics.fmean(v[3] for v in values),
                "pick_test": statistics.fmean(v[1] for v in values),
                "regret": statistics.fmean(v[2] for v in values),
                "gain_over_baseline": statistics.fmean(v[1] for v in values) - baseline_test,
            }
            for rule, values in rows.items()
        }
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rung_rules", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--configs", type=int, default=32, help="random configs run to their full budget")
    parser.add_argument("--replays", type=int, default=300)
    parser.add_argument("--draws", type=int, nargs="+", default=[8, 16, 24, 32], help="configs per replayed search")
    parser.add_argument("--runs", type=Path, help="replay the full runs of an earlier rung_rules.json instead of training")
    return parser


def train_runs(s: Setting, count: int, seeds: range, console: Console) -> dict[str, Any]:
    """The full-budget runs: `count` random configs, and each reference config with `seeds`."""
    jobs = [("configs", p, 0) for p in sample_configs(count, seed=7)]
    jobs += [(name, BASELINES[name], seed) for name in BASELINES for seed in seeds]
    console.print(f"{len(jobs)} full-budget runs of {s.epochs} epochs ...")
    with ProcessPoolExecutor(max_workers=s.concurrent, mp_context=get_context("spawn")) as pool:
        done = [(kind, pool.submit(full_run, s, params, seed)) for kind, params, seed in jobs]
        results = [(kind, future.result()) for kind, future in done]
    return {"configs": [r for k, r in results if k == "configs"],
            "references": {name: [r for k, r in results if k == name] for name in BASELINES}}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    s = SMOKE if args.smoke else FULL
    count, replays, draws = (3, 2, [2, 3]) if args.smoke else (args.configs, args.replays, args.draws)
    console = Console(width=160)
    began = time.perf_counter()
    if args.runs:
        runs = json.loads(args.runs.read_text())["runs"]
    else:
        runs = train_runs(s, count, range(2 if args.smoke else REFERENCE_SEEDS), console)
    figures = {drawn: compare(runs, s, replays, drawn) for drawn in draws}
    for drawn, by_reference in figures.items():
        for name, rules in by_reference.items():
            print_table(console, f"reference: the {name} baseline (test {runs['references'][name][0]['test']:.3f}); "
                        f"{replays} replays of {drawn} configs", ["rule", "epochs", "of which sampled", "pick's test", "regret", "gain"],
                        [[rule, f["epochs"], f["sampled_epochs"], f["pick_test"], f["regret"], f["gain_over_baseline"]]
                         for rule, f in rules.items()])  # fmt: skip
    write_figures("rung_rules", {"setting": s.__dict__, "runs": runs, "rules": RULES, "draws": draws,
                                 "figures": {str(k): v for k, v in figures.items()}, "wall_s": time.perf_counter() - began}, args.out)  # fmt: skip
    main_draw = figures[draws[len(draws) // 2] if len(draws) > 1 else draws[0]]
    print("rules vs plain (epochs x, regret): " + "; ".join(
        f"{name} {rule}: x{f['epochs'] / main_draw[name]['plain']['epochs']:.2f}, {f['regret']:.3f}"
        for name, rules in main_draw.items() for rule, f in rules.items()))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
