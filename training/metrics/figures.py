"""Figures for the artifacts people look at by hand: per-epoch extras (`Task.epoch_extras`) and the
tables a task makes for the search report (`Task.report_tables`)."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure


def is_histogram(value: Any) -> bool:
    """An extras entry shaped like a histogram: {"bins": edges, "counts": one count per bin, ...}."""
    return (
        isinstance(value, dict)
        and isinstance(value.get("bins"), list)
        and isinstance(value.get("counts"), list)
        and len(value["bins"]) == len(value["counts"]) + 1
    )


def histogram_figure(name: str, histogram: dict[str, Any], epoch: int) -> Figure:
    """Bars of `counts` over `bins`; optional `per_class` counts as step lines and `marks`
    ({label: x}, e.g. thresholds) as dashed vertical lines."""
    # Figure without pyplot renders with Agg and keeps no global state (safe in any thread).
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    edges, counts = histogram["bins"], histogram["counts"]
    widths = [b - a for a, b in zip(edges, edges[1:])]
    ax.bar(edges[:-1], counts, width=widths, align="edge", color="lightgray", edgecolor="gray", label="all")
    for label, class_counts in (histogram.get("per_class") or {}).items():
        ax.stairs(class_counts, edges, label=label)
    at: dict[float, list[str]] = {}  # marks at the same x share one line and one label
    for label, x in (histogram.get("marks") or {}).items():
        at.setdefault(x, []).append(label)
    for x, labels in at.items():
        ax.axvline(x, linestyle="--", color="black", alpha=0.7)
        text = f"{', '.join(labels)} {x:g}"
        ax.annotate(text, (x, 0.98), xycoords=("data", "axes fraction"), rotation=90, va="top", ha="right", fontsize=8)
    ax.set_xlabel("score")
    ax.set_ylabel("count")
    ax.set_title(f"{name}, epoch {epoch}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def confusion_figure(names: list[str], counts: np.ndarray, title: str) -> Figure:
    """A confusion matrix (rows = truth) as a heat map with its counts written in the cells."""
    fig = Figure(figsize=(1.1 * len(names) + 2, 1.1 * len(names) + 1.5))
    ax = fig.add_subplot()
    ax.imshow(counts, cmap="Blues")
    for (row, col), value in np.ndenumerate(counts):
        ax.text(col, row, str(value), ha="center", va="center", color="white" if value > counts.max() / 2 else "black")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    return fig
