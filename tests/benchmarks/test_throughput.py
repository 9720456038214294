"""benchmarks/throughput.py: our epoch vs the ceiling and a hand-written loop, the detector's ceiling
and ours, and the data pipeline alone per CPU core."""

from __future__ import annotations

from benchmarks.throughput import cores


def test_throughput_smoke_measures_ceiling_ours_hand_detector_and_data_per_core(run_benchmark):
    figures, stdout = run_benchmark("throughput")
    training = figures["training"]
    # the ceiling, our epoch and the hand loop all trained and were timed
    assert all(training[name]["images_per_s"] > 0 for name in ("ceiling", "ours", "hand"))
    # the ratios are ours over the hand loop and over the ceiling
    ours = training["ours"]["images_per_s"]
    assert abs(figures["ours_vs_hand"] - ours / training["hand"]["images_per_s"]) < 1e-9
    assert abs(figures["ours_share_of_ceiling"] - ours / training["ceiling"]["images_per_s"]) < 1e-9
    # the Faster R-CNN detector: its ceiling and our epoch
    detection = figures["detection"]
    assert detection["ceiling"]["images_per_s"] > 0 and detection["ours"]["images_per_s"] > 0
    # data alone for both kinds with 0 workers and with all cores but one, per core (CPU-second) too
    loading = {(r["kind"], r["num_workers"]): r for r in figures["loading"]}
    assert set(loading) == {(k, w) for k in ("synthetic", "imagefolder") for w in {0, max(0, cores() - 1)}}
    assert all(r["images_per_s"] > 0 and r["images_per_s_per_core"] > 0 for r in loading.values())
    # one CPU per trial leaves no spare core for the training comparison's DataLoader workers
    assert figures["cpu_share"] == 1 and figures["num_workers"] == 0
    assert stdout.strip().splitlines()[-1].startswith("ratios:")
