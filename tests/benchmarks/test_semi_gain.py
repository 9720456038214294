"""benchmarks/semi_gain.py: supervised-only vs Soft Teacher (thresholds) vs Soft Teacher (+ background weights, jitter)."""

from __future__ import annotations

import math
from pathlib import Path

from benchmarks.semi_gain import FULL, build_parser, detection_config, gains, setting


def test_semi_gain_smoke_compares_the_three_arms_from_one_backbone_init(run_benchmark):
    figures, stdout = run_benchmark("semi_gain")
    runs = {run["arm"]: run for run in figures["runs"]}
    # the three arms ran on the same seed, each reporting the teacher's mAP50 and AP50 per defect class
    assert set(runs) == {"supervised", "thresholds", "soft_teacher"}
    assert {run["seed"] for run in runs.values()} == {0}
    for run in runs.values():
        assert 0.0 <= run["mAP50"] <= 1.0 and set(run["AP50"]) == {"scratch", "rust", "chip", "crack"}
    # supervised-only never pseudo-labels; the semi arms report kept ratios, and only the full Soft
    # Teacher weighs background samples (a probability)
    assert runs["supervised"]["pseudo"]["train/pseudo_kept_ratio"] is None
    assert runs["thresholds"]["pseudo"]["train/pseudo_kept_ratio"] is not None
    assert runs["thresholds"]["pseudo"]["train/pseudo_bg_weight"] is None
    assert 0.0 < runs["soft_teacher"]["pseudo"]["train/pseudo_bg_weight"] < 1.0
    # the gain of each semi arm over supervised-only, per seed
    for arm in ("thresholds", "soft_teacher"):
        gain = figures["gains"][arm]["per_seed"]["0"]
        assert math.isclose(gain, runs[arm]["mAP50"] - runs["supervised"]["mAP50"], abs_tol=1e-3)
        tail = figures["gains_tail"][arm]["per_seed"]["0"]
        assert math.isclose(tail, runs[arm]["mAP50_tail"] - runs["supervised"]["mAP50_tail"], abs_tol=1e-3)
    # the steadier figure is the mean of the last epochs' mAP50 (all of them in a 2-epoch smoke run)
    for run in runs.values():
        assert math.isclose(run["mAP50_tail"], sum(run["mAP50_by_epoch"]) / len(run["mAP50_by_epoch"]), abs_tol=1e-3)
    # the teacher's box precision and recall above cls when burn-in ends and at the last epoch, per arm
    for run in runs.values():
        quality = run["pseudo_quality"]["val/pseudo_recall_cls"]
        assert 0.0 <= quality["burn_in_end"] <= 1.0 and 0.0 <= quality["last"] <= 1.0
    # the backbone came from a classifier model.pt written in the run
    assert figures["classifier"]["val/accuracy"] >= 0.0
    assert stdout.strip().splitlines()[-1].startswith("gains:")


def test_more_seeds_can_be_added_by_a_later_run():
    # seeds 3 and 4 beside an earlier run's 0-2, in the full setting otherwise
    s = setting(build_parser().parse_args(["--seeds", "2", "--first-seed", "3"]))
    assert s.seeds == (3, 4) and s.epochs == FULL.epochs and s.labeled_fraction == FULL.labeled_fraction
    assert setting(build_parser().parse_args([])).seeds == FULL.seeds


def test_the_unsupervised_ramp_reaches_the_semi_arms_configs():
    s = setting(build_parser().parse_args(["--ramp", "10"]))
    for arm in ("thresholds", "soft_teacher"):
        assert detection_config(s, arm, 0, Path("classifier_model.pt")).semi.unsup_ramp_epochs == 10
    assert detection_config(FULL, "thresholds", 0, Path("classifier_model.pt")).semi.unsup_ramp_epochs == 0


def test_an_ignore_zone_and_a_subset_of_arms_can_be_run():
    s = setting(build_parser().parse_args(["--arms", "thresholds", "--ignore", "0.05"]))
    assert s.arms == ("thresholds",)
    assert detection_config(s, "thresholds", 0, Path("classifier_model.pt")).semi.thresholds.ignore == 0.05
    assert detection_config(FULL, "thresholds", 0, Path("classifier_model.pt")).semi.thresholds.ignore == 1.0
    # without a supervised run of the same seed there is no gain to report
    runs = [{"arm": "thresholds", "seed": 0, "mAP50": 0.5}, {"arm": "supervised", "seed": 1, "mAP50": 0.4}]
    assert gains(runs) == {}
    runs.append({"arm": "thresholds", "seed": 1, "mAP50": 0.45})
    assert gains(runs)["thresholds"]["per_seed"] == {1: 0.05}
