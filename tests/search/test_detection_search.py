"""A real 2-trial detection search: space file -> Ray Tune + Optuna -> MLflow nested runs with per-class AP."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

DEFECTS = ["scratch", "rust", "chip", "crack"]
SPACE = {
    "name": "tiny_detection",
    "task": "detection",
    "data": {"kind": "synthetic", "image_size": 32, "batch_size": 8, "synthetic": {"count": 24, "seed": 0}},
    "base": {
        "model": {"name": "resnet10t", "anchor_sizes": [8, 16, 32]},
        "loss": {"rpn": {"name": "focal"}, "roi": {"name": "focal"}},
        "optim": {"schedule": "constant"},
    },
    "space": {
        "optim.lr": {"loguniform": [1.0e-4, 1.0e-2]},
        "model.anchor_ratios": {"choice": [[0.5, 1.0, 2.0], [0.25, 0.5, 1.0]]},
        "loss.roi.focal_gamma": {"uniform": [1.0, 3.0]},
    },
    "search": {"metric": "val/mAP50", "mode": "max", "noise_seeds": 0, "confirm": False, "num_samples": 2, "max_concurrent": 2, "seed": 0},
    "scheduler": {"name": "asha", "max_epochs": 1, "grace_period": 1, "reduction_factor": 2},
    "resources": {"cpu": 1, "gpu": 0},
}


def test_detection_search_logs_per_class_ap_to_nested_runs(run_search_cli):
    summary = run_search_cli(SPACE)
    # both trials finished, each with one of the anchor ratio sets (lists pass through the search intact)
    assert [t["status"] for t in summary["trials"]] == ["DONE", "DONE"]
    ratio_sets = SPACE["space"]["model.anchor_ratios"]["choice"]
    assert all(t["params"]["model.anchor_ratios"] in ratio_sets for t in summary["trials"])
    client = MlflowClient(summary["tracking"]["uri"])
    experiment = client.get_experiment_by_name("tiny_detection")
    parent_id = summary["tracking"]["parent_run_id"]
    runs = client.search_runs([experiment.experiment_id])
    nested = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_id]
    assert len(nested) == 2
    for run_ in nested:
        # every trial run holds mAP50, mAP, the image-level rates and the AP at IoU 0.5 of each defect class
        wanted = {"val/mAP50", "val/mAP", "val/miss_rate", "val/overkill_rate"} | {f"val/AP50/{c}" for c in DEFECTS}
        assert wanted <= set(run_.data.metrics)
        assert "val/AP50/good" not in run_.data.metrics
        assert run_.data.params["task"] == "detection"
