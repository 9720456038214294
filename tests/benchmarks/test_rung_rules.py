"""benchmarks/rung_rules.py: every rung rule replayed on the same full-budget runs."""

from __future__ import annotations


def test_rung_rules_smoke_replays_every_rule_on_the_same_full_runs(run_benchmark):
    figures, stdout = run_benchmark("rung_rules")
    rules = set(figures["rules"])
    assert "plain" in rules
    epochs = figures["setting"]["epochs"]
    for drawn, by_reference in figures["figures"].items():
        for name, replayed in by_reference.items():
            assert set(replayed) == rules
            # without a scheduler every drawn config runs its full budget; no rung rule spends more
            assert replayed["none"]["sampled_epochs"] == int(drawn) * epochs
            assert all(f["sampled_epochs"] <= int(drawn) * epochs for f in replayed.values()), name
    assert stdout.strip().splitlines()[-1].startswith("rules vs plain (epochs x, regret):")
