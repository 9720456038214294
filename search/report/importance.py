"""importance.csv, importance.png: how much each searched key mattered (fANOVA, else PED-ANOVA), with
how much that moves when the trials are resampled, and a caveat when few trials ran their full budget."""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Iterator

import numpy as np

from matplotlib.figure import Figure
from rich.console import Console

from search.report.inputs import Search, finished, fits_space
from search.report.output import ReportDir, console_table, save_figure, write_csv
from search.space import encode_point, optuna_space

MIN_IMPORTANCE_TRIALS = 2
# importance refitted on this many resamples (with replacement) of the trials: its 10-90 % range is the
# uncertainty shown beside each value (a handful of trials moves it a lot)
BOOTSTRAP_RESAMPLES = 16
# fewer trials than this ran every epoch: the others' values are from earlier epochs, so importance
# partly measures which configs ASHA let run, and the report says so
MIN_FULL_TRIALS = 5


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


def rebuild_study(search: Search, trials: list[dict[str, Any]]):
    """An in-memory Optuna study holding `trials` with their searched values and final metric."""
    import optuna

    study = optuna.create_study(direction="maximize" if search.mode == "max" else "minimize")
    distributions = optuna_space(search.space)
    for trial in trials:
        params = encode_point(search.space, {key: trial["params"][key] for key in search.space})
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


def importance_figure(importances: dict[str, float], ranges: dict[str, tuple[float, float]], evaluator: str, metric: str) -> Figure:
    fig = Figure(figsize=(7, 0.5 * len(importances) + 1.5))
    ax = fig.add_subplot()
    names = list(importances)[::-1]
    values = np.array([importances[n] for n in names])
    low, high = np.array([ranges[n][0] for n in names]), np.array([ranges[n][1] for n in names])
    # the range may not contain the full-data value; no range (every resample constant) draws no bar
    errors = np.nan_to_num(np.clip([values - low, high - values], 0, None))
    ax.barh(names, values, xerr=errors, color="tab:blue", ecolor="black", capsize=3)
    ax.set_xlabel(f"importance for {metric} ({evaluator}, sums to 1; bars: 10-90 % over resampled trials)")
    ax.set_title("parameter importance")
    return fig


def resampled_ranges(search: Search, trials: list[dict[str, Any]], keys: list[str]) -> dict[str, tuple[float, float]]:
    """Each key's 10th and 90th percentile of importance over BOOTSTRAP_RESAMPLES resamples of `trials`
    (resamples whose metric does not vary are skipped; NaN when none is left)."""
    rng = np.random.default_rng(0)
    draws: dict[str, list[float]] = {key: [] for key in keys}
    for _ in range(BOOTSTRAP_RESAMPLES):
        sample = [trials[i] for i in rng.integers(0, len(trials), len(trials))]
        if importance_gap(sample, search.metric):
            continue
        values, _ = param_importances(rebuild_study(search, sample), keys)
        for key in keys:
            draws[key].append(values.get(key, 0.0))
    return {key: tuple(np.percentile(v, [10, 90])) if v else (np.nan, np.nan) for key, v in draws.items()}


def full_trials_note(trials: list[dict[str, Any]], max_epochs: int | None) -> str | None:
    """A caveat when fewer than MIN_FULL_TRIALS of `trials` ran every epoch, else None."""
    full = sum(t["epochs"] >= (max_epochs or 0) for t in trials)
    if full >= MIN_FULL_TRIALS:
        return None
    return (
        f"parameter importance is rough: only {full} of its {len(trials)} trials ran all {max_epochs} epochs "
        "(the others are compared at the epoch ASHA stopped them); see the 10-90 % ranges"
    )


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
    keys = list(search.axes)
    with quiet_optuna():
        importances, evaluator = param_importances(rebuild_study(search, trials), keys)
        ranges = resampled_ranges(search, trials, keys)
    headers = ["param", "importance", "p10", "p90", "evaluator"]
    rows = [[k, v, *ranges[k], evaluator] for k, v in importances.items()]
    write_csv(out.path("importance.csv", "parameter importance, with its 10-90 % range over resampled trials (CSV)"), headers, rows)
    figure = importance_figure(importances, ranges, evaluator, search.metric)
    save_figure(figure, out.path("importance.png", "parameter importance (chart)"))
    console.print(console_table(f"parameter importance ({evaluator}, {len(trials)} trials)", headers, rows))
    caveat = full_trials_note(trials, search.summary.get("max_epochs"))
    if caveat:
        out.notes.append(caveat)
        console.print(caveat)
