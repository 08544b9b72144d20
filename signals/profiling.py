"""Busy seconds per stage of the per-row pipeline (read, prepare, compute, emit, model load), for the benchmark.

Off unless CONTENT_SIGNALS_PROFILE_DIR names a folder, so the hot path pays nothing in production.
"""
from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

PROFILE_DIR_ENV = "CONTENT_SIGNALS_PROFILE_DIR"


class StageTimes:
    """Seconds and items per stage (read, decode, preprocess, forward, ...) in this process.

    Off unless the environment variable CONTENT_SIGNALS_PROFILE_DIR names a folder: then the
    runner and the signals add their stage times here and `dump()` writes this process's
    cumulative totals to `<folder>/<pid>.json` (the benchmark sums them over the workers).
    Stages can overlap in time (the prefetch thread prepares while the model runs), so they are
    busy times per stage, not a partition of the wall time.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds: dict[str, float] = {}
        self.items: dict[str, int] = {}

    @staticmethod
    def enabled() -> bool:
        return bool(os.environ.get(PROFILE_DIR_ENV))

    def add(self, stage: str, seconds: float, items: int = 0) -> None:
        with self._lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
            self.items[stage] = self.items.get(stage, 0) + items

    @contextmanager
    def _timing(self, stage: str, items: int) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - start, items)

    def time(self, stage: str, items: int = 0):
        """Context manager adding the block's duration to `stage` (a no-op when profiling is off)."""
        return self._timing(stage, items) if self.enabled() else nullcontext()

    def snapshot(self) -> dict[str, dict[str, float]]:
        with self._lock:
            return {"seconds": dict(self.seconds), "items": dict(self.items)}

    def dump(self) -> None:
        """Write this process's totals to the profile folder (atomically; no-op when off)."""
        folder = os.environ.get(PROFILE_DIR_ENV)
        if not folder:
            return
        path = os.path.join(folder, f"{os.getpid()}.json")
        tmp = f"{path}.{threading.get_ident()}.tmp"
        with open(tmp, "w") as f:
            json.dump({"pid": os.getpid(), **self.snapshot()}, f)
        os.replace(tmp, path)


stage_times = StageTimes()
