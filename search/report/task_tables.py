"""The best trial's own tables (a classification task's confusion matrix, ...) as CSV and PNG files:
its task recomputes them from the trial's kept checkpoint (summary.json stores metrics, not
predictions). Which tables a task makes is its business (`Task.report_tables`)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from search.report.inputs import Search
from search.report.output import ReportDir, save_figure, write_csv
from training.config import TrainConfig
from training.loop.fit import CHECKPOINT_FILE
from training.loop.runtime import Runtime
from training.tasks import ReportTable, get_task


def best_checkpoint(search: Search) -> Path | None:
    """The best trial's kept checkpoint file, or None when there is none."""
    best = search.best
    checkpoint = Path(best["checkpoint"]) / CHECKPOINT_FILE if best and best.get("checkpoint") else None
    return checkpoint if checkpoint is not None and checkpoint.is_file() else None


def best_tables(search: Search, checkpoint: Path) -> list[ReportTable]:
    """The tables the best trial's task makes of its checkpoint, computed on the CPU."""
    cfg = TrainConfig.model_validate(search.best["config"])
    runtime = Runtime.from_config(cfg.train.model_copy(update={"device": "cpu"}))
    return get_task(cfg.task).report_tables(cfg, runtime, checkpoint, f"best trial {search.best['trial_id']}")


def write_table(table: ReportTable, out: ReportDir, console: Console) -> None:
    write_csv(out.path(f"{table.name}.csv", f"best trial's {table.description} (CSV)"), table.header, table.rows)
    if table.figure is not None:
        save_figure(table.figure, out.path(f"{table.name}.png", f"best trial's {table.description}"))
    if table.summary:
        console.print(table.summary)


def write_task_tables(search: Search, out: ReportDir, console: Console) -> None:
    checkpoint = best_checkpoint(search)
    if checkpoint is None:
        out.notes.append("no task tables (e.g. a confusion matrix): the best trial kept no checkpoint")
        return
    tables = best_tables(search, checkpoint)
    if not tables:
        out.notes.append("no task tables: the best trial's task makes none")
    for table in tables:
        write_table(table, out, console)
