"""best_vs_baseline.md: the config keys where the best trial differs from the baseline."""

from __future__ import annotations

import json
import math
from typing import Any

from rich.console import Console

from search.report.inputs import Search
from search.report.output import ReportDir, console_table, markdown_table
from training.config import TrainConfig
from training.schema.config_file import flatten


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
