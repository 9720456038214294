"""What a trial is for, written into its Tune config under `replica` by the searcher (search/confirm.py).

- a sampled trial: no `replica` entry (the sampler chose it; ASHA may stop it);
- `baseline`: a search.baseline point (`point` = its index); point 0 is the reference config whose
  seeds measure the noise, and runs its full budget;
- `noise`: the reference config again with another seed, early in the search (full budget);
- `confirm`: a top config again with a fresh seed, after sampling (full budget).

`group` is the trial id of the config's first run: the runs of one config share it. Ray-free.
"""

from __future__ import annotations

import re
from typing import Any

REPLICA_KEY = "replica"
BASELINE, NOISE, CONFIRM = "baseline", "noise", "confirm"


def replica(config: dict[str, Any] | None) -> dict[str, Any]:
    return (config or {}).get(REPLICA_KEY) or {}


def role(config: dict[str, Any] | None) -> str | None:
    return replica(config).get("role")


def group_of(config: dict[str, Any] | None, trial_id: str) -> str:
    """The trial id of the first run of this trial's config."""
    return replica(config).get("group", trial_id)


def seed_of(config: dict[str, Any] | None) -> int | None:
    """The seed a replica trains with (None: the base config's seed)."""
    return replica(config).get("seed")


def is_reference(config: dict[str, Any] | None) -> bool:
    """A run of the config whose seeds measure the noise."""
    return bool(replica(config).get("reference"))


def is_replica(config: dict[str, Any] | None) -> bool:
    """Another seed of a config that ran before (noise or confirmation): not a sampled candidate."""
    return role(config) in (NOISE, CONFIRM)


def is_replica_run(trial: dict[str, Any]) -> bool:
    """A summary.json trial record of an extra seed (noise or confirmation): the verdict's, not a
    point of the space for leaderboards, fronts, importance or `export --pick`."""
    return trial.get("role") in (NOISE, CONFIRM)


def runs_full_budget(config: dict[str, Any] | None) -> bool:
    """Replicas and the reference baseline: never stopped early, and always saved at their last epoch."""
    return is_replica(config) or is_reference(config)


def without_replica(config: dict[str, Any]) -> dict[str, Any]:
    """The sampler's values alone."""
    return {k: v for k, v in config.items() if k != REPLICA_KEY}


def creation_index(trial) -> int | None:
    """Tune's 1-based creation order of a trial (the counter its experiment tag starts with): the same
    search names its trials the same way, and draws their ASHA brackets the same way."""
    match = re.match(r"(\d+)_", getattr(trial, "experiment_tag", "") or "")
    return int(match[1]) if match else None
