"""What each trial of a search holds, decided once: the space file's `resources` against the GPUs there
are. The runner resolves it when Ray is up and records it in search.json, where every resume reads it;
`check` resolves it against this machine. Ray-free: the caller counts the GPUs."""

from __future__ import annotations

from dataclasses import replace

from rich.console import Console

from training.schema.errors import ConfigError
from training.schema.resources import TrialResources


def resolve_resources(
    requested: TrialResources, gpus: float, require_gpu: bool = False, console: Console | None = None
) -> TrialResources:
    """`requested`, or with a GPU share of 0 where `gpus` (the Ray cluster's) is 0: a ConfigError with
    `require_gpu`, else one warning on `console` (None: the caller says it in its own words)."""
    if requested.gpu <= 0 or gpus > 0:
        return requested
    if require_gpu:
        raise ConfigError("resources.gpu", f"{requested.gpu} GPU per trial asked with --require-gpu, but the Ray cluster has no GPU")
    if console is not None:
        console.print(f"[yellow]warning:[/] no GPU in the Ray cluster: resources.gpu {requested.gpu} -> 0, trials run on CPU")
    return replace(requested, gpu=0.0)
