"""The corpus a job reads: where its Delta table is, the window of days a job covers, and the
rule that gives every content id exactly one row before anything is computed.

The corpus is input, and input can be wrong. The rule (docs/design.md, "Corpus rows"):
- a row with a null `content_id` cannot be keyed: it is skipped;
- a row whose `ds` is not a day (`YYYY-MM-DD`) would name a partition that readers decode
  differently from writers: it is skipped;
- an id with several rows keeps the latest, by `updated_at` (null oldest), then `ds`, then a
  hash of its inputs (so double-ingested rows resolve the same way every run); the others are
  skipped. The latest is looked for in the whole corpus, not only in a job's window, so a
  backfill of one window never computes an id whose newer row lives in another.
Skipped rows are counted, with examples, in the run's message (ledger and console).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from deltalake import DeltaTable
from pyspark.sql import Column, DataFrame
from pyspark.sql import Window as SparkWindow
from pyspark.sql import functions as F

from conf.settings import Settings, UsageError
from signals.contracts import CORPUS

DAY_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"
EXAMPLES = 5


@dataclass(frozen=True)
class Window:
    """An inclusive range of corpus date partitions (`ds`); an open end means unbounded."""

    start: str | None = None
    end: str | None = None

    def __post_init__(self) -> None:
        for name, day in (("start", self.start), ("end", self.end)):
            if day is not None and not (re.match(DAY_PATTERN, day) and _is_date(day)):
                raise UsageError(f"--{name} {day!r} is not a day (YYYY-MM-DD)")
        if self.start and self.end and self.start > self.end:
            raise UsageError(f"the window ends ({self.end}) before it starts ({self.start})")

    def partition_filters(self) -> list[tuple[str, str, str]] | None:
        filters = [("ds", ">=", self.start)] if self.start else []
        filters += [("ds", "<=", self.end)] if self.end else []
        return filters or None

    def contains(self, ds: str | None) -> bool:
        return ds is not None and (self.start is None or ds >= self.start) and (self.end is None or ds <= self.end)


def _is_date(day: str) -> bool:
    try:
        date.fromisoformat(day)
        return True
    except ValueError:
        return False


def corpus_root(settings: Settings) -> str:
    """The corpus table's root, or a FileNotFoundError saying how to make one."""
    root = settings.table_root(CORPUS.name)
    if not DeltaTable.is_deltatable(root):
        raise FileNotFoundError(f"no corpus Delta table at {root}; create one with `content-signals make-corpus`")
    return root


def _keyable() -> Column:
    return F.col("content_id").isNotNull() & F.coalesce(F.col("ds").rlike(DAY_PATTERN), F.lit(False))


def _recency() -> Column:
    """What makes one row of an id newer than another (compared as a struct: field by field)."""
    return F.struct(F.coalesce(F.col("updated_at"), F.lit(0).cast("timestamp")).alias("updated_at"), F.col("ds"))


def _newest_elsewhere(corpus_keys: DataFrame) -> DataFrame:
    """(content_id, _newest): the recency of each id's newest keyable row in the whole corpus."""
    return corpus_keys.filter(_keyable()).groupBy("content_id").agg(F.max(_recency()).alias("_newest"))


def one_row_per_id(rows: DataFrame, corpus_keys: DataFrame | None = None) -> DataFrame:
    """The corpus rows a job computes, by the rule above: keyable rows, one per id, the latest;
    with `corpus_keys` (content_id, ds, updated_at of the whole corpus), no id whose newer row
    is outside `rows`."""
    rows = with_image_uri(rows)
    order = SparkWindow.partitionBy("content_id").orderBy(
        F.col("updated_at").desc_nulls_last(), F.col("ds").desc(),
        F.xxhash64(*[c for c in ("image", "image_uri", "title", "description") if c in rows.columns]).desc()
    )
    latest = rows.filter(_keyable()).withColumn("_rank", F.row_number().over(order)).filter("_rank = 1").drop("_rank")
    if corpus_keys is None:
        return latest
    newest = _newest_elsewhere(corpus_keys)
    return latest.join(newest, "content_id", "left").filter(F.col("_newest").isNull() | (_recency() >= F.col("_newest"))).drop("_newest")


def with_image_uri(rows: DataFrame) -> DataFrame:
    """`rows` with the canonical `image_uri` column: null for a corpus table that has none
    (every image inline), so image signals read one frame shape."""
    return rows if "image_uri" in rows.columns else rows.withColumn("image_uri", F.lit(None).cast("string"))


@dataclass(frozen=True)
class CorpusCheck:
    """What the rule did to the rows a job read: how many items it keeps and which rows it skipped."""

    items: int
    null_ids: int
    bad_days: list[str]
    duplicates: int
    duplicate_examples: list[str]
    bad_day_rows: int

    @property
    def skipped(self) -> int:
        return self.null_ids + self.bad_day_rows + self.duplicates

    def describe(self) -> str | None:
        """One sentence for the run's message, or None when every row was used."""
        parts = []
        if self.null_ids:
            parts.append(f"{self.null_ids} with a null content_id")
        if self.bad_day_rows:
            parts.append(f"{self.bad_day_rows} whose ds is not a day (e.g. {', '.join(map(repr, self.bad_days))})")
        if self.duplicates:
            parts.append(f"{self.duplicates} older copies of a duplicated content_id (e.g. {', '.join(self.duplicate_examples)})")
        return f"skipped {self.skipped} corpus rows: {'; '.join(parts)}" if parts else None


def check_rows(rows: DataFrame, corpus_keys: DataFrame | None = None) -> CorpusCheck:
    """Count what `one_row_per_id` keeps and skips among `rows`, from their key columns only
    (two small Spark actions; no image is read)."""
    keys = rows.select("content_id", "ds", "updated_at")
    counts = keys.agg(
        F.count(F.when(F.col("content_id").isNull(), 1)).alias("null_ids"),
        F.count(F.when(F.col("content_id").isNotNull() & ~_keyable(), 1)).alias("bad_day_rows"),
        F.slice(F.collect_set(F.when(F.col("content_id").isNotNull() & ~_keyable(), F.col("ds"))), 1, EXAMPLES).alias("bad_days"),
        F.count(F.when(_keyable(), 1)).alias("keyable"),
    ).first()
    per_id = keys.filter(_keyable()).groupBy("content_id").agg(F.count("*").alias("n"), F.max(_recency()).alias("_latest"))
    if corpus_keys is not None:
        newest = _newest_elsewhere(corpus_keys)
        per_id = per_id.join(newest, "content_id", "left").withColumn(
            "kept", F.col("_newest").isNull() | (F.col("_latest") >= F.col("_newest")))
    else:
        per_id = per_id.withColumn("kept", F.lit(True))
    ids = per_id.agg(
        F.count(F.when(F.col("kept"), 1)).alias("items"),
        F.slice(F.collect_set(F.when((F.col("n") > 1) | ~F.col("kept"), F.col("content_id"))), 1, EXAMPLES).alias("examples"),
    ).first()
    return CorpusCheck(
        items=ids["items"], null_ids=counts["null_ids"], bad_days=sorted(counts["bad_days"]), bad_day_rows=counts["bad_day_rows"],
        duplicates=counts["keyable"] - ids["items"], duplicate_examples=sorted(ids["examples"]),
    )
