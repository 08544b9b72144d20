"""Copy on write: the files of a signal table that hold rows a run drops (a takedown, a changed
input, an item that moved to another day) are written again without them, and the commit that
adds the run's new rows removes the old files, so readers see the table before or after, never
between. Shared by the refresh (stale rows) and the backfill (its items' rows on other days)."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from urllib.parse import unquote

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lake import delta_io, spark_io

KEY = ["content_id", "signal", "model_version"]  # an item's rows of a signal: one in embeddings, one per label in labels
ROW = [*KEY, "ds"]  # the rows a rewrite drops: an item's of one day (a file may hold its rows of two days, one of them in line)


@dataclass(frozen=True)
class Rewrite:
    """Files of one version of a table to write again without some of their items."""

    root: str
    version: int
    files: dict[str, tuple[str, int, int]]  # unescaped relative path -> (its signal, items in it, items with no row left in it)
    dropped: DataFrame  # ROW of every row dropped
    moved_items: int = 0  # of the items dropped, those whose rows are written on another day (a backfill's items ingested again)

    @property
    def dropped_items(self) -> int:
        return sum(n for _, _, n in self.files.values())

    def removes(self, live: delta_io.LiveFile) -> bool:
        """Whether the commit removes this live file (it is written again without the dropped items)."""
        return unquote(live.path) in self.files

    def kept(self, spark: SparkSession) -> list[spark_io.WriteSource]:
        """The rows the rewritten files keep, to write as new files (none when no file is rewritten)."""
        if not self.files:
            return []
        rows = spark_io.read_spark(spark, self.root, self.version, only=set(self.files))
        return [spark_io.WriteSource(rows.join(self.dropped, ROW, "left_anti"))]

    def items_kept(self) -> dict[str, int]:
        """signal -> items the rewritten files keep (what writing `kept` must write, per signal)."""
        kept: dict[str, int] = defaultdict(int)
        for signal, items, dropped in self.files.values():
            kept[signal] += items - dropped
        return dict(kept)


def rewrite_dropping(spark: SparkSession, root: str, version: int, dropped: DataFrame, moved: Column | None = None) -> Rewrite:
    """The rewrite of the files holding `dropped` (ROW and `file`: stored rows, read from version
    `version` of the table with `spark_io.read_spark(..., file_column="file")`), `moved` telling
    the rows among them of items written on another day (None: none). An item is dropped from a
    file when all its rows there are: one with rows of two days in a file keeps its other day's."""
    held = {delta_io.relative_path(root, r["file"]) for r in dropped.select("file").distinct().collect()}
    if not held:
        return no_rewrite(spark, root, version)
    gone = dropped.select(*ROW, "file", F.lit(1).alias("gone"), (F.lit(False) if moved is None else moved).cast("int").alias("moved"))
    stored = spark_io.read_spark(spark, root, version, only=held, file_column="file").select(*ROW, "file").distinct()
    per_item = stored.join(gone, [*ROW, "file"], "left").groupBy("file", *KEY).agg(
        F.min(F.coalesce("gone", F.lit(0))).alias("gone"), F.max(F.coalesce("moved", F.lit(0))).alias("moved"))
    per_file = per_item.groupBy("file", "signal").agg(
        F.count("*").alias("items"), F.sum("gone").alias("gone"), F.sum(F.col("gone") * F.col("moved")).alias("moved")).collect()
    return Rewrite(root, version, {delta_io.relative_path(root, r["file"]): (r["signal"], r["items"], r["gone"]) for r in per_file},
                   dropped.select(*ROW), sum(r["moved"] for r in per_file))


def rewrite_on_driver(spark: SparkSession, root: str, version: int, dropped: dict[str, list[tuple[str, ...]]]) -> Rewrite:
    """`rewrite_dropping` of the rows `dropped` from each file (unescaped relative path -> their
    ROW), told by a plan made on the driver: each file's rows read with delta-rs, no Spark job."""
    days: dict[str, dict[tuple[str, ...], set[str]]] = defaultdict(lambda: defaultdict(set))  # file -> item -> the days of its rows there
    if dropped:
        held = [f for f in delta_io.live_files(root, version) if unquote(f.path) in dropped]
        for row in delta_io.read_files(root, version, held, [*ROW, delta_io.FILE_COLUMN]).to_pylist():
            days[row[delta_io.FILE_COLUMN]][tuple(row[k] for k in KEY)].add(row["ds"])
    signal = KEY.index("signal")
    files = {}
    for path, rows in dropped.items():
        gone: dict[tuple[str, ...], set[str]] = defaultdict(set)
        for *key, day in rows:
            gone[tuple(key)].add(day)
        items = days[path]
        files[path] = (next(iter(items))[signal], len(items), sum(1 for key, held in items.items() if held <= gone[key]))
    rows = [row for rows in dropped.values() for row in rows]
    return Rewrite(root, version, files, spark.createDataFrame(rows, ", ".join(f"{k} string" for k in ROW)))


def no_rewrite(spark: SparkSession, root: str, version: int) -> Rewrite:
    """A rewrite of no file, without a Spark job."""
    return Rewrite(root, version, {}, spark.createDataFrame([], ", ".join(f"{k} string" for k in ROW)))
