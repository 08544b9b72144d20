"""Watch a run: its statistics (computed once, kept in `signal_stats`), each of its days judged
against the reference window by the configured rules, and the verdicts kept in `alerts`.

    result = monitor_run(spark, settings, run_id, corpus_items=...)
    result.fired          # the verdicts that fired: `content-signals monitor` exits 5 on any

A stats table of an older contract, a pinned reference day without statistics, a run that wrote
nothing: each is a UsageError with what to do, not a traceback.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from conf.settings import Settings, UsageError
from lake import delta_io
from monitoring.attribution import CORPUS, attribute
from monitoring.file_summary import KEYS, column_arrays
from monitoring.reference import Reference, choose_rows, merge, reference_days
from monitoring.rules import DRIFT_RULES, Verdict, judge
from monitoring.stats import compute_stats, require_columns
from monitoring.superseded import SIGNAL_TABLES, Superseded, commits_of_run, drop_not_holding, drop_superseded, runs_holding, table_versions
from signals.contracts import ALERTS, EMBEDDINGS, LABELS, RUNS, SIGNAL_STATS, TableContract

CHOICE_COLUMNS = ["signal", "model_version", "ds", "run_id", "items", "computed_at"]


@dataclass(frozen=True)
class Judged:
    """The verdicts on one signal's day at one model version, and what it was compared with."""

    signal: str
    model_version: str
    ds: str
    reference: str
    verdicts: list[Verdict]
    kind: str  # "embedding" or "label": which signal table holds its rows
    window: Reference | None  # the reference merged (its histograms draw the dashboard's); None without one


@dataclass(frozen=True)
class MissingItems:
    """What a fired row-count alert is about: the corpus items of its day without a row of its
    signal at its model version, how many, and the first of them by id."""

    count: int
    first: list[str]


@dataclass(frozen=True)
class MonitorResult:
    run_id: str
    judged: list[Judged]
    alerts_version: int | None
    missing: Mapping[tuple[str, str, str], MissingItems] = field(default_factory=dict)  # (signal, model version, day) of a row_count alert

    @property
    def fired(self) -> list[tuple[Judged, Verdict]]:
        return [(j, v) for j in self.judged for v in j.verdicts if v.fired]

    @property
    def drift_judged_days(self) -> list[str]:
        """The days on which some signal's drift was judged (a drift verdict with a value: not left
        unjudged for want of a reference or of rows): what "no false drift alert" was checked on."""
        return sorted({j.ds for j in self.judged if any(v.rule in DRIFT_RULES and v.value is not None for v in j.verdicts)})


class AlertsFired(RuntimeError):
    """A monitored run raised alerts: the exit status tells a scheduler to stop the pipeline."""


def read_stats(settings: Settings, filters: pa.compute.Expression | None = None, columns: Sequence[str] | None = None) -> pa.Table:
    """Rows of the `signal_stats` table (none if there is no table), refused with what to do when
    the table was written under another contract."""
    root = settings.table_root(SIGNAL_STATS.name)
    if not DeltaTable.is_deltatable(root):
        return SIGNAL_STATS.schema.empty_table().select(list(columns or SIGNAL_STATS.schema.names))
    stored = pa.schema(DeltaTable(root).schema().to_arrow())
    expected = {f.name: f.type for f in SIGNAL_STATS.schema}
    found = {f.name: f.type for f in stored}
    wrong = sorted(n for n in expected if n not in found or found[n] != expected[n])
    if wrong:
        raise UsageError(f"the {SIGNAL_STATS.name} table at {root} was written under another contract (columns missing or of another "
                         f"type: {', '.join(wrong)}). Move it aside; `content-signals monitor --run-id <run>` computes a run's "
                         "statistics again from the signal tables")
    return delta_io.read_arrow(root, filters=filters, columns=columns or None)


def stats_rows(table: pa.Table) -> list[dict]:
    """Statistics rows as dicts, each `sample` a float32 matrix of its vectors (None where null):
    from the column's one buffer, not a Python float apiece (tens of thousands a row)."""
    if "sample" not in table.column_names:
        return table.to_pylist()
    rows = table.drop_columns(["sample"]).to_pylist()
    samples = table.column("sample").combine_chunks()
    vectors = column_arrays(samples.flatten())
    offsets = samples.offsets.to_numpy() - samples.offsets[0].as_py()
    for row, null, start, end in zip(rows, samples.is_null().to_pylist(), offsets[:-1], offsets[1:], strict=True):
        row["sample"] = None if null else np.asarray(vectors[start:end], np.float32) if end > start else np.zeros((0, 0), np.float32)
    return rows


def stats_of_run(spark: SparkSession, settings: Settings, run_id: str, recompute: bool = False) -> pa.Table:
    """The run's statistics: those kept in `signal_stats`, else (or with `recompute`) computed
    in Spark from its rows and kept there in place of any older ones (and of the statistics and
    verdicts of runs whose rows it replaced or removed: monitoring.superseded)."""
    if not recompute:
        kept = read_stats(settings, pc.field("run_id") == run_id)
        if kept.num_rows:
            return kept
    runs = settings.table_root(RUNS.name)
    ledger = delta_io.read_arrow(runs, filters=pc.field("run_id") == run_id).to_pylist() if DeltaTable.is_deltatable(runs) else []
    job = ledger[0]["job"] if ledger else None
    stats = compute_stats(spark, settings.lakehouse_root, run_id, job, settings.monitor.sample_size, settings.monitor.seed)
    if stats.num_rows:
        delta_io.replace_run_rows(settings.table_root(SIGNAL_STATS.name), SIGNAL_STATS, stats, run_id, {"job": "monitor"})
    drop_superseded(settings.lakehouse_root, run_id, "monitor", commits_of_run(settings.lakehouse_root, run_id))
    return stats


def require_signal_tables(settings: Settings) -> None:
    """A usage error where the lakehouse holds no signal table: nothing was computed there to monitor
    (a mistyped lakehouse?), said from the folder alone, before a Spark session starts."""
    if not any(DeltaTable.is_deltatable(settings.table_root(c.name)) for c in SIGNAL_TABLES.values()):
        raise UsageError(f"no signal tables ({', '.join(c.name for c in SIGNAL_TABLES.values())}) in {settings.lakehouse_root}: "
                         "nothing was computed there to monitor (is --set lakehouse right?)")


def latest_run(settings: Settings, day: str | None = None) -> str:
    """The run to monitor: the latest that wrote rows of `day`, or else the latest backfill or
    refresh that succeeded and wrote rows, by the ledger (a refresh that only took items down
    commits, and has nothing of its own to monitor)."""
    if day is not None:
        found = []
        for contract in (EMBEDDINGS, LABELS):
            root = settings.table_root(contract.name)
            if DeltaTable.is_deltatable(root):
                require_columns(root, contract, ["ds", "run_id", "computed_at"])
                found += delta_io.read_arrow(root, where=[("ds", "=", day)], columns=["run_id", "computed_at"]).to_pylist()
        if not found:
            raise UsageError(f"no signal rows of day {day} in {settings.lakehouse_root}: nothing to monitor")
        return max(found, key=lambda r: r["computed_at"])["run_id"]
    root = settings.table_root(RUNS.name)
    runs = delta_io.read_arrow(root).to_pylist() if DeltaTable.is_deltatable(root) else []
    done = [r for r in runs if r["status"] == "succeeded" and r["job"].startswith(("backfill", "refresh")) and r["table_version"] is not None
            and (r["rows_in"] or 0) > 0]
    if not done:
        raise UsageError(f"no backfill or refresh has committed rows in {settings.lakehouse_root} (by its runs ledger): name the run "
                         "to monitor with --run-id, or a day with --day (rows another writer wrote have no ledger)")
    return max(done, key=lambda r: r["finished_at"])["run_id"]


def rows_are_items(contract: TableContract) -> bool:
    """Whether each partition of the table holds at most one row per content id: every column
    of its key but `content_id` is a partition column (embeddings; not labels, a row per label)."""
    return set(contract.key) - {"content_id"} <= set(contract.partition_by)


def table_items(settings: Settings, rows: Sequence[dict]) -> dict[tuple[str, str, str], int]:
    """Items each signal table holds per (signal, model version, day) of the statistics `rows`:
    from the log's row counts where a partition's rows are its items, else one read of the
    table's key columns, however many days and signals the run wrote."""
    counts: dict[tuple[str, str, str], int] = {}
    for kind in sorted({r["kind"] for r in rows}):
        mine = [r for r in rows if r["kind"] == kind]
        contract = SIGNAL_TABLES[kind]
        logged = delta_io.rows_per_partition(settings.table_root(contract.name), KEYS) if rows_are_items(contract) else None
        if logged is not None:
            counts |= logged
            continue
        keys = delta_io.read_arrow(settings.table_root(contract.name),
                                   where=[("signal", "in", sorted({r["signal"] for r in mine})), ("ds", "in", sorted({r["ds"] for r in mine}))],
                                   columns=["signal", "model_version", "ds", "content_id"])
        grouped = keys.group_by(["signal", "model_version", "ds"]).aggregate([("content_id", "count_distinct")])
        counts |= {(r["signal"], r["model_version"], r["ds"]): r["content_id_count_distinct"] for r in grouped.to_pylist()}
    return counts


def monitor_run(spark: SparkSession, settings: Settings, run_id: str, days: Sequence[str] | None = None,
                corpus_items: Callable[[Sequence[str]], dict[str, int]] | None = None, recompute: bool = False) -> MonitorResult:
    """Judge each (signal, model version, day) the run wrote (only `days`, if given) against its
    reference window, keep the verdicts in `alerts` (in place of earlier verdicts on the run and
    of those it superseded; none on a day whose rows the run no longer holds: monitoring.superseded),
    and return them. `corpus_items` counts the corpus's items per day, for the row-count rule
    (not applied to challenger runs, which may compute a slice)."""
    conf = settings.monitor
    stats = stats_of_run(spark, settings, run_id, recompute)
    kept = stats_rows(stats)
    rows = [r for r in kept if days is None or r["ds"] in days]
    if not rows:
        raise UsageError(f"run {run_id} wrote no signal rows{' of ' + ', '.join(days) if days else ''}: nothing to monitor")
    index = read_stats(settings, columns=CHOICE_COLUMNS).to_pylist()
    if conf.reference_day is not None and not any(r["ds"] == conf.reference_day for r in index):
        known = sorted({r["ds"] for r in index})
        raise UsageError(f"monitor.reference_day {conf.reference_day} has no statistics (days that have: "
                         f"{', '.join(known[-10:]) or 'none'}); monitor a run of that day first, or pin another")
    challenger = any((r["job"] or "").endswith("challenger") for r in rows)
    counted = corpus_items(sorted({r["ds"] for r in rows})) if corpus_items and not challenger else {}
    in_tables = table_items(settings, [r for r in rows if r["ds"] in counted]) if counted else {}
    plans = []
    for row in sorted(rows, key=lambda r: (r["signal"], r["ds"])):
        mine = [r for r in index if r["signal"] == row["signal"]]
        window = reference_days([r["ds"] for r in mine], row["ds"], conf)
        plans.append((row, choose_rows([r for r in mine if r["ds"] in window], row["model_version"], (run_id, row["ds"]))))
    references = _reference_rows(settings, kept, [r for _, chosen in plans for r in chosen])
    judged = []
    for row, chosen in plans:
        reference = merge([references[_key(r)] for r in chosen], conf.max_reference_sample, conf.seed) if chosen else None
        attribution = attribute(settings.table_root(SIGNAL_TABLES[row["kind"]].name), row["kind"], row["signal"], reference.versions,
                                row["model_version"], [*reference.days, row["ds"]], conf) if reference else None
        completeness = None
        if row["ds"] in counted:
            completeness = (in_tables.get((row["signal"], row["model_version"], row["ds"]), 0), counted[row["ds"]])
        verdicts = judge(row, reference, conf, attribution.cause if attribution else CORPUS, completeness)
        if attribution and attribution.cause != CORPUS:
            verdicts = [Verdict(v.rule, v.fired, f"{v.message}; {attribution.message}", v.label, v.value, v.threshold, v.cause)
                        if v.rule in DRIFT_RULES and v.fired else v for v in verdicts]
        judged.append(Judged(row["signal"], row["model_version"], row["ds"], reference.describe() if reference else "none", verdicts,
                             row["kind"], reference))
    return MonitorResult(run_id, judged, _keep_verdicts(settings, run_id, judged, days))


def _key(row: dict) -> tuple[str, str, str, str]:
    return row["signal"], row["model_version"], row["ds"], row["run_id"]  # SIGNAL_STATS.key


def _reference_rows(settings: Settings, kept: Sequence[dict], chosen: Sequence[dict]) -> dict[tuple[str, str, str, str], dict]:
    """The whole statistics rows of the `chosen` index rows, by key: the monitored run's from its
    rows at hand (`kept`), every other run's in one read, not one read per judged day (a day's
    reference is most of the next day's)."""
    found = {_key(r): r for r in kept}
    missing = {_key(r) for r in chosen} - found.keys()
    if missing:
        signals, versions, days, runs = (sorted({k[i] for k in missing}) for i in range(4))
        read = read_stats(settings, pc.field("signal").isin(signals) & pc.field("model_version").isin(versions)
                          & pc.field("ds").isin(days) & pc.field("run_id").isin(runs))
        found |= {_key(r): r for r in stats_rows(read) if _key(r) in missing}
    return found


def _keep_verdicts(settings: Settings, run_id: str, judged: Sequence[Judged], days: Sequence[str] | None) -> int:
    """Keep the verdicts in `alerts` in place of the run's earlier ones on the days judged (all its days, or only
    `days`: `monitor --day` once replaced the run's verdicts on every other day with none) and of those superseded."""
    now = datetime.now(UTC)
    holding_slices = [(j.kind, (j.signal, j.model_version, j.ds)) for j in judged]
    versions = table_versions(settings.lakehouse_root, [j.kind for j in judged])
    holding = runs_holding(settings.lakehouse_root, holding_slices)
    found = Superseded.of(settings.lakehouse_root, holding, ALERTS)
    current = [j for j in judged if run_id in holding[(j.signal, j.model_version, j.ds)]]  # none on rows the run no longer holds
    rows = [{"run_id": run_id, "signal": j.signal, "model_version": j.model_version, "ds": j.ds, "reference": j.reference,
             "rule": v.rule, "label": v.label, "fired": v.fired, "value": v.value, "threshold": v.threshold, "cause": v.cause,
             "message": v.message, "evaluated_at": now} for j in current for v in j.verdicts]
    contract: TableContract = ALERTS
    mine = (pc.field("run_id") == run_id) if days is None else (pc.field("run_id") == run_id) & pc.field("ds").isin(list(days))
    version = delta_io.replace_rows(settings.table_root(contract.name), contract, pa.Table.from_pylist(rows, schema=contract.schema), run_id,
                                    [run_id, *found.runs], mine if found.dropped is None else mine | found.dropped, {"job": "monitor"})
    # a refresh that replaced a judged day since `holding` was read dropped the superseded verdicts before these landed: checked again
    # after the commit (one that commits later drops these itself), so no verdict about rows gone stays as the day's latest; read
    # again only where a signal table moved since `versions` (read before `holding`: unmoved, `holding` is what a read now finds)
    if (table_versions(settings.lakehouse_root, [j.kind for j in judged]) != versions
            and (now_holding := runs_holding(settings.lakehouse_root, holding_slices)) != holding):
        drop_not_holding(settings.lakehouse_root, now_holding, run_id, "monitor")
        return DeltaTable(settings.table_root(contract.name)).version()
    return version
