"""The share of the machine one search trial holds: decided once by the search, passed down whole.
Torch-free: search.json is read with it before torch is loaded."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class TrialResources:
    """CPUs and GPU share of one trial, as Ray reserves them and as its torch runtime uses them."""

    cpu: float  # CPUs Ray reserves (a fraction packs trials on a core)
    gpu: float  # share of one GPU: 0 (trains on the CPU), 1, or 1/n

    @property
    def threads(self) -> int:
        """The trial's torch thread count: its CPUs, at least one."""
        return max(1, int(self.cpu))

    def to_json(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrialResources:
        return cls(cpu=float(data["cpu"]), gpu=float(data["gpu"]))
