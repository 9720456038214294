"""benchmarks/overtuning.py: today's pick and the confirmed one, each scored on the test split against
the baseline; the epochs each spent, by role."""

from __future__ import annotations

import pytest


def test_overtuning_smoke_scores_each_variant_on_test_and_counts_its_epochs(run_benchmark, tmp_path):
    figures, stdout = run_benchmark("overtuning", "--scenarios", "weak", "--variants", "today", "confirmed")
    records = {r["variant"]: r for r in figures["records"]}
    assert set(records) == {"today", "confirmed"}
    today, confirmed = records["today"], records["confirmed"]
    # today spends its epochs on sampled trials only; confirmed adds the noise and confirmation seeds
    assert today["epochs"]["noise"] == today["epochs"]["confirm"] == 0 and today["epochs"]["sampled"] > 0
    assert confirmed["epochs"]["noise"] > 0 and confirmed["epochs"]["confirm"] > 0
    # confirmation decided something, and the verdict compared on the test split with an interval
    assert confirmed["outcome"] in {"wins", "inside_noise", "reference_best", "noise_unmeasured"}
    assert confirmed["verdict"]["lo"] <= confirmed["verdict"]["value"] <= confirmed["verdict"]["hi"]
    assert confirmed["verdict_text"].startswith("winner vs baseline on test:")
    # every exported config was retrained with fresh seeds and scored on test against the baseline
    for record in records.values():
        assert -1.0 <= record["test_exported"]["gain"] <= 1.0
    row = figures["goals"]["weak"]["confirmed"]
    assert row["epochs_vs_today"] > 1.0  # the seeds are not free
    assert stdout.strip().splitlines()[-1].startswith("goals: weak today: gain")

    # --merge combines scored runs as they were: no search, no retraining
    (tmp_path / "a.json").write_text((tmp_path / "overtuning.json").read_text())
    merged, stdout = run_benchmark("overtuning", "--merge", str(tmp_path / "a.json"), str(tmp_path / "a.json"))
    assert [r["variant"] for r in merged["records"]] == [r["variant"] for r in figures["records"]] * 2
    assert "retraining" not in stdout
    assert merged["goals"]["weak"]["confirmed"]["mean_test_gain"] == pytest.approx(row["mean_test_gain"])


def test_a_record_from_before_the_seed_noise_rule_is_widened_by_it_when_merged():
    import math

    from benchmarks.overtuning import FULL, widen_recorded_verdict
    from search.verdict import seed_half_width

    # null scenario, seed 1, as recorded before: 2 confirmation seeds and 2 noise seeds of 8 epochs
    old = {"variant": "confirmed", "epochs": {"sampled": 107, "noise": 16, "confirm": 16}, "noise": 0.0219,
           "verdict": {"value": -0.035, "lo": -0.062, "hi": -0.007},
           "test_candidate": {"gain": -0.078}, "test_today": None, "verdict_holds_test_gain": False}  # fmt: skip
    widen_recorded_verdict(old, FULL)
    half = seed_half_width(0.0219, 2, 3)
    assert old["verdict"]["lo"] == pytest.approx(-0.035 - math.hypot(0.027, half))
    assert old["verdict_holds_test_gain"] is True  # the fresh seeds' -0.078 is inside the widened interval
    again = dict(old)
    widen_recorded_verdict(again, FULL)  # a record that holds the rule already is left as it is
    assert again["verdict"] == old["verdict"]
    today = {"variant": "today", "epochs": {"sampled": 60, "noise": 0, "confirm": 0}, "noise": math.nan,
             "verdict": {"value": 0.01, "lo": -0.02, "hi": 0.04}, "test_candidate": None, "test_today": {"gain": 0.0}}  # fmt: skip
    widen_recorded_verdict(today, FULL)
    assert today["verdict"] == {"value": 0.01, "lo": -0.02, "hi": 0.04}  # no noise measured: nothing to add
