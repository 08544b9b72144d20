"""The refresh job: bring the embeddings table in line with the corpus, computing only what
changed since the table was last brought in line.

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

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs import delta_io
from jobs.backfill import corpus_root
from jobs.config import Settings
from jobs.engine import Run, RunResult, build_signals, recorded, run_outcomes, signal_rows, write_and_commit
from jobs.ledger import NOTHING_TO_DO, SUCCEEDED
from signals.base import Signal
from signals.contracts import EMBEDDINGS
from udfs.columns import input_hash_column

JOB = "refresh"
KEY = ["content_id", "signal", "model_version"]


@dataclass(frozen=True)
class Plan:
    """What a refresh will do, decided from one small Spark action."""

    todo: dict[str, int]  # signal -> items to compute
    stale_by_file: dict[str, int]  # unescaped relative path -> stale rows in it
    stale: DataFrame  # (content_id, signal, model_version) of every stale row
    todo_ids: dict[str, DataFrame]  # signal -> content_ids to compute

    @property
    def empty(self) -> bool:
        return not any(self.todo.values()) and not self.stale_by_file


def _same_input(left: DataFrame, right: DataFrame) -> Column:
    """Same item and same input hash, where a null hash (no image) equals a null hash."""
    return (left["content_id"] == right["content_id"]) & left["input_hash"].eqNullSafe(right["input_hash"])


def plan_refresh(spark: SparkSession, settings: Settings, signals: dict[str, Signal], items: DataFrame, read_version: int) -> Plan:
    root = settings.table_root(EMBEDDINGS.name)
    stored = delta_io.read_spark(spark, root, read_version).select(*KEY, "input_hash", F.input_file_name().alias("file"))
    deleted = stored.join(items.select("content_id"), "content_id", "left_anti").select(*KEY, "file")
    stale, todo_ids = [deleted], {}
    for name, signal in signals.items():
        current = items.select("content_id", input_hash_column(signal).alias("input_hash")).alias("current")
        mine = stored.filter((F.col("signal") == name) & (F.col("model_version") == signal.config.model.version)).alias("mine")
        todo_ids[name] = current.join(mine, _same_input(current, mine), "left_anti").select("content_id")
        changed = mine.join(current, "content_id").filter(~F.col("mine.input_hash").eqNullSafe(F.col("current.input_hash")))
        stale.append(changed.select(*[F.col(f"mine.{c}") for c in KEY], F.col("mine.file")))
    stale_rows = functools.reduce(DataFrame.unionByName, stale)
    summary = [
        *[todo_ids[name].select(F.lit("todo").alias("kind"), F.lit(name).alias("key")) for name in signals],
        stale_rows.select(F.lit("stale").alias("kind"), F.col("file").alias("key")),
    ]
    counts = functools.reduce(DataFrame.unionByName, summary).groupBy("kind", "key").count().collect()
    return Plan(
        todo={name: next((r["count"] for r in counts if r["kind"] == "todo" and r["key"] == name), 0) for name in signals},
        stale_by_file={delta_io.relative_path(root, r["key"]): r["count"] for r in counts if r["kind"] == "stale"},
        stale=stale_rows.select(*KEY),
        todo_ids=todo_ids,
    )


def run_refresh(spark: SparkSession, settings: Settings, run_id: str | None = None) -> RunResult:
    """Compute what is new or changed, drop what is stale, in one commit (none if nothing to do)."""
    corpus = corpus_root(settings)
    run = Run.begin(JOB, run_id)
    root = settings.table_root(EMBEDDINGS.name)
    if delta_io.committed(root, run.app_id):
        return RunResult(run.run_id, "skipped", delta_io.version_of_commit(root, run.app_id))
    signals = build_signals(settings)
    read_version = delta_io.ensure_table(root, EMBEDDINGS).version()
    items = delta_io.read_spark(spark, corpus)
    plan = plan_refresh(spark, settings, signals, items, read_version)
    if plan.empty:
        return RunResult(run.run_id, NOTHING_TO_DO, message="the table already matches the corpus")

    with recorded(settings, run, signals) as finish:
        live = {unquote(f.path): f for f in delta_io.live_files(root, EMBEDDINGS, read_version)}
        rewritten = set(plan.stale_by_file)
        kept = delta_io.read_spark(spark, root, read_version, only=rewritten).join(plan.stale, KEY, "left_anti")
        computed = [signal_rows(items.join(plan.todo_ids[n], "content_id", "left_semi"), s, settings, run)
                    for n, s in signals.items() if plan.todo[n]]
        expected = dict(plan.todo)
        for path in rewritten:
            signal = live[path].partition_values["signal"]
            expected[signal] = expected.get(signal, 0) + live[path].num_records - plan.stale_by_file[path]
        version = write_and_commit(
            spark, settings, run, [*computed, kept.select(*EMBEDDINGS.schema.names)], expected,
            remove=lambda f: unquote(f.path) in rewritten,
            read_version=read_version,
            metadata={"stale_rows": str(sum(plan.stale_by_file.values())), "computed": str(plan.todo)},
        )
        message = f"computed {sum(plan.todo.values())} rows, dropped {sum(plan.stale_by_file.values())} stale rows from {len(rewritten)} files"
        result = RunResult(run.run_id, SUCCEEDED, version, run_outcomes(settings, run.run_id, signals), message)
        finish(result)
    return result
