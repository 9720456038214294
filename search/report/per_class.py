"""best_per_class.csv, best_per_class.png: the best trial's per-class metrics."""

from __future__ import annotations

from matplotlib.figure import Figure
from rich.console import Console

from search.report.inputs import Search
from search.report.output import ReportDir, console_table, save_figure, write_csv


def per_class(metrics: dict[str, float]) -> tuple[list[str], dict[str, dict[str, float]]]:
    """`val/<name>/<class>` metrics as (names, {class: {name: value}})."""
    names: list[str] = []
    classes: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == "val":
            names += [] if parts[1] in names else [parts[1]]
            classes.setdefault(parts[2], {})[parts[1]] = value
    return names, classes


def per_class_figure(names: list[str], classes: dict[str, dict[str, float]], trial_id: str) -> Figure:
    fig = Figure(figsize=(max(5, 1.2 * len(classes)), 4))
    ax = fig.add_subplot()
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        xs = [c + i * width for c in range(len(classes))]
        ax.bar(xs, [values.get(name, 0.0) for values in classes.values()], width, label=name)
    ax.set_xticks([c + 0.4 - width / 2 for c in range(len(classes))], list(classes))
    ax.set(ylim=(0, 1.05), ylabel="value", title=f"best trial {trial_id}: per-class metrics")
    ax.legend(fontsize=8)
    return fig


def write_best_per_class(search: Search, out: ReportDir, console: Console) -> None:
    best = search.best
    names, classes = per_class(best["metrics"]) if best else ([], {})
    if not classes:
        out.notes.append("no per-class metrics: no best trial, or the task reports none")
        return
    rows = [[cls, *(values.get(n, "") for n in names)] for cls, values in classes.items()]
    write_csv(out.path("best_per_class.csv", "best trial's per-class metrics (CSV)"), ["class", *names], rows)
    figure = per_class_figure(names, classes, best["trial_id"])
    save_figure(figure, out.path("best_per_class.png", "best trial's per-class metrics (chart)"))
    console.print(console_table(f"best trial {best['trial_id']}: per-class metrics", ["class", *names], rows))
