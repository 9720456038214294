"""Score trained models on an image set with bootstrap intervals: `python -m training evaluate`.

A saved run is a folder `python -m training train` wrote (config.yaml, model.pt = the model's
state_dict) or a search trial's checkpoint folder (state.pt = {"model", "config", ...}). Several
runs of one config (its seeds) make a group, whose estimate is the mean over its models; a second
group (`--against`) gets the paired difference per metric (`training.metrics.bootstrap`).

`plan` checks everything that needs no torch (folders, configs, data, split, classes) before torch
loads, so a mistake is answered at once; only a checkpoint's config needs torch to be read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from training.config import DataConfig, TrainConfig
from training.data import check_data, class_names, load_splits
from training.data.samples import ImageSet
from training.metrics.bootstrap import LEVEL, Comparison, Estimate, interval, paired_difference
from training.schema.config_file import load_config, read_yaml, suggestion, validate_model
from training.schema.errors import ConfigError
from training.schema.task_keys import check_task_name

if TYPE_CHECKING:
    from rich.console import RenderableType

    from training.tasks.base import ModelOutputs

CONFIG_FILE, WEIGHTS_FILE = "config.yaml", "model.pt"  # what `python -m training train` writes
CHECKPOINT_FILE = "state.pt"  # training.loop.fit.CHECKPOINT_FILE (importing fit would load torch)
SPLITS = ("test", "val")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class SavedRun:
    """A trained model on disk and its config."""

    folder: Path
    weights: Path  # model.pt, or state.pt
    config_file: Path  # where its config comes from, for error messages: config.yaml or state.pt
    cfg: TrainConfig
    checkpoint: dict[str, Any] | None = None  # state.pt, read for its config

    def model_state(self) -> dict[str, Any]:
        """The model's state_dict."""
        if self.checkpoint is not None:
            return self.checkpoint["model"]
        return _torch_load(self.weights, weights_only=True)


def _torch_load(path: Path, weights_only: bool) -> Any:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as exc:  # a truncated or foreign file: unpickling fails in many ways
        raise ConfigError(None, f"cannot read it as saved torch weights ({type(exc).__name__})", path) from None


def find_run(folder: Path) -> SavedRun:
    """The run saved in `folder`: config.yaml + model.pt, else a checkpoint's state.pt."""
    if not folder.is_dir():
        raise ConfigError(None, "run folder not found", folder)
    if (folder / WEIGHTS_FILE).is_file():
        return SavedRun(folder, folder / WEIGHTS_FILE, folder / CONFIG_FILE, load_config(folder / CONFIG_FILE))
    path = folder / CHECKPOINT_FILE
    if not path.is_file():
        message = f"no {WEIGHTS_FILE} (from python -m training train) nor {CHECKPOINT_FILE} (a search checkpoint) in it"
        raise ConfigError(None, message, folder)
    # a fit state (from our own runs) holds plain python objects besides tensors
    state = _torch_load(path, weights_only=False)
    if not isinstance(state, dict) or not {"model", "config"} <= state.keys():
        raise ConfigError(None, "expected a checkpoint holding 'model' and 'config'", path)
    try:
        cfg = validate_model(TrainConfig, state["config"])
    except ConfigError as exc:
        raise exc.with_file(path) from None
    return SavedRun(folder, path, path, cfg, state)


def read_data_file(path: Path) -> dict[str, Any]:
    """The `data:` section of a data file (validated once merged into a run's data)."""
    raw = read_yaml(path)
    for key in map(str, raw):
        if key != "data":
            raise ConfigError(key, "unknown key: a data file holds a data: section only" + suggestion(key, ["data"]), path)
    if not isinstance(raw.get("data"), dict):
        raise ConfigError("data", "expected a data: section, a mapping as in a training config", path)
    return raw["data"]


def _merged(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def scored_data(run: SavedRun, override: dict[str, Any] | None, data_file: Path | None) -> DataConfig:
    """The data `run` is scored on: its own, or its own with the data file's keys replacing its keys
    (what the file leaves out, above all the image size the model was trained at, stays the run's).
    Another dataset must have the run's classes, in its order: the model's outputs are indexed by them."""
    try:
        check_task_name(run.cfg.task)
        check_data(run.cfg.data)  # its classes name the model's outputs, even when scored on other data
    except ConfigError as exc:
        raise exc.with_file(run.config_file) from None
    if override is None:
        return run.cfg.data
    try:
        data = validate_model(DataConfig, _merged(run.cfg.data.model_dump(mode="json"), override), prefix="data")
        check_data(data)
    except ConfigError as exc:
        raise exc.with_file(data_file) from None
    ours, theirs = class_names(data), class_names(run.cfg.data)
    if ours != theirs:
        raise ConfigError("data", f"classes {ours} differ from {theirs} of the run in {run.folder}", data_file)
    return data


def resolve_split(split: str | None, scored: list[tuple[DataConfig, Path]]) -> str:
    """`split`, checked to exist in every (data, file naming it); None = test when the first data has
    one, else val."""
    if split is not None and split not in SPLITS:
        raise ConfigError("--split", f"expected one of {', '.join(SPLITS)}, got '{split}'")
    from training.data import has_test  # the data layer's test split

    chosen = split or ("test" if has_test(scored[0][0]) else "val")
    if chosen == "test":
        for data, file in scored:
            if not has_test(data):
                raise ConfigError("data", "has no test split (--split test); use --split val or --data", file)
    return chosen


def split_images(data: DataConfig, split: str) -> ImageSet:
    """The images of `data`'s validation or test split."""
    if split == "val":
        return load_splits(data).val
    from training.data import load_test

    images = load_test(data)
    if images is None:
        raise ConfigError("data", "has no test split")
    return images


@dataclass
class Plan:
    """Checked input of an evaluation: the groups of runs and the data each run is scored on."""

    groups: list[list[SavedRun]]
    data: dict[Path, DataConfig]  # by run folder
    split: str
    data_file: Path | None = None


def plan(runs: list[Path], against: list[Path], split: str | None, data_file: Path | None) -> Plan:
    """Every check that needs no model: folders, configs, the data file, split and classes."""
    groups = [[find_run(folder) for folder in folders] for folders in (runs, against) if folders]
    override = read_data_file(data_file) if data_file is not None else None
    data = {r.folder: scored_data(r, override, data_file) for g in groups for r in g}
    chosen = resolve_split(split, [(data[r.folder], data_file or r.config_file) for g in groups for r in g])
    first = groups[0][0]
    for run in (r for g in groups for r in g):
        if class_names(data[run.folder]) != class_names(data[first.folder]):
            message = f"classes differ from those of {first.folder}: runs are compared on the same images"
            raise ConfigError("data", message, run.config_file)
    return Plan(groups, data, chosen, data_file)


@dataclass
class Evaluation:
    """Each model's metrics and the group(s)' intervals, from `score`."""

    plan: Plan
    images: int
    headline: str  # the metric the verdict reads (`ModelOutputs.headline` of the first group's task)
    per_model: dict[Path, dict[str, float]]
    resamples: int
    level: float
    seed: int
    intervals: dict[str, Estimate] = field(default_factory=dict)  # one group
    comparisons: dict[str, Comparison] = field(default_factory=dict)  # two groups: A = runs, B = --against

    def verdict(self) -> str:
        """One line on the headline metric: A beats B, B beats A, or no evidence (the interval holds 0)."""
        comparison = self.comparisons.get(self.headline)
        if comparison is None:
            return ""
        difference = comparison.difference
        if math.isnan(difference.lo) or difference.holds(0.0):
            return f"no evidence that A beats B on {self.headline}: A - B = {difference:+.3f}"
        winner = "A beats B" if difference.lo > 0 else "B beats A"
        return f"{winner} on {self.headline}: A - B = {difference:+.3f}"

    def to_json(self) -> dict[str, Any]:
        groups = self.plan.groups
        out: dict[str, Any] = {
            "split": self.plan.split,
            "data_file": str(self.plan.data_file) if self.plan.data_file else None,
            "images": self.images,
            "resamples": self.resamples,
            "level": self.level,
            "seed": self.seed,
            "headline": self.headline,
            "runs": [str(r.folder) for r in groups[0]],
            "against": [str(r.folder) for r in groups[1]] if len(groups) > 1 else [],
            "models": {str(folder): metrics for folder, metrics in self.per_model.items()},
        }
        if self.comparisons:
            out["metrics"] = {k: c.to_dict() for k, c in self.comparisons.items()}
            out["verdict"] = self.verdict()
        else:
            out["metrics"] = {k: e.to_dict() for k, e in self.intervals.items()}
        return _without_nan(out)


def _without_nan(value: Any) -> Any:
    """NaN (an undefined metric) as null: JSON has no NaN."""
    if isinstance(value, dict):
        return {k: _without_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nan(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def model_outputs(run: SavedRun, data: DataConfig, images: ImageSet, device: str) -> ModelOutputs:
    """The outputs of `run`'s model on `images` (of `data`), on `device` (auto: CUDA when there is one)."""
    from training.loop.runtime import Runtime
    from training.tasks import get_task

    cfg = run.cfg.model_copy(update={"data": data})
    runtime = Runtime.from_config(cfg.train.model_copy(update={"device": device}))
    runtime.apply()
    try:
        return get_task(cfg.task).outputs(cfg, runtime, run.model_state(), images)
    except ConfigError as exc:
        raise exc.with_file(run.config_file) from None


def score(
    planned: Plan, resamples: int | None = None, level: float = LEVEL, seed: int = 0, device: str = "auto"
) -> Evaluation:
    """Every model's outputs on the planned images, and the bootstrap of its group(s); `resamples`
    None = what the task's outputs afford (`ModelOutputs.resamples`)."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device", "torch sees no CUDA GPU here; use auto or cpu")
    images: dict[tuple[str, str], ImageSet] = {}
    outputs: dict[Path, ModelOutputs] = {}  # a run in both groups is scored once
    first: ImageSet | None = None
    for run in (r for g in planned.groups for r in g):
        if run.folder in outputs:
            continue
        data = planned.data[run.folder]
        key = (data.model_dump_json(), planned.split)
        if key not in images:
            images[key] = split_images(data, planned.split)
        scored = images[key]
        if not len(scored):
            raise ConfigError("data", f"its {planned.split} split holds no image", planned.data_file or run.config_file)
        first = scored if first is None else first
        if len(scored) != len(first) or not np.array_equal(scored.labels, first.labels):
            message = f"its {planned.split} images differ from the first run's: runs are compared on the same images"
            raise ConfigError("data", message, planned.data_file or run.config_file)
        outputs[run.folder] = model_outputs(run, data, scored, device)
    groups = [[outputs[r.folder] for r in g] for g in planned.groups]
    resamples = resamples or type(groups[0][0]).resamples
    evaluation = Evaluation(
        plan=planned,
        images=len(first),
        headline=type(groups[0][0]).headline,
        per_model={folder: out.metrics() for folder, out in outputs.items()},
        resamples=resamples,
        level=level,
        seed=seed,
    )
    if len(groups) == 1:
        evaluation.intervals = interval(groups[0], resamples, level, seed)
    else:
        evaluation.comparisons = paired_difference(groups[0], groups[1], resamples, level, seed)
    return evaluation


def report(evaluation: Evaluation) -> list[RenderableType]:
    """The table of each metric with its interval (both groups and A - B with --against), and the verdict."""
    from rich.table import Table

    groups = evaluation.plan.groups
    described = [f"{len(g)} model{'s' * (len(g) > 1)}: {', '.join(str(r.folder) for r in g)}" for g in groups]
    level = f"{evaluation.level:.0%}"
    caption = f"{evaluation.images} {evaluation.plan.split} images, {evaluation.resamples} resamples, {level} intervals"
    table = Table(title=caption, title_justify="left")
    table.add_column("metric")
    if not evaluation.comparisons:
        table.add_column(f"A ({level} interval)", justify="right")
        for name, estimate in evaluation.intervals.items():
            table.add_row(name, f"{estimate:.3f}")
        return [f"A = {described[0]}", table]
    for column in ("A", "B", "A - B", "P(A > B)"):
        table.add_column(column, justify="right")
    for name, c in evaluation.comparisons.items():
        table.add_row(name, f"{c.a:.3f}", f"{c.b:.3f}", f"{c.difference:+.3f}", f"{c.a_above:.2f}")
    return [f"A = {described[0]}", f"B = {described[1]}", table, evaluation.verdict()]
