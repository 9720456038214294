"""Where a run executes: device, CPU threads, GPU memory share, mixed precision."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace

import torch
from torch import nn

from training.config import TrainConfig, TrainLoopConfig
from training.schema.errors import ConfigError
from training.schema.resources import TrialResources


def epoch_seed_of(seed: int, epoch: int) -> int:
    """A distinct, reproducible seed for each (run seed, epoch)."""
    return (seed * 1_000_003 + epoch) % 2**31


def reset_numerics() -> None:
    """Torch's process-wide settings that change computed values, back at torch's defaults: whatever
    ran before in this process, a run computes what a fresh `training train` computes."""
    torch.backends.cudnn.benchmark = False  # autotuning may pick other kernels run to run
    torch.backends.cudnn.deterministic = False
    torch.backends.cudnn.allow_tf32 = True
    torch.set_float32_matmul_precision("highest")  # also turns TF32 matmuls off


def check_compiler(device: torch.device) -> None:
    """ConfigError unless torch.compile's default backend can build kernels for `device` here: it
    needs a C++ compiler for the CPU and Triton for CUDA, and would otherwise fail mid-epoch."""
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            raise ConfigError("train.compile", "torch.compile needs Triton for CUDA, not installed here; set it false")
        return
    from torch._inductor import cpp_builder, exc

    try:
        cpp_builder.get_cpp_compiler()
    except exc.InvalidCxxCompiler:
        raise ConfigError("train.compile", "torch.compile needs a C++ compiler (g++ or clang++) on the CPU; set it false") from None


def compile_model(model: nn.Module, device: torch.device) -> None:
    """torch.compile `model` in place (its state_dict keys stay as they are). Dynamo's caches are
    cleared first: a reused actor's earlier trials would otherwise use up its recompile limit, after
    which it silently runs eagerly, and eager and compiled kernels sum floats differently."""
    check_compiler(device)
    torch._dynamo.reset()
    model.compile()


@dataclass
class Runtime:
    """The hardware a run gets; a search trial fills it from its Ray resources."""

    device: torch.device
    cpu_threads: int | None = None
    gpu_fraction: float | None = None
    amp: bool = False
    channels_last: bool = False

    @classmethod
    def from_config(cls, cfg: TrainLoopConfig, cpu_threads: int | None = None) -> Runtime:
        """The runtime of a run outside a search (`training train`): the config's device, `auto` = CUDA if here."""
        cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
        return cls(
            device=torch.device("cuda" if cuda else "cpu"),
            cpu_threads=cpu_threads or cfg.cpu_threads,
            amp=cuda and cfg.amp,
            channels_last=cuda and cfg.channels_last,
        )

    @classmethod
    def for_trial(cls, cfg: TrainConfig, resources: TrialResources) -> Runtime:
        """The runtime of a search trial: its resources, resolved once by the search (a GPU share only
        where there is a GPU), not the config's device setting, decide where it runs; its thread count
        is the config's (which the search fills from resources.cpu), so that the trial and a retrain of
        its config sum floats alike."""
        device = "cuda" if resources.gpu > 0 else "cpu"
        threads = cfg.train.cpu_threads or resources.threads
        runtime = cls.from_config(cfg.train.model_copy(update={"device": device}), cpu_threads=threads)
        return replace(runtime, gpu_fraction=resources.gpu or None)

    def apply(self) -> None:
        """Claim the share of the machine this run may use, so packed runs cannot starve each other,
        and reset what an earlier run in this process (a reused Tune actor) may have changed."""
        reset_numerics()
        if self.device.type == "cuda" and not torch.cuda.is_available():
            # Ray counted a GPU on this node, but this torch cannot use it (a CPU-only build, a hidden card)
            raise ConfigError("resources.gpu", "this trial holds a GPU share, but torch sees no CUDA GPU here")
        if self.cpu_threads:
            torch.set_num_threads(self.cpu_threads)
        if self.device.type == "cuda" and self.gpu_fraction and self.gpu_fraction < 1:
            torch.cuda.set_per_process_memory_fraction(float(self.gpu_fraction), self.device.index)

    @property
    def amp_dtype(self) -> torch.dtype:
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.amp_dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Loss scaling is needed for fp16 only; bf16 has fp32's range."""
        return torch.amp.GradScaler("cuda", enabled=self.amp and self.amp_dtype == torch.float16)

    def to_device(self, images: torch.Tensor) -> torch.Tensor:
        memory_format = torch.channels_last if self.channels_last else torch.preserve_format
        return images.to(self.device, non_blocking=True, memory_format=memory_format)
