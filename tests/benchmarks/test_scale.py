"""benchmarks/scale.py: a 5-trial search of the probe task through run_search."""

from __future__ import annotations


def test_scale_smoke_reports_overhead_memory_and_tree_size(run_benchmark):
    figures, stdout = run_benchmark("scale")
    (run,) = figures["runs"]
    # every probe trial went through the search and finished
    assert run["trials"] == 5 and run["finished"] == 5
    # the wall time covers the trials' own compute, so the overhead is what is left (and positive)
    assert run["wall_s"] > run["compute_s"] > 0 and run["overhead_s_per_trial"] > 0
    # the driver's memory and the results tree were measured
    assert run["driver_peak_rss_mib"] > 50 and 0 < run["results_tree_kib_per_trial"] < 10_000
    # one final line of ratios
    assert stdout.strip().splitlines()[-1].startswith("ratios:")
