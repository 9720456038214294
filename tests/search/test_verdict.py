"""search/verdict.py's last line: the gain with its interval, and what it means for the export."""

from __future__ import annotations

import math

import pytest

from search.verdict import seed_half_width, validation_differences, verdict_text, with_seed_noise
from training.metrics.bootstrap import Estimate


def result(lo: float, hi: float, exported_baseline: bool) -> dict:
    evidence = lo > 0
    return {
        "split": "test",
        "metric": "macro_f1",
        "differences": {"macro_f1": {"value": (lo + hi) / 2, "lo": lo, "hi": hi}, "miss_rate": {"value": -0.1, "lo": -0.2, "hi": 0.0}},
        "evidence": evidence,
        "exported_baseline": exported_baseline,
    }


def test_an_interval_holding_zero_says_there_is_no_evidence():
    text = verdict_text(result(-0.02, 0.06, exported_baseline=True), sign=1.0)
    assert text.startswith("winner vs baseline on test: macro_f1 +0.020 [-0.020, +0.060]; miss_rate -0.100")
    assert "(rates: lower is better)" in text
    assert "No evidence the winner beats the baseline" in text and "favours" not in text


def test_a_winner_the_test_favours_but_confirmation_did_not_export_is_named_so():
    # the test never changes the pick; the user is told the two disagree and what would settle it
    text = verdict_text(result(0.01, 0.12, exported_baseline=True), sign=1.0)
    assert "No evidence" not in text
    assert "the test favours the winner, but the baseline was exported" in text.lower()
    assert "search.confirm.seeds" in text


def test_an_exported_winner_the_test_confirms_needs_no_caveat():
    text = verdict_text(result(0.01, 0.12, exported_baseline=False), sign=1.0)
    assert text == "winner vs baseline on test: macro_f1 +0.065 [+0.010, +0.120]; miss_rate -0.100 [-0.200, +0.000] (rates: lower is better)"


def runs(*scores: float) -> list[dict]:
    return [{"metrics": {"val/macro_f1": s}, "last_metrics": {"val/macro_f1": s, "val/miss_rate": 0.1}} for s in scores]


def test_one_run_a_side_has_no_interval_and_claims_nothing():
    # resampling one run gives [d, d]: printed, it would read as certainty
    (gain,) = validation_differences(runs(0.8), runs(0.4), ["macro_f1"], "val/macro_f1").values()
    assert gain.value == pytest.approx(0.4) and math.isnan(gain.lo) and math.isnan(gain.hi)
    assert f"{gain:+.3f}" == "+0.400 (no interval)"
    result = {"split": "validation", "metric": "macro_f1", "differences": {"macro_f1": gain.to_dict()}, "evidence": False}
    assert "No evidence either way: one run a side has no interval" in verdict_text(result, sign=1.0)


def test_seeds_give_a_validation_interval():
    (gain,) = validation_differences(runs(0.8, 0.7, 0.75), runs(0.4, 0.5), ["macro_f1"], "val/macro_f1").values()
    assert gain.lo < gain.value < gain.hi and gain.lo > 0


def test_a_test_split_the_verdict_could_not_use_is_named_with_the_reason():
    result = {"split": "validation", "metric": "macro_f1", "differences": {"macro_f1": {"value": 0.1, "lo": 0.05, "hi": 0.15}},
              "evidence": True, "unscored_test": True}  # fmt: skip
    text = verdict_text(result, sign=1.0)
    assert text.startswith("winner vs baseline on validation (optimistic: these images chose the configs; the baseline's")
    assert "stopped early and kept no model to score the test split with" in text


def test_the_measured_seed_noise_widens_a_test_interval_in_quadrature():
    # two models a side understate the seed spread: the search's pooled noise is added to each side
    half = seed_half_width(0.02, 2, 3)
    assert half == pytest.approx(1.96 * 0.02 * math.sqrt(1 / 2 + 1 / 3))
    wide = with_seed_noise(Estimate(-0.035, -0.062, -0.007), half, "test")
    assert wide.value == -0.035
    assert wide.lo == pytest.approx(-0.035 - math.hypot(0.027, half)) and wide.hi == pytest.approx(-0.035 + math.hypot(0.028, half))
    assert wide.hi > 0  # the bootstrap alone called it a loss; with the seed noise there is no evidence either way


def test_on_validation_the_wider_of_the_bootstrap_and_the_seed_noise_is_kept():
    assert with_seed_noise(Estimate(0.1, 0.0, 0.2), 0.05, "validation") == Estimate(0.1, 0.0, 0.2)
    assert with_seed_noise(Estimate(0.1, 0.08, 0.12), 0.05, "validation") == Estimate(0.1, pytest.approx(0.05), pytest.approx(0.15))


def test_unmeasured_noise_leaves_the_interval_and_one_run_a_side_gets_the_seed_term_alone():
    assert with_seed_noise(Estimate(0.1, 0.05, 0.15), math.nan, "test") == Estimate(0.1, 0.05, 0.15)
    assert math.isnan(seed_half_width(math.nan, 2, 2))
    assert with_seed_noise(Estimate(0.1, math.nan, math.nan), 0.04, "validation") == Estimate(0.1, pytest.approx(0.06), pytest.approx(0.14))


def test_the_text_says_when_the_interval_holds_the_seed_noise():
    text = verdict_text(result(0.01, 0.12, exported_baseline=False) | {"seed_noise": {"sd": 0.02, "half_width": 0.03}}, sign=1.0)
    assert text.startswith("winner vs baseline on test: macro_f1 +0.065 [+0.010, +0.120] (test images and seed noise); miss_rate")
