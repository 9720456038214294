"""`python -m search VERB`: parse, call, and turn user errors into one line + exit 2.

Bad input is answered before torch, Ray or MLflow load (each costs seconds): every verb checks its
files, paths and keys with torch-free code first and imports the heavy modules only after that.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from search.console import make_console
from training.schema.errors import ConfigError

if TYPE_CHECKING:
    from search.spec import SearchPlan

EXIT_OK, EXIT_INTERNAL, EXIT_USER, EXIT_NO_FEASIBLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]*"
REPORT_TOP = 10  # trials in the report's leaderboard unless --top says otherwise


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m search", description="Hyperparameter search for defect-inspection models.")
    verbs = parser.add_subparsers(dest="verb", required=True)
    run = verbs.add_parser("run", help="run a search from a space file")
    run.add_argument("space", type=Path, help="space file (YAML)")
    run.add_argument("--name", help="search name (default: the space file's name)")
    run.add_argument("--results", type=Path, default=Path("results"), help="results folder (default: results/)")
    run.add_argument("--num-samples", type=int, help="number of trials (overrides search.num_samples)")
    run.add_argument("--max-concurrent", type=int, help="trials at once (overrides search.max_concurrent)")
    run.add_argument("--seed", type=int, help="sampler seed (overrides search.seed)")
    run.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///RESULTS/mlflow.db)")
    run.add_argument("--address", help="Ray cluster address (auto, ray://host:10001); default: local Ray")
    run.add_argument("--require-gpu", action="store_true", help="fail instead of falling back to CPU without GPUs")
    run.add_argument("--storage", help="Tune storage shared by all nodes (path or URI); default: RESULTS/NAME/tune")
    run.add_argument("--max-failures", type=int, help="retries of a crashed trial (overrides search.max_failures)")
    run.add_argument("--time-budget", help="stop starting trials after this long, e.g. 8h, 90m (overrides search.time_budget)")
    resume = verbs.add_parser("resume", help="continue an interrupted search")
    resume.add_argument("result_dir", type=Path, help="the search's results folder, e.g. results/quickstart")
    resume.add_argument("--restart-unfinished", action="store_true", help="restart unfinished trials from scratch")
    resume.add_argument("--time-budget", help="a new time budget from now, e.g. 2h (default: the search's own deadline)")
    check = verbs.add_parser(
        "check", help="dry-run a space file: validate, sample 3 configs, time one batch, train the first config's curve"
    )
    check.add_argument("space", type=Path, help="space file (YAML)")
    check.add_argument(
        "--no-curve", action="store_true", help="skip the first config's full-budget run (its curve proposes a grace period)"
    )
    report = verbs.add_parser("report", help="leaderboard, parameter importance and plots of a search")
    report.add_argument("result_dir", type=Path, help="a search's results folder, e.g. results/quickstart")
    report.add_argument("--top", type=int, default=REPORT_TOP, help="trials in the leaderboard (default %(default)s)")
    listing = verbs.add_parser("list", help="the searches under a results folder")
    listing.add_argument("--results", type=Path, default=Path("results"), help="results folder (default: results/)")
    export = verbs.add_parser("export", help="write the best trial's training config")
    export.add_argument("result_dir", type=Path, help="a search's results folder, e.g. results/quickstart")
    export.add_argument("-o", "--output", type=Path, default=Path("best.yaml"), help="output YAML (default: best.yaml)")
    export.add_argument("--force", action="store_true", help="overwrite the output file if it exists")
    export.add_argument(
        "--pick",
        help="choose by a rule instead of the best trial, e.g. 'min val/overkill_rate where val/miss_rate <= 0.02' "
        "(from the Pareto front when the search had objectives)",
    )
    keys = verbs.add_parser("keys", help="the training-config keys a task reads: type, default, range, description")
    keys.add_argument("pattern", nargs="?", help="only the keys holding this text, or matching this glob (augment.*)")
    keys.add_argument("--task", help="the task whose keys to list (default: classification)")
    return parser


def _apply_overrides(plan, args: argparse.Namespace) -> None:
    """Command-line values replace the space file's, validated like them."""
    overrides = {
        "num_samples": args.num_samples,
        "max_concurrent": args.max_concurrent,
        "seed": args.seed,
        "max_failures": args.max_failures,
        "time_budget": args.time_budget,
    }
    for key, value in overrides.items():
        if value is None:
            continue
        try:
            setattr(plan.spec.search, key, value)
        except ValueError as exc:
            flag = "--" + key.replace("_", "-")
            raise ConfigError(flag, f"invalid value {value}: {exc.errors()[0]['msg']}") from None
    if args.name is not None:
        plan.name = args.name


def warn_unread(plan: SearchPlan) -> None:
    for unread in plan.unread:
        print(f"warning: {unread}", file=sys.stderr)


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    from search.spec import check_plan, read_plan
    from search.state import claim_out_dir

    plan = read_plan(args.space)
    warn_unread(plan)
    _apply_overrides(plan, args)
    if not re.fullmatch(NAME_PATTERN, plan.name):
        raise ConfigError("--name", f"expected letters, digits, '.', '-' or '_', got '{plan.name}'")
    claim_out_dir((args.results / plan.name).resolve())
    check_plan(plan)  # the task's own checks: the first to load torch
    from search.runner import run_search
    from search.tuner import RunOptions
    from training.tracking import default_tracking_uri

    uri = args.tracking_uri or plan.spec.tracking.uri or default_tracking_uri(args.results)
    options = RunOptions(
        out_dir=args.results / plan.name,
        tracking_uri=uri,
        address=args.address,
        require_gpu=args.require_gpu,
        storage=args.storage,
    )
    return exit_code(run_search(plan, options, console))


def outcome(summary: dict | None) -> tuple[int, str | None]:
    """(exit code, one line for stderr) of a search: 0 with a best trial; 3 when trials finished but
    none met the constraints (the user's bounds, not a failure of ours); 1 when every trial failed;
    130 when interrupted."""
    if summary is None:
        return EXIT_INTERRUPTED, None
    if summary["best"] is not None:
        return EXIT_OK, None
    finished = [t for t in summary["trials"] if t["status"] != "FAILED"]
    if not finished and (summary.get("time_budget") or {}).get("ran_out"):
        more = f"python -m search resume {summary['out_dir']} --time-budget 2h"
        return EXIT_INTERNAL, f"error: the time budget ran out before any trial finished; give it more time: {more}"
    if finished and summary.get("constraints"):
        bounds = " and ".join(summary["constraints"])
        return EXIT_NO_FEASIBLE, f"error: no trial met the constraints ({bounds}): {len(finished)} finished, none feasible"
    return EXIT_INTERNAL, f"error: no trial produced {summary['metric']}: {len(summary['trials']) - len(finished)} failed"


def exit_code(summary: dict | None) -> int:
    code, line = outcome(summary)
    if line:
        print(line, file=sys.stderr)
    return code


def cmd_resume(args: argparse.Namespace, console: Console) -> int:
    from search.state import read_state, refuse_finished

    read_state(args.result_dir)
    budget = duration_arg(args.time_budget)
    refuse_finished(args.result_dir, budget)
    from search.runner import resume_search

    return exit_code(resume_search(args.result_dir, args.restart_unfinished, console, budget))


def duration_arg(value: str | None) -> float | None:
    """--time-budget in seconds, or a ConfigError naming the flag."""
    if value is None:
        return None
    from search.budget import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ConfigError("--time-budget", str(exc)) from None


def require_finished(result_dir: Path) -> None:
    from search.layout import SUMMARY_FILE

    if not (result_dir / SUMMARY_FILE).is_file():
        raise ConfigError(None, f"no {SUMMARY_FILE} here: not a finished search's result folder", result_dir)


def cmd_export(args: argparse.Namespace, console: Console) -> int:
    require_finished(args.result_dir)
    refuse_overwrite(args.output, args.force)
    from search.export import export_best

    path = export_best(args.result_dir, args.output, args.pick)
    console.print(f"wrote {path}; retrain with: python -m training train {path}")
    return EXIT_OK


def refuse_overwrite(output: Path, force: bool) -> None:
    if output.exists() and not force:
        raise ConfigError("--output", f"{output} exists; add --force to overwrite it, or choose another -o")


def cmd_check(args: argparse.Namespace, console: Console) -> int:
    from search.spec import read_plan

    warn_unread(read_plan(args.space))  # the file's mistakes before torch loads
    from search.check import run_check

    return run_check(args.space, console, curve=not args.no_curve)


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    if args.top < 1:
        raise ConfigError("--top", f"expected a positive number of trials, got {args.top}")
    require_finished(args.result_dir)
    from search.report import write_report

    folder = write_report(args.result_dir, console, top=args.top)
    console.print(f"report written to {folder}")
    return EXIT_OK


def cmd_keys(args: argparse.Namespace, console: Console) -> int:
    from search.keys import print_keys

    print_keys(args.task, args.pattern, console)
    return EXIT_OK


def cmd_list(args: argparse.Namespace, console: Console) -> int:
    from search.listing import list_searches

    list_searches(args.results, console)
    return EXIT_OK


COMMANDS = {"run": cmd_run, "resume": cmd_resume, "check": cmd_check, "report": cmd_report, "list": cmd_list, "export": cmd_export, "keys": cmd_keys}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = make_console()
    try:
        return COMMANDS[args.verb](args, console)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
