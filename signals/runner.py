"""Run a signal over a stream of row frames: model batches, prefetch, per-row errors.

The caller (a Spark UDF, a benchmark, an online scorer) hands in an iterator of pandas frames
of any size; rows are regrouped into batches of the model's own batch size, so Arrow's batch
size and the model's are independent. A background thread prepares (decodes, preprocesses)
the next batch while the model runs the current one. Every input row yields exactly one output
row, in order: status "ok" with the signal's value, or status "error" with the reason.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd

from signals.base import Signal
from signals.contracts import STATUS_ERROR, STATUS_OK
from signals.decode import InputError


@dataclass
class _Prepared:
    """One model batch: per row, the prepared input or the reason it has none."""

    inputs: list[Any]
    errors: list[str | None]


def rows_in_batches(frames: Iterable[pd.DataFrame], batch_size: int) -> Iterator[list[dict[str, Any]]]:
    """Regroup the rows of frames of any size into lists of `batch_size` rows (the last shorter)."""
    pending: list[dict[str, Any]] = []
    for frame in frames:
        pending.extend(frame.to_dict("records"))
        while len(pending) >= batch_size:
            yield pending[:batch_size]
            pending = pending[batch_size:]
    if pending:
        yield pending


def prepare_rows(signal: Signal, rows: list[dict[str, Any]]) -> _Prepared:
    """CPU work for each row; a bad input becomes that row's error, never the batch's."""
    inputs: list[Any] = []
    errors: list[str | None] = []
    for row in rows:
        try:
            inputs.append(signal.prepare(row))
            errors.append(None)
        except InputError as exc:
            inputs.append(None)
            errors.append(str(exc))
        except Exception as exc:  # noqa: BLE001 - any failure of one row's input is that row's error
            inputs.append(None)
            errors.append(f"preprocessing failed: {type(exc).__name__}: {exc}")
    return _Prepared(inputs, errors)


def _checked(signal: Signal, value: Any) -> tuple[Any, str | None]:
    try:
        signal.check(value)
        return value, None
    except ValueError as exc:
        return None, str(exc)


def compute_prepared(signal: Signal, prepared: _Prepared) -> pd.DataFrame:
    """Run the model on the good rows of one batch; if the batch fails, isolate the failing rows."""
    values: list[Any] = [None] * len(prepared.errors)
    errors = list(prepared.errors)
    good = [i for i, err in enumerate(errors) if err is None]
    outputs: dict[int, Any] = {}
    if good:
        try:
            outputs = dict(zip(good, signal.compute([prepared.inputs[i] for i in good])))
        except Exception:  # noqa: BLE001 - retry row by row to find the culprit
            for i in good:
                try:
                    outputs[i] = signal.compute([prepared.inputs[i]])[0]
                except Exception as exc:  # noqa: BLE001
                    errors[i] = f"model failed: {type(exc).__name__}: {exc}"
    for i, value in outputs.items():
        values[i], errors[i] = _checked(signal, value)
    return pd.DataFrame(
        {
            "status": [STATUS_ERROR if err else STATUS_OK for err in errors],
            "error": errors,
            **signal.result_columns(values),
        }
    )


def _prefetched(items: Iterator[Any], depth: int) -> Iterator[Any]:
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

    thread = threading.Thread(target=produce, name="prefetch", daemon=True)
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


def run_signal(signal: Signal, frames: Iterable[pd.DataFrame], prefetch: int = 2) -> Iterator[pd.DataFrame]:
    """Result frames (status, error, then the signal's result columns) for the rows of `frames`, in order."""
    batches = rows_in_batches(frames, signal.config.batch_size)
    prepared = (prepare_rows(signal, rows) for rows in batches)
    for batch in _prefetched(prepared, prefetch):
        yield compute_prepared(signal, batch)
