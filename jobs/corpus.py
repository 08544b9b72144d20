"""The corpus a job reads in Spark: where it is and how its columns map onto the job's (`CorpusSource`,
on lake/corpus.py's `CorpusTable`),
the window of days a job covers, and the rule that gives every content id exactly one row
before anything is computed.

The corpus is input, and input can be wrong. The rule (docs/design.md, "Corpus rows"):
- a row whose `content_id` is null or not valid UTF-8 cannot be keyed: it is skipped;
- a row whose `ds` is not a calendar day (`YYYY-MM-DD`; not 2026-02-30) would name a partition
  that readers decode differently from writers, or one no `--start`, `--end` or `--day` can name:
  it is skipped;
- an id with several rows keeps the latest, by `updated_at` (null oldest), then `ds`, then a
  hash of its inputs (so double-ingested rows resolve the same way every run); the others are
  skipped. The latest is looked for in the whole corpus, not only in a job's window, so a
  backfill of one window never computes an id whose newer row lives in another.
Skipped rows are counted, with examples, in the run's message (ledger and console).
"""
from __future__ import annotations

import functools
import operator
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import Window as SparkWindow
from pyspark.sql import functions as F

from conf.settings import UsageError
from lake import delta_io, spark_io
from lake.corpus import CANONICAL, DAY_PATTERN, HASHED, CorpusTable

BROADCAST_MAX_ITEMS = 1_000_000  # ids sent to every task: no shuffle of the rows they are joined with

EXAMPLES = 5


@dataclass(frozen=True)
class Window:
    """An inclusive range of corpus date partitions (`ds`); an open end means unbounded."""

    start: str | None = None
    end: str | None = None

    def __post_init__(self) -> None:
        for name, day in (("start", self.start), ("end", self.end)):
            if day is not None:
                check_day(day, f"--{name}")
        if self.start and self.end and self.start > self.end:
            raise UsageError(f"the window ends ({self.end}) before it starts ({self.start})")

    def contains(self, ds: str | None) -> bool:
        return ds is not None and (self.start is None or ds >= self.start) and (self.end is None or ds <= self.end)

    def holds(self, days: tuple[str, str] | None) -> bool:
        """Whether every day from the first to the last of `days` (a file's: None, not known) is in the window."""
        return days is not None and self.contains(days[0]) and self.contains(days[1])

    def condition(self) -> Column:
        """The Spark condition that a row's `ds` is in the window."""
        bounds = [F.col("ds") >= self.start] if self.start else []
        return functools.reduce(operator.and_, [*bounds, *([F.col("ds") <= self.end] if self.end else [])], F.lit(True))


def check_day(day: str, option: str) -> str:
    """`day` if it is a calendar day written YYYY-MM-DD (the form of a `ds` partition), else a UsageError naming `option`."""
    if re.fullmatch(DAY_PATTERN, day):  # `$` alone lets a trailing newline through
        return day
    raise UsageError(f"{option} {day!r} is not a day (YYYY-MM-DD)")


@contextmanager
def _refused_as_usage(what: str) -> Iterator[None]:
    """Spark's refusal to plan a read of the configured corpus (a missing catalog table or path, a
    filter it cannot parse or resolve) as a UsageError about `what`, in one line."""
    try:
        yield
    except AnalysisException as exc:  # ParseException is one
        reason = str(exc).strip().split("SQLSTATE")[0].strip().splitlines()[0]
        raise UsageError(f"{what}: {reason}") from None


def _named(column: str) -> Column:
    """The source column of that exact name (quoted: a dot in it is part of the name, not a struct's field)."""
    return F.col(f"`{column.replace('`', '``')}`")


class CorpusSource(CorpusTable):
    """The configured corpus (lake/corpus.py `CorpusTable`) as the Spark jobs read it. Every job
    reads it through `read`, so a corpus someone else owns, with its own column names and its own
    day column, is read as the sample corpus is."""

    def maps_video(self) -> bool:
        """Whether the source has the mapped `video` column (its items may carry videos); told by
        its schema read without Spark (which cannot open an object store), a catalog table's by Spark."""
        column = self.settings.columns.video
        if column is None:
            return False
        schema = self.arrow_schema()
        if schema is not None:
            return column in schema.names
        with _refused_as_usage(f"corpus.table {self.location} cannot be read"):
            return column in SparkSession.active().table(self.location).columns

    def day_partition(self) -> str | None:
        """The source column that partitions a Delta corpus by day, if its day column does (for pruning)."""
        day = self.settings.columns.ds
        if not self.is_delta or day is None:
            return None
        return day if day in delta_io.snapshot(self.location).metadata().partition_columns else None

    def read(self, spark: SparkSession, version: int | None = None, window: Window | None = None,
             days: Sequence[str] | None = None, only: set[str] | None = None, file_column: str | None = None) -> DataFrame:
        """The corpus rows in the job's columns, at `version` (Delta), within `window` or on
        `days`, or only those of the Delta files `only` names (unescaped relative paths); with
        `file_column`, each row's file URI in that column too."""
        if self.is_delta:
            partition = self.day_partition()
            filters: list[tuple[str, str, Any]] = []
            if partition is not None and window is not None:
                filters = [(partition, op, day) for op, day in ((">=", window.start), ("<=", window.end)) if day]
            if partition is not None and days is not None:
                filters = [(partition, "in", list(days))]
            source = spark_io.read_spark(spark, self.location, version, partitions=filters or None, only=only,
                                          file_column=file_column)
        elif self.settings.format == "parquet":
            with _refused_as_usage(f"the parquet corpus at {self.location} cannot be read (check corpus.path)"):
                source = spark_io.read_parquet_dataset(spark, self.location, file_column)
        else:
            with _refused_as_usage(f"corpus.table {self.location} cannot be read"):
                source = spark.table(self.location)
            source = source.withColumn(file_column, F.input_file_name()) if file_column else source
        if self.settings.filter:
            with _refused_as_usage(f"corpus.filter {self.settings.filter!r} cannot be applied to the corpus at {self.location}"):
                source = source.filter(self.settings.filter)
        rows = source.select(*self._mapped(source), *([file_column] if file_column else []))
        if days is not None:
            rows = rows.filter(F.col("ds").isin(list(days)))
        return rows.filter(window.condition()) if window is not None else rows

    def keys(self, spark: SparkSession, version: int | None = None) -> DataFrame:
        """(content_id, ds, updated_at) of the whole corpus: what the one-row-per-id rule compares."""
        return self.read(spark, version).select("content_id", "ds", "updated_at")

    def _mapped(self, source: DataFrame) -> list[Column]:
        """The source's columns as the job's (`check_mapping` first)."""
        mapping = self.check_mapping({f.name: f.dataType.simpleString() for f in source.schema.fields})
        columns = []
        for name, spark_type in CANONICAL:
            source_column = getattr(mapping, name)
            if name == "ds":
                value = _named(source_column).cast("string") if source_column else F.date_format(_named(mapping.day_from), "yyyy-MM-dd")
            else:
                value = _named(source_column).cast(spark_type) if source_column else F.lit(None).cast(spark_type)
            columns.append(value.alias(name))
        return columns


def _valid_id() -> Column:
    return F.col("content_id").isNotNull() & F.coalesce(F.is_valid_utf8("content_id"), F.lit(False))


def _keyable() -> Column:
    """A row whose id can key a table row (present, valid UTF-8) and whose day can name a partition."""
    day = F.col("ds").rlike(DAY_PATTERN) & (F.length("ds") == len("YYYY-MM-DD"))  # Java's `$` lets a trailing newline through
    return _valid_id() & F.coalesce(day, F.lit(False))


def _recency() -> Column:
    """What makes one row of an id newer than another (compared as a struct: field by field), a
    null `updated_at` older than any timestamp (one before 1970 included), as `_latest` orders them."""
    return F.struct(F.col("updated_at").isNotNull().alias("dated"), F.coalesce(F.col("updated_at"), F.lit(0).cast("timestamp")).alias("updated_at"),
                    F.col("ds"))


def newest_of_ids(corpus_keys: DataFrame) -> DataFrame:
    """(content_id, _newest): the recency of each id's newest keyable row in `corpus_keys` (the
    whole corpus's content_id, ds, updated_at). One aggregation that a job may compute once and
    cache for its corpus check, its plan and its write alike."""
    return corpus_keys.filter(_keyable()).groupBy("content_id").agg(F.max(_recency()).alias("_newest"))


def newest_of_rows(rows: DataFrame) -> DataFrame:
    """`newest_of_ids` of rows that are already each id's newest (a plan made on the driver chose
    them): their recency without the aggregation, so a small frame of them costs no Spark job."""
    return rows.select("content_id", _recency().alias("_newest"))


def broadcast_if_small(ids: DataFrame, count: int) -> DataFrame:
    """`ids`, marked for a broadcast join when there are few enough of them (a daily refresh, a day's backfill)."""
    return F.broadcast(ids) if count <= BROADCAST_MAX_ITEMS else ids


def one_row_per_id(rows: DataFrame, newest: DataFrame | None = None, repeated_ids: int | None = None) -> DataFrame:
    """The corpus rows a job computes, by the rule above: keyable rows, one per id, the latest;
    with `newest` (`newest_of_ids` of the whole corpus), no id whose newer row is outside `rows`.

    Picking the latest shuffles the rows, images and all; told how many ids `rows` holds more
    than once (`CorpusCheck.repeated_ids`), only those ids' rows are shuffled, and none when
    there are none."""
    keyable = rows.filter(_keyable())
    if repeated_ids == 0:
        latest = keyable
    elif repeated_ids is not None and repeated_ids <= BROADCAST_MAX_ITEMS:
        repeated = F.broadcast(keyable.groupBy("content_id").count().filter("count > 1").select("content_id"))
        latest = keyable.join(repeated, "content_id", "left_anti").unionByName(_latest(keyable.join(repeated, "content_id", "left_semi")))
    else:
        latest = _latest(keyable)
    if newest is None:
        return latest
    return latest.join(newest, "content_id", "left").filter(F.col("_newest").isNull() | (_recency() >= F.col("_newest"))).drop("_newest")


def _latest(keyable: DataFrame) -> DataFrame:
    """Each id's latest row among `keyable` rows, by the rule above (a shuffle of the rows by id;
    lake/corpus.py `latest_rows` keeps the same row without Spark)."""
    order = SparkWindow.partitionBy("content_id").orderBy(
        F.col("updated_at").desc_nulls_last(), F.col("ds").desc(), F.xxhash64(*HASHED).desc()
    )
    return keyable.withColumn("_rank", F.row_number().over(order)).filter("_rank = 1").drop("_rank")


def ids_by_day(corpus_keys: DataFrame, days: Sequence[str]) -> dict[str, list[str]]:
    """The ids `one_row_per_id` keeps on each of `days` (those `items_by_day` counts), by one Spark
    action over the key columns."""
    kept = newest_of_ids(corpus_keys).select("content_id", F.col("_newest.ds").alias("ds")).filter(F.col("ds").isin(list(days)))
    found: dict[str, list[str]] = {day: [] for day in days}
    for row in kept.toArrow().to_pylist():
        found[row["ds"]].append(row["content_id"])
    return found


def items_by_day(corpus_keys: DataFrame, days: Sequence[str]) -> dict[str, int]:
    """How many items `one_row_per_id` keeps on each of `days`: the ids whose newest keyable row
    in the whole corpus (`corpus_keys`) is on that day. One Spark action over the key columns;
    no image is read."""
    newest = newest_of_ids(corpus_keys).select(F.col("_newest.ds").alias("ds"))
    return {r["ds"]: r["count"] for r in newest.filter(F.col("ds").isin(list(days))).groupBy("ds").count().collect()}


@dataclass(frozen=True)
class CorpusCheck:
    """What the rule did to the rows a job read: how many items it keeps and which rows it skipped."""

    items: int
    null_ids: int
    bad_days: list[str]
    duplicates: int
    duplicate_examples: list[str]
    bad_day_rows: int
    repeated_ids: int  # ids with more than one keyable row among those read (`one_row_per_id` shuffles only their rows)

    @property
    def skipped(self) -> int:
        return self.null_ids + self.bad_day_rows + self.duplicates

    def describe(self) -> str | None:
        """One sentence for the run's message, or None when every row was used."""
        parts = []
        if self.null_ids:
            parts.append(f"{self.null_ids} with a null or undecodable content_id")
        if self.bad_day_rows:
            examples = f"e.g. {', '.join(map(repr, self.bad_days))}" if self.bad_days else "null"  # collect_set leaves nulls out
            parts.append(f"{self.bad_day_rows} whose ds is not a day ({examples})")
        if self.duplicates:
            parts.append(f"{self.duplicates} older copies of a duplicated content_id (e.g. {', '.join(self.duplicate_examples)})")
        return f"skipped {self.skipped} corpus rows: {'; '.join(parts)}" if parts else None


def _total(column: str) -> Column:
    """The sum of a count column over the rows: 0 where there is no row (Spark's sum of none is null)."""
    return F.coalesce(F.sum(column), F.lit(0))


def check_rows(rows: DataFrame, newest: DataFrame | None = None) -> CorpusCheck:
    """Count what `one_row_per_id` keeps and skips among `rows` (with `newest`, as it does with
    it), from their key columns only (one small Spark action, one scan of the rows, grouped by
    id once; no image is read)."""
    bad_day = _valid_id() & ~_keyable()
    per_id = rows.select("content_id", "ds", "updated_at").groupBy("content_id").agg(
        F.count(F.when(~_valid_id(), 1)).alias("null_ids"),
        F.count(F.when(bad_day, 1)).alias("bad_day_rows"),
        F.collect_set(F.when(bad_day, F.col("ds"))).alias("bad_days"),
        F.count(F.when(_keyable(), 1)).alias("n"),
        F.max(F.when(_keyable(), _recency())).alias("_latest"),
    )
    if newest is not None:
        per_id = per_id.join(newest, "content_id", "left").withColumn(
            "kept", (F.col("n") > 0) & (F.col("_newest").isNull() | (F.col("_latest") >= F.col("_newest"))))
    else:
        per_id = per_id.withColumn("kept", F.col("n") > 0)
    found = per_id.agg(
        _total("null_ids").alias("null_ids"), _total("bad_day_rows").alias("bad_day_rows"), _total("n").alias("keyable"),
        F.slice(F.array_distinct(F.flatten(F.collect_list(F.when(F.size("bad_days") > 0, F.col("bad_days"))))), 1, EXAMPLES).alias("bad_days"),
        F.count(F.when(F.col("kept"), 1)).alias("items"),
        F.count(F.when(F.col("n") > 1, 1)).alias("repeated_ids"),
        F.slice(F.collect_set(F.when((F.col("n") > 1) | ((F.col("n") > 0) & ~F.col("kept")), F.col("content_id"))), 1, EXAMPLES).alias("examples"),
    ).first()
    return CorpusCheck(
        items=found["items"], null_ids=found["null_ids"], bad_days=sorted(found["bad_days"]), bad_day_rows=found["bad_day_rows"],
        duplicates=found["keyable"] - found["items"], duplicate_examples=sorted(found["examples"]), repeated_ids=found["repeated_ids"],
    )
