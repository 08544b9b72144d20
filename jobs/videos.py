"""The video pass of a backfill: each video item of the window decoded once, for every image signal
and every table its rows go to.

A video item's image signals read its keyframes (signals/video/) rather than an image. One Spark
action per resource profile of the image signals (one on a local master or a CPU cluster) runs
them all in each task: a video is decoded, sampled and cut into keyframes once, each chunk of
keyframes goes through every signal, and the task writes the rows of the `keyframes` table and the
video-level rows of the signal tables (`embeddings`, `labels`) as files of each (docs/design.md,
Video). Nothing is committed here: the keyframes files are committed first, on their own, and the
signal tables' files join the files of their own actions (the items without a video) in each
table's single commit. A bad video is one error row per signal in each table (keyframe_index -1
in `keyframes`), so every video item has rows: the same check of items written against items
expected as the other tables.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pyarrow as pa
from deltalake import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from conf.settings import Settings
from jobs.copy_on_write import Rewrite
from jobs.corpus import CorpusSource, Window
from jobs.engine import Committed, Run, file_summaries, in_window_slice, write_and_commit
from jobs.progress import spark_progress
from lake import delta_io, spark_io
from signals.base import Signal
from signals.contracts import EMBEDDINGS, KEYFRAMES, LABELS
from signals.table_rows import RowStamp
from udfs.columns import input_hash_column, kind_hash_column
from udfs.resources import Placement
from udfs.rows import evened, video_output_rows
from udfs.worker import worker_report


def reads_keyframes(signal: Signal) -> bool:
    """Whether a video's keyframes go through the signal: one that reads images (not a head, which
    scores a video item's stored embedding as it scores a photo's)."""
    return signal.input_kind == "image" and not signal.stored_columns


def image_signals(signals: dict[str, Signal]) -> dict[str, Signal]:
    """The signals a video's keyframes go through."""
    return {name: s for name, s in signals.items() if reads_keyframes(s)}


def keyframes_read_version(settings: Settings, corpus: CorpusSource, signals: dict[str, Signal]) -> int | None:
    """The keyframes table's version before the corpus is read (the table created if need be), or
    None when this run has no slice of it to replace: no image signal, or a corpus without a video
    column and no keyframes table (with one, the window's slice is replaced by nothing: no item of
    such a corpus carries a video)."""
    root = settings.table_root(KEYFRAMES.name)
    if not image_signals(signals) or not (corpus.maps_video() or DeltaTable.is_deltatable(root)):
        return None
    return delta_io.ensure_table(root, KEYFRAMES).version()


def videos_of(items: DataFrame) -> DataFrame:
    """The items that carry a video."""
    return items.filter(F.col("video").isNotNull())


def without_videos(items: DataFrame, signal: Signal) -> DataFrame:
    """The items a signal's own action computes once the video pass has run: for a signal the
    video pass computes, those without a video; for any other, all of them."""
    return items.filter(F.col("video").isNull()) if reads_keyframes(signal) else items


@dataclass(frozen=True)
class VideoFiles:
    """What the video pass wrote: the files of each table (uncommitted), for `items` video items."""

    items: int
    files: dict[str, list[delta_io.DataFile]]


def write_videos(settings: Settings, run: Run, items: DataFrame, signals: dict[str, Signal], placed: dict[str, Placement]) -> VideoFiles | None:
    """Files (uncommitted) of the `keyframes`, `embeddings` and `labels` tables with the rows of
    `items`' videos for the image signals, by table; None (nothing written) when no item has a
    video. One action per resource profile, each decoding a video once for all its signals."""
    videos = videos_of(items)
    count = videos.count()
    if count == 0:
        return None
    mine = image_signals(signals)
    groups: dict[spark_io.TaskResources, list[str]] = {}
    for name in mine:
        groups.setdefault(placed[name].resources, []).append(name)
    inputs = videos.select("content_id", "ds", kind_hash_column("image", video=True).alias("input_hash"), "video")
    sources = []
    for names in groups.values():
        placed_signals = [mine[n].on_device(placed[n].device) for n in names]
        stamped = [(signal, RowStamp.of(signal, run.run_id, run.started)) for signal in placed_signals]
        sources.append(spark_io.WriteSource(
            evened(inputs, settings.spark.partitions_per_slot, count, 1, placed[names[0]].cpus),
            video_output_rows(stamped, settings.torch_threads, settings.video.reading), placed[names[0]].resources, worker_report,
        ))
    tables = {c.name: (settings.table_root(c.name), c) for c in (KEYFRAMES, EMBEDDINGS, LABELS)}
    with spark_progress(items.sparkSession.sparkContext, f"{run.job} videos: {len(mine)} signals, {count} videos"):
        return VideoFiles(count, spark_io.write_tables_files(sources, tables, f"part-{run.run_id}", file_summaries(settings, run)))


def keyframe_rows(corpus: DataFrame, signal: Signal, settings: Settings, run: Run, items: int, placed: Placement) -> spark_io.WriteSource:
    """The keyframes table's rows of these video items for one signal (lazy): what a refresh
    computes for new and changed videos, each decoded for this signal (its video-level rows come
    from the signal's own action, as for any item a refresh computes)."""
    signal = signal.on_device(placed.device)
    inputs = corpus.select("content_id", "ds", input_hash_column(signal, video=True).alias("input_hash"), "video")
    per_table = video_output_rows([(signal, RowStamp.of(signal, run.run_id, run.started))], settings.torch_threads, settings.video.reading)

    def rows(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        return (batch for table, batch in per_table(batches) if table == KEYFRAMES.name)

    return spark_io.WriteSource(evened(inputs, settings.spark.partitions_per_slot, items, 1, placed.cpus), rows, placed.resources, worker_report)


def keyframe_models(signals: dict[str, Signal]) -> dict[str, str]:
    """The signals with rows in the keyframes table, at their model versions."""
    return {name: s.config.model.version for name, s in image_signals(signals).items()}


def commit_keyframes(spark: SparkSession, settings: Settings, run: Run, videos: VideoFiles | None, signals: dict[str, Signal],
                     window: Window, read_version: int, moved: Rewrite, corpus_read: dict[str, str],
                     before_commit: Callable[[], None] = lambda: None) -> Committed | None:
    """Replace the window's slice of the keyframes table with the video pass's keyframes files
    (a row or more for each video item and image signal; none when the window has no video), and
    drop the window's items' keyframes on other days (`moved`), in one commit (its metadata saying
    which corpus version it read, `corpus_read`; `before_commit` as write_and_commit's); no commit when that changes nothing."""
    models = keyframe_models(signals)
    if videos is None and not moved.files and not any(
            in_window_slice(models, window, f) for f in delta_io.live_files(settings.table_root(KEYFRAMES.name), read_version)):
        return None
    kept = moved.items_kept()
    return write_and_commit(
        spark, settings, run, KEYFRAMES, moved.kept(spark),
        expected_items={name: (videos.items if videos else 0) + kept.get(name, 0) for name in models},
        remove=lambda live: moved.removes(live) or in_window_slice(models, window, live), read_version=read_version, written=videos.files[KEYFRAMES.name] if videos else (),
        metadata={"window": f"{window.start}..{window.end}", "model_versions": str(models), "moved_items": str(moved.moved_items), **corpus_read},
        before_commit=before_commit,
    )
