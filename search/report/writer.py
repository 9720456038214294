"""write_report: every report piece in order, the README.md index, and logging the files to MLflow."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape

from search.layout import REPORT_DIR
from search.report.baseline import write_best_vs_baseline
from search.report.importance import write_importance
from search.report.inputs import Search, load_search
from search.report.leaderboard import write_leaderboard
from search.report.output import ReportDir
from search.report.per_class import write_best_per_class
from search.report.plots import write_plots
from search.report.task_tables import write_task_tables
from search.report.verdict import write_verdict



def write_index(search: Search, out: ReportDir) -> None:
    summary = search.summary
    index = out.path("README.md", "this index")
    lines = [
        f"# Report of search '{summary['name']}'\n",
        f"{len(summary['trials'])} trials, metric `{search.metric}` ({search.mode}), "
        f"best trial: {search.best['trial_id'] if search.best else 'none'}.\n",
        *([f"{summary['verdict']['text']}\n"] if summary.get("verdict") else []),
        *(f"- [{path.name}]({path.name}): {description}" for path, description in out.files.items() if path != index),
        "",
        *(f"- {note}" for note in out.notes),
    ]
    index.write_text("\n".join(lines) + "\n")


def sqlite_store_missing(uri: str) -> bool:
    """A sqlite store that is not there (moved results): MLflow would create an empty one instead."""
    return uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file()


def log_to_parent(search: Search, files: list[Path], console: Console) -> None:
    """Each report file as an artifact of the search's MLflow parent run, under `report/`."""
    from mlflow.exceptions import MlflowException

    from training.tracking import Tracker

    tracking = search.summary.get("tracking") or {}
    uri, run_id = tracking.get("uri") or "", tracking.get("parent_run_id")
    if not run_id or sqlite_store_missing(uri):
        console.print(f"[yellow]not logged to MLflow: no parent run or no store at {escape(uri) or '?'}[/]")
        return
    try:
        tracker = Tracker(uri, tracking["experiment"])
        for path in files:
            tracker.client.log_artifact(run_id, str(path), artifact_path=REPORT_DIR)
    except MlflowException as exc:
        console.print(f"[yellow]not logged to MLflow run {run_id}: {escape(exc.message)}[/]")
        return
    console.print(f"logged {len(files)} files to MLflow run {run_id} under {REPORT_DIR}/")


def write_report(result_dir: Path, console: Console, top: int) -> Path:
    """Write RESULT_DIR/report/, log it to MLflow; returns the folder. The report holds:

    - `leaderboard.csv`, `leaderboard.md` (and a console table): the top trials by the search metric, with
      their searched values, the other `val/` metrics, epochs run and status (done, stopped early, failed);
    - `importance.csv`, `importance.png`: how much each searched key mattered, by Optuna's fANOVA
      (PED-ANOVA where fANOVA cannot run) over the trials that did not fail;
    - `metric_per_epoch.png` (one line per trial: ASHA stops end early, failures are marked),
      `metric_vs_<key>.png` for each searched key, `parallel_coordinates.png`;
    - `best_per_class.csv`, `best_per_class.png`: the best trial's per-class metrics (`val/f1/<class>`, ...);
    - the tables the best trial's task makes from its kept checkpoint (`Task.report_tables`), each
      as CSV and PNG: `confusion.csv`, `confusion.png` (validation confusion matrix) for classification;
    - `best_vs_baseline.md`: the config keys where the best trial differs from the baseline;
    - `verdict.md`, `verdict.png`: the seed noise, the confirmed configs' scores over fresh seeds (mean
      and spread), which config was exported and why, and the winner against the baseline on the test
      split with 95 % intervals;
    - `README.md`: links to all of the above.

    Every file is also logged to the search's MLflow parent run under `report/`. File names made from
    config keys keep `[A-Za-z0-9._-]` only, so nothing is written outside the report folder.
    """
    search = load_search(Path(result_dir))
    out = ReportDir(Path(result_dir) / REPORT_DIR)
    out.root.mkdir(exist_ok=True)
    write_leaderboard(search, out, console, top)
    write_importance(search, out, console)
    write_plots(search, out)
    write_best_per_class(search, out, console)
    write_task_tables(search, out, console)
    write_best_vs_baseline(search, out, console)
    write_verdict(search, out, console)
    write_index(search, out)
    log_to_parent(search, list(out.files), console)
    return out.root
