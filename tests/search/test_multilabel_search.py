"""A real 2-trial search of the multilabel task: per-class metrics reach the nested MLflow runs."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

CLASSES = ["scratch", "rust", "chip", "crack"]
SPACE = {
    "name": "tiny_multilabel",
    "task": "multilabel",
    "data": {
        "kind": "synthetic_multilabel",
        "image_size": 32,
        "image_width": 64,
        "batch_size": 16,
        "synthetic": {"count": 48, "seed": 1},
    },
    "base": {
        "model": {"name": "resnet10t"},
        "loss": {"name": "focal", "focal_alpha": "auto"},
        "train": {"epochs": 1},
    },
    "space": {"optim.lr": {"loguniform": [1.0e-3, 1.0e-2]}},
    "search": {"metric": "val/macro_f1", "noise_seeds": 0, "confirm": False, "num_samples": 2, "max_concurrent": 2, "seed": 0},
    "scheduler": "none",
    "resources": {"cpu": 1, "gpu": 0},
}


def test_multilabel_search_logs_per_class_f1_to_nested_runs(run_search_cli):
    summary = run_search_cli(SPACE, timeout=300)
    # both trials finished
    assert [t["status"] for t in summary["trials"]].count("FAILED") == 0 and len(summary["trials"]) == 2
    client = MlflowClient(summary["tracking"]["uri"])
    experiment = client.get_experiment_by_name("tiny_multilabel")
    parent_id = summary["tracking"]["parent_run_id"]
    nested = [
        r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("mlflow.parentRunId") == parent_id
    ]
    assert len(nested) == 2
    for run_ in nested:
        metrics = run_.data.metrics
        # every defect class has its F1, AUROC and tuned threshold on each trial's run, beside the macro/micro F1
        for name in CLASSES:
            assert {f"val/f1/{name}", f"val/auroc/{name}", f"val/threshold/{name}"} <= set(metrics)
        overall = {"val/macro_f1", "val/micro_f1", "val/macro_f1_tuned", "val/miss_rate", "val/overkill_rate"}
        assert overall <= set(metrics)
        assert 0.0 <= metrics["val/f1/scratch"] <= 1.0
