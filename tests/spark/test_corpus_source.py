"""A corpus someone else owns (issue #18): other column names, a day partition of its own or a
timestamp to derive the day from, Delta or parquet, at any path. The jobs read it through the
configured mapping and compute what they compute on the sample corpus."""
from __future__ import annotations

import re
from urllib.parse import unquote, urlparse

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from conftest import settings_for
from deltalake import DeltaTable, write_deltalake

from conf.settings import UsageError
from jobs.backfill import run_backfill
from jobs.corpus import CorpusSource, Window, check_rows
from lake import delta_io

pytestmark = pytest.mark.spark

SIGNALS = tuple(f"signals.{name}.enabled=false" for name in ("image_safety", "language", "image_topics", "text_topics", "image_quality", "text_safety"))
RENAMED = {"content_id": "pin_id", "image": "img_bytes", "title": "headline", "description": "body", "updated_at": "modified", "created_at": "created"}
MAPPING = tuple(f"corpus.columns.{ours}={theirs}" for ours, theirs in RENAMED.items())


@pytest.fixture(scope="module")
def theirs(corpus_lakehouse, tmp_path_factory):
    """The first 12 sample items, as the canonical corpus and as a table with its own names and a `day` partition."""
    sample = DeltaTable(corpus_lakehouse.root).to_pyarrow_table().sort_by("content_id").slice(0, 12)
    folder = tmp_path_factory.mktemp("theirs")
    write_deltalake(str(folder / "ours" / "corpus"), sample, partition_by=["ds"])
    renamed = sample.rename_columns([{**RENAMED, "ds": "day"}.get(n, n) for n in sample.column_names])
    write_deltalake(str(folder / "delta"), renamed, partition_by=["day"])
    pq.write_table(renamed.drop_columns(["day"]), str(folder / "plain.parquet"))
    return folder, sample


def _rows(settings):
    table = DeltaTable(settings.table_root("embeddings")).to_pyarrow_table()
    return {(r["content_id"], r["signal"]): r for r in table.select(["content_id", "signal", "input_hash", "status", "ds", "vector"]).to_pylist()}


def test_a_delta_corpus_with_its_own_names_and_day_partition_gives_the_same_rows(spark, theirs, tmp_path):
    folder, sample = theirs
    ours = settings_for(folder / "ours", *SIGNALS)
    mapped = settings_for(tmp_path / "lakehouse", *SIGNALS, f"corpus.path={folder / 'delta'}", *MAPPING, "corpus.columns.ds=day")
    day = sample["ds"][0].as_py()
    assert run_backfill(spark, ours).status == "succeeded"
    assert run_backfill(spark, mapped, Window(day, day)).status == "succeeded"
    assert run_backfill(spark, mapped).status == "succeeded"
    expected, got = _rows(ours), _rows(mapped)
    assert got.keys() == expected.keys()
    for key, row in got.items():
        assert (row["input_hash"], row["status"], row["ds"]) == (expected[key]["input_hash"], expected[key]["status"], expected[key]["ds"])
        if row["vector"] is not None:
            assert max(abs(a - b) for a, b in zip(row["vector"], expected[key]["vector"])) < 1e-5


def test_a_parquet_corpus_whose_day_comes_from_a_timestamp(spark, theirs, tmp_path):
    folder, sample = theirs
    settings = settings_for(tmp_path / "lakehouse", *SIGNALS, "corpus.format=parquet", f"corpus.path={folder / 'plain.parquet'}",
                            *MAPPING, "corpus.columns.ds=null", "corpus.columns.day_from=created", "corpus.filter=pin_id <> 'nobody'")
    result = run_backfill(spark, settings)
    assert result.status == "succeeded"
    days = {r["content_id"]: r["ds"] for r in _rows(settings).values()}
    created = dict(zip(sample["content_id"].to_pylist(), pc.strftime(sample["created_at"], "%Y-%m-%d").to_pylist()))
    assert days == created


def test_mapping_errors_name_the_columns_before_any_compute(spark, theirs, tmp_path):
    folder, _ = theirs
    settings = settings_for(tmp_path / "lakehouse", *SIGNALS, f"corpus.path={folder / 'delta'}", *MAPPING,
                            "corpus.columns.ds=day", "corpus.columns.content_id=pinid", "corpus.columns.title=modified")
    with pytest.raises(UsageError) as caught:
        CorpusSource.of(settings).read(spark)
    assert "'pinid' is not a column (did you mean 'pin_id'?)" in str(caught.value)
    assert "title -> 'modified' is timestamp" in str(caught.value)


def test_a_pandas_written_corpus_with_dotted_names_reads_and_its_nanosecond_times_are_named(spark, theirs, tmp_path):
    """pandas writes nanosecond timestamps, which Spark's reader refuses even unmapped; a column
    named with a dot is a name, not a field of a struct."""
    _, sample = theirs
    frame = sample.select(["content_id", "image", "title", "created_at", "ds"]).to_pandas()
    frame = frame.rename(columns={"content_id": "pin.id"}).assign(seen_at=pd.Timestamp("2026-11-20 10:00:00.123456789"))
    frame["created_at"] = frame["created_at"].astype("datetime64[us, UTC]")
    path = tmp_path / "pandas.parquet"
    frame.to_parquet(path)  # seen_at: timestamp[ns]
    base = (*SIGNALS, "corpus.format=parquet", f"corpus.path={path}", "corpus.columns.content_id=pin.id", "corpus.columns.description=null",
            "corpus.columns.updated_at=null")
    source = CorpusSource.of(settings_for(tmp_path / "lakehouse", *base))
    assert source.check_schema()
    assert sorted(r["content_id"] for r in source.read(spark).collect()) == sorted(sample["content_id"].to_pylist())
    nanos = CorpusSource.of(settings_for(tmp_path / "lakehouse", *base, "corpus.columns.created_at=seen_at"))
    for check in (nanos.check_schema, lambda: nanos.read(spark)):  # the dry run says what the run says
        with pytest.raises(UsageError, match="created_at -> 'seen_at' is bigint.*coerce_timestamps='us'"):
            check()


def test_a_filter_spark_cannot_read_and_a_missing_table_or_path_are_usage_errors(spark, tmp_path):
    """A misspelt column or a syntax error in corpus.filter, a catalog table or parquet path that is
    not there: Spark's AnalysisException was a traceback (exit 1, read as a bug) instead of the
    setting named in one line (exit 2; found in review)."""
    write_deltalake(str(tmp_path / "pins"), pa.table({"content_id": ["pin-a", "pin-b"], "image": [b"a", b"b"], "status": ["live", "gone"],
                                                        "ds": ["2026-11-14"] * 2}))
    def source(*overrides):
        return CorpusSource.of(settings_for(tmp_path / "lakehouse", f"corpus.path={tmp_path / 'pins'}", *overrides))
    assert [r["content_id"] for r in source("corpus.filter=status = 'live'").read(spark).collect()] == ["pin-a"]
    for condition, reason in (("staus = 'live'", r"`staus` cannot be resolved. Did you mean .*`status`"),
                              ("status =", "PARSE_SYNTAX_ERROR")):
        with pytest.raises(UsageError, match=rf"^corpus.filter {re.escape(repr(condition))} cannot be applied to the corpus at .*pins: .*{reason}"):
            source(f"corpus.filter={condition}").read(spark)
    with pytest.raises(UsageError, match="^corpus.table no_such_pins cannot be read: .*TABLE_OR_VIEW_NOT_FOUND"):
        source("corpus.format=table", "corpus.table=no_such_pins").read(spark)
    with pytest.raises(UsageError, match="^the parquet corpus at .*nothere cannot be read .*PATH_NOT_FOUND"):
        source("corpus.format=parquet", f"corpus.path={tmp_path / 'nothere'}").read(spark)


def test_a_delta_corpus_at_a_path_with_a_space_and_unicode_reads(spark, tmp_path):
    """delta-rs gives a table's files percent-encoded; Spark was handed them so and looked for a
    folder named `sp%20ace%20%C3%BC`, failing every job with PATH_NOT_FOUND (found in review)."""
    root = tmp_path / "their pins ü"
    rows = pa.table({"content_id": ["pin-a", "pin-b"], "image": [b"a", b"b"], "ds": ["2026-11-14", "2026-11-15"]})
    write_deltalake(str(root), rows, partition_by=["ds"])
    source = CorpusSource.of(settings_for(tmp_path / "lakehouse", f"corpus.path={root}"))
    read = source.read(spark, source.version(), file_column="file").collect()
    assert sorted((r["content_id"], r["ds"]) for r in read) == [("pin-a", "2026-11-14"), ("pin-b", "2026-11-15")]
    files = {unquote(f.path) for f in delta_io.live_files(str(root))}
    assert {delta_io.relative_path(str(root), r["file"]) for r in read} == files  # what a refresh matches changed files by


def test_a_delta_corpus_whose_day_folders_are_escaped_reads_every_file_once(spark, tmp_path):
    """delta-rs names a partition folder Hive-escaped (`ds=2026%2011%2014`) and lists it so under
    a percent-encoded root; Spark was handed it unescaped once more, a folder that does not exist,
    and every job failed with PATH_NOT_FOUND (a day that is not a day is to be skipped, not fatal).
    Each file is read once, its ASCII day as written, and maps onto the log's files."""
    root = tmp_path / "their pins"
    days = ["2026-11-14", "2026 11 14", "a/b", "a%2Fb", "a=b", "a#b?c", "%", None]
    write_deltalake(str(root), pa.table({"content_id": [f"pin-{i}" for i in range(len(days))], "image": [b"x"] * len(days),
                                         "ds": pa.array(days, pa.string())}), partition_by=["ds"])
    live = delta_io.live_files(str(root))
    expected = sorted((i, f.partition_values["ds"]) for f in live
                      for i in pq.read_table(str(root / unquote(f.path)), columns=["content_id"])["content_id"].to_pylist())
    assert sorted(expected, key=repr) == sorted(((f"pin-{i}", d) for i, d in enumerate(days)), key=repr)
    source = CorpusSource.of(settings_for(tmp_path / "lakehouse", f"corpus.path={root}"))
    read = source.read(spark, source.version(), file_column="file").collect()
    assert sorted(((r["content_id"], r["ds"]) for r in read), key=repr) == sorted(expected, key=repr)
    assert {delta_io.relative_path(str(root), r["file"]) for r in read} == {unquote(f.path) for f in live}
    escaped = {unquote(f.path) for f in live if f.partition_values["ds"] in ("2026 11 14", "a/b")}
    only = source.read(spark, source.version(), only=escaped).collect()
    assert sorted(r["content_id"] for r in only) == ["pin-1", "pin-2"]


def test_a_delta_corpus_with_an_empty_day_reads_it_as_the_log_says_null(spark, tmp_path):
    """delta-rs writes a day of `""` to a folder `ds=` and logs the value null; Spark's reader
    refused that folder (EMPTY_PARTITION_COLUMN_VALUE), failing every job over a row the corpus
    rules skip as not a day (found in review). Its files are read with pyarrow, `ds` null as in
    the log, and name the log's files as the others do."""
    root = tmp_path / "their pins"
    days = ["2026-11-14", "", None]
    write_deltalake(str(root), pa.table({"content_id": [f"pin-{i}" for i in range(len(days))], "image": [b"x"] * len(days),
                                         "ds": pa.array(days, pa.string())}), partition_by=["ds"])
    live = delta_io.live_files(str(root))
    assert "ds=" in {unquote(f.path).split("/")[0] for f in live}
    source = CorpusSource.of(settings_for(tmp_path / "lakehouse", f"corpus.path={root}"))
    read = source.read(spark, source.version(), file_column="file").collect()
    assert sorted(((r["content_id"], r["ds"]) for r in read), key=repr) == sorted([("pin-0", "2026-11-14"), ("pin-1", None), ("pin-2", None)], key=repr)
    assert {delta_io.relative_path(str(root), r["file"]) for r in read} == {unquote(f.path) for f in live}
    empty = {unquote(f.path) for f in live if unquote(f.path).startswith("ds=/")}
    assert [r["content_id"] for r in source.read(spark, source.version(), only=empty).collect()] == ["pin-1"]
    assert check_rows(source.read(spark, source.version())).bad_day_rows == 2  # skipped as no day, as the null day is


def test_a_parquet_corpus_with_a_partition_folder_without_a_value_is_refused_naming_its_files(spark, tmp_path):
    """A parquet dataset (not Delta: no log to read the files from) with a folder `ds=` failed with
    Spark's EMPTY_PARTITION_COLUMN_VALUE as a traceback; it is a usage error naming the folder's
    files and how to fix the corpus (found in review)."""
    root = tmp_path / "pins"
    for day, content_id in (("2026-11-14", "pin-a"), ("", "pin-b")):
        (root / f"ds={day}").mkdir(parents=True)
        pq.write_table(pa.table({"content_id": [content_id], "image": [b"x"]}), str(root / f"ds={day}" / "part.parquet"))
    source = CorpusSource.of(settings_for(tmp_path / "lakehouse", f"corpus.path={root}", "corpus.format=parquet"))
    with pytest.raises(UsageError, match=rf"^the parquet corpus at {re.escape(str(root))} has 1 file in a partition folder without a value, "
                                         r"which Spark cannot read: ds=/part.parquet; rename each such folder `ds=__HIVE_DEFAULT_PARTITION__`"):
        source.read(spark)


def test_a_parquet_corpus_whose_day_folder_is_not_ascii_reads_the_day_written(spark, tmp_path):
    """pyarrow escapes each UTF-8 byte of a folder value (`ds=2026-11-2%C3%A9`) and Spark's partition
    discovery unescaped each `%XX` as a character of its own: the corpus check reported the day
    skipped as `2026-11-2Ã©`, as it did for a Delta corpus before. Rows of the other folders, read
    by Spark, and the file of each row are read as before."""
    root = tmp_path / "pins ü"
    rows = pa.table({"content_id": ["pin-a", "pin-b"], "image": [b"a", b"b"], "ds": ["2026-11-14", "2026-11-2\u00e9"]})
    ds.write_dataset(rows, root, format="parquet", partitioning=ds.partitioning(pa.schema([("ds", pa.string())]), flavor="hive"))
    assert sorted(p.name for p in root.iterdir()) == ["ds=2026-11-14", "ds=2026-11-2%C3%A9"]
    source = CorpusSource.of(settings_for(tmp_path / "lakehouse", "corpus.format=parquet", f"corpus.path={root}"))
    read = source.read(spark, file_column="file").collect()
    assert sorted((r["content_id"], r["ds"]) for r in read) == [("pin-a", "2026-11-14"), ("pin-b", "2026-11-2\u00e9")]
    assert {unquote(urlparse(r["file"]).path) for r in read} == {str(p) for p in root.glob("*/*.parquet")}  # as stored
    assert check_rows(source.read(spark)).bad_days == ["2026-11-2\u00e9"]


def test_a_parquet_corpus_whose_later_files_add_a_column_reads_it(spark, tmp_path):
    """Spark and pyarrow took a parquet dataset's schema from one file: a column its writer added
    later (`title`) was read as null in every row, and a filter on it refused (found in review).
    Spark's read and training's (pyarrow) read give the files' values."""
    folder = tmp_path / "grown"
    folder.mkdir()
    pq.write_table(pa.table({"content_id": ["pin-a"], "image": [b"a"], "ds": ["2026-11-14"]}), str(folder / "part-0.parquet"))
    pq.write_table(pa.table({"content_id": ["pin-b", "pin-c"], "image": [b"b", b"c"], "title": ["new", "old"], "ds": ["2026-11-15"] * 2}),
                   str(folder / "part-1.parquet"))
    expected = [("pin-a", None), ("pin-b", "new"), ("pin-c", "old")]
    source = CorpusSource.of(settings_for(tmp_path / "lakehouse", "corpus.format=parquet", f"corpus.path={folder}"))
    assert sorted((r["content_id"], r["title"]) for r in source.read(spark).collect()) == expected
    assert sorted(zip(*source.rows(["content_id", "title"]).to_pydict().values())) == expected
    only_new = CorpusSource.of(settings_for(tmp_path / "lakehouse", "corpus.format=parquet", f"corpus.path={folder}", "corpus.filter=title = 'new'"))
    assert [r["content_id"] for r in only_new.read(spark).collect()] == ["pin-b"]
    assert only_new.rows(["content_id"])["content_id"].to_pylist() == ["pin-b"]
