"""Rows of a signal's output table, built in Arrow from the runner's result frames.

An embedder's item is one row of `embeddings`; a labeler's item is one row per label of
`labels` (one row with null label fields where the item failed, so the error is kept). Every
row carries the item's key, corpus day and input hash, and the stamp of the model and run that
computed it. Used on the executors (jobs write these rows straight into data files) and by any
other caller that wants a signal's rows in the table's contract, without Spark.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
import pyarrow as pa

from signals.base import Signal
from signals.contracts import EMBEDDINGS, LABELS, TableContract
from signals.embedders.base import Embedder

KEY_COLUMNS = ("content_id", "ds", "input_hash")  # what a row takes from its corpus item


def output_of(signal: Signal) -> TableContract:
    """The table a signal's rows go to."""
    return EMBEDDINGS if isinstance(signal, Embedder) else LABELS


@dataclass(frozen=True)
class RowStamp:
    """What every row of one signal in one run records about how it was computed."""

    signal: str
    model_name: str
    model_version: str
    run_id: str
    computed_at: datetime

    @classmethod
    def of(cls, signal: Signal, run_id: str, computed_at: datetime) -> RowStamp:
        model = signal.config.model
        return cls(signal.signal, model.name, model.version, run_id, computed_at)


def table_rows(contract: TableContract, stamp: RowStamp, result: pd.DataFrame) -> pa.RecordBatch:
    """The contract's rows for the runner's `result` frame: one row per item with its
    KEY_COLUMNS (carried through the runner), status, error, then the signal's columns."""
    if contract == EMBEDDINGS:  # (compared by value: contracts arrive pickled on the executors)
        per_item, repeat = {"vector": list(result["vector"]), "dim": _ints(result["dim"])}, None
    elif contract == LABELS:
        per_item, repeat = _exploded_labels(result)
    else:
        raise ValueError(f"no signal rows for table {contract.name!r}")
    take = (lambda values: values) if repeat is None else (lambda values: [values[i] for i in repeat])
    n = len(result) if repeat is None else len(repeat)
    columns: dict[str, Any] = {
        **{name: take(_nullable(result[name])) for name in KEY_COLUMNS},
        "status": take(list(result["status"])),
        "error": take(_nullable(result["error"])),
        **per_item,
        **{name: [getattr(stamp, name)] * n for name in ("signal", "model_name", "model_version", "run_id", "computed_at")},
    }
    return pa.RecordBatch.from_arrays(
        [pa.array(columns[f.name], type=f.type) for f in contract.schema], schema=contract.schema
    )


def _nullable(values: pd.Series) -> list[Any]:
    """The values as Python objects, pandas' missing values (NaN, None) as None."""
    return [None if pd.isna(v) else v for v in values]


def _ints(values: pd.Series) -> list[int | None]:
    return [None if pd.isna(v) else int(v) for v in values]


def _exploded_labels(result: pd.DataFrame) -> tuple[dict[str, list[Any]], list[int]]:
    """One row per (item, label); an item without scores (an error) keeps one row of nulls.
    Returns the label columns and, per output row, the index of its item."""
    repeat: list[int] = []
    columns: dict[str, list[Any]] = {"label": [], "score": [], "threshold": [], "decision": [], "detail": []}
    for i, (scores, detail) in enumerate(zip(result["scores"], result["detail"])):
        for one in scores or [dict.fromkeys(("label", "score", "threshold", "decision"))]:
            repeat.append(i)
            for name in ("label", "score", "threshold", "decision"):
                columns[name].append(one[name])
            columns["detail"].append(None if detail is None or pd.isna(detail) else detail)
    return columns, repeat
