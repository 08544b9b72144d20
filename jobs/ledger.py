"""The run ledger: what each run did, one row per (run, signal) at each step of its life.

A run appends `started` rows when it begins and `succeeded` / `nothing to do` / `failed` rows
when it ends. A run that died in between (killed driver, lost machine) is reconciled by the
next run: `succeeded` if its commit is in the table's log (the commit is what counts), else
`abandoned`. Operators answer "what computed these rows, over which window, how many failed,
how long did it take" from here; `run_id` on every signal row joins back to it.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, write_deltalake

from jobs import delta_io
from signals.base import ModelRef
from signals.contracts import RUNS, STATUS_OK


STARTED, SUCCEEDED, NOTHING_TO_DO, FAILED, ABANDONED = "started", "succeeded", "nothing to do", "failed", "abandoned"
TERMINAL = (SUCCEEDED, NOTHING_TO_DO, FAILED, ABANDONED)


@dataclass(frozen=True)
class SignalOutcome:
    """What one run did for one signal."""

    signal: str
    model: ModelRef
    rows_in: int
    rows_ok: int
    rows_error: int


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


def outcomes_of(table_root: str, run_id: str, models: Mapping[str, ModelRef]) -> list[SignalOutcome]:
    """Rows, ok rows and error rows each signal of `run_id` has in the table."""
    rows = delta_io.read_arrow(table_root, filters=pc.field("run_id") == run_id).select(["signal", "status"])
    outcomes = []
    for name, model in models.items():
        mine = rows.filter(pc.equal(rows["signal"], name))
        ok = pc.sum(pc.equal(mine["status"], STATUS_OK)).as_py() or 0
        outcomes.append(SignalOutcome(name, model, mine.num_rows, ok, mine.num_rows - ok))
    return outcomes


def reconcile(root: str, table_root: str) -> list[RunRecord]:
    """Close the ledger entries of runs that started but never ended; returns what was added."""
    if not DeltaTable.is_deltatable(root):
        return []
    runs = delta_io.read_arrow(root).to_pylist()
    ended = {(r["run_id"], r["signal"]) for r in runs if r["status"] in TERMINAL}
    open_runs = [RunRecord(**{k: v for k, v in r.items() if k != "duration_s"}) for r in runs
                 if r["status"] == STARTED and (r["run_id"], r["signal"]) not in ended]
    now = datetime.now(timezone.utc)
    closed = []
    for record in open_runs:
        app_id = f"content-signals/{record.run_id}"
        if delta_io.committed(table_root, app_id):
            found = outcomes_of(table_root, record.run_id, {record.signal: ModelRef(record.model_name, record.model_version)})[0]
            closed.append(replace(record, status=SUCCEEDED, message="recovered: committed before the run died",
                                  rows_in=found.rows_in, rows_ok=found.rows_ok, rows_error=found.rows_error,
                                  table_version=delta_io.version_of_commit(table_root, app_id, search=1000), finished_at=now))
        else:
            closed.append(replace(record, status=ABANDONED, message="died before committing; its files were never visible",
                                  finished_at=now))
    if closed:
        record_runs(root, closed)
    return closed
