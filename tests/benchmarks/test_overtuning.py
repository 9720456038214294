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
