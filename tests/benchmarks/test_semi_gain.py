"""benchmarks/semi_gain.py: supervised-only vs the Soft Teacher arms vs all labels (the headroom)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks.semi_gain import (
    ARMS, LABEL_HUNGRY, build_parser, detection_config, gains, headroom_shares, main, setting,
)


def test_semi_gain_smoke_compares_the_arms_from_one_backbone_init(run_benchmark):
    figures, stdout = run_benchmark("semi_gain")
    runs = {run["arm"]: run for run in figures["runs"]}
    # every arm ran on the same seed, each reporting the teacher's mAP50 and AP50 per defect class
    assert set(runs) == set(ARMS)
    assert {run["seed"] for run in runs.values()} == {0}
    for run in runs.values():
        assert 0.0 <= run["mAP50"] <= 1.0 and set(run["AP50"]) == {"scratch", "rust", "chip", "crack"}
    # with a test split, the figures are the teacher's on it, at each of the last epochs
    assert figures["figure"] == "test_mAP50"
    for run in runs.values():
        assert 0.0 <= run["test_mAP50"] <= 1.0 and run["test_mAP50"] == run["test_mAP50_by_epoch"][-1]
    # all labels: the same labeled steps in fewer epochs (2 x 0.1 / 0.95 rounds to 1)
    assert len(runs["all_labels"]["mAP50_by_epoch"]) == 1 and len(runs["supervised"]["mAP50_by_epoch"]) == 2
    assert runs["all_labels"]["pseudo"]["train/pseudo_kept_ratio"] is None
    # the share of the headroom each semi arm closes, per seed
    for arm in ("thresholds", "ignore", "soft_teacher"):
        assert figures["headroom_shares"][arm]["seeds"] == [0]
    # supervised-only never pseudo-labels; the semi arms report kept ratios, and only the full Soft
    # Teacher weighs background samples (a probability)
    assert runs["supervised"]["pseudo"]["train/pseudo_kept_ratio"] is None
    assert runs["thresholds"]["pseudo"]["train/pseudo_kept_ratio"] is not None
    assert runs["thresholds"]["pseudo"]["train/pseudo_bg_weight"] is None
    assert 0.0 < runs["soft_teacher"]["pseudo"]["train/pseudo_bg_weight"] < 1.0
    # the gain of each semi arm over supervised-only, per seed
    for arm in ("thresholds", "soft_teacher"):
        gain = figures["gains"][arm]["per_seed"]["0"]
        assert math.isclose(gain, runs[arm]["test_mAP50"] - runs["supervised"]["test_mAP50"], abs_tol=1e-3)
        tail = figures["gains_tail"][arm]["per_seed"]["0"]
        assert math.isclose(tail, runs[arm]["test_mAP50_tail"] - runs["supervised"]["test_mAP50_tail"], abs_tol=1e-3)
    # the steadier figure is the mean of the last epochs' mAP50 (all of them in a 2-epoch smoke run)
    for run in runs.values():
        assert math.isclose(run["mAP50_tail"], sum(run["mAP50_by_epoch"]) / len(run["mAP50_by_epoch"]), abs_tol=1e-3)
    # the teacher's box precision and recall above cls when burn-in ends and at the last epoch, per arm
    for run in runs.values():
        quality = run["pseudo_quality"]["val/pseudo_recall_cls"]
        assert 0.0 <= quality["burn_in_end"] <= 1.0 and 0.0 <= quality["last"] <= 1.0
    # the backbone came from a classifier model.pt written in the run
    assert figures["classifier"]["val/accuracy"] >= 0.0
    assert stdout.strip().splitlines()[-1].strip().startswith("share of the headroom closed:")


def test_more_seeds_can_be_added_by_a_later_run():
    # seeds 3 and 4 beside an earlier run's 0-2, in the full setting otherwise
    s = setting(build_parser().parse_args(["--seeds", "2", "--first-seed", "3"]))
    assert s.seeds == (3, 4) and s.epochs == LABEL_HUNGRY.epochs and s.labeled_fraction == LABEL_HUNGRY.labeled_fraction
    assert setting(build_parser().parse_args([])).seeds == LABEL_HUNGRY.seeds


def test_the_unsupervised_ramp_reaches_the_semi_arms_configs():
    s = setting(build_parser().parse_args(["--ramp", "10"]))
    for arm in ("thresholds", "soft_teacher"):
        assert detection_config(s, arm, 0, Path("classifier_model.pt")).semi.unsup_ramp_epochs == 10
    assert detection_config(LABEL_HUNGRY, "thresholds", 0, Path("classifier_model.pt")).semi.unsup_ramp_epochs == 0


def test_an_ignore_zone_and_a_subset_of_arms_can_be_run():
    s = setting(build_parser().parse_args(["--arms", "thresholds", "--ignore", "0.05"]))
    assert s.arms == ("thresholds",)
    assert detection_config(s, "thresholds", 0, Path("classifier_model.pt")).semi.thresholds.ignore == 0.05
    assert detection_config(LABEL_HUNGRY, "thresholds", 0, Path("classifier_model.pt")).semi.thresholds.ignore == 1.0
    # without a supervised run of the same seed there is no gain to report
    runs = [{"arm": "thresholds", "seed": 0, "mAP50": 0.5}, {"arm": "supervised", "seed": 1, "mAP50": 0.4}]
    assert gains(runs) == {}
    runs.append({"arm": "thresholds", "seed": 1, "mAP50": 0.45})
    assert gains(runs)["thresholds"]["per_seed"] == {1: 0.05}


def test_the_share_of_the_headroom_is_mean_gain_over_mean_headroom_with_an_interval_over_seeds():
    runs = [
        {"arm": arm, "seed": seed, "mAP50": value}
        for seed, (sup, semi, full) in enumerate([(0.30, 0.36, 0.50), (0.20, 0.22, 0.40), (0.25, 0.31, 0.45)])
        for arm, value in (("supervised", sup), ("thresholds", semi), ("all_labels", full))
    ]
    share = headroom_shares(runs)["thresholds"]
    # gains 0.06, 0.02, 0.06 against headroom 0.20 each: 0.14 / 0.60
    assert math.isclose(share["share"], 0.14 / 0.60, abs_tol=1e-3)
    assert share["per_seed"] == {0: 0.3, 1: 0.1, 2: 0.3}
    low, high = share["interval"]
    assert 0.1 <= low <= share["share"] <= high <= 0.3
    # an arm without runs, or a seed without the all-labels run, is left out
    assert "ignore" not in headroom_shares(runs)
    assert headroom_shares([r for r in runs if (r["arm"], r["seed"]) != ("all_labels", 2)])["thresholds"]["seeds"] == [0, 1]


def test_the_headroom_arm_sees_as_many_images_as_a_semi_arm():
    path = Path("classifier_model.pt")
    supervised = detection_config(LABEL_HUNGRY, "supervised", 0, path)
    full = detection_config(LABEL_HUNGRY, "all_labels", 0, path)
    assert full.semi.labeled_fraction == ARMS["all_labels"]["labeled_fraction"] and full.semi.unsup_weight == 0
    # 80 epochs at 5 % labeled, each labeled image with 2 unlabeled ones = 80 x 0.05 / 0.95 x 3 = 12.6
    # epochs at 95 %; burn-in (the EMA's start) scaled alike
    assert (full.train.epochs, full.semi.burn_in_epochs) == (13, 6)
    assert supervised.train.epochs == 80 and supervised.data.synthetic.preset == "label_hungry"


def test_report_adds_up_the_runs_of_several_invocations(tmp_path, capsys):
    run = {"wall_s": 1.0, "mAP50": 0.0, "mAP50_tail": 0.0, "pseudo": {}, "pseudo_quality": {}}
    quality = {f"val/pseudo_{m}_cls": {"burn_in_end": 0.1, "last": 0.2} for m in ("precision", "recall")}
    lines = [
        {"arm": "supervised", "seed": 0, "test_mAP50": 0.30, "test_mAP50_tail": 0.30},
        {"arm": "all_labels", "seed": 0, "test_mAP50": 0.35, "test_mAP50_tail": 0.30},  # superseded below
        {"arm": "ignore", "seed": 0, "test_mAP50": 0.35, "test_mAP50_tail": 0.34},
        {"arm": "all_labels", "seed": 0, "test_mAP50": 0.50, "test_mAP50_tail": 0.45},
    ]
    log = tmp_path / "semi_gain_runs.jsonl"
    log.write_text("".join(json.dumps(run | {"pseudo_quality": quality} | line) + "\n" for line in lines))
    main(["--report", "--out", str(tmp_path)])
    figures = json.loads((tmp_path / "semi_gain.json").read_text())
    # the latest run of each arm and seed counts: all_labels' headroom is 0.50 - 0.30
    assert [r["arm"] for r in figures["runs"]] == ["supervised", "ignore", "all_labels"]
    assert figures["headroom_shares"]["ignore"]["share"] == 0.25  # 0.05 of 0.20
    assert "ignore +0.25" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no runs logged"):
        main(["--report", "--out", str(tmp_path / "empty")])
