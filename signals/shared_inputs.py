"""Compute once per unique input: of the rows of a task that share an input hash (a repinned
image, the same title and description), only one reaches the model, and its result is fanned out
to the others, each keeping its own keys.

A row is held back while a row of the same hash waits for its result; once that result has been
handed out, a later row of the hash is computed again (so the keys held are those of rows in
flight, never the task's history). Rows without an input hash (no input at all) are each their
own: their error rows need no sharing. The jobs send the rows sharing an input to one task,
sorted by hash (`udfs.rows.grouped_by_input`), so nearly every repeat is held back.
"""
from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import pandas as pd


class SharedInputs:
    """One task's rows, deduplicated by `hash_column` on the way to the model (`unique`), and the
    model's results fanned out again to every row (`fanned_out`), their `key_columns` restored.

    The two sides may run on different threads (the runner's prefetch thread reads the frames)."""

    def __init__(self, key_columns: Sequence[str], hash_column: str = "input_hash") -> None:
        self.key_columns = tuple(key_columns)
        self.hash_column = hash_column
        self.computed = 0  # rows handed to the model
        self._lock = threading.Lock()
        self._waiting: dict[Any, list[tuple[Any, ...]]] = {}  # hash in flight -> keys of the rows held back for its result

    def unique(self, frames: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        """The frames without the rows whose input is already on its way to the model."""
        for frame in frames:
            keep = []
            keys = zip(*(frame[c].tolist() for c in self.key_columns))
            with self._lock:
                for i, (digest, key) in enumerate(zip(frame[self.hash_column].tolist(), keys)):
                    if digest is None or digest != digest:  # None or NaN: no input to share
                        keep.append(i)
                    elif digest in self._waiting:
                        self._waiting[digest].append(key)
                    else:
                        self._waiting[digest] = []
                        keep.append(i)
            self.computed += len(keep)
            if keep:
                yield frame.iloc[keep].reset_index(drop=True)

    def fanned_out(self, results: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        """Each result frame with, after every row, a copy for each row held back for its hash."""
        for result in results:
            order: list[int] = []
            keys: list[tuple[Any, ...]] = []
            own = zip(*(result[c].tolist() for c in self.key_columns))
            with self._lock:
                for i, (digest, key) in enumerate(zip(result[self.hash_column].tolist(), own)):
                    held = self._waiting.pop(digest, []) if digest is not None and digest == digest else []
                    order += [i] * (1 + len(held))
                    keys += [key, *held]
            if len(order) == len(result):
                yield result
                continue
            out = result.iloc[order].reset_index(drop=True)
            for c, values in zip(self.key_columns, zip(*keys)):
                out[c] = list(values)
            yield out
