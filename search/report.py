"""`python -m search report RESULT_DIR`: what a finished search found, as files under RESULT_DIR/report/.

The report holds:

- `leaderboard.csv`, `leaderboard.md` (and a console table): the top trials by the search metric, with
  their searched values, the other `val/` metrics, epochs run and status (done, stopped early, failed);
- `importance.csv`, `importance.png`: how much each searched key mattered, by Optuna's fANOVA
  (PED-ANOVA where fANOVA cannot run) over the trials that did not fail;
- `metric_per_epoch.png` (one line per trial: ASHA stops end early, failures are marked),
  `metric_vs_<key>.png` for each searched key, `parallel_coordinates.png`;
- `best_per_class.csv`, `best_per_class.png`: the best trial's per-class metrics (`val/f1/<class>`, ...);
- `best_vs_baseline.md`: the config keys where the best trial differs from the baseline;
- `README.md`: links to all of the above.

Every file is also logged to the search's MLflow parent run under `report/`. There is no confusion
matrix: summary.json does not store one. File names made from config keys keep `[A-Za-z0-9._-]` only,
so nothing is written outside the report folder.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import matplotlib

matplotlib.use("Agg")

from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.markup import escape  # noqa: E402
from rich.table import Table  # noqa: E402

from search.console import format_value, short_key  # noqa: E402
from search.space import Choice, Distribution, LogUniform, parse_space  # noqa: E402
from search.summary import SUMMARY_FILE, ranked, read_summary  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.config_file import read_yaml  # noqa: E402
from training.errors import ConfigError  # noqa: E402
from training.tracking import flatten  # noqa: E402

REPORT_DIR = "report"
SPACE_FILE = "space.yaml"
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")
MIN_IMPORTANCE_TRIALS = 2


# ---------------------------------------------------------------------------------------------- inputs


@dataclass
class Search:
    """A finished search as the report reads it: its summary and its searched distributions."""

    folder: Path
    summary: dict[str, Any]
    space_doc: dict[str, Any]
    space: dict[str, Distribution]

    @property
    def metric(self) -> str:
        return self.summary["metric"]

    @property
    def mode(self) -> str:
        return self.summary["mode"]

    @property
    def trials(self) -> list[dict[str, Any]]:
        return self.summary["trials"]

    @property
    def best(self) -> dict[str, Any] | None:
        return self.summary.get("best")


def load_search(result_dir: Path) -> Search:
    """summary.json and space.yaml of a finished search; anything missing is a ConfigError."""
    if not (result_dir / SUMMARY_FILE).is_file():
        raise ConfigError(None, f"no {SUMMARY_FILE} here: not a finished search's result folder", result_dir)
    try:
        summary = read_summary(result_dir)
    except json.JSONDecodeError as exc:
        raise ConfigError(None, f"invalid JSON (line {exc.lineno}): {exc.msg}", result_dir / SUMMARY_FILE) from None
    space_path = result_dir / SPACE_FILE
    space_doc = read_yaml(space_path)
    try:
        space = parse_space(space_doc.get("space") or {})
    except ConfigError as exc:
        raise exc.with_file(space_path) from None
    return Search(result_dir, summary, space_doc, space)


def is_finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def finished(search: Search) -> list[dict[str, Any]]:
    """Trials that did not fail and reported a finite search metric."""
    return [t for t in search.trials if t["status"] != "FAILED" and is_finite(t["metrics"].get(search.metric))]


# ---------------------------------------------------------------------------------------------- output


def safe_name(name: str) -> str:
    """A plain file name: only [A-Za-z0-9._-], never empty, hidden, '.' or '..'."""
    safe = SAFE_NAME.sub("_", name)
    return safe if safe.strip(".") and not safe.startswith(".") else "_" + safe


@dataclass
class ReportDir:
    """The report folder: hands out safe, unique paths inside it and remembers what they hold."""

    root: Path
    files: dict[Path, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def path(self, name: str, description: str) -> Path:
        """A new file `name` (made safe; '-2', '-3', ... added when taken) inside the folder."""
        safe = Path(safe_name(name))
        candidate, n = safe, 2
        while self.root / candidate in self.files:
            candidate, n = safe.with_name(f"{safe.stem}-{n}{safe.suffix}"), n + 1
        path = self.root / candidate
        if path.resolve().parent != self.root.resolve():
            raise ValueError(f"report file {name!r} would leave {self.root}")
        self.files[path] = description
        return path


def md_cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(map(md_cell, headers)) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(map(md_cell, row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_csv(path: Path, headers: list[str], rows: list[list[Any]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(headers)
        writer.writerows(rows)


def console_table(title: str, headers: list[str], rows: list[list[Any]]) -> Table:
    table = Table(title=escape(title), title_justify="left")
    for header in headers:
        table.add_column(escape(header))
    for row in rows:
        table.add_row(*(escape(v if isinstance(v, str) else format_value(v)) for v in row))
    return table


def save_figure(fig: Figure, path: Path) -> None:
    fig.savefig(path, dpi=100, bbox_inches="tight")


# ---------------------------------------------------------------------------------------------- leaderboard


def status_text(trial: dict[str, Any]) -> str:
    if trial["status"] == "FAILED":
        return f"failed: {trial.get('error') or 'unknown error'}"
    if trial["status"] == "STOPPED":
        return f"stopped early ({trial.get('stop_reason') or 'ASHA'})"
    return "done"


def leaderboard_metrics(search: Search) -> list[str]:
    """The search metric, then every other `val/<name>` metric (per-class ones go to best_per_class)."""
    names = {k for t in search.trials for k in t["metrics"] if k.startswith("val/") and k.count("/") == 1}
    return [search.metric] + sorted(names - {search.metric})


def leaderboard_trials(search: Search, top: int) -> list[dict[str, Any]]:
    """Best first by the metric and mode; failed trials after all others."""
    order = ranked(search.trials, search.metric, search.mode)
    return sorted(order, key=lambda t: t["status"] == "FAILED")[:top]


def leaderboard_rows(search: Search, top: int) -> tuple[list[str], list[list[Any]]]:
    keys, metrics = list(search.summary["space_keys"]), leaderboard_metrics(search)
    headers = ["rank", "trial", "status", "epochs", *keys, *metrics]
    rows = [
        [rank, t["trial_id"], status_text(t), t["epochs"], *(t["params"].get(k, "") for k in keys),
         *(t["metrics"].get(m, "") for m in metrics)]
        for rank, t in enumerate(leaderboard_trials(search, top), start=1)
    ]
    return headers, rows


def write_leaderboard(search: Search, out: ReportDir, console: Console, top: int) -> None:
    headers, rows = leaderboard_rows(search, top)
    title = f"top {len(rows)} of {len(search.trials)} trials of '{search.summary['name']}' by {search.metric} ({search.mode})"
    write_csv(out.path("leaderboard.csv", "leaderboard (CSV)"), headers, rows)
    shown = [[f"{v:.6g}" if isinstance(v, float) else v for v in row] for row in rows]
    out.path("leaderboard.md", "leaderboard (table)").write_text(f"# {title}\n\n" + markdown_table(headers, shown))
    short = [short_key(h) if h in search.summary["space_keys"] else h for h in headers]
    console.print(console_table(title, short, rows))


# ---------------------------------------------------------------------------------------------- importance


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """No 'study created' log lines or experimental warnings while the report rebuilds a study."""
    import optuna

    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        optuna.logging.set_verbosity(previous)


def fits_space(trial: dict[str, Any], space: dict[str, Distribution]) -> bool:
    return all(key in trial["params"] and dist.contains(trial["params"][key]) for key, dist in space.items())


def rebuild_study(search: Search, trials: list[dict[str, Any]]):
    """An in-memory Optuna study holding `trials` with their searched values and final metric."""
    import optuna

    study = optuna.create_study(direction="maximize" if search.mode == "max" else "minimize")
    distributions = {key: dist.to_optuna() for key, dist in search.space.items()}
    for trial in trials:
        params = {key: dist.encode(trial["params"][key]) for key, dist in search.space.items()}
        value = trial["metrics"][search.metric]
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=value))
    return study


def param_importances(study, keys: list[str]) -> tuple[dict[str, float], str]:
    """fANOVA importances (sum 1); PED-ANOVA when fANOVA cannot run (no scikit-learn, no variance)."""
    from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator, get_param_importances

    try:
        return get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0), params=keys), "fANOVA"
    except (ImportError, RuntimeError):
        return get_param_importances(study, evaluator=PedAnovaImportanceEvaluator(), params=keys), "PED-ANOVA"


def importance_figure(importances: dict[str, float], evaluator: str, metric: str) -> Figure:
    fig = Figure(figsize=(7, 0.5 * len(importances) + 1.5))
    ax = fig.add_subplot()
    names = list(importances)[::-1]
    ax.barh(names, [importances[n] for n in names], color="tab:blue")
    ax.set_xlabel(f"importance for {metric} ({evaluator}, sums to 1)")
    ax.set_title("parameter importance")
    return fig


def importance_gap(trials: list[dict[str, Any]], metric: str) -> str | None:
    """Why importance cannot be assessed from `trials`, or None when it can."""
    if len(trials) < MIN_IMPORTANCE_TRIALS:
        return f"parameter importance needs at least {MIN_IMPORTANCE_TRIALS} finished trials, got {len(trials)}"
    if len({t["metrics"][metric] for t in trials}) == 1:
        return f"no parameter importance: {metric} is the same in all {len(trials)} finished trials"
    return None


def write_importance(search: Search, out: ReportDir, console: Console) -> None:
    trials = [t for t in finished(search) if fits_space(t, search.space)]
    note = importance_gap(trials, search.metric)
    if note:
        out.notes.append(note)
        console.print(note)
        return
    with quiet_optuna():
        importances, evaluator = param_importances(rebuild_study(search, trials), list(search.space))
    headers, rows = ["param", "importance", "evaluator"], [[k, v, evaluator] for k, v in importances.items()]
    write_csv(out.path("importance.csv", "parameter importance (CSV)"), headers, rows)
    figure = importance_figure(importances, evaluator, search.metric)
    save_figure(figure, out.path("importance.png", "parameter importance (chart)"))
    console.print(console_table(f"parameter importance ({evaluator}, {len(trials)} trials)", headers, rows))


# ---------------------------------------------------------------------------------------------- plots


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
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    trials = [t for t in finished(search) if key in t["params"] and dist.contains(t["params"][key])]
    for status, marker, label in (("DONE", "o", "full budget"), ("STOPPED", "v", "stopped early")):
        chosen = [t for t in trials if t["status"] == status]
        xs = [axis_position(dist, t["params"][key]) for t in chosen]
        ax.scatter(xs, [t["metrics"][search.metric] for t in chosen], marker=marker, label=label)
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
    fig = Figure(figsize=(max(6, 2 * len(search.space) + 2), 5))
    ax = fig.add_subplot()
    trials = [t for t in finished(search) if fits_space(t, search.space)]
    scores = [t["metrics"][search.metric] for t in trials]
    lo, hi = min(scores, default=0.0), max(scores, default=1.0)
    cmap = matplotlib.colormaps["viridis"]
    for trial, score in zip(trials, scores):
        shade = (score - lo) / (hi - lo) if hi > lo else 0.5
        ys = [normalized(dist, trial["params"][key]) for key, dist in search.space.items()] + [shade]
        ax.plot(range(len(ys)), ys, color=cmap(shade), alpha=0.8)
    labels = [*search.space, search.metric]
    ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
    for x in range(len(labels)):
        ax.axvline(x, color="grey", linewidth=0.5)
    ax.set(ylim=(-0.05, 1.05), ylabel="position in range (0 = low end, 1 = high end)", title="parallel coordinates")
    colorbar = fig.colorbar(ScalarMappable(norm=Normalize(lo, hi), cmap=cmap), ax=ax)
    colorbar.set_label(search.metric)
    return fig


def write_plots(search: Search, out: ReportDir) -> None:
    save_figure(per_epoch_figure(search), out.path("metric_per_epoch.png", f"{search.metric} per epoch, every trial"))
    for key, dist in search.space.items():
        save_figure(param_figure(search, key, dist), out.path(f"metric_vs_{key}.png", f"{search.metric} vs {key}"))
    save_figure(parallel_figure(search), out.path("parallel_coordinates.png", "searched values and metric, per trial"))


# ---------------------------------------------------------------------------------------------- best trial


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


# ---------------------------------------------------------------------------------------------- best vs baseline


def same_values(wanted: dict[str, Any], params: dict[str, Any]) -> bool:
    def equal(a: Any, b: Any) -> bool:
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
        return math.isclose(a, b, rel_tol=1e-9) if numbers else a == b

    return all(key in params and equal(value, params[key]) for key, value in wanted.items())


def base_values(space_doc: dict[str, Any]) -> dict[str, Any]:
    """The flat training config before the search: defaults, then the space file's base and data."""
    flat = flatten(TrainConfig().model_dump(mode="json"))
    flat.update(flatten(space_doc.get("base") or {}))
    flat.update(flatten(space_doc.get("data") or {}, "data."))
    return flat


def baseline_reference(search: Search) -> tuple[str, dict[str, Any]]:
    """(what the baseline is, its flat config): the first trial run from search.baseline[0], else
    the best config with each searched key at its baseline / base value."""
    entries = (search.space_doc.get("search") or {}).get("baseline") or []
    entry = entries[0] if entries and isinstance(entries[0], dict) else {}
    trial = next((t for t in search.trials if entry and same_values(entry, t["params"])), None)
    if trial is not None:
        return f"trial {trial['trial_id']} (search.baseline[0])", flatten(trial["config"])
    base = base_values(search.space_doc)
    flat = flatten(search.best["config"])
    flat.update({key: entry.get(key, base.get(key)) for key in search.summary["space_keys"]})
    return ("search.baseline[0]" if entry else "the base config (space file `base`)"), flat


def config_diff(baseline: dict[str, Any], best: dict[str, Any]) -> list[list[Any]]:
    """[key, baseline value, best value] for each key whose values differ."""
    missing = object()
    keys = sorted(set(baseline) | set(best))
    return [[k, baseline.get(k), best.get(k)] for k in keys if baseline.get(k, missing) != best.get(k, missing)]


def write_best_vs_baseline(search: Search, out: ReportDir, console: Console) -> None:
    if search.best is None:
        out.notes.append("no best-vs-baseline diff: no trial succeeded")
        return
    label, baseline = baseline_reference(search)
    rows = config_diff(baseline, flatten(search.best["config"]))
    title = f"best trial {search.best['trial_id']} vs baseline: {label}"
    body = markdown_table(["key", "baseline", "best"], rows) if rows else "No differences.\n"
    path = out.path("best_vs_baseline.md", "config keys where the best trial differs from the baseline")
    path.write_text(f"# {title}\n\n{body}")
    console.print(console_table(title, ["key", "baseline", "best"], [[k, json.dumps(a), json.dumps(b)] for k, a, b in rows]))


# ---------------------------------------------------------------------------------------------- index, MLflow


def write_index(search: Search, out: ReportDir) -> None:
    summary = search.summary
    index = out.path("README.md", "this index")
    lines = [
        f"# Report of search '{summary['name']}'\n",
        f"{len(summary['trials'])} trials, metric `{search.metric}` ({search.mode}), "
        f"best trial: {search.best['trial_id'] if search.best else 'none'}.\n",
        *(f"- [{path.name}]({path.name}): {description}" for path, description in out.files.items() if path != index),
        "",
        *(f"- {note}" for note in out.notes + ["no confusion matrix: summary.json does not store one"]),
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


def write_report(result_dir: Path, console: Console, top: int = 10) -> Path:
    """Write RESULT_DIR/report/ (see the module docstring), log it to MLflow; returns the folder."""
    search = load_search(Path(result_dir))
    out = ReportDir(Path(result_dir) / REPORT_DIR)
    out.root.mkdir(exist_ok=True)
    write_leaderboard(search, out, console, top)
    write_importance(search, out, console)
    write_plots(search, out)
    write_best_per_class(search, out, console)
    write_best_vs_baseline(search, out, console)
    write_index(search, out)
    log_to_parent(search, list(out.files), console)
    return out.root
