"""One loaded model per Python worker process.

Spark reuses Python workers across tasks (`spark.python.worker.reuse`, on by default), so a
module-level cache keeps a model resident for every later task of the same worker: the model
loads once per worker, never per task or per partition.

Caveats, as for Spark's own `pyspark.ml.model_cache`:
- The cache lives as long as the worker process. If Spark starts a new worker (reuse off, a
  crashed worker, an idle worker reaped), the model loads again in the new one.
- Each worker of an executor holds its own copy: with N concurrent tasks per executor there are
  N copies in memory (N = executor cores / task cpus). Give a GPU signal's tasks one GPU each
  (its `resources`, docs/design.md Per-signal resources).
- The jobs compute and write in one Python worker per task (udfs/rows.py). A query that
  chains two Python stages in one task (a pandas UDF, then another Python function) takes two
  workers from Spark's pool, and either may run the model next: up to two copies per task.
- Entries are never evicted: a job that cycles through many model versions in one worker should
  call `clear()` between them.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

_lock = threading.Lock()
_models: dict[Hashable, Any] = {}
_loads: dict[Hashable, int] = {}
_load_seconds = 0.0  # wall seconds this process has spent in real loads (cache hits cost nothing)


def get_or_load(key: Hashable, load: Callable[[], Any]) -> Any:
    """Return the model cached under `key`, loading it with `load()` the first time."""
    global _load_seconds
    with _lock:
        if key not in _models:
            started = time.perf_counter()
            _models[key] = load()
            _load_seconds += time.perf_counter() - started
            _loads[key] = _loads.get(key, 0) + 1
        return _models[key]


def load_count(key: Hashable) -> int:
    """How many times this process loaded `key` (1 when the cache works)."""
    return _loads.get(key, 0)


def total_loads() -> int:
    """How many model loads this process has done, all keys together."""
    return sum(_loads.values())


def load_seconds() -> float:
    """Seconds this process has spent loading models, all keys together: what a task added to it
    is what that task waited for its model (udfs.worker reports it to the driver)."""
    return _load_seconds


def clear() -> None:
    """Drop every cached model of this process."""
    with _lock:
        _models.clear()


def retain(keys: set[Hashable]) -> None:
    """Drop every cached model but those under `keys`: a long-lived process that moved to other
    model versions (the online scorer's reload) frees the old ones once nothing uses them."""
    with _lock:
        for key in set(_models) - keys:
            del _models[key]
