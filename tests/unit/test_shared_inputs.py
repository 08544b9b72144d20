"""Compute once per unique input (signals.shared_inputs) through the runner, without Spark: the
rows fanned out equal computing every row, and the model sees each input in flight once."""
from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
import torch

from signals.base import ModelRef, SignalConfig
from signals.decode import InputError
from signals.embedders.base import Embedder
from signals.runner import run_signal
from signals.shared_inputs import SharedInputs

pytestmark = pytest.mark.usefixtures("empty_model_cache")
INSTANCES = itertools.count()  # each CountingEmbedder its own model cache entry, so its own count


class CountingEmbedder(Embedder):
    """x -> normalise([1, x]); negative x is bad input; counts the rows it prepares."""

    input_kind: ClassVar = "text"
    input_columns: ClassVar = ("x",)
    dim = 2

    def __init__(self, config: SignalConfig) -> None:
        super().__init__(config)
        self.instance = next(INSTANCES)

    def resource_key(self) -> Any:
        return ("counting-shared", self.instance)  # not id(self): a collected signal's id is reused, and its count with it

    def load_resources(self, device: torch.device) -> list[int]:
        return [0]

    def prepare(self, row: Mapping[str, Any]) -> float:
        self.resources[0] += 1
        if row["x"] < 0:
            raise InputError(f"x is negative: {row['x']}")
        return float(row["x"])

    def forward(self, prepared: list[float]) -> torch.Tensor:
        return torch.tensor([[1.0, x] for x in prepared])


def _rows(n: int, seed: int) -> pd.DataFrame:
    """n items over 40 inputs (some bad, some without a hash): an item's x follows its hash."""
    rng = np.random.default_rng(seed)
    inputs = rng.integers(0, 40, n)
    return pd.DataFrame({
        "content_id": [f"c{i:04d}" for i in range(n)],
        "ds": [f"2026-11-{1 + i % 9:02d}" for i in range(n)],
        "input_hash": [None if k % 13 == 0 else f"h{k}" for k in inputs],
        "x": [float(k) if k % 7 else -float(k) - 1 for k in inputs],
    }).sort_values("input_hash", na_position="first", kind="stable")


def _results(frames: list[pd.DataFrame], shared: SharedInputs | None, prefetch: int) -> tuple[pd.DataFrame, int]:
    signal = CountingEmbedder(SignalConfig("counting", ModelRef("counting", "1"), batch_size=4, device="cpu"))
    signal.load()
    results = run_signal(signal, shared.unique(frames) if shared else frames, prefetch, carry=("content_id", "ds", "input_hash"))
    out = pd.concat(list(shared.fanned_out(results) if shared else results), ignore_index=True)
    return out.sort_values("content_id").reset_index(drop=True), signal.resources[0]


@pytest.mark.parametrize("prefetch", [0, 2])
def test_fanned_out_rows_equal_computing_every_row_with_fewer_model_rows(prefetch):
    rows = _rows(300, seed=prefetch)
    frames = [rows.iloc[i : i + 7] for i in range(0, len(rows), 7)]  # Arrow-sized frames: groups cross frames
    every, every_prepared = _results(frames, None, prefetch)
    shared = SharedInputs(("content_id", "ds"))
    once, once_prepared = _results(frames, shared, prefetch)

    pd.testing.assert_frame_equal(once[["content_id", "ds", "input_hash", "status", "error"]],
                                  every[["content_id", "ds", "input_hash", "status", "error"]])
    assert [None if v is None else list(v) for v in once["vector"]] == [None if v is None else list(v) for v in every["vector"]]
    assert every_prepared == len(rows)
    distinct = rows["input_hash"].nunique() + rows["input_hash"].isna().sum()
    # rows sorted by hash: a repeat is computed again only where its group crosses a frame and its result went out first
    assert distinct <= once_prepared == shared.computed <= distinct + len(frames)
    assert (once["status"] == "error").sum() > 0 and rows["input_hash"].duplicated().sum() > len(frames)
