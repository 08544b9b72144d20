"""What the app ids of N runs cost a table's readers (issue #23): N commits, a run a day, each
carrying a new app id (a Delta `txn`, as `lake.delta_io.commit_files` makes them), then a
checkpoint, the log entries before it deleted (as delta-rs's log cleanup does a month on).

    python -m benchmarks.app_ids [--runs 365 3650] [--rounds 100] [--dir /tmp/app-ids]

Each N twice: undated app ids in a table without an app id retention (every commit before
`maintain` set one), and dated app ids under `lake.upkeep.APP_ID_RETENTION`. Prints the
checkpoint's txn count and size, and the median time of `DeltaTable(root)` and of one
`transaction_version` lookup, timed in rounds alternating between the tables.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable, write_deltalake

from lake.upkeep import APP_ID_RETENTION, TXN_RETENTION

DAY_MS = 86_400_000


def build(root: Path, runs: int, dated: bool) -> tuple[int, int]:
    """A table with `runs` commits of one app id each, a day apart and ending now, checkpointed; its checkpoint's (txns, bytes)."""
    shutil.rmtree(root, ignore_errors=True)
    write_deltalake(str(root), pa.table({"x": [1]}))
    if dated:
        DeltaTable(str(root)).alter.set_table_properties({TXN_RETENTION: f"interval {APP_ID_RETENTION.days} days"})
    first, now = DeltaTable(str(root)).version() + 1, int(time.time() * 1000)
    for n in range(runs):  # written as the log entries they would be: a commit's own data files do not matter here
        at = now - (runs - n) * DAY_MS
        txn = {"appId": f"content-signals/run-{n:05d}", "version": 1, **({"lastUpdated": at} if dated else {})}
        entry = [{"commitInfo": {"timestamp": at, "operation": "WRITE", "app_id": txn["appId"]}}, {"txn": txn}]
        (root / "_delta_log" / f"{first + n:020d}.json").write_text("".join(json.dumps(a) + "\n" for a in entry))
    table = DeltaTable(str(root))
    table.create_checkpoint()
    for entry in (root / "_delta_log").glob("*.json"):
        if int(entry.name[:20]) < table.version():
            entry.unlink()
    checkpoint = next((root / "_delta_log").glob("*.checkpoint.parquet"))
    txns = sum(1 for t in pq.read_table(checkpoint, columns=["txn"]).column("txn").to_pylist() if t)
    return txns, checkpoint.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[365, 3650])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/app-ids"))
    args = parser.parse_args()
    cases = [(0, False), *((runs, dated) for runs in args.runs for dated in (False, True))]
    roots = {case: args.dir / f"runs{case[0]}-{'dated' if case[1] else 'undated'}" for case in cases}
    built = {case: build(roots[case], *case) for case in cases}
    loads: dict[tuple[int, bool], list[float]] = {case: [] for case in cases}
    lookups: dict[tuple[int, bool], list[float]] = {case: [] for case in cases}
    for _ in range(args.rounds):
        for case in cases:
            start = time.perf_counter()
            table = DeltaTable(str(roots[case]))
            loaded = time.perf_counter()
            table.transaction_version("content-signals/none")
            loads[case].append(loaded - start)
            lookups[case].append(time.perf_counter() - loaded)
    for case in cases:
        txns, size = built[case]
        kind = f"dated, {APP_ID_RETENTION.days}-day retention" if case[1] else "undated, no retention"
        print(f"runs {case[0]:5d}  {kind:26s} checkpoint txns {txns:5d}, {size / 1024:6.1f} KiB; "
              f"load {statistics.median(loads[case]) * 1000:5.1f} ms, transaction_version {statistics.median(lookups[case]) * 1000:5.2f} ms")
    shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
