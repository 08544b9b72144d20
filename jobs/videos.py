"""The `keyframes` table of a job's video items: for each image signal, its values on each
keyframe of each video (signals/video/rows.py), written and committed like a signal table.

A corpus item carries a video in its `video` column (jobs.corpus.CANONICAL); its video-level
rows in `embeddings` and `labels` come with the signal tables' own rows (udfs.rows.output_rows).
The keyframes table is written by its own Spark action per resource profile, so a video is
decoded and its keyframes computed once for it and once for the signal tables (docs/design.md,
Video). A bad video is one error row per signal (keyframe_index -1), so every video item has
rows: the same check of items written against items expected as the other tables.
"""
from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from conf.settings import Settings
from jobs.corpus import CorpusSource, Window
from jobs.engine import Committed, Run, write_and_commit
from lake import delta_io, spark_io
from signals.base import Signal
from signals.contracts import KEYFRAMES
from signals.table_rows import RowStamp
from udfs.resources import Placement
from udfs.rows import evened, keyframe_output_rows, signal_inputs
from udfs.worker import worker_report


def image_signals(signals: dict[str, Signal]) -> dict[str, Signal]:
    """The signals that read images: the ones a video's keyframes go through."""
    return {name: s for name, s in signals.items() if s.input_kind == "image"}


def keyframes_read_version(settings: Settings, corpus: CorpusSource, signals: dict[str, Signal]) -> int | None:
    """The keyframes table's version before the corpus is read (the table created if need be), or
    None when this run writes none: no image signal, or a corpus without a video column."""
    if not image_signals(signals) or not corpus.maps_video():
        return None
    return delta_io.ensure_table(settings.table_root(KEYFRAMES.name), KEYFRAMES).version()


def commit_keyframes(spark: SparkSession, settings: Settings, run: Run, items: DataFrame, signals: dict[str, Signal],
                     placed: dict[str, Placement], window: Window, read_version: int) -> Committed | None:
    """Replace the window's slice of the keyframes table with the rows of `items`' videos for the
    image signals, in one commit; None (nothing committed) when no item has a video."""
    videos = items.filter(F.col("video").isNotNull())
    count = videos.count()
    mine = image_signals(signals)
    if count == 0:
        return None
    sources = []
    for name, signal in mine.items():
        signal = signal.on_device(placed[name].device)
        stamp = RowStamp.of(signal, run.run_id, run.started)
        sources.append(spark_io.WriteSource(
            evened(signal_inputs(videos, signal), settings.spark.partitions_per_slot, count, 1, placed[name].cpus),
            keyframe_output_rows(signal, stamp, settings.torch_threads, settings.video.reading), placed[name].resources, worker_report,
        ))
    models = {name: s.config.model.version for name, s in mine.items()}
    return write_and_commit(
        spark, settings, run, KEYFRAMES, sources, expected_items=dict.fromkeys(mine, count),
        remove=lambda live: models.get(live.partition_values["signal"]) == live.partition_values["model_version"]
        and window.contains(live.partition_values["ds"]),
        read_version=read_version, metadata={"window": f"{window.start}..{window.end}", "model_versions": str(models)},
    )
