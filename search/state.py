"""A search's `search.json`: what `resume` needs, written before Ray starts and replaced atomically, so a
kill at any second leaves a folder that resumes (search.json there) or that `run` takes over (nothing
started). Ray-free and torch-free: the CLI reads it before loading either."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from search.layout import SPACE_FILE, STATE_FILE, SUMMARY_FILE
from training.schema.errors import ConfigError
from training.schema.resources import TrialResources

TEMP_SUFFIX = ".tmp"
STUDY_FILE = "optuna.journal"  # the search's Optuna study, unless search.optuna_storage names an RDB
# what a search killed before its search.json leaves: a folder holding only these is free to run again
UNSTARTED_FILES = {SPACE_FILE, SPACE_FILE + TEMP_SUFFIX, STATE_FILE + TEMP_SUFFIX}


def write_atomic(path: Path, text: str) -> Path:
    """Write `text` to `path` so that a kill leaves either the old file or the new one, never half of one."""
    temp = path.with_name(path.name + TEMP_SUFFIX)
    with temp.open("w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    return path


def write_state(out_dir: Path, state: dict[str, Any]) -> None:
    write_atomic(out_dir / STATE_FILE, json.dumps(state, indent=2))


def stored_resources(state: dict[str, Any], cpu: float) -> TrialResources | None:
    """The trial resources search.json records; None before they were decided (Ray was not up yet).
    A search.json written before they were recorded holds the GPU share alone ("gpu"): its trials
    held the space file's `cpu`, as a search still reads it."""
    if state.get("resources") is not None:
        return TrialResources.from_json(state["resources"])
    if state.get("gpu") is not None:
        return TrialResources(cpu=cpu, gpu=state["gpu"])
    return None


def record_resources(state: dict[str, Any], resources: TrialResources) -> None:
    state.pop("gpu", None)  # the older form, now inside `resources`
    state["resources"] = resources.to_json()


def study_record(out_dir: Path, name: str, rdb_url: str | None) -> dict[str, str]:
    """search.json's `optuna`: the study (named as the search) and its storage, a journal file's path or an RDB URL."""
    return {"study": name, "storage": rdb_url or str(out_dir / STUDY_FILE)}


def stored_study(state: dict[str, Any]) -> dict[str, str]:
    """Where the search's Optuna study lives; a search started before it had a storage of its own kept it in
    Tune's saved state, which this version does not read."""
    if "optuna" not in state:
        message = "this search keeps its Optuna study in Tune's saved state (an older version): resume it with that version"
        raise ConfigError(None, message, Path(state["out_dir"]))
    return state["optuna"]


def read_state(result_dir: Path) -> dict[str, Any]:
    """search.json of `result_dir`, or a ConfigError saying what the folder is instead."""
    path = result_dir / STATE_FILE
    if path.is_file():
        return json.loads(path.read_text())
    if (result_dir / SPACE_FILE).is_file():
        raise ConfigError(
            None,
            f"no {STATE_FILE} here: this search was stopped before it started; run it again with "
            f"python -m search run SPACE --name {result_dir.name} --results {result_dir.parent}",
            result_dir,
        )
    raise ConfigError(None, f"no {STATE_FILE} here: not a search's result folder", result_dir)


def claim_out_dir(out_dir: Path) -> None:
    """Refuse a folder that holds a search (started or finished) or files of someone else; a missing,
    empty or never-started one is free (a search killed before its search.json is simply run again)."""
    if not out_dir.is_dir():
        return
    names = {p.name for p in out_dir.iterdir()}
    if SUMMARY_FILE in names:
        raise ConfigError("--name", f"{out_dir} already holds a search, finished; choose another --name")
    if STATE_FILE in names:
        raise ConfigError(
            "--name", f"{out_dir} already holds a search; choose another --name, or resume it with: python -m search resume {out_dir}"
        )
    others = sorted(names - UNSTARTED_FILES)
    if others:
        raise ConfigError("--name", f"{out_dir} already holds other files ({', '.join(others[:3])}); choose another --name")


def discard_unstarted(out_dir: Path) -> None:
    """Remove what a search refused before it started (a bad --address, no GPU with --require-gpu)
    wrote, so bad input leaves nothing behind."""
    for name in UNSTARTED_FILES | {STATE_FILE}:
        (out_dir / name).unlink(missing_ok=True)
    if out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()


def refuse_finished(result_dir: Path, time_budget: float | None) -> None:
    """A finished search is not resumed, unless its time budget ended it and more time is given."""
    summary = result_dir / SUMMARY_FILE
    if not summary.is_file():
        return
    ran_out = bool((json.loads(summary.read_text()).get("time_budget") or {}).get("ran_out"))
    if ran_out and time_budget:
        return
    more = ": its time budget ran out; give it more with --time-budget, e.g. 2h" if ran_out else "; nothing to resume"
    raise ConfigError(None, f"this search has finished{more}", result_dir)
