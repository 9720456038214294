"""benchmarks/throughput.py: our epoch vs a hand-written loop, and the data pipeline alone."""

from __future__ import annotations


def test_throughput_smoke_measures_both_loops_and_both_data_kinds(run_benchmark):
    figures, stdout = run_benchmark("throughput")
    training = figures["training"]
    # both loops trained and were timed
    assert training["ours"]["images_per_s"] > 0 and training["hand"]["images_per_s"] > 0
    # the ratio is ours over the hand loop
    assert abs(figures["ours_vs_hand"] - training["ours"]["images_per_s"] / training["hand"]["images_per_s"]) < 1e-9
    # data loading alone, for the synthetic generator and an ImageFolder of PNGs
    assert figures["loading_images_per_s"]["synthetic"] > 0 and figures["loading_images_per_s"]["imagefolder"] > 0
    # one CPU per trial leaves no spare core for DataLoader workers
    assert figures["cpu_share"] == 1 and figures["num_workers"] == 0
    assert stdout.strip().splitlines()[-1].startswith("ratios:")
