"""A real 2-trial semi-supervised detection search: Ray Tune + Optuna -> MLflow nested runs with the
teacher's kept ratio, per-class AP and the pseudo-score histogram artifact."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

DEFECTS = ["scratch", "rust", "chip", "crack"]
SPACE = {
    "name": "tiny_semi",
    "task": "semi_supervised_detection",
    "data": {"kind": "synthetic", "image_size": 32, "batch_size": 4, "synthetic": {"count": 24, "seed": 1, "difficulty": 0.2}},
    "base": {
        "model": {"name": "resnet10t", "anchor_sizes": [8, 16, 32]},
        "optim": {"schedule": "constant"},
        "augment": {"hflip": 0.5, "brightness": 0.3, "translate": 0.1},
        "semi": {"burn_in_epochs": 1, "labeled_fraction": 0.5},
    },
    "space": {
        "semi.thresholds.initial": {"uniform": [0.05, 0.2]},
        "semi.ema_momentum": {"uniform": [0.9, 0.99]},
    },
    "search": {"metric": "val/mAP50", "mode": "max", "noise_seeds": 0, "confirm": False, "num_samples": 2, "max_concurrent": 2, "seed": 0},
    "scheduler": {"name": "asha", "max_epochs": 2, "grace_period": 2, "reduction_factor": 2},
    "resources": {"cpu": 1, "gpu": 0},
}


def test_semi_detection_search_logs_kept_ratio_per_class_ap_and_the_histogram(run_search_cli, tmp_path):
    summary = run_search_cli(SPACE)
    assert [t["status"] for t in summary["trials"]] == ["DONE", "DONE"]
    client = MlflowClient(summary["tracking"]["uri"])
    experiment = client.get_experiment_by_name("tiny_semi")
    parent_id = summary["tracking"]["parent_run_id"]
    nested = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("mlflow.parentRunId") == parent_id]
    assert len(nested) == 2
    for run_ in nested:
        # the teacher's metrics with per-class AP, the student's mAP50, and the kept ratio after burn-in
        wanted = {"val/mAP50", "val/student_mAP50", "train/pseudo_kept_ratio", "train/unsup_loss"}
        assert wanted | {f"val/AP50/{c}" for c in DEFECTS} <= set(run_.data.metrics)
        history = client.get_metric_history(run_.info.run_id, "train/pseudo_kept_ratio")
        assert [m.step for m in history] == [2] and 0.0 <= history[0].value <= 1.0
        # the pseudo-score histogram of epoch 2 is on the run, as JSON and as a PNG
        artifacts = {a.path for a in client.list_artifacts(run_.info.run_id, "extras")}
        assert {"extras/epoch_002.json", "extras/pseudo_scores_epoch_002.png"} <= artifacts
        local = client.download_artifacts(run_.info.run_id, "extras/pseudo_scores_epoch_002.png", str(tmp_path))
        with open(local, "rb") as png:
            assert png.read(8) == b"\x89PNG\r\n\x1a\n"
