"""MLflow logging through MlflowClient: runs, batched metrics/params/tags, artifacts.

Shared by `python -m training train` and the search driver; `training` itself never needs it
(import this module only where logging happens).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from training.metrics.figures import histogram_figure, is_histogram

MAX_PARAM_LENGTH = 6000
# MLflow 3 files an experiment as GenAI or model training by this experiment tag (the UI's experiment
# kind selector writes the same tag); ours train vision models.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"


def default_tracking_uri(results_dir: Path) -> str:
    return f"sqlite:///{(results_dir / 'mlflow.db').resolve()}"


def _params(values: dict[str, Any]) -> list[Param]:
    return [Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in sorted(values.items())]


class Tracker:
    """A thin layer over MlflowClient for one search (or one training run)."""

    def __init__(self, uri: str, experiment: str, artifact_root: Path | None = None):
        self.uri = uri
        self.experiment = experiment
        self._client: MlflowClient | None = None
        found = self.client.get_experiment_by_name(experiment)
        if found is not None:
            self.experiment_id = found.experiment_id
            if EXPERIMENT_KIND_TAG not in found.tags:  # made by an older version, or by hand
                self.client.set_experiment_tag(self.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
        else:
            location = artifact_root.resolve().as_uri() if artifact_root and uri.startswith("sqlite") else None
            tags = {EXPERIMENT_KIND_TAG: MODEL_TRAINING}
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=location, tags=tags)

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment state; a client holds locks and reconnects.
        return {**self.__dict__, "_client": None}

    def start_run(self, name: str, tags: dict[str, str] | None = None, parent: str | None = None) -> str:
        tags = dict(tags or {})
        if parent:
            tags["mlflow.parentRunId"] = parent
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        return run.info.run_id

    def log(
        self,
        run_id: str,
        metrics: dict[str, float] | None = None,
        params: dict[str, Any] | None = None,
        tags: dict[str, Any] | None = None,
        step: int = 0,
    ) -> None:
        """One batched write for everything given."""
        self.log_steps(run_id, [(step, metrics or {})], params=params, tags=tags)

    def log_steps(
        self,
        run_id: str,
        steps: list[tuple[int, dict[str, float]]],
        params: dict[str, Any] | None = None,
        tags: dict[str, Any] | None = None,
    ) -> None:
        """One batched write of several steps' metrics (and params, tags): one store transaction."""
        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, step) for step, metrics in steps for k, v in metrics.items() if _is_number(v)],
            params=_params(params or {}),
            tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
        )

    def log_artifact(self, run_id: str, path: Path) -> None:
        self.client.log_artifact(run_id, str(path))

    def log_extras(self, run_id: str, extras: dict[str, Any], epoch: int) -> None:
        """A task's per-epoch extras (`Task.epoch_extras`) as `extras/epoch_NNN.json`; each entry shaped
        like a histogram ({"bins", "counts"}) also as a plot, `extras/<name>_epoch_NNN.png`."""
        if extras:
            self.client.log_dict(run_id, extras, f"extras/epoch_{epoch:03d}.json")
        for name, value in extras.items():
            if is_histogram(value):
                figure = histogram_figure(name, value, epoch)
                self.client.log_figure(run_id, figure, f"extras/{name}_epoch_{epoch:03d}.png")

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


