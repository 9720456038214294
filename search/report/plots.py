"""Figures of all trials: the metric per epoch, the metric vs each searched key, parallel coordinates."""

from __future__ import annotations

import math
from typing import Any

import matplotlib
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from search.report.inputs import Search, finished, fits_space, is_finite
from search.report.output import ReportDir, save_figure
from search.space import Choice, Distribution, LogUniform


def metric_points(trial: dict[str, Any], metric: str) -> tuple[list[int], list[float]]:
    points = [(h["epoch"], h[metric]) for h in trial.get("history") or [] if is_finite(h.get(metric))]
    return [p[0] for p in points], [p[1] for p in points]


def draw_trial_curve(ax, trial: dict[str, Any], metric: str, max_epochs: int) -> None:
    """One line; a failed trial is dashed and ends in a red x, an early stop ends in a square."""
    epochs, values = metric_points(trial, metric)
    if not epochs:
        return
    failed = trial["status"] == "FAILED"
    label = f"{trial['trial_id']} ({trial['status'].lower()})"
    line = ax.plot(epochs, values, "--" if failed else "-", marker=".", label=label)[0]
    if failed:
        ax.plot(epochs[-1], values[-1], "x", color="red", markersize=10, markeredgewidth=2)
    elif epochs[-1] < max_epochs:
        ax.plot(epochs[-1], values[-1], "s", color=line.get_color(), markersize=6)


def per_epoch_figure(search: Search) -> Figure:
    fig = Figure(figsize=(8, 5))
    ax = fig.add_subplot()
    max_epochs = search.summary.get("max_epochs") or 1
    for trial in search.trials:
        draw_trial_curve(ax, trial, search.metric, max_epochs)
    silent = [t["trial_id"] for t in search.trials if t["status"] == "FAILED" and not metric_points(t, search.metric)[0]]
    if silent:
        ax.text(0.01, 0.01, "failed before any epoch: " + ", ".join(silent), transform=ax.transAxes, color="red", fontsize=8)
    ax.set_xlim(0.8, max_epochs + 0.2)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set(xlabel="epoch", ylabel=search.metric, title=f"{search.metric} per epoch (square: stopped early, x: failed)")
    if ax.lines and len(search.trials) <= 20:
        ax.legend(fontsize=7, loc="best")
    return fig


def axis_position(dist: Distribution, value: Any) -> Any:
    """The x position of a searched value: the value itself, or its index among the choices."""
    if isinstance(dist, Choice):
        return [dist.encode(v) for v in dist.values].index(dist.encode(value))
    return value


def set_param_axis(ax, dist: Distribution) -> None:
    """The x axis spans the searched range (log scale for loguniform), or names the choices."""
    if isinstance(dist, Choice):
        ax.set_xticks(range(len(dist.values)), [str(v) for v in dist.values])
        ax.set_xlim(-0.5, len(dist.values) - 0.5)
    elif isinstance(dist, LogUniform):
        ax.set_xlim(dist.lo / 1.2, dist.hi * 1.2)
        ax.set_xscale("log")
    else:
        pad = (dist.hi - dist.lo) * 0.05
        ax.set_xlim(dist.lo - pad, dist.hi + pad)


def param_figure(search: Search, key: str, dist: Distribution) -> Figure:
    """The metric against one axis (a searched key, or one part of a geometric ratio set)."""
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    trials = [(t, values[key]) for t in finished(search) if key in (values := search.axis_values(t))]
    for status, marker, label in (("DONE", "o", "full budget"), ("STOPPED", "v", "stopped early")):
        chosen = [(t, value) for t, value in trials if t["status"] == status]
        xs = [axis_position(dist, value) for _, value in chosen]
        ax.scatter(xs, [t["metrics"][search.metric] for t, _ in chosen], marker=marker, label=label)
    set_param_axis(ax, dist)
    ax.set(xlabel=key, ylabel=f"last {search.metric}", title=f"{search.metric} vs {key}")
    ax.legend(fontsize=8)
    return fig


def normalized(dist: Distribution, value: Any) -> float:
    """A searched value mapped to [0, 1] within its range (log scale for loguniform, index for choices)."""
    if isinstance(dist, Choice):
        return axis_position(dist, value) / max(len(dist.values) - 1, 1)
    scale = math.log if isinstance(dist, LogUniform) else float
    lo, hi, value = scale(dist.lo), scale(dist.hi), scale(value)
    return min(max((value - lo) / (hi - lo), 0.0), 1.0)


def parallel_figure(search: Search) -> Figure:
    axes = search.axes
    fig = Figure(figsize=(max(6, 2 * len(axes) + 2), 5))
    ax = fig.add_subplot()
    trials = [t for t in finished(search) if fits_space(t, search.space)]
    scores = [t["metrics"][search.metric] for t in trials]
    lo, hi = min(scores, default=0.0), max(scores, default=1.0)
    cmap = matplotlib.colormaps["viridis"]
    for trial, score in zip(trials, scores):
        shade = (score - lo) / (hi - lo) if hi > lo else 0.5
        values = search.axis_values(trial)
        ys = [normalized(dist, values[key]) for key, dist in axes.items()] + [shade]
        ax.plot(range(len(ys)), ys, color=cmap(shade), alpha=0.8)
    labels = [*axes, search.metric]
    ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
    for x in range(len(labels)):
        ax.axvline(x, color="grey", linewidth=0.5)
    ax.set(ylim=(-0.05, 1.05), ylabel="position in range (0 = low end, 1 = high end)", title="parallel coordinates")
    colorbar = fig.colorbar(ScalarMappable(norm=Normalize(lo, hi), cmap=cmap), ax=ax)
    colorbar.set_label(search.metric)
    return fig


def write_plots(search: Search, out: ReportDir) -> None:
    save_figure(per_epoch_figure(search), out.path("metric_per_epoch.png", f"{search.metric} per epoch, every trial"))
    for key, dist in search.axes.items():
        save_figure(param_figure(search, key, dist), out.path(f"metric_vs_{key}.png", f"{search.metric} vs {key}"))
    save_figure(parallel_figure(search), out.path("parallel_coordinates.png", "searched values and metric, per trial"))
