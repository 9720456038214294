"""A trial out as a plain training YAML that `python -m training train` accepts: the search's best
trial, or the one an `export --pick` rule chooses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from search.layout import SUMMARY_FILE
from search.pick import default_rule_text, parse_rule, pick_trial
from search.space import apply_values
from search.summary import read_summary, score_text
from training.config import TrainConfig
from training.schema import metric_names
from training.schema.config_file import validate_model
from training.schema.errors import ConfigError
from training.schema.metric_names import ExportedSetting


def exported_settings(config: TrainConfig, trial: dict[str, Any]) -> list[ExportedSetting]:
    """What the trial's task sets from its last metrics (e.g. a calibrated threshold): the model a
    retrain of the config ends with (a score rule's average or best epoch is no value any model had).
    Declared without torch, so that an export starts in well under a second."""
    return metric_names.exported_settings(config.task, trial.get("last_metrics", trial["metrics"]))


def header(summary: dict[str, Any], trial: dict[str, Any], picked_by: str, settings: list[ExportedSetting]) -> str:
    """Comment lines naming where the config came from, which rule picked it and what it scored."""
    lines = [
        f"config of search '{summary['name']}' (space file {summary['space_file']})",
        f"picked by: {picked_by}",
        f"trial {trial['trial_id']}, MLflow run {trial['mlflow_run_id']} in {summary['tracking']['uri']}",
        f"{summary['metric']} = {trial['metrics'].get(summary['metric'])} ({summary['mode']}) after {trial['epochs']} epochs, "
        f"score: {score_text(summary)}",
        "its metrics: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(trial["metrics"].items())),
    ]
    lines += [setting.note for setting in settings]
    lines += conclusion_lines(summary, trial)
    lines.append("retrain: python -m training train <this file>")
    return "".join(f"# {line}\n" for line in lines)


def conclusion_lines(summary: dict[str, Any], trial: dict[str, Any]) -> list[str]:
    """What confirmation and the verdict said, when the exported trial is the search's pick."""
    best = summary.get("best") or {}
    if trial["trial_id"] != best.get("trial_id"):
        return []
    from search.decide import confirmation_line
    from search.summary import label

    lines = []
    noise = summary.get("noise") or {}
    if noise.get("reference"):
        lines.append(f"seed noise of {summary['metric']}: {noise['text']}")
    confirmation = summary.get("confirmation")
    if confirmation:
        for group in confirmation["groups"]:
            lines.append(f"confirmed: {label(summary, group['group'])} mean {group['mean']:.4g} +- {group['sd']:.2g} over {group['n']} seeds")
        lines.append(confirmation_line(confirmation, summary["metric"], lambda g: label(summary, g)))
    if summary.get("verdict"):
        lines.append(summary["verdict"]["text"])
    return lines


def config_yaml(summary: dict[str, Any], trial: dict[str, Any], picked_by: str) -> str:
    """The trial's training config with what its task sets from its metrics, under a header."""
    config = validate_model(TrainConfig, trial["config"])
    settings = exported_settings(config, trial)
    exported = apply_values(config, {setting.key: setting.value for setting in settings})
    body = yaml.safe_dump(exported.model_dump(mode="json"), sort_keys=False)
    return header(summary, trial, picked_by, settings) + body


def best_config_yaml(summary: dict[str, Any]) -> str:
    """The search's best trial (best metric among feasible trials) as a training YAML."""
    return config_yaml(summary, summary["best"], default_rule_text(summary))


def chosen_yaml(summary: dict[str, Any], pick: str | None) -> str:
    """The YAML of the trial `pick` chooses, or of the best trial without a rule."""
    if pick is None:
        if summary.get("best") is None:
            raise ConfigError(None, f"search '{summary['name']}' has no successful feasible trial to export")
        return best_config_yaml(summary)
    rule = parse_rule(pick)
    trial, origin = pick_trial(summary, rule)
    return config_yaml(summary, trial, f"--pick '{rule.text}' among {origin}")


def export_best(result_dir: str | Path, output: str | Path, pick: str | None = None) -> Path:
    """Write the chosen trial's full training config to `output`."""
    result_dir, output = Path(result_dir), Path(output)
    if not (result_dir / SUMMARY_FILE).is_file():
        raise ConfigError(None, f"no {SUMMARY_FILE} here: not a finished search's result folder", result_dir)
    summary = read_summary(result_dir)
    try:
        text = chosen_yaml(summary, pick)
    except ConfigError as exc:
        raise exc.with_file(result_dir) if exc.key is None else exc from None
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    return output
