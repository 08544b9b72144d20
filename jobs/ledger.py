"""The run ledger: one row per (run, signal) saying what a run did, appended when it ends.

Operators answer "what computed these rows, over which window, how many failed, how long did
it take" from here; `run_id` on every signal row joins back to it.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

import pyarrow as pa
from deltalake import write_deltalake

from signals.contracts import RUNS


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    job: str
    signal: str
    model_name: str | None
    model_version: str | None
    window_start: str | None
    window_end: str | None
    rows_in: int | None
    rows_ok: int | None
    rows_error: int | None
    status: str
    message: str | None
    table_version: int | None
    started_at: datetime
    finished_at: datetime

    @property
    def duration_s(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()


def record_runs(root: str, records: Sequence[RunRecord]) -> None:
    """Append the records to the ledger table at `root` (created on first use)."""
    rows = [{**asdict(r), "duration_s": r.duration_s} for r in records]
    write_deltalake(root, pa.Table.from_pylist(rows, schema=RUNS.schema), mode="append")
