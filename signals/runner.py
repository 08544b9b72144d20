"""Run a signal over a stream of row frames: model batches, prefetch, per-row errors.

The caller (a Spark UDF, a benchmark, an online scorer) hands in an iterator of pandas frames
of any size; rows are regrouped into batches of the model's own batch size, so Arrow's batch
size and the model's are independent. A background thread prepares (decodes, preprocesses)
the next batch while the model runs the current one (with `params.prepare_threads` > 1, the rows
of a batch are prepared by that many threads). Every input row yields exactly one output row, in
order: status "ok" with the signal's value, or status "error" with the reason. Memory is bounded
by a few batches whatever the partition's size: frames are consumed as they come, at most
`prefetch` prepared batches wait, and freed heap pages are handed back to the OS when the
worker's memory grows past what its first batches needed (signals.device.HeapTrimmer).

With CONTENT_SIGNALS_PROFILE_DIR set, the time spent waiting for input frames ("read"),
preparing, computing and handing results back ("emit") is recorded per process
(signals.profiling.StageTimes) for the benchmark.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from signals.base import RowError, Signal
from signals.contracts import MODEL_FAILED_PREFIX, STATUS_ERROR, STATUS_OK
from signals.decode import InputError
from signals.device import HeapTrimmer
from signals.profiling import stage_times

log = logging.getLogger(__name__)

SORT_WINDOW_BATCHES = 8  # rows of this many model batches are reordered together (signal.sort_keys)
PREPARE_CHUNK_ROWS = 16  # at most, rows per task of the prepare threads: small enough to share slow rows out
MAX_REASON_CHARS = 1000  # an error row's reason is cut to this: a message may quote a whole input


@dataclass
class _Prepared:
    """One model batch: per row, the prepared input or the reason it has none, and the values
    of the columns the caller asked to carry through (its rows' keys)."""

    inputs: list[Any]
    errors: list[str | None]
    carried: dict[str, list[Any]]


def frame_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The frame's rows as dicts (what `frame.to_dict("records")` gives, several times cheaper)."""
    names = list(frame.columns)
    columns = [frame[name].tolist() for name in names]
    return [dict(zip(names, values)) for values in zip(*columns)]


def rows_in_batches(frames: Iterable[pd.DataFrame], batch_size: int) -> Iterator[list[dict[str, Any]]]:
    """Regroup the rows of frames of any size into lists of `batch_size` rows (the last shorter).

    Streams: at most one frame plus one batch of rows is held, whatever the partition's size."""
    pending: list[dict[str, Any]] = []
    for frame in frames:
        records = frame_records(frame)
        start = 0
        if pending:
            start = min(batch_size - len(pending), len(records))
            pending.extend(records[:start])
            if len(pending) < batch_size:
                continue
            yield pending
            pending = []
        while len(records) - start >= batch_size:
            yield records[start : start + batch_size]
            start += batch_size
        pending = records[start:]
    if pending:
        yield pending


def _prepare_one(signal: Signal, row: dict[str, Any]) -> tuple[Any, str | None]:
    try:
        return signal.prepare(row), None
    except InputError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - any failure of one row's input is that row's error
        return None, f"preprocessing failed: {type(exc).__name__}: {exc}"


def prepare_rows(signal: Signal, rows: list[dict[str, Any]], pool: ThreadPoolExecutor | None = None,
                 batch_level: bool = True, carry: Sequence[str] = ()) -> _Prepared:
    """CPU work for each row (on `pool`'s threads if given), then the signal's batch-level
    preparation (unless `batch_level` is False: `prepare_batch_of` runs it separately); a bad
    input becomes that row's error, never the batch's. The `carry` columns ride along."""
    with stage_times.time("prepare", len(rows)):
        if pool is None:
            results = [_prepare_one(signal, row) for row in rows]
        else:  # a task per chunk, not per row: submitting a task costs about as much as a header check;
            # a batch smaller than the threads' chunks is still shared by all of them (rows waiting on a fetch wait together)
            size = max(1, min(PREPARE_CHUNK_ROWS, -(-len(rows) // signal.prepare_threads)))
            chunks = [rows[i : i + size] for i in range(0, len(rows), size)]
            results = [r for chunk in pool.map(lambda chunk: [_prepare_one(signal, row) for row in chunk], chunks) for r in chunk]
    prepared = _Prepared([r[0] for r in results], [r[1] for r in results], {c: [row[c] for row in rows] for c in carry})
    return prepare_batch_of(signal, prepared) if batch_level else prepared


def prepare_batch_of(signal: Signal, prepared: _Prepared) -> _Prepared:
    """The signal's `prepare_batch` on the good rows of a prepared batch; a RowError it returns
    is that row's error; if it fails, the rows stay as `prepare` made them."""
    inputs, errors = prepared.inputs, prepared.errors
    good = [i for i, err in enumerate(errors) if err is None]
    if good:
        try:
            with stage_times.time("prepare_batch", len(good)):
                batch = signal.prepare_batch([inputs[i] for i in good])
            if len(batch) != len(good):
                raise ValueError(f"prepare_batch returned {len(batch)} values for {len(good)} rows")
        except Exception:  # noqa: BLE001 - leave the batch as prepared; compute works from per-row inputs
            log.warning("%s: prepare_batch failed; the model gets the rows as prepared", signal.signal, exc_info=True)
            batch = [inputs[i] for i in good]
        for i, value in zip(good, batch):
            if isinstance(value, RowError):
                inputs[i], errors[i] = None, value.reason
            else:
                inputs[i] = value
    return _Prepared(inputs, errors, prepared.carried)


def short_reason(reason: str | None) -> str | None:
    """`reason` cut to MAX_REASON_CHARS, its start kept and its full length said."""
    if reason is None or len(reason) <= MAX_REASON_CHARS:
        return reason
    suffix = f"... ({len(reason)} characters)"
    return reason[: MAX_REASON_CHARS - len(suffix)] + suffix


def _checked(signal: Signal, value: Any) -> tuple[Any, str | None]:
    if isinstance(value, RowError):
        return None, value.reason
    try:
        signal.check(value)
        return value, None
    except (ValueError, TypeError) as exc:  # a value of the wrong kind (None for a score) is its row's error, not the batch's
        return None, str(exc)


def compute_prepared(signal: Signal, prepared: _Prepared) -> pd.DataFrame:
    """Run the model on the good rows of one batch; if the batch fails, isolate the failing rows."""
    values: list[Any] = [None] * len(prepared.errors)
    errors = list(prepared.errors)
    good = [i for i, err in enumerate(errors) if err is None]
    outputs: dict[int, Any] = {}
    if good:
        try:
            with stage_times.time("compute", len(good)):
                outputs = dict(zip(good, signal.compute([prepared.inputs[i] for i in good]), strict=True))  # a value per row, or none
        except Exception:  # noqa: BLE001 - retry row by row to find the culprit
            for i in good:
                try:
                    outputs[i] = signal.compute([prepared.inputs[i]])[0]
                except Exception as exc:  # noqa: BLE001
                    errors[i] = f"{MODEL_FAILED_PREFIX}{type(exc).__name__}: {exc}"
    for i, value in outputs.items():
        values[i], errors[i] = _checked(signal, value)
    errors = [short_reason(err) for err in errors]
    return pd.DataFrame(
        {
            **prepared.carried,
            "status": [STATUS_ERROR if err else STATUS_OK for err in errors],
            "error": errors,
            **signal.result_columns(values),
        }
    )


def _prefetched(items: Iterator[Any], depth: int, name: str = "prefetch") -> Iterator[Any]:
    """Iterate `items` on a background thread, keeping up to `depth` ready ahead."""
    if depth <= 0:
        yield from items
        return
    ready: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                ready.put(item)
            ready.put(done)
        except BaseException as exc:  # noqa: BLE001 - re-raised on the consumer's thread
            ready.put(exc)

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                ready.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)


def _timed(items: Iterable[pd.DataFrame], stage: str) -> Iterator[pd.DataFrame]:
    """`items`, adding the time spent waiting for each (and its rows) to `stage`."""
    if not stage_times.enabled():
        yield from items
        return
    iterator = iter(items)
    while True:
        start = time.perf_counter()
        try:
            item = next(iterator)
        except StopIteration:
            return
        finally:
            elapsed = time.perf_counter() - start
        stage_times.add(stage, elapsed, len(item))
        yield item


def run_signal(signal: Signal, frames: Iterable[pd.DataFrame], prefetch: int = 2, carry: Sequence[str] = ()) -> Iterator[pd.DataFrame]:
    """Result frames for the rows of `frames`, in order: the `carry` columns of each row as they
    came (its keys, say), then status, error and the signal's result columns.

    A signal that `pads_batches` (a text transformer padding each batch to its longest text)
    gets the rows of each window of SORT_WINDOW_BATCHES batches in `sort_keys` order, so each
    model batch holds texts of similar length; results come back in input order all the same."""
    if not signal.pads_batches:
        yield from _run_in_order(signal, frames, prefetch, carry)
        return
    orders: deque[np.ndarray] = deque()  # each window's permutation: appended by the prefetch thread

    def sorted_windows() -> Iterator[pd.DataFrame]:
        for window in _windows(frames, SORT_WINDOW_BATCHES * signal.batch_size):
            order = np.argsort(np.asarray(signal.sort_keys(window)), kind="stable")
            orders.append(order)
            yield window.iloc[order]

    done = pd.DataFrame()  # results not yet handed back, in sorted order
    for result in _run_in_order(signal, sorted_windows(), prefetch, carry):
        done = pd.concat([done, result], ignore_index=True) if len(done) else result.reset_index(drop=True)
        while orders and len(done) >= len(orders[0]):
            order = orders.popleft()
            yield done.iloc[np.argsort(order)].reset_index(drop=True)  # argsort of a permutation: its inverse
            done = done.iloc[len(order):].reset_index(drop=True)


def _windows(frames: Iterable[pd.DataFrame], rows: int) -> Iterator[pd.DataFrame]:
    """The rows of `frames` as frames of at least `rows` rows (the last may be shorter)."""
    pending: list[pd.DataFrame] = []
    held = 0
    for frame in frames:
        pending.append(frame)
        held += len(frame)
        if held >= rows:
            yield pd.concat(pending, ignore_index=True)
            pending, held = [], 0
    if held:
        yield pd.concat(pending, ignore_index=True)


def _run_in_order(signal: Signal, frames: Iterable[pd.DataFrame], prefetch: int, carry: Sequence[str]) -> Iterator[pd.DataFrame]:
    threads = signal.prepare_threads
    pool = ThreadPoolExecutor(threads, thread_name_prefix="prepare") if threads > 1 else None
    batches = rows_in_batches(_timed(frames, "read"), signal.batch_size)
    if prefetch > 0 and signal.prepares_batches:
        # three stages overlap: rows prepared on one thread, batches prepared (e.g. decoded on
        # the GPU) on another, the model on this one
        rows_stage = _prefetched((prepare_rows(signal, rows, pool, batch_level=False, carry=carry) for rows in batches), prefetch, "prefetch-rows")
        stream = _prefetched((prepare_batch_of(signal, prepared) for prepared in rows_stage), prefetch)
    else:
        rows_stage = None
        stream = _prefetched((prepare_rows(signal, rows, pool, carry=carry) for rows in batches), prefetch)
    trim = HeapTrimmer()
    try:
        for batch in stream:
            result = compute_prepared(signal, batch)
            del batch
            trim()
            start = time.perf_counter()
            yield result
            if stage_times.enabled():
                stage_times.add("emit", time.perf_counter() - start, len(result))
    finally:
        stream.close()  # stops the prefetch threads (outer first) before their pool goes
        if rows_stage is not None:
            rows_stage.close()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        stage_times.dump()
