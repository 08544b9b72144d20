"""Which kept verdicts and statistics are superseded: a run's verdicts (`alerts`) and statistics
(`signal_stats`) on a (signal, model version, day) stay while the signal table holds rows of that
run there, and go when no row of it is left (a re-run backfill replaced the day, a refresh took
down all of the day's items it had): a reader of the latest verdict per signal and day never
reads one about rows that no longer exist, and no reference describes them.

The backfill or refresh that replaced or removed them drops them as it keeps its statistics,
monitored or not (`drop_superseded`): on the slices it kept statistics of, and on the days of the
files its commits removed, where it may have written nothing (a day all taken down). The monitor
drops superseded verdicts with its own verdicts' commit, and keeps none on a day whose rows its run
no longer holds. It reads which runs hold its days again after that commit: a refresh that replaced
one of them meanwhile dropped what it superseded before the monitor's verdicts landed, so the
monitor drops them itself (a refresh committing later drops them); it reads them again only where a
signal table's version moved since its first read (`table_versions`).
"""
from __future__ import annotations

import functools
import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pyarrow.compute as pc
from deltalake import DeltaTable

from lake import delta_io, ledger
from monitoring.removed_samples import drop_removed_samples
from signals.contracts import ALERTS, EMBEDDINGS, LABELS, SIGNAL_STATS, TableContract, lakehouse_table

SIGNAL_TABLES = {"embedding": EMBEDDINGS, "label": LABELS}
Slice = tuple[str, str, str]  # (signal, model version, day)


def runs_holding(lakehouse_root: str, slices: Iterable[tuple[str, Slice]]) -> dict[Slice, frozenset[str]]:
    """The runs whose rows each (kind, slice) holds now: one read of each signal table's run ids on their days."""
    slices = set(slices)
    holding: dict[Slice, set[str]] = {s: set() for _, s in slices}
    for kind in sorted({k for k, _ in slices}):
        mine = [s for k, s in slices if k == kind]
        root = lakehouse_table(lakehouse_root, SIGNAL_TABLES[kind].name)
        if not DeltaTable.is_deltatable(root):
            continue
        rows = delta_io.read_arrow(root, where=[("signal", "in", sorted({s[0] for s in mine})), ("ds", "in", sorted({s[2] for s in mine}))],
                                   columns=["signal", "model_version", "ds", "run_id"])
        for r in rows.group_by(["signal", "model_version", "ds", "run_id"]).aggregate([]).to_pylist():
            holding.get((r["signal"], r["model_version"], r["ds"]), set()).add(r["run_id"])
    return {s: frozenset(runs) for s, runs in holding.items()}


def table_versions(lakehouse_root: str, kinds: Iterable[str]) -> dict[str, int | None]:
    """The latest version of each kind's signal table (None: no table): where none moved between
    these and a later call, a `runs_holding` read made in between finds what a read now would."""
    return {k: delta_io.latest_version(lakehouse_table(lakehouse_root, SIGNAL_TABLES[k].name)) for k in sorted(set(kinds))}


@dataclass(frozen=True)
class Superseded:
    """The rows a table (`alerts`, `signal_stats`) keeps of runs on slices that no longer hold rows of them."""

    runs: tuple[str, ...]  # the runs whose rows are superseded
    dropped: pc.Expression | None  # selects those rows; None: there are none

    @classmethod
    def of(cls, lakehouse_root: str, holding: Mapping[Slice, frozenset[str]], contract: TableContract) -> Superseded:
        """Those of the table's rows on the slices of `holding` (one read of their days)."""
        root = lakehouse_table(lakehouse_root, contract.name)
        kept = delta_io.read_arrow(root, where=[("ds", "in", sorted({s[2] for s in holding}))],
                                   columns=["signal", "model_version", "ds", "run_id"]).to_pylist() if holding and DeltaTable.is_deltatable(root) else []
        stale = sorted({(r["signal"], r["model_version"], r["ds"], r["run_id"]) for r in kept
                        if r["run_id"] not in holding.get((r["signal"], r["model_version"], r["ds"]), {r["run_id"]})})
        dropped = functools.reduce(operator.or_, [(pc.field("signal") == s) & (pc.field("model_version") == m) & (pc.field("ds") == d)
                                                  & (pc.field("run_id") == r) for s, m, d, r in stale]) if stale else None
        return cls(tuple(sorted({r[3] for r in stale})), dropped)


def drop_superseded(lakehouse_root: str, run_id: str, job: str, commits: Mapping[str, int | None]) -> None:
    """Drop the statistics and verdicts of other runs whose rows `run_id` replaced (on the slices it kept
    statistics of) or removed (on the days of the files its `commits` removed: table -> version, None
    where not known, as `commits_of_run`'s): one commit of each table that holds some. Then the vectors of the
    embedding rows its commits removed leave the samples of the statistics still kept (monitoring/removed_samples.py)."""
    stats = lakehouse_table(lakehouse_root, SIGNAL_STATS.name)
    if not DeltaTable.is_deltatable(stats):  # no statistics kept yet: no verdict either
        return
    written = delta_io.read_arrow(stats, filters=pc.field("run_id") == run_id, columns=["kind", "signal", "model_version", "ds"]).to_pylist()
    removed = {kind: delta_io.removed_by(lakehouse_table(lakehouse_root, contract.name), commits[contract.name])
               for kind, contract in SIGNAL_TABLES.items() if commits.get(contract.name) is not None}  # read once, for both drops
    slices = {(r["kind"], (r["signal"], r["model_version"], r["ds"])) for r in written} | emptied_slices(lakehouse_root, removed)
    drop_not_holding(lakehouse_root, runs_holding(lakehouse_root, slices), run_id, job)
    drop_removed_samples(lakehouse_root, run_id, job, commits.get(EMBEDDINGS.name), removed.get("embedding", []))  # of the statistics still kept


def commits_of_run(lakehouse_root: str, run_id: str) -> dict[str, int | None]:
    """The version of the run's commit to each signal table that has one (None: its log entry is gone), looked up by its app id."""
    app_id = ledger.run_app_id(run_id)
    roots = {c.name: lakehouse_table(lakehouse_root, c.name) for c in SIGNAL_TABLES.values()}
    return {name: delta_io.version_of_commit(root, app_id) for name, root in roots.items()
            if DeltaTable.is_deltatable(root) and delta_io.committed(root, app_id)}


def emptied_slices(lakehouse_root: str, removed_files: Mapping[str, list[delta_io.LiveFile]]) -> set[tuple[str, Slice]]:
    """The (kind, slice) of the statistics kept on the days of the files a run's commits removed (kind ->
    files, `delta_io.removed_by`): the slices that may hold no row of a run any more (a refresh took down
    all of its items there), though the run that removed them wrote none there to keep statistics of."""
    removed = [(kind, s) for kind, files in removed_files.items() for s in delta_io.slices(SIGNAL_TABLES[kind], files)]
    if not removed:
        return set()
    kept = delta_io.read_arrow(lakehouse_table(lakehouse_root, SIGNAL_STATS.name), where=[("signal", "in", sorted({s.partition[0] for _, s in removed}))],
                               columns=["kind", "signal", "model_version", "ds"]).to_pylist()
    return {(r["kind"], (r["signal"], r["model_version"], r["ds"])) for r in kept
            if any(kind == r["kind"] and s.meets(delta_io.Slice((r["signal"], r["model_version"]), (r["ds"], r["ds"]))) for kind, s in removed)}


def drop_not_holding(lakehouse_root: str, holding: Mapping[Slice, frozenset[str]], run_id: str, job: str) -> None:
    """Drop the statistics and verdicts on the slices of `holding` of runs whose rows they no longer
    hold, committed as `run_id`'s: one commit of each table that keeps some."""
    for contract in (SIGNAL_STATS, ALERTS):
        found = Superseded.of(lakehouse_root, holding, contract)
        if found.dropped is not None:
            delta_io.replace_rows(lakehouse_table(lakehouse_root, contract.name), contract, contract.schema.empty_table(), run_id,
                                  found.runs, found.dropped, {"job": job, "superseded_runs": ",".join(found.runs)})
