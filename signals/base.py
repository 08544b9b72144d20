"""The lifecycle every signal follows, whether it outputs a vector or label scores.

1. Construct on the driver from configuration: cheap, picklable, no weights touched.
2. `load(gpu_addresses)` on the worker: weights are read once per worker process (model_cache).
3. `prepare(row)` per row on the CPU: decode and preprocess; raises InputError for bad input.
4. `compute(prepared)` per model batch: one output value per row.

Keeping prepare and compute apart lets the runner prepare the next batch on another thread while
the model works on the current one, and turns a bad row into an error row without losing its
neighbours. The same object serves the Spark UDF, the tests, the benchmarks and an online scorer.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch

from signals import model_cache
from signals.device import select_device

InputKind = Literal["image", "text"]


@dataclass(frozen=True)
class ModelRef:
    """Which model a signal row was computed with: recorded on every row."""

    name: str
    version: str


@dataclass(frozen=True)
class SignalConfig:
    """Everything a signal needs, resolved on the driver and shipped to workers."""

    signal: str
    model: ModelRef
    batch_size: int = 32
    device: str = "auto"
    params: Mapping[str, Any] = field(default_factory=dict)


class Signal(ABC):
    """One signal: inputs of one kind in, one output value per row out."""

    input_kind: ClassVar[InputKind]
    input_columns: ClassVar[tuple[str, ...]]

    def __init__(self, config: SignalConfig) -> None:
        self.config = config
        self.device: torch.device | None = None
        self._resources: Any = None

    @property
    def signal(self) -> str:
        return self.config.signal

    @abstractmethod
    def resource_key(self) -> Hashable:
        """What identifies the loaded weights, so that signals sharing a model share one copy."""

    @abstractmethod
    def load_resources(self, device: torch.device) -> Any:
        """Read the weights and build the model (and its preprocessing) on `device`."""

    @abstractmethod
    def prepare(self, row: Mapping[str, Any]) -> Any:
        """CPU work for one row; raise signals.decode.InputError for unusable input."""

    @abstractmethod
    def compute(self, prepared: list[Any]) -> list[Any]:
        """The model on one batch of prepared rows: one output value per row."""

    @abstractmethod
    def result_columns(self, values: list[Any | None]) -> dict[str, list[Any]]:
        """Output columns of a batch, from per-row values (None for error rows)."""

    def check(self, value: Any) -> None:
        """Raise ValueError if one row's output is unusable (it becomes that row's error)."""

    def load(self, gpu_addresses: tuple[str, ...] = ()) -> "Signal":
        """Attach the worker's cached model, loading it on first use in this process."""
        self.device = select_device(self.config.device, gpu_addresses)
        key = (self.resource_key(), str(self.device))
        self._resources = model_cache.get_or_load(key, lambda: self.load_resources(self.device))
        return self

    @property
    def resources(self) -> Any:
        if self._resources is None:
            raise RuntimeError(f"{self.signal}: call load() before using the model")
        return self._resources

    def to_device(self, batch: torch.Tensor) -> torch.Tensor:
        """Copy a CPU batch to the model's device: pinned and non-blocking on the GPU."""
        if self.device is None or self.device.type != "cuda":
            return batch
        return batch.pin_memory().to(self.device, non_blocking=True)

    def autocast(self):
        """Mixed precision on the GPU; full precision on the CPU so results match the reference."""
        if self.device is not None and self.device.type == "cuda" and self.config.params.get("mixed_precision", True):
            return torch.autocast("cuda", dtype=torch.float16)
        return torch.autocast("cpu", enabled=False)
