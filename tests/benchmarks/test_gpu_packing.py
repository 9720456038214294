"""benchmarks/gpu_packing.py: without a GPU it says so, writes measured: false, checks both launchers
on tiny CPU trials and exits 0; the Ray launcher never waits silently on trials it cannot place."""

from __future__ import annotations

import argparse
import time

import pytest
import torch

from benchmarks import gpu_packing
from benchmarks.gpu_packing import CPU_CHECK, LaunchFailed, RayLauncher, Setting, cores, trial_spec


@pytest.fixture
def ray_launcher():
    import ray

    launcher = RayLauncher()
    yield launcher
    ray.shutdown()


def tiny_spec(seconds: float) -> dict:
    args = argparse.Namespace(images=0, seconds=seconds, ceiling_seconds=0.0)
    return trial_spec(CPU_CHECK, Setting(1, amp=False), args, "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU fallback only runs without a GPU")
def test_gpu_packing_without_a_gpu_says_so_and_checks_both_launchers(run_benchmark):
    figures, stdout = run_benchmark("gpu_packing")
    # nothing is measured, and the figures say why
    assert figures["measured"] is False and "GPU" in figures["reason"]
    assert "no CUDA GPU" in stdout
    # both launchers ran their tiny trials to the end, within each measurement's own limit
    checks = {r["launcher"]: r for r in figures["launcher_check"]}
    assert set(checks) == {"ray", "processes"}
    assert all(r["trials_timed"] == r["trials"] and not r["launch_failures"] for r in checks.values())
    assert all(r["wall_s"] < r["limit_s"] for r in checks.values())
    assert checks["ray"]["trials"] == 2 and checks["processes"]["ceiling_images_per_s"] > 0
    assert stdout.strip().splitlines()[-1].startswith("ratios:")


def test_ray_launcher_refuses_trials_the_cluster_cannot_hold(ray_launcher):
    spec = {**tiny_spec(1.0), "cpus": cores() + 1}
    began = time.time()
    # more CPUs than Ray was started with: an error naming both, at once, instead of a silent pending task
    with pytest.raises(LaunchFailed, match=f"ask {cores() + 1} CPU.*has {cores()} CPU"):
        ray_launcher.run([spec], limit_s=60)
    assert time.time() - began < 5


def test_ray_launcher_gives_up_at_the_limit_and_says_what_was_pending(ray_launcher):
    began = time.time()
    # a trial that would run for a minute, given 3 s: cancelled at the limit, with what was left
    with pytest.raises(LaunchFailed, match="1 of 1 trials not finished after 3 s"):
        ray_launcher.run([tiny_spec(60.0)], limit_s=3)
    assert time.time() - began < 30


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_packing_smoke_packs_two_trials_on_one_gpu(run_benchmark):
    figures, _ = run_benchmark("gpu_packing")
    runs = {(r["trials"], r["amp_channels_last"]): r for r in figures["runs"]}
    # one and two packed trials with AMP, and one without, all trained without running out of memory
    assert set(runs) == {(1, True), (2, True), (1, False)}
    assert all(r["aggregate_images_per_s"] > 0 and not r["oom"] for r in runs.values())
    # the single trials measured their ceiling, and every row is a share of it, named by its launcher
    assert runs[(1, True)]["ceiling_images_per_s"] > 0 and runs[(1, False)]["ceiling_images_per_s"] > 0
    assert all(r["share_of_ceiling"] > 0 and r["launcher"] in gpu_packing.LAUNCHERS for r in runs.values())
