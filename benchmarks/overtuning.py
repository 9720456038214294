"""Does a search's winner beat its baseline on images it never saw? (issue 23)

On the embedded synthetic defects at a small size (a few hundred training images, under a hundred
validation images, a large test split no trial reads), per scenario and search seed, three searches
of the same space from the same baseline:

- `today`: the search as it was before issue 23: no noise seeds, no confirmation, plain ASHA rungs
  (`margin_sds: 0`, `keep_reference_pace: false`); its pick is the best sampled trial by score;
- `rungs`: the noise seeds and the noise-aware rungs, no confirmation: the rung rules alone;
- `confirmed`: the shipped defaults: noise seeds of the baseline, noise-aware rungs, confirmation of
  the top config with fresh seeds, the baseline exported when the edge is inside the noise, and the
  verdict on the test split;
- `confirmed_margin`: `confirmed` with the rungs' seed-noise margin alone (`keep_reference_pace:
  false`): what the pace waiver's extra epochs buy;
- `confirmed_folds`: the same with `data.folds` (k models per trial, the mean over folds each epoch).

Two scenarios: `null`, a strong baseline that no config of the space beats beyond seed noise (found
with `--find-baseline`: a large search confirmed over seeds, its winner retrained and scored on the
test split; any gain a search claims there is false), and `weak`, a deliberately weak baseline (lr
2e-4). Every config a search exports or confirms, and the baseline, is retrained with the same
`retrain_seeds` (fresh: no search used them) on the training split and scored on the test split:
its test gain is its mean test macro F1 over those seeds minus the baseline's, with a paired
bootstrap interval over test images and seeds. Reported per search: the gain the search claims (the
best trial's score minus the baseline's, or the confirmed means' difference), the verdict's interval,
the test gain of what it exports, whether the test contradicts the claim, and the epochs spent
(sampling, noise seeds, confirmation; model-epochs with folds).

    python -m benchmarks.overtuning                   # 5 seeds x 2 scenarios x 3 searches (about 3 h on 2 cores)
    python -m benchmarks.overtuning --find-baseline   # the null scenario's baseline (about 25 min)
    python -m benchmarks.overtuning --smoke           # the plumbing only
    python -m benchmarks.overtuning --summaries DIR/null-today-0/summary.json ...   # score earlier searches
    python -m benchmarks.overtuning --merge A/overtuning.json B/overtuning.json     # combine scored runs
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from rich.console import Console

from benchmarks.common import RESULTS_DIR, print_table, run_our_search, scratch_results, write_figures

METRIC = "val/macro_f1"
HEADLINE = "macro_f1"
SPACE = {
    "optim.lr": {"loguniform": [1.0e-4, 3.0e-2]},
    "loss.focal_gamma": {"uniform": [0.0, 4.0]},
    "augment.brightness": {"uniform": [0.0, 0.5]},
    "augment.hflip": {"uniform": [0.0, 0.5]},
}
BASELINES = {
    # the strong one: the confirmed winner of `--find-baseline` (see benchmarks/README.md)
    "null": {"optim.lr": 2.55e-3, "loss.focal_gamma": 3.7, "augment.brightness": 0.036, "augment.hflip": 0.044},
    "weak": {"optim.lr": 2.0e-4, "loss.focal_gamma": 2.0, "augment.brightness": 0.2, "augment.hflip": 0.5},
}
TODAY = {"noise_seeds": 0, "confirm": {"top": 0}}, {"margin_sds": 0.0, "keep_reference_pace": False}
VARIANTS = ("today", "rungs", "confirmed", "confirmed_margin", "confirmed_folds")


@dataclass(frozen=True)
class Setting:
    count: int  # synthetic images in all (test included)
    test_fraction: float
    val_fraction: float  # of the non-test images
    image_size: int
    epochs: int  # a full trial
    num_samples: int
    seeds: tuple[int, ...]  # search seeds
    retrain_seeds: tuple[int, ...]
    folds: int = 3
    concurrent: int = 2
    find_samples: int = 40  # --find-baseline's sampled trials


FULL = Setting(count=1200, test_fraction=0.65, val_fraction=0.2, image_size=32, epochs=8, num_samples=16,
               seeds=(0, 1, 2, 3, 4), retrain_seeds=(1000, 1001, 1002))  # fmt: skip
SMOKE = Setting(count=120, test_fraction=0.5, val_fraction=0.3, image_size=32, epochs=2, num_samples=3,
                seeds=(0,), retrain_seeds=(1000,), folds=2, find_samples=3)  # fmt: skip


def data_section(s: Setting) -> dict[str, Any]:
    return {
        "kind": "synthetic",
        "image_size": s.image_size,
        "batch_size": 32,
        "num_workers": 0,
        "val_fraction": s.val_fraction,
        "test_fraction": s.test_fraction,
        "synthetic": {"count": s.count, "seed": 0},
    }


def space_file(s: Setting, name: str, baseline: dict[str, Any] | None, seed: int, variant: str) -> dict[str, Any]:
    """The space a user would write, under the variant's settings."""
    search: dict[str, Any] = {"metric": METRIC, "mode": "max", "num_samples": s.num_samples, "max_concurrent": s.concurrent, "seed": seed}
    scheduler: dict[str, Any] = {"name": "asha", "max_epochs": s.epochs}
    if variant == "today":
        search |= TODAY[0]
        scheduler |= TODAY[1]
    if variant == "rungs":
        search["confirm"] = {"top": 0}
    if variant == "confirmed_margin":
        scheduler["keep_reference_pace"] = False  # the margin rule alone: cheaper rungs
    data = data_section(s) | ({"folds": s.folds} if variant == "confirmed_folds" else {})
    if baseline is not None:
        search["baseline"] = [baseline]
    return {
        "name": name,
        "task": "classification",
        "data": data,
        "base": {"model": {"name": "resnet10t"}, "loss": {"name": "focal"}, "optim": {"name": "adamw", "schedule": "onecycle"}},
        "space": copy.deepcopy(SPACE),
        "search": search,
        "scheduler": scheduler,
        "resources": {"cpu": 1, "gpu": 0},
    }


# ------------------------------------------------------------------------------- one search


def model_epochs(trials: list[dict[str, Any]], folds: int) -> dict[str, int]:
    """Epochs spent by role (a fold model's epoch counts: k per trial epoch with k folds)."""
    spent = {"sampled": 0, "noise": 0, "confirm": 0}
    for t in trials:
        spent["sampled" if t.get("role") in (None, "baseline") else t["role"]] += t["epochs"] * folds
    return spent


def params_of(summary: dict[str, Any], trial_id: str | None) -> dict[str, Any] | None:
    trial = next((t for t in summary["trials"] if t["trial_id"] == trial_id), None)
    return dict(trial["params"]) if trial else None


def read_search(summary: dict[str, Any], variant: str, folds: int) -> dict[str, Any]:
    """What one search says and picks."""
    metric = summary["metric"]
    trials = summary["trials"]
    baseline = next(t for t in trials if t.get("role") == "baseline")
    today = max((t for t in trials if t.get("role") in (None, "baseline") and t["status"] != "FAILED"),
                key=lambda t: t["metrics"].get(metric, -math.inf))  # fmt: skip
    confirmation = summary.get("confirmation")
    record = {
        "variant": variant,
        "exported": dict(summary["best"]["params"]),
        "today": dict(today["params"]),
        "claim_today": today["metrics"][metric] - baseline["metrics"][metric],
        "epochs": model_epochs(trials, folds if variant == "confirmed_folds" else 1),
        "noise": (summary.get("noise") or {}).get("sd"),
    }
    if confirmation:
        groups = {g["group"]: g for g in confirmation["groups"]}
        reference = next(g for g in confirmation["groups"] if g["reference"])
        candidate = groups.get(confirmation["candidate"])
        record |= {
            "outcome": confirmation["outcome"],
            "candidate": params_of(summary, confirmation["candidate"]),
            "claim": candidate["mean"] - reference["mean"] if candidate else None,
            # each compared config's fresh-seed scores: other decision rules can be replayed from them
            "groups": [{"params": params_of(summary, g["group"]), "reference": g["reference"], "scores": g["scores"]}
                       for g in confirmation["groups"]],  # fmt: skip
        }
    if summary.get("verdict"):
        record["verdict"] = summary["verdict"]["differences"].get(HEADLINE)
        record["verdict_text"] = summary["verdict"]["text"]
        record["verdict_seed_noise"] = summary["verdict"].get("seed_noise")
    return record


def run_one(s: Setting, scenario: str, seed: int, variant: str, results: Path) -> dict[str, Any]:
    name = f"{scenario}-{variant}-{seed}"
    began = time.perf_counter()
    summary = run_our_search(space_file(s, name, BASELINES[scenario], seed, variant), results)
    return {"scenario": scenario, "seed": seed, **read_search(summary, variant, s.folds), "wall_s": time.perf_counter() - began}


def saved_search(path: Path, s: Setting) -> dict[str, Any]:
    """The record of a search run earlier (its summary.json, in a folder named SCENARIO-VARIANT-SEED)."""
    scenario, variant, seed = path.parent.name.rsplit("-", 2)
    summary = json.loads(path.read_text())
    return {"scenario": scenario, "seed": int(seed), **read_search(summary, variant, s.folds), "wall_s": summary.get("duration_s")}


# ------------------------------------------------------------------------------- retraining on test


def key_of(params: dict[str, Any]) -> tuple:
    return tuple(sorted((k, round(v, 12) if isinstance(v, float) else v) for k, v in params.items()))


def retrain(s: Setting, params: dict[str, Any], seed: int):
    """One fresh-seed run of a config on the training split, scored on the test split."""
    import torch

    from search.space import apply_values
    from training.config import TrainConfig
    from training.data import load_test
    from training.loop.fit import fit
    from training.loop.runtime import Runtime
    from training.tasks import get_task

    torch.set_num_threads(1)
    space = space_file(s, "retrain", None, 0, "confirmed")
    base = TrainConfig.model_validate({**space["base"], "task": "classification", "data": space["data"],
                                       "seed": seed, "train": {"epochs": s.epochs, "cpu_threads": 1}})  # fmt: skip
    cfg = apply_values(base, params)
    kept: dict[str, Any] = {}
    fit(cfg, on_epoch=lambda r: kept.update(state=r.state()) if r.epoch == cfg.train.epochs else None)
    runtime = Runtime.from_config(cfg.train)
    return get_task(cfg.task).outputs(cfg, runtime, kept["state"]["model"], load_test(cfg.data))


def retrain_all(s: Setting, configs: list[dict[str, Any]], console: Console) -> dict[tuple, list]:
    """Every distinct config x every retrain seed, two processes at a time; outputs per config."""
    distinct = {key_of(p): p for p in configs}
    jobs = [(k, seed) for k in distinct for seed in s.retrain_seeds]
    console.print(f"retraining {len(distinct)} configs x {len(s.retrain_seeds)} seeds on the training split ...")
    with ProcessPoolExecutor(max_workers=s.concurrent, mp_context=get_context("spawn")) as pool:
        futures = {job: pool.submit(retrain, s, distinct[job[0]], job[1]) for job in jobs}
        outputs: dict[tuple, list] = {k: [] for k in distinct}
        for (k, _), future in futures.items():
            outputs[k].append(future.result())
    return outputs


def test_gain(outputs: dict[tuple, list], params: dict[str, Any] | None, baseline: dict[str, Any]) -> dict[str, float] | None:
    """Mean test macro F1 of a config minus the baseline's over the retrain seeds, with a paired bootstrap interval."""
    from training.metrics.bootstrap import paired_difference

    if params is None:
        return None
    compared = paired_difference(outputs[key_of(params)], outputs[key_of(baseline)], resamples=1000)[HEADLINE]
    return {"gain": compared.difference.value, "lo": compared.difference.lo, "hi": compared.difference.hi,
            "test": compared.a.value, "baseline_test": compared.b.value}  # fmt: skip


# ------------------------------------------------------------------------------- the report


def score_searches(records: list[dict[str, Any]], outputs: dict[tuple, list]) -> None:
    for r in records:
        baseline = BASELINES[r["scenario"]]
        r["test_exported"] = test_gain(outputs, r["exported"], baseline)
        r["test_today"] = test_gain(outputs, r["today"], baseline)
        r["test_candidate"] = test_gain(outputs, r.get("candidate"), baseline)
        r["verdict_holds_test_gain"] = verdict_holds(r)
        claim = r.get("claim", r["claim_today"])
        r["test_contradicts_claim"] = bool(claim is not None and claim > 0 and (r["test_candidate"] or r["test_today"])["hi"] < claim)


def verdict_holds(r: dict[str, Any]) -> bool | None:
    """Whether the search's verdict interval holds the test gain of its candidate (fresh retrain seeds)."""
    verdict, truth = r.get("verdict"), r["test_candidate"] or r["test_today"]
    return None if not verdict or not truth else verdict["lo"] <= truth["gain"] <= verdict["hi"]


def widen_recorded_verdict(r: dict[str, Any], s: Setting) -> None:
    """A record from before the verdict's interval held the seed noise (search/verdict.py,
    `with_seed_noise`) gets it by the same rule, from its recorded noise and its runs (the
    confirmation seeds against the baseline's run and its noise seeds, counted from the epochs), so
    merged records compare alike."""
    from search.verdict import SEED_NOISE_NOTE, seed_half_width, with_seed_noise
    from training.metrics.bootstrap import Estimate

    if not r.get("verdict") or "verdict_seed_noise" in r or SEED_NOISE_NOTE in r.get("verdict_text", ""):
        return  # made under the rule already (the runs before the key was recorded: its text says so)
    run_epochs = s.epochs * (s.folds if r["variant"] == "confirmed_folds" else 1)
    runs = r["epochs"]["confirm"] // run_epochs, 1 + r["epochs"]["noise"] // run_epochs
    half = seed_half_width(r["noise"] if r["noise"] is not None else math.nan, *runs)
    v = r["verdict"]
    r["verdict"] = with_seed_noise(Estimate(v["value"], v["lo"], v["hi"]), half, "test").to_dict()
    r["verdict_seed_noise"] = {"sd": r["noise"], "half_width": half, "widened_when_merged": True}
    r["verdict_holds_test_gain"] = verdict_holds(r)


def goals(records: list[dict[str, Any]], scenarios: list[str]) -> dict[str, Any]:
    """Per scenario and variant: the mean test gain of what it exports, what it claimed, how often the
    test contradicts the claim, the verdict's coverage of the test gain, and the epochs it spent."""
    out: dict[str, Any] = {}
    for scenario in scenarios:
        row: dict[str, Any] = {}
        today = [r for r in records if r["scenario"] == scenario and r["variant"] == "today"]
        today_epochs = sum(r["epochs"]["sampled"] for r in today)
        for variant in VARIANTS:
            rs = [r for r in records if r["scenario"] == scenario and r["variant"] == variant]
            if not rs:
                continue
            held = [r["verdict_holds_test_gain"] for r in rs if r["verdict_holds_test_gain"] is not None]
            spent = {k: sum(r["epochs"][k] for r in rs) for k in ("sampled", "noise", "confirm")}
            row[variant] = {
                "mean_test_gain": statistics.fmean(r["test_exported"]["gain"] for r in rs),
                "mean_claim": statistics.fmean(r.get("claim", r["claim_today"]) or 0.0 for r in rs),
                "contradicted": sum(r["test_contradicts_claim"] for r in rs),
                "verdict_holds": f"{sum(held)}/{len(held)}",
                "below_baseline_beyond_interval": sum(r["test_exported"]["hi"] < 0 for r in rs),
                "wins": sum(r.get("outcome") == "wins" for r in rs),
                "epochs": spent,
                "extra_epochs": (spent["noise"] + spent["confirm"]) / max(1, spent["sampled"]),
                "epochs_vs_today": sum(spent.values()) / today_epochs if today_epochs else None,
            }
        out[scenario] = row
    return out


def print_records(records: list[dict[str, Any]], console: Console) -> None:
    rows = []
    for r in records:
        claim = r.get("claim", r["claim_today"])
        verdict = r.get("verdict")
        rows.append([
            f"{r['scenario']} s{r['seed']}", r["variant"], f"{claim:+.3f}" if claim is not None else "-",
            f"{verdict['value']:+.3f} [{verdict['lo']:+.3f}, {verdict['hi']:+.3f}]" if verdict else "-",
            r.get("outcome", "-"), f"{r['test_exported']['gain']:+.3f}",
            f"{(r['test_candidate'] or r['test_today'])['gain']:+.3f}",
            f"{r['epochs']['sampled']}+{r['epochs']['noise']}+{r['epochs']['confirm']}",
        ])  # fmt: skip
    header = ["search", "variant", "claimed gain", "verdict on test", "outcome", "test gain exported", "test gain candidate", "epochs s+n+c"]
    print_table(console, "what each search claims, and what the test split shows", header, rows)


# ------------------------------------------------------------------------------- --find-baseline


def find_baseline(s: Setting, results: Path, console: Console) -> dict[str, Any]:
    """A large search confirmed over seeds; its winner and runners-up retrained and scored on test."""
    space = space_file(s, "find-baseline", None, 0, "confirmed")
    space["search"] |= {"num_samples": s.find_samples, "confirm": {"top": 3, "seeds": 3}}
    summary = run_our_search(space, results)
    groups = summary["confirmation"]["groups"] if summary.get("confirmation") else []
    configs = [params_of(summary, g["group"]) for g in groups]
    outputs = retrain_all(s, configs, console)
    from training.metrics.bootstrap import interval

    rows = []
    for g, params in zip(groups, configs):
        test = interval(outputs[key_of(params)], resamples=1000)[HEADLINE]
        rows.append({"params": params, "val_mean": g["mean"], "val_sd": g["sd"], "test": test.value, "test_lo": test.lo, "test_hi": test.hi})
    rows.sort(key=lambda r: -r["test"])
    print_table(console, "the large search's confirmed configs, retrained and scored on test", ["params", "val mean", "test"],
                [[str(r["params"]), r["val_mean"], f"{r['test']:.3f} [{r['test_lo']:.3f}, {r['test_hi']:.3f}]"] for r in rows])  # fmt: skip
    return {"confirmed": rows, "chosen": summary["best"]["params"], "noise": summary["noise"]}


# ------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.overtuning", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny settings: the plumbing only")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--seeds", type=int, help="search seeds per scenario (default 5)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--scenarios", nargs="+", choices=sorted(BASELINES), default=["null", "weak"])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=["today", "confirmed", "confirmed_folds"],
                        help="searches per scenario and seed (rungs: the rung rules alone, which benchmarks/rung_rules.py replays)")
    parser.add_argument("--find-baseline", action="store_true", help="find the null scenario's strong baseline")
    parser.add_argument("--summaries", type=Path, nargs="+",
                        help="no search: score these searches' summary.json files (each in a folder named SCENARIO-VARIANT-SEED, as this benchmark names them)")
    parser.add_argument("--merge", type=Path, nargs="+", help="no search, no training: combine the records of these overtuning.json files")
    return parser


def setting(args: argparse.Namespace) -> Setting:
    s = SMOKE if args.smoke else FULL
    if args.seeds is not None or args.first_seed:
        count = args.seeds if args.seeds is not None else len(s.seeds)
        s = replace(s, seeds=tuple(range(args.first_seed, args.first_seed + count)))
    return s


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    s, console = setting(args), Console(width=160)
    began = time.perf_counter()
    with scratch_results("ovt") as results:
        if args.find_baseline:
            found = find_baseline(s, results, console)
            write_figures("overtuning_baseline", {"setting": s.__dict__, **found}, args.out)
            print(f"strong baseline: {found['chosen']}")
            return 0
        if args.merge:
            records = [r for path in args.merge for r in json.loads(path.read_text())["records"]]
            for r in records:
                widen_recorded_verdict(r, s)
        elif args.summaries:
            records = [saved_search(path, s) for path in args.summaries]
        else:
            records = [run_one(s, sc, seed, v, results) for sc in args.scenarios for seed in s.seeds for v in args.variants]
    if not args.merge:
        configs = [p for r in records for p in (r["exported"], r["today"], r.get("candidate")) if p]
        configs += [BASELINES[sc] for sc in {r["scenario"] for r in records}]
        score_searches(records, retrain_all(s, configs, console))
    print_records(records, console)
    args.scenarios = [sc for sc in args.scenarios if any(r["scenario"] == sc for r in records)]
    summary = goals(records, args.scenarios)
    write_figures("overtuning", {"setting": s.__dict__, "baselines": BASELINES, "records": records, "goals": summary,
                                 "wall_s": time.perf_counter() - began}, args.out)  # fmt: skip
    for scenario in args.scenarios:
        for variant, row in summary[scenario].items():
            print(f"{scenario} {variant}: test gain {row['mean_test_gain']:+.3f} (claimed {row['mean_claim']:+.3f}, "
                  f"contradicted {row['contradicted']}), verdict holds {row['verdict_holds']}, "
                  f"wins {row['wins']}, epochs x{row['epochs_vs_today'] or 0:.2f} of today's")  # fmt: skip
    print("goals: " + "; ".join(f"{sc} {v}: gain {r['mean_test_gain']:+.3f}, epochs x{r['epochs_vs_today'] or 0:.2f}"
                                for sc in args.scenarios for v, r in summary[sc].items()))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
