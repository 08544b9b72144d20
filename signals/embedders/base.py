"""Embedding signals: a model forward pass to unit vectors of a declared dimension."""
from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np
import pandas as pd
import torch

from signals.base import Signal
from signals.profiling import stage_times
from signals.shared_forward import SharedForward


class Embedder(Signal):
    """A signal whose value per row is an L2-normalised float32 vector of `dim` floats."""

    # set by signals.shared_forward.share_backbones where other signals run this model on the same rows
    shared_forward: SharedForward | None = None

    @property
    @abstractmethod
    def dim(self) -> int:
        """The declared vector dimension (checked against every output)."""

    @abstractmethod
    def forward(self, prepared: list[Any]) -> torch.Tensor:
        """The model on one batch of prepared rows: a (len(prepared), dim) tensor."""

    def backbones(self) -> tuple[Embedder, ...]:
        return (self,)

    def pooled(self, prepared: list[Any]) -> torch.Tensor:
        """`forward`, or, for rows another signal on this model computed already, their features
        (`shared_forward`, where share_backbones gave one)."""
        if self.shared_forward is None:
            return self.forward(prepared)
        return self.shared_forward.pooled(self.forward, prepared)

    @torch.inference_mode()
    def embed(self, prepared: list[Any]) -> np.ndarray:
        """L2-normalised float32 vectors for a batch of prepared rows."""
        with stage_times.time("forward", len(prepared)):
            with self.autocast():
                out = self.pooled(prepared)
            out = torch.nn.functional.normalize(out.float(), dim=-1).cpu().numpy()
        if out.shape != (len(prepared), self.dim):
            raise RuntimeError(f"{self.signal}: model returned shape {out.shape}, expected ({len(prepared)}, {self.dim})")
        return out

    def compute(self, prepared: list[Any]) -> list[np.ndarray]:
        return list(self.embed(prepared))

    def check(self, value: np.ndarray) -> None:
        if not np.all(np.isfinite(value)):
            raise ValueError("model returned non-finite values")

    def result_columns(self, values: list[np.ndarray | None]) -> dict[str, list[Any]]:
        dim = self.dim  # once per batch: some signals read it from their model's config
        return {"vector": values, "dim": pd.array([None if v is None else dim for v in values], dtype="Int32")}
