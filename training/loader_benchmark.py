"""The loader against reading the whole table into pandas first (section `heads.loader` of
`make eval`): rows a second from a Delta snapshot to torch tensors, and each way's peak memory at
one and four times a table size, so the loader's flat peak is seen beside the growth it avoids.

Each measurement runs in a fresh process (Arrow's memory pool and Python's heap are process-wide):
first a pass under tracemalloc for the peak (Python and numpy by tracemalloc, Arrow by its pool's
high-water mark), then a timed pass without it; tracing stops only after the GIL has been let go, so
no thread still waiting to record an allocation outlives it. The table is synthetic, in the embeddings
contract, every row labelled: what is held besides the stream (the label map) is made before
either pass, for both ways alike.
"""
from __future__ import annotations

import datetime as dt
import multiprocessing
import shutil
import time
import tracemalloc
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import torch
from deltalake import write_deltalake

from conf.settings import TrainingSettings
from lake import delta_io
from signals.contracts import EMBEDDINGS, STATUS_OK
from training.loader import Snapshot, batches, pin_snapshot

SIGNAL, MODEL_VERSION = "synthetic_embedding", "1"
ROWS_PER_FILE, FILES, DIM = 1000, 10, 256  # the 1x table: 10,000 rows of 256 floats
SCALES = (1, 4)
WAYS = ("loader", "pandas_first")


def write_table(lakehouse: Path, files: int, rows_per_file: int = ROWS_PER_FILE, dim: int = DIM) -> pd.DataFrame:
    """A synthetic embeddings table of `files` data files (one commit each) at `lakehouse`; returns its labels (all rows, p 0.5)."""
    root = str(lakehouse / EMBEDDINGS.name)
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(0)
    ids = []
    for f in range(files):
        names = [f"f{f:03d}-{i:05d}" for i in range(rows_per_file)]
        vectors = rng.standard_normal(rows_per_file * dim).astype(np.float32)
        offsets = np.arange(0, rows_per_file * dim + 1, dim, dtype=np.int32)
        columns = {"content_id": names, "signal": [SIGNAL] * rows_per_file, "model_name": ["synthetic"] * rows_per_file,
                   "model_version": [MODEL_VERSION] * rows_per_file, "input_hash": names,
                   "vector": pa.ListArray.from_arrays(offsets, vectors).cast(EMBEDDINGS.schema.field("vector").type),
                   "dim": [dim] * rows_per_file, "status": [STATUS_OK] * rows_per_file, "error": [None] * rows_per_file,
                   "run_id": ["synthetic"] * rows_per_file,
                   "computed_at": [dt.datetime(2026, 11, 20, tzinfo=dt.UTC)] * rows_per_file, "ds": ["2026-11-20"] * rows_per_file}
        write_deltalake(root, pa.table({n: columns[n] for n in EMBEDDINGS.schema.names}, schema=EMBEDDINGS.schema),
                        partition_by=list(EMBEDDINGS.partition_by), mode="append")
        ids += names
    return pd.DataFrame({"content_id": ids, "p_positive": 0.5})


def pandas_first(snapshot: Snapshot, targets: dict[str, float], batch_size: int) -> Iterator[dict[str, Any]]:
    """A split's batches the other way (`targets`: its label map): the signal's whole table read into pandas, joined with the labels, then cut."""
    table = delta_io.read_arrow(snapshot.embeddings_root, snapshot.embeddings_version,
                                (pc.field("signal") == snapshot.signal) & (pc.field("model_version") == snapshot.model_version),
                                ["content_id", "status", "vector"]).to_pandas()
    table = table[(table["status"] == STATUS_OK) & table["content_id"].isin(targets.keys())]
    x = torch.from_numpy(np.stack(table["vector"].to_list()).astype(np.float32, copy=False))
    y = torch.tensor(table["content_id"].map(targets).to_numpy(), dtype=torch.float32)
    for start in range(0, len(table), batch_size):
        yield {"x": x[start:start + batch_size], "y": y[start:start + batch_size]}


def _stream(snapshot: Snapshot, way: str, conf: TrainingSettings) -> Iterable[dict[str, Any]]:
    """The way's batches of the train split, its label map (one entry per labelled item) made here, before the first batch."""
    if way == "loader":
        return batches(snapshot, "train", conf.batch_size, conf.shuffle_buffer, conf.seed)
    return pandas_first(snapshot, snapshot.targets("train"), conf.batch_size)


def _rows(stream: Iterable[dict[str, Any]]) -> int:
    return sum(len(batch["y"]) for batch in stream)


def stop_tracing() -> None:
    """tracemalloc.stop() once the GIL has been let go: an Arrow thread dropping the pass's Python
    filesystem (delta-rs's) can have seen tracing on and wait for the GIL inside tracemalloc's hook,
    and on Python 3.11 a stop meanwhile frees the buffer it then writes (a segmentation fault,
    cpython#128679)."""
    time.sleep(0.05)
    tracemalloc.stop()


def measure(lakehouse: str, labels: pd.DataFrame, way: str, conf: TrainingSettings) -> dict[str, float]:
    """One way over the table at `lakehouse`: its peak bytes (a pass under tracemalloc, the label map made
    before it), then its rows a second (a timed pass)."""
    snapshot = pin_snapshot(lakehouse, SIGNAL, MODEL_VERSION, labels, fractions=conf.splits)
    stream = _stream(snapshot, way, conf)  # the label map grows with the labelled items, not the table: outside the peak
    pool = pa.default_memory_pool()
    arrow_before = pool.bytes_allocated()
    tracemalloc.start()
    _rows(stream)
    python_peak = tracemalloc.get_traced_memory()[1]
    stop_tracing()
    peak = python_peak + max(pool.max_memory() - arrow_before, 0)
    started = time.perf_counter()
    rows = _rows(_stream(snapshot, way, conf))
    seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": round(seconds, 3), "rows_per_s": round(rows / seconds), "peak_mb": round(peak / 2**20, 1)}


def loader_against_pandas(folder: Path, conf: TrainingSettings) -> dict[str, Any]:
    """Per scale (SCALES times FILES files) and way: rows, seconds, rows a second and peak MB, each in a fresh process."""
    results: dict[str, Any] = {"rows_per_file": ROWS_PER_FILE, "dim": DIM, "scales": {}}
    for scale in SCALES:
        lakehouse = folder / f"loader-{scale}x"
        labels = write_table(lakehouse, FILES * scale)
        results["scales"][f"{scale}x"] = {"table_rows": len(labels), "table_mb": round(len(labels) * DIM * 4 / 2**20, 1)}
        for way in WAYS:
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                results["scales"][f"{scale}x"][way] = pool.submit(measure, str(lakehouse), labels, way, conf).result()
    return results
