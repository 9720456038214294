"""The finished search the report reads (summary.json, space.yaml) and which of its trials count."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search.layout import SPACE_FILE, SUMMARY_FILE
from search.roles import is_replica_run
from search.space import Distribution, parse_space, searched_parts, split_point
from search.summary import read_summary
from training.schema.config_file import read_yaml
from training.schema.errors import ConfigError



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
        """The sampled trials (baselines included); the extra seeds of noise and confirmation runs are
        the verdict's (report/verdict.py), not more points of the space."""
        return [t for t in self.summary["trials"] if not is_replica_run(t)]

    @property
    def best(self) -> dict[str, Any] | None:
        return self.summary.get("best")

    @property
    def axes(self) -> dict[str, Distribution]:
        """One 1-D distribution per sampled parameter (a geometric ratio set: its min, max, count)."""
        return searched_parts(self.space)

    def axis_values(self, trial: dict[str, Any]) -> dict[str, Any]:
        """A trial's values on `axes`, for the searched keys whose value lies in the space."""
        params = trial["params"]
        inside = {k: v for k, v in params.items() if k in self.space and self.space[k].contains(v)}
        return split_point(self.space, inside)


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


def fits_space(trial: dict[str, Any], space: dict[str, Distribution]) -> bool:
    return all(key in trial["params"] and dist.contains(trial["params"][key]) for key, dist in space.items())
