"""The best trial out as a plain training YAML that `python -m training train` accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from search.layout import SUMMARY_FILE
from search.summary import read_summary
from training.config import TrainConfig
from training.config_file import validate_model
from training.errors import ConfigError


def header(summary: dict[str, Any]) -> str:
    """Comment lines naming where the config came from and what it scored."""
    best = summary["best"]
    lines = [
        f"best config of search '{summary['name']}' (space file {summary['space_file']})",
        f"trial {best['trial_id']}, MLflow run {best['mlflow_run_id']} in {summary['tracking']['uri']}",
        f"{summary['metric']} = {best['metrics'].get(summary['metric'])} ({summary['mode']}) after {best['epochs']} epochs",
        "its metrics: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(best["metrics"].items())),
        "retrain: python -m training train <this file>",
    ]
    return "".join(f"# {line}\n" for line in lines)


def best_config_yaml(summary: dict[str, Any]) -> str:
    config = validate_model(TrainConfig, summary["best"]["config"])
    body = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    return header(summary) + body


def export_best(result_dir: str | Path, output: str | Path) -> Path:
    """Write the best trial's full training config to `output`."""
    result_dir, output = Path(result_dir), Path(output)
    if not (result_dir / SUMMARY_FILE).is_file():
        raise ConfigError(None, f"no {SUMMARY_FILE} here: not a finished search's result folder", result_dir)
    summary = read_summary(result_dir)
    if summary.get("best") is None:
        raise ConfigError(None, f"search '{summary['name']}' has no successful trial to export", result_dir)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(best_config_yaml(summary))
    return output
