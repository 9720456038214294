"""confusion.csv, confusion.png: the best classification trial's confusion matrix on validation,
recomputed from its kept checkpoint (summary.json stores metrics, not predictions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from rich.console import Console
from torchmetrics.functional.classification import multiclass_confusion_matrix

from search.report.inputs import Search
from search.report.output import ReportDir, save_figure, write_csv
from training.config import TrainConfig
from training.fit import CHECKPOINT_FILE
from training.runtime import Runtime
from training.tasks import create_task


def best_confusion(search: Search) -> tuple[list[str], np.ndarray] | None:
    """(class names, counts with rows = truth) for the best trial, or None when it cannot be had."""
    best = search.best
    checkpoint = Path(best["checkpoint"]) / CHECKPOINT_FILE if best and best.get("checkpoint") else None
    if checkpoint is None or not checkpoint.is_file() or best["config"].get("task") != "classification":
        return None
    cfg = TrainConfig.model_validate(best["config"])
    task = create_task(cfg, Runtime.from_config(cfg.train.model_copy(update={"device": "cpu"})))
    task.model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=False)["model"])
    logits, targets = task.predictions()
    counts = multiclass_confusion_matrix(logits.argmax(dim=1), targets, len(task.class_names))
    return task.class_names, counts.numpy()


def confusion_figure(names: list[str], counts: np.ndarray, trial_id: str) -> Figure:
    fig = Figure(figsize=(1.1 * len(names) + 2, 1.1 * len(names) + 1.5))
    ax = fig.add_subplot()
    ax.imshow(counts, cmap="Blues")
    for (row, col), value in np.ndenumerate(counts):
        ax.text(col, row, str(value), ha="center", va="center", color="white" if value > counts.max() / 2 else "black")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set(xlabel="predicted", ylabel="true", title=f"best trial {trial_id}: validation confusion")
    fig.tight_layout()
    return fig


def write_confusion(search: Search, out: ReportDir, console: Console) -> None:
    found = best_confusion(search)
    if found is None:
        out.notes.append("no confusion matrix: it needs a classification search whose best trial kept its checkpoint")
        return
    names, counts = found
    rows = [[name, *row] for name, row in zip(names, counts.tolist())]
    write_csv(out.path("confusion.csv", "best trial's validation confusion matrix (CSV)"), ["true \\ predicted", *names], rows)
    figure = confusion_figure(names, counts, search.best["trial_id"])
    save_figure(figure, out.path("confusion.png", "best trial's validation confusion matrix"))
    console.print(f"confusion matrix of {search.best['trial_id']} over {int(counts.sum())} validation images")
