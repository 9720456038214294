"""benchmarks/overhead.py: the same configs by plain fit, the hand-written peer glue and our search."""

from __future__ import annotations


def test_overhead_smoke_compares_plain_fit_peer_glue_and_the_search(run_benchmark):
    figures, stdout = run_benchmark("overhead")
    n = figures["configs"]
    ours, peer = figures["ours_concurrency1"], figures["peer_concurrency1"]
    # every config ran to its last epoch through both glues (ASHA set to stop nothing)
    assert ours["finished_trials"] == n == peer["finished_trials"]
    for run in (ours, peer):
        # the wall time splits into set-up, the trials' span and wrap-up, each trial's span known
        assert abs(run["setup_s"] + run["trials_span_s"] + run["wrapup_s"] - run["wall_s"]) < 0.5
        assert len(run["trial_spans_s"]) == n and all(start < end for start, end, _ in run["trial_spans_s"])
        # the trials reported their epochs' time, which the overhead leaves out
        assert 0 < run["epochs_s"] < run["trials_span_s"] and run["overhead_s_per_trial"] < run["outside_epochs_s_per_trial"]
    # plain training took real time, and the fixed start-up costs were measured
    assert figures["plain_sequential_s"] > 0 and figures["fixed_s"]["ray_init_s"] > 0 and figures["fixed_s"]["mlflow_setup_s"] > 0
    last = stdout.strip().splitlines()[-1]
    assert last.startswith("ratios: concurrency 1: overhead ours") and "vs peer" in last
