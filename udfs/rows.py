"""How a job runs a signal in Spark: a `mapInArrow` function from corpus batches to rows of the
signal's output table, which the job's file writer consumes in the same Python worker.

Compute and write share one Python worker per task (a pandas UDF followed by a writer would
take two): so an executor slot holds one copy of each model, the workers that warmed up are the
ones that run the model, and vectors never travel back to the JVM, only the written files'
metadata does. Per task: the worker's cached model on its device (`udfs.worker`), then
`signals.runner.run_signal` (model batches independent of Arrow batches, prefetch, per-row
errors; each row's keys carried with it), then `signals.table_rows` for the contract's rows.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

import pyarrow as pa
from pyspark.sql import DataFrame

from signals.base import Signal
from signals.shared_inputs import SharedInputs
from signals.table_rows import KEY_COLUMNS, RowStamp, output_of, table_rows
from udfs.columns import input_columns, input_hash_column
from udfs.worker import run_in_worker

RowsFunction = Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]


def signal_inputs(corpus: DataFrame, signal: Signal) -> DataFrame:
    """The corpus columns `output_rows` reads: the item's key columns (input hash computed in
    the JVM) and the signal's inputs."""
    return corpus.select("content_id", "ds", input_hash_column(signal).alias("input_hash"), *input_columns(signal))


def derived_inputs(corpus: DataFrame, signal: Signal, stored: DataFrame) -> DataFrame:
    """A derived signal's inputs (`Signal.stored_columns`): the item's key columns, its input hash
    from the corpus inputs it derives from, and its stored row's columns (null where it has none)."""
    keys = corpus.select("content_id", "ds", input_hash_column(signal).alias("input_hash"))
    return keys.join(stored.select("content_id", *signal.stored_columns), "content_id", "left")


def evened(frame: DataFrame, partitions_per_slot: int, rows: int, rows_per_partition: int, task_cpus: int | None = None) -> DataFrame:
    """`frame` (`rows` rows) in about `partitions_per_slot` partitions per task slot (of
    `task_cpus` cores; None: `spark.task.cpus`), none smaller than `rows_per_partition` (a model
    batch) where rows allow; 0: the scan's partitions, always.

    A small job split by files runs unevenly: its last tasks run while the other cores idle
    (docs/history.md), so it is range-partitioned by (ds, content_id): each task stays
    on few days and writes few files. A tiny one (a daily refresh's new items) is coalesced:
    sixteen near-empty tasks cost more than its model time. A job with enough partitions keeps
    its scan's partitions: no shuffle of its rows."""
    if partitions_per_slot <= 0:
        return frame
    wanted, target = _partitions(frame, partitions_per_slot, rows, rows_per_partition, task_cpus)
    scanned = frame.rdd.getNumPartitions()
    if scanned < target:
        return frame.repartitionByRange(target, "ds", "content_id")
    if target < wanted and scanned > target:
        return frame.coalesce(target)
    return frame


def grouped_by_input(frame: DataFrame, partitions_per_slot: int, rows: int, rows_per_partition: int, task_cpus: int | None = None) -> DataFrame:
    """`frame` (`signal_inputs`) with the rows sharing an input hash in one partition, sorted by
    hash, in as many partitions as `evened` would make (0: as many as the scan's), so a task
    computes each input once (signals.shared_inputs). A tiny job is coalesced: one task holds
    every repeat without a shuffle."""
    target = frame.rdd.getNumPartitions() if partitions_per_slot <= 0 else \
        _partitions(frame, partitions_per_slot, rows, rows_per_partition, task_cpus)[1]
    spread = frame.coalesce(1) if target == 1 else frame.repartition(target, "input_hash")
    return spread.sortWithinPartitions("input_hash")


def _partitions(frame: DataFrame, partitions_per_slot: int, rows: int, rows_per_partition: int, task_cpus: int | None) -> tuple[int, int]:
    """(partitions wanted for the task slots, partitions the rows call for): `partitions_per_slot`
    per slot, none smaller than `rows_per_partition` where rows allow."""
    spark = frame.sparkSession
    slots = max(1, spark.sparkContext.defaultParallelism // (task_cpus or int(spark.conf.get("spark.task.cpus", "1"))))
    wanted = slots * partitions_per_slot
    return wanted, max(1, min(wanted, -(-rows // max(1, rows_per_partition))))


def output_rows(signal: Signal, stamp: RowStamp, prefetch: int = 2, torch_threads: int = 1, compute_once: bool = False) -> RowsFunction:
    """Batches of `signal_inputs` in, batches of the signal's output-table rows out (one row per
    item, or per item and label); bad inputs are error rows. Each row's keys travel through the
    runner with it. With `compute_once`, rows of a task sharing an input hash are computed once
    and the result is fanned out to each (signals.shared_inputs); otherwise rows come out in input order."""
    contract = output_of(signal)
    columns = [*KEY_COLUMNS, *(signal.stored_columns or signal.input_columns)]

    def rows(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        frames = (batch.select(columns).to_pandas() for batch in batches)  # read on the runner's prefetch thread, if any
        shared = SharedInputs([c for c in KEY_COLUMNS if c != "input_hash"]) if compute_once else None
        results = run_in_worker(signal, shared.unique(frames) if shared else frames, prefetch, torch_threads, carry=KEY_COLUMNS)
        for result in shared.fanned_out(results) if shared else results:
            yield table_rows(contract, stamp, result)

    return rows
