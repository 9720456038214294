"""Runtime: thread counts as part of what a run computes, process-wide settings reset per run, compile."""

from __future__ import annotations

import pytest
import torch
from torch._inductor import config as inductor_config

from training.config import TrainConfig, TrainLoopConfig
from training.loop.fit import fit
from training.loop.runtime import Runtime, check_compiler
from training.schema.errors import ConfigError
from training.schema.resources import TrialResources


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    "config_threads, trial_cpu, expected",
    [(None, 3, 3), (None, 0.5, 1), (2, 3, 2)],
    ids=["trial-share", "fraction-rounds-up-to-one", "config-wins"],
)
def test_runtime_for_trial_thread_count(config_threads, trial_cpu, expected):
    cfg = TrainConfig(train={"device": "cpu", "cpu_threads": config_threads})
    # the config's thread count (which a search fills from resources.cpu) decides; else the trial's CPU share
    assert Runtime.for_trial(cfg, TrialResources(cpu=trial_cpu, gpu=0)).cpu_threads == expected


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda"])
@pytest.mark.parametrize(
    "gpu, expected_device, expected_fraction", [(0.0, "cpu", None), (0.25, "cuda", 0.25), (1.0, "cuda", 1.0)]
)
def test_runtime_for_trial_places_the_run_by_its_resources(device, gpu, expected_device, expected_fraction):
    cfg = TrainConfig(train={"device": device, "amp": True})
    runtime = Runtime.for_trial(cfg, TrialResources(cpu=1, gpu=gpu))
    # the resolved GPU share alone decides the device, whatever train.device says: the search decided
    # once whether there is a GPU (a share of 0 where there is none), nothing here asks again
    assert runtime.device.type == expected_device and runtime.amp == (expected_device == "cuda")
    # the share is the memory cap `apply` sets on the card
    assert runtime.gpu_fraction == expected_fraction


@pytest.mark.skipif(torch.cuda.is_available(), reason="the case of a node whose torch has no CUDA")
def test_runtime_apply_refuses_a_gpu_share_torch_cannot_use():
    runtime = Runtime.for_trial(TrainConfig(), TrialResources(cpu=1, gpu=0.5))
    # Ray counted a GPU but this torch has none: a clear error on the key, not a deep CUDA assertion
    with pytest.raises(ConfigError) as err:
        runtime.apply()
    assert err.value.key == "resources.gpu" and "torch sees no CUDA GPU" in err.value.message


def test_runtime_from_config_takes_the_configs_threads():
    # `training train` of an exported config uses the thread count the trial used
    assert Runtime.from_config(TrainLoopConfig(device="cpu", cpu_threads=3)).cpu_threads == 3
    # none: torch's default (all cores), nothing forced
    assert Runtime.from_config(TrainLoopConfig(device="cpu")).cpu_threads is None


def test_runtime_apply_resets_what_an_earlier_run_changed(restore_threads):
    # an earlier run in this process (a reused Tune actor) left other settings behind
    torch.set_num_threads(1)
    torch.backends.cudnn.benchmark = True
    torch.set_float32_matmul_precision("medium")
    try:
        Runtime(torch.device("cpu"), cpu_threads=2).apply()
        # the run gets its own thread count
        assert torch.get_num_threads() == 2
        # and torch's defaults for the settings that change computed values
        assert torch.backends.cudnn.benchmark is False
        assert torch.get_float32_matmul_precision() == "highest"
    finally:
        torch.backends.cudnn.benchmark = False
        torch.set_float32_matmul_precision("highest")


def test_check_compiler_without_a_cpp_compiler_is_a_config_error():
    # train.compile on a CPU machine without a C++ compiler: one line naming the key, before any epoch
    with inductor_config.patch({"cpp.cxx": ("no-such-compiler-here",)}):
        with pytest.raises(ConfigError, match=r"^train\.compile: torch\.compile needs a C\+\+ compiler"):
            check_compiler(torch.device("cpu"))


def test_fit_with_compile_trains_and_matches_eager(restore_threads):
    def run(compile_: bool) -> dict[str, float]:
        cfg = TrainConfig(task="probe", data={"batch_size": 8}, train={"device": "cpu", "epochs": 2, "cpu_threads": 1, "compile": compile_})
        return {k: v for k, v in fit(cfg).items() if not k.startswith("time/")}

    eager, compiled = run(False), run(True)
    # train.compile runs on the CPU and reports the same metrics as eager, up to float rounding
    assert compiled.keys() == eager.keys()
    assert compiled == pytest.approx(eager, rel=1e-5)
