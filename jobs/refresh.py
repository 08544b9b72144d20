"""The refresh job: bring the signal tables (embeddings, labels) in line with the corpus,
computing only what changed since they were last brought in line.

    content-signals refresh

For every enabled signal, at its model version, the corpus is compared with the stored rows
by (content_id, input_hash):
- a corpus item with no stored row of the same input hash is computed (new, or its input changed);
- a stored row with no corpus item of the same hash is stale (the old row of a changed item).
Stored rows of items that left the corpus are stale for EVERY signal and version in the table,
enabled or not: takedowns disappear from everything consumers read. Files holding stale rows
are rewritten without them (copy on write) in the same commit that adds the new rows, so
readers see either the old table or the new one. Nothing to do means no commit at all.

Resume needs no bookkeeping: the comparison is against what is committed, so a run killed
before its commit is simply redone by the next one, and one killed after it finds nothing left.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from urllib.parse import unquote

from deltalake import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs import delta_io
from jobs.backfill import corpus_root
from jobs.config import Settings
from jobs.engine import Run, RunResult, already_committed, build_signals, by_output, recorded, run_outcomes, signal_rows, write_and_commit
from jobs.ledger import NOTHING_TO_DO, SUCCEEDED
from signals.base import Signal
from signals.contracts import EMBEDDINGS, LABELS, TableContract
from udfs.columns import input_hash_column

JOB = "refresh"
KEY = ["content_id", "signal", "model_version"]


@dataclass(frozen=True)
class Plan:
    """What a refresh will do to one table, decided by one small Spark action.

    The keys it found (items to compute, stale rows) stay cached, so applying the plan never
    hashes the corpus again; `release` frees them."""

    contract: TableContract
    signals: dict[str, Signal]
    read_version: int
    todo: dict[str, int]  # signal -> items to compute
    todo_days: tuple[str, ...]  # corpus days (ds) holding those items
    rewritten: dict[str, tuple[int, int]]  # unescaped relative path -> (items in it, stale items in it)
    todo_items: DataFrame  # signal, content_id of every item to compute
    stale: DataFrame  # KEY of every stale item
    cached: tuple[DataFrame, ...]

    @property
    def empty(self) -> bool:
        return not any(self.todo.values()) and not self.rewritten

    def release(self) -> None:
        for frame in self.cached:
            frame.unpersist()


def _hash_column(signal: Signal) -> str:
    """The name of the corpus's input-hash column for a signal: signals with the same inputs share one."""
    return "hash_" + "_".join(signal.input_columns)


def plan_refresh(spark: SparkSession, settings: Settings, contract: TableContract, signals: dict[str, Signal], items: DataFrame) -> Plan:
    """Compare the corpus with the committed rows of one table, in two joins whatever the number
    of signals: each stored row against its corpus item (stale: the item is gone, or its input
    hash changed), then each (item, enabled signal) against the rows still valid (todo)."""
    root = settings.table_root(contract.name)
    read_version = delta_io.ensure_table(root, contract).version()
    hashes = {_hash_column(s): input_hash_column(s) for s in signals.values()}
    current = items.select("content_id", "ds", *[expr.alias(name) for name, expr in hashes.items()]).persist()
    stored = delta_io.read_spark(spark, root, read_version).select(*KEY, "input_hash", F.input_file_name().alias("file"))
    if tuple(KEY) != contract.key:
        stored = stored.distinct()  # a labelled item has a row per label: one per item here
    current_hash, enabled = F.lit(None).cast("string"), F.lit(False)
    for name, signal in signals.items():
        mine = (F.col("signal") == name) & (F.col("model_version") == signal.config.model.version)
        current_hash, enabled = F.when(mine, F.col(_hash_column(signal))).otherwise(current_hash), enabled | mine
    same_input = F.col("input_hash").eqNullSafe(current_hash)
    in_corpus = F.col("in_corpus").isNotNull()
    annotated = stored.join(current.select("content_id", *hashes, F.lit(True).alias("in_corpus")), "content_id", "left").select(
        *KEY, "file", (~in_corpus | (enabled & ~same_input)).alias("stale"), (in_corpus & enabled & same_input).alias("valid"),
    ).persist()
    wanted = [current.select("content_id", "ds", F.lit(name).alias("signal")) for name in signals]
    todo_items = (
        functools.reduce(DataFrame.unionByName, wanted).join(annotated.filter("valid").select("content_id", "signal"), ["content_id", "signal"], "left_anti")
        if wanted else spark.createDataFrame([], "content_id string, ds string, signal string")
    ).persist()
    summary = todo_items.groupBy(F.lit("todo").alias("kind"), F.concat_ws("/", "signal", "ds").alias("key")).agg(
        F.count("*").alias("n"), F.lit(0).cast("long").alias("stale")
    ).unionByName(
        annotated.groupBy(F.lit("file").alias("kind"), F.col("file").alias("key")).agg(
            F.count("*").alias("n"), F.sum(F.col("stale").cast("long")).alias("stale")
        ).filter("stale > 0")
    )
    counts = summary.collect()
    todo_by_day = [(*r["key"].split("/", 1), r["n"]) for r in counts if r["kind"] == "todo"]
    return Plan(
        contract, signals, read_version,
        todo={name: sum(n for signal, _, n in todo_by_day if signal == name) for name in signals},
        todo_days=tuple(sorted({day for _, day, _ in todo_by_day})),
        rewritten={delta_io.relative_path(root, r["key"]): (r["n"], r["stale"]) for r in counts if r["kind"] == "file"},
        todo_items=todo_items.select("signal", "content_id"),
        stale=annotated.filter("stale").select(*KEY),
        cached=(current, annotated, todo_items),
    )


BROADCAST_MAX_ITEMS = 1_000_000  # ids of items to compute sent to every task: no shuffle of corpus rows


def _small(ids: DataFrame, count: int) -> DataFrame:
    """`ids`, marked for a broadcast join when there are few enough of them (a daily refresh)."""
    return F.broadcast(ids) if count <= BROADCAST_MAX_ITEMS else ids


def apply_plan(spark: SparkSession, settings: Settings, run: Run, plan: Plan, corpus: tuple[str, int]) -> int:
    """Compute the plan's items (reading only the days of the corpus (root, version) that hold
    them), rewrite the files holding stale items without them, one commit."""
    root = settings.table_root(plan.contract.name)
    live = {unquote(f.path): f for f in delta_io.live_files(root, plan.contract, plan.read_version)}
    rewritten = set(plan.rewritten)
    sources = []
    if rewritten:  # the rows that stay in files holding stale rows, written again without them
        kept = delta_io.read_spark(spark, root, plan.read_version, only=rewritten).join(plan.stale, KEY, "left_anti")
        sources.append(delta_io.WriteSource(kept))
    if plan.todo_days:
        items = delta_io.read_spark(spark, *corpus, partitions=[("ds", "in", list(plan.todo_days))])
        sources += [
            signal_rows(items.join(_small(plan.todo_items.filter(F.col("signal") == n).select("content_id"), plan.todo[n]),
                                   "content_id", "left_semi"), s, settings, run, plan.todo[n])
            for n, s in plan.signals.items() if plan.todo[n]
        ]
    expected = dict(plan.todo)
    for path, (in_file, stale) in plan.rewritten.items():
        signal = live[path].partition_values["signal"]
        expected[signal] = expected.get(signal, 0) + in_file - stale
    return write_and_commit(
        spark, settings, run, plan.contract, sources, expected,
        remove=lambda f: unquote(f.path) in rewritten,
        read_version=plan.read_version,
        metadata={"stale_items": str(sum(s for _, s in plan.rewritten.values())), "computed": str(plan.todo)},
    )


def run_refresh(spark: SparkSession, settings: Settings, run_id: str | None = None) -> RunResult:
    """Compute what is new or changed, drop what is stale, one commit per table that changes
    (none at all if nothing has changed)."""
    corpus = corpus_root(settings)
    run = Run.begin(JOB, run_id)
    signals = build_signals(settings)
    done = already_committed(settings, run, signals)
    if done:
        return done
    corpus_version = delta_io.snapshot(corpus).version()  # plan and apply read the same corpus
    items = delta_io.read_spark(spark, corpus, corpus_version)
    grouped = by_output(signals)
    plans = [plan_refresh(spark, settings, contract, grouped.get(contract, {}), items) for contract in (EMBEDDINGS, LABELS)
             if contract in grouped or DeltaTable.is_deltatable(settings.table_root(contract.name))]  # takedowns reach every table
    try:
        return _apply_plans(spark, settings, run, signals, plans, (corpus, corpus_version))
    finally:
        for plan in plans:
            plan.release()


def _apply_plans(spark: SparkSession, settings: Settings, run: Run, signals: dict[str, Signal], plans: list[Plan],
                 corpus: tuple[str, int]) -> RunResult:
    if all(plan.empty for plan in plans):
        return RunResult(run.run_id, NOTHING_TO_DO, message="the tables already match the corpus")
    with recorded(settings, run, signals) as finish:
        versions = {plan.contract.name: apply_plan(spark, settings, run, plan, corpus) for plan in plans if not plan.empty}
        computed = sum(sum(plan.todo.values()) for plan in plans)
        dropped = sum(s for plan in plans for _, s in plan.rewritten.values())
        result = RunResult(run.run_id, SUCCEEDED, versions, run_outcomes(settings, run.run_id, signals),
                           f"computed {computed} items, dropped {dropped} stale items")
        finish(result)
    return result
