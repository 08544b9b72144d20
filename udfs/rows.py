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

from collections import deque
from collections.abc import Callable, Iterator, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from signals.base import Signal
from signals.contracts import KEYFRAMES
from signals.labels.head import STORED_COLUMNS, part_columns, part_hash_column
from signals.shared_inputs import SharedInputs
from signals.table_rows import KEY_COLUMNS, RowStamp, output_of, table_rows
from signals.video.keyframes import VideoReading
from signals.video.rows import video_rows
from udfs.columns import input_columns, input_hash_column, part_hash_columns
from udfs.worker import attach_worker, run_in_worker

RowsFunction = Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]


def signal_inputs(corpus: DataFrame, signal: Signal) -> DataFrame:
    """The corpus columns `output_rows` reads: the item's key columns (input hash computed in
    the JVM) and the signal's inputs, and for an image signal the item's video where the corpus
    has a `video` column (signals/video/: a video item's image signals read its keyframes)."""
    video = reads_videos(corpus, signal)
    return corpus.select("content_id", "ds", input_hash_column(signal, video).alias("input_hash"), *input_columns(signal),
                         *(["video"] if video else []))


def reads_videos(corpus: DataFrame, signal: Signal) -> bool:
    """Whether the signal reads the videos of these corpus rows (an image signal, a `video` column)."""
    return signal.input_kind == "image" and "video" in corpus.columns


def derived_inputs(corpus: DataFrame, signal: Signal, stored: Sequence[DataFrame]) -> DataFrame:
    """A derived signal's inputs (`Signal.stored_columns`): the item's key columns, its input hash
    from the corpus inputs it derives from, and the columns of its stored row of each embedding it
    reads (`stored`, in order; null where it has none), with the hash of each one's inputs when
    it reads several."""
    video = "video" in corpus.columns  # a video item's embedding is of its video (jobs/videos.py)
    parts = part_hash_columns(signal, video) if len(stored) > 1 else []
    inputs = corpus.select("content_id", "ds", input_hash_column(signal, video).alias("input_hash"),
                           *[hashed.alias(part_hash_column(part)) for part, hashed in enumerate(parts)])
    for part, rows in enumerate(stored):
        named = [F.col(c).alias(n) for c, n in zip(STORED_COLUMNS, part_columns(part), strict=True)]
        inputs = inputs.join(rows.select("content_id", *named), "content_id", "left")
    return inputs


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


def computes_once(signal: Signal, compute_once: bool) -> bool:
    """Whether a job computes the signal once per input hash (`compute_once` configured): never a
    derived signal, whose input is the item's stored embedding row, which items of one input hash
    need not share (a fetch by URI that failed for one and not another), and which costs a few
    small matrix products an item anyway."""
    return compute_once and not signal.stored_columns


def output_rows(signal: Signal, stamp: RowStamp, prefetch: int = 2, torch_threads: int = 1, compute_once: bool = False,
                video: VideoReading = VideoReading()) -> RowsFunction:
    """Batches of `signal_inputs` in, batches of the signal's output-table rows out (one row per
    item, or per item and label); bad inputs are error rows. Each row's keys travel through the
    runner with it. With `compute_once`, rows of a task sharing an input hash are computed once
    and the result is fanned out to each (signals.shared_inputs; never a derived signal's:
    `computes_once`); otherwise rows come out in input order. Items with a video (batches with a `video` column) get their video-level rows
    (signals.video.rows, read as `video` says) as they come."""
    contract = output_of(signal)
    columns = [*KEY_COLUMNS, *(signal.stored_columns or signal.input_columns)]

    def frames(batches: Iterator[pa.RecordBatch], videos_done: deque[pa.RecordBatch]) -> Iterator[pd.DataFrame]:
        """The batches' rows without a video, as frames for the runner (on its prefetch thread, if
        any); each video item's rows computed on the way, into `videos_done`."""
        for batch in batches:
            if "video" in batch.schema.names:
                has_video = pc.is_valid(batch.column("video"))
                for item in batch.filter(has_video).select([*KEY_COLUMNS, "video"]).to_pylist():
                    videos_done.append(video_rows([(signal, stamp)], item, video)[0][1])
                batch = batch.filter(pc.invert(has_video))
            if batch.num_rows:
                yield batch.select(columns).to_pandas()

    def rows(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        videos_done: deque[pa.RecordBatch] = deque()
        shared = SharedInputs([c for c in KEY_COLUMNS if c != "input_hash"]) if computes_once(signal, compute_once) else None
        inputs = frames(batches, videos_done)
        results = run_in_worker(signal, shared.unique(inputs) if shared else inputs, prefetch, torch_threads, carry=KEY_COLUMNS)
        for result in shared.fanned_out(results) if shared else results:
            while videos_done:
                yield videos_done.popleft()
            yield table_rows(contract, stamp, result)
        while videos_done:
            yield videos_done.popleft()

    return rows


def video_output_rows(signals: Sequence[tuple[Signal, RowStamp]], torch_threads: int = 1,
                      video: VideoReading = VideoReading()) -> Callable[[Iterator[pa.RecordBatch]], Iterator[tuple[str, pa.RecordBatch]]]:
    """Batches of video items (KEY_COLUMNS and `video`) in, (table name, rows) out for every
    (signal, stamp): each video decoded once for all of them (signals.video.rows.video_rows), its
    rows of the `keyframes` table and its video-level rows of each signal's own table, or the
    video's error rows."""

    def rows(batches: Iterator[pa.RecordBatch]) -> Iterator[tuple[str, pa.RecordBatch]]:
        for signal, _ in signals:
            attach_worker(signal, torch_threads)
        for batch in batches:
            for item in batch.select([*KEY_COLUMNS, "video"]).to_pylist():
                for (signal, _), (keyframes, own) in zip(signals, video_rows(signals, item, video)):
                    yield KEYFRAMES.name, keyframes
                    yield output_of(signal).name, own

    return rows
