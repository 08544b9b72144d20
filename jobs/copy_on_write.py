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


@dataclass(frozen=True)
class Rewrite:
    """Files of one version of a table to write again without some of their items."""

    root: str
    version: int
    files: dict[str, tuple[str, int, int]]  # unescaped relative path -> (its signal, items in it, items dropped from it)
    dropped: DataFrame  # KEY of every item dropped
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
        return [spark_io.WriteSource(rows.join(self.dropped, KEY, "left_anti"))]

    def items_kept(self) -> dict[str, int]:
        """signal -> items the rewritten files keep (what writing `kept` must write, per signal)."""
        kept: dict[str, int] = defaultdict(int)
        for signal, items, dropped in self.files.values():
            kept[signal] += items - dropped
        return dict(kept)


def rewrite_dropping(spark: SparkSession, root: str, version: int, dropped: DataFrame, moved: Column | None = None) -> Rewrite:
    """The rewrite of the files holding `dropped` (KEY and `file`: one row per stored item, read
    from version `version` of the table with `spark_io.read_spark(..., file_column="file")`), `moved`
    telling the items among them whose rows are written on another day (None: none)."""
    moved_count = F.sum(moved.cast("int")) if moved is not None else F.lit(0)
    per_file = dropped.groupBy("file").agg(F.count("*").alias("count"), moved_count.alias("moved")).collect()
    counts = {delta_io.relative_path(root, r["file"]): r["count"] for r in per_file}
    items_in = _items_per_file(spark, root, version, set(counts)) if counts else {}
    return Rewrite(root, version, {path: (*items_in[path], n) for path, n in counts.items()}, dropped.select(*KEY),
                   sum(r["moved"] for r in per_file))


def rewrite_on_driver(spark: SparkSession, root: str, version: int, dropped: dict[str, list[tuple[str, str, str]]]) -> Rewrite:
    """`rewrite_dropping` of the items `dropped` from each file (unescaped relative path -> their
    KEY), told by a plan made on the driver: each file's items counted with delta-rs, no Spark job."""
    items: dict[str, set[tuple[str, ...]]] = defaultdict(set)
    if dropped:
        held = [f for f in delta_io.live_files(root, version) if unquote(f.path) in dropped]
        for row in delta_io.read_files(root, version, held, [*KEY, delta_io.FILE_COLUMN]).to_pylist():
            items[row[delta_io.FILE_COLUMN]].add(tuple(row[k] for k in KEY))
    signal = KEY.index("signal")
    files = {path: (next(iter(items[path]))[signal], len(items[path]), len(keys)) for path, keys in dropped.items()}
    rows = [key for keys in dropped.values() for key in keys]
    return Rewrite(root, version, files, spark.createDataFrame(rows, ", ".join(f"{k} string" for k in KEY)))


def no_rewrite(spark: SparkSession, root: str, version: int) -> Rewrite:
    """A rewrite of no file, without a Spark job."""
    return Rewrite(root, version, {}, spark.createDataFrame([], ", ".join(f"{k} string" for k in KEY)))


def _items_per_file(spark: SparkSession, root: str, version: int, files: set[str]) -> dict[str, tuple[str, int]]:
    """(its signal, items in it) for each of these files of the table, all its items (not only the ones dropped)."""
    rows = spark_io.read_spark(spark, root, version, only=files, file_column="file").select(*KEY, "file").distinct()
    return {delta_io.relative_path(root, r["file"]): (r["signal"], r["n"])
            for r in rows.groupBy("file", "signal").agg(F.count("*").alias("n")).collect()}
