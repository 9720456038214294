"""benchmarks/gpu_packing.py: without a GPU it says so, writes measured: false and exits 0."""

from __future__ import annotations

import pytest
import torch


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU fallback only runs without a GPU")
def test_gpu_packing_without_a_gpu_exits_cleanly_and_says_so(run_benchmark):
    figures, stdout = run_benchmark("gpu_packing")
    # nothing is measured, and the figures say why
    assert figures["measured"] is False and "GPU" in figures["reason"]
    assert "no CUDA GPU" in stdout


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_packing_smoke_packs_two_trials_on_one_gpu(run_benchmark):
    figures, _ = run_benchmark("gpu_packing")
    runs = {(r["trials"], r["amp_channels_last"]): r for r in figures["runs"]}
    # one and two packed trials with AMP, and one without, all trained without running out of memory
    assert set(runs) == {(1, True), (2, True), (1, False)}
    assert all(r["aggregate_images_per_s"] > 0 and not r["oom"] for r in runs.values())
