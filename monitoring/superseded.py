"""Which kept verdicts are superseded: a run's verdicts on a (signal, model version, day) stay in
`alerts` while the signal table holds rows of that run there, and go when no row of it is left
(a re-run backfill replaced the day, a refresh took down all of the day's items it had): a reader
of the latest verdict per signal and day never reads one about rows that no longer exist.

The backfill or refresh that replaced them drops them as it keeps its statistics, monitored or
not (`drop_superseded_verdicts`); the monitor drops them with its own verdicts' commit, and keeps
none on a day whose rows its run no longer holds (`Superseded`).
"""
from __future__ import annotations

import functools
import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pyarrow.compute as pc
from deltalake import DeltaTable

from lake import delta_io
from signals.contracts import ALERTS, EMBEDDINGS, LABELS, SIGNAL_STATS

SIGNAL_TABLES = {"embedding": EMBEDDINGS, "label": LABELS}
Slice = tuple[str, str, str]  # (signal, model version, day)


@dataclass(frozen=True)
class Superseded:
    """The runs holding rows of each judged slice now, and the kept verdicts of other runs on them."""

    holding: Mapping[Slice, frozenset[str]]
    runs: tuple[str, ...]  # the runs whose verdicts are superseded
    dropped: pc.Expression | None  # selects those verdicts; None: there are none

    @classmethod
    def of(cls, lakehouse_root: str, slices: Iterable[tuple[str, Slice]]) -> Superseded:
        """The state of the (kind, slice) pairs: one read of each signal table's run ids on their
        days, one of the alerts kept on them."""
        slices = set(slices)
        holding: dict[Slice, set[str]] = {s: set() for _, s in slices}
        for kind in sorted({k for k, _ in slices}):
            mine = [s for k, s in slices if k == kind]
            root = f"{lakehouse_root.rstrip('/')}/{SIGNAL_TABLES[kind].name}"
            if not DeltaTable.is_deltatable(root):
                continue
            rows = delta_io.read_arrow(root, where=[("signal", "in", sorted({s[0] for s in mine})), ("ds", "in", sorted({s[2] for s in mine}))],
                                       columns=["signal", "model_version", "ds", "run_id"])
            for r in rows.group_by(["signal", "model_version", "ds", "run_id"]).aggregate([]).to_pylist():
                holding.get((r["signal"], r["model_version"], r["ds"]), set()).add(r["run_id"])
        root = f"{lakehouse_root.rstrip('/')}/{ALERTS.name}"
        kept = delta_io.read_arrow(root, where=[("ds", "in", sorted({s[2] for s in holding}))],
                                   columns=["signal", "model_version", "ds", "run_id"]).to_pylist() if holding and DeltaTable.is_deltatable(root) else []
        stale = sorted({(r["signal"], r["model_version"], r["ds"], r["run_id"]) for r in kept
                        if r["run_id"] not in holding.get((r["signal"], r["model_version"], r["ds"]), {r["run_id"]})})
        dropped = functools.reduce(operator.or_, [(pc.field("signal") == s) & (pc.field("model_version") == m) & (pc.field("ds") == d)
                                                  & (pc.field("run_id") == r) for s, m, d, r in stale]) if stale else None
        return cls({s: frozenset(runs) for s, runs in holding.items()}, tuple(sorted({r[3] for r in stale})), dropped)


def drop_superseded_verdicts(lakehouse_root: str, run_id: str, job: str) -> int | None:
    """Drop the verdicts of other runs on the slices `run_id` kept statistics of whose rows are gone
    (it replaced them), in one commit of the alerts table; None: there were none."""
    stats = f"{lakehouse_root.rstrip('/')}/{SIGNAL_STATS.name}"
    if not DeltaTable.is_deltatable(stats):
        return None
    written = delta_io.read_arrow(stats, filters=pc.field("run_id") == run_id, columns=["kind", "signal", "model_version", "ds"]).to_pylist()
    found = Superseded.of(lakehouse_root, [(r["kind"], (r["signal"], r["model_version"], r["ds"])) for r in written])
    if found.dropped is None:
        return None
    return delta_io.replace_rows(f"{lakehouse_root.rstrip('/')}/{ALERTS.name}", ALERTS, ALERTS.schema.empty_table(), run_id, found.runs,
                                 found.dropped, {"job": job, "superseded_runs": ",".join(found.runs)})
