"""importance.csv, importance.png: how much each searched key mattered (fANOVA, else PED-ANOVA)."""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Iterator

from matplotlib.figure import Figure
from rich.console import Console

from search.report.inputs import Search, finished, fits_space
from search.report.output import ReportDir, console_table, save_figure, write_csv
from search.space import encode_point, optuna_space

MIN_IMPORTANCE_TRIALS = 2


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
        importances, evaluator = param_importances(rebuild_study(search, trials), list(search.axes))
    headers, rows = ["param", "importance", "evaluator"], [[k, v, evaluator] for k, v in importances.items()]
    write_csv(out.path("importance.csv", "parameter importance (CSV)"), headers, rows)
    figure = importance_figure(importances, evaluator, search.metric)
    save_figure(figure, out.path("importance.png", "parameter importance (chart)"))
    console.print(console_table(f"parameter importance ({evaluator}, {len(trials)} trials)", headers, rows))
