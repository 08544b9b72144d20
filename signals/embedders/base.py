"""The lifecycle every embedding signal follows.

1. Construct on the driver from configuration: cheap, picklable, no weights touched.
2. `load(device)` on the worker: weights are read once per worker process (see model_cache).
3. `prepare(row)` per row on the CPU: decode and preprocess; raises InputError for bad input.
4. `embed(prepared)` per model batch: forward pass, L2-normalised float32 vectors.

Keeping prepare and embed apart lets the runner prepare the next batch on another thread while
the model works on the current one, and turns a bad row into an error row without losing its
neighbours.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
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
class EmbedderConfig:
    """Everything an embedder needs, resolved on the driver and shipped to workers."""

    signal: str
    model: ModelRef
    batch_size: int = 32
    device: str = "auto"
    params: Mapping[str, Any] = field(default_factory=dict)


class Embedder(ABC):
    """One embedding signal: inputs of one kind in, unit vectors of `dim` floats out."""

    input_kind: ClassVar[InputKind]

    def __init__(self, config: EmbedderConfig) -> None:
        self.config = config
        self.device: torch.device | None = None
        self._resources: Any = None

    @property
    def signal(self) -> str:
        return self.config.signal

    @property
    @abstractmethod
    def dim(self) -> int:
        """The declared vector dimension (checked against every output)."""

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
    def forward(self, prepared: list[Any]) -> torch.Tensor:
        """The model on one batch of prepared rows: a (len(prepared), dim) tensor."""

    def load(self, gpu_addresses: tuple[str, ...] = ()) -> "Embedder":
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

    @torch.inference_mode()
    def embed(self, prepared: list[Any]) -> np.ndarray:
        """L2-normalised float32 vectors for a batch of prepared rows."""
        with self._autocast():
            out = self.forward(prepared)
        out = torch.nn.functional.normalize(out.float(), dim=-1).cpu().numpy()
        if out.shape != (len(prepared), self.dim):
            raise RuntimeError(f"{self.signal}: model returned shape {out.shape}, expected ({len(prepared)}, {self.dim})")
        return out

    def _autocast(self):
        """Mixed precision on the GPU; full precision on the CPU so results match the reference."""
        if self.device is not None and self.device.type == "cuda" and self.config.params.get("mixed_precision", True):
            return torch.autocast("cuda", dtype=torch.float16)
        return torch.autocast("cpu", enabled=False)

    def to_device(self, batch: torch.Tensor) -> torch.Tensor:
        """Copy a CPU batch to the model's device: pinned and non-blocking on the GPU."""
        if self.device is None or self.device.type != "cuda":
            return batch
        return batch.pin_memory().to(self.device, non_blocking=True)
