"""Corpus rows that are wrong never break a job (issue #16): duplicate and null ids, days that
are not dates, text that is not UTF-8. The jobs apply the documented rule (jobs.corpus) and
report what they skipped; every table keeps one row per key."""
from __future__ import annotations

from datetime import timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import CHEAP_SIGNALS, not_utf8, settings_for
from deltalake import DeltaTable, write_deltalake

from jobs.backfill import run_backfill
from jobs.corpus import CorpusCheck, CorpusSource, Window, check_rows, items_by_day, newest_of_ids, one_row_per_id
from jobs.dedup import run_dedup
from jobs.refresh import run_refresh
from lake import delta_io
from signals.contracts import CORPUS

pytestmark = pytest.mark.spark

@pytest.fixture(scope="module")
def crafted(corpus_lakehouse, tmp_path_factory):
    """A lakehouse whose corpus holds 12 sample items plus: a newer copy of one id on the same
    day, an older copy of another id on another day, a null id, a day that is not a date, and
    a title and an id that are not UTF-8."""
    sample = DeltaTable(corpus_lakehouse.root).to_pyarrow_table().sort_by("content_id").slice(0, 12)
    rows = sample.to_pylist()
    newer, older = dict(rows[0]), dict(rows[1])
    newer.update(title="the newer copy wins", updated_at=rows[0]["updated_at"] + timedelta(days=1))
    older.update(title="the older copy loses", ds="2020-01-01", updated_at=rows[1]["updated_at"] - timedelta(days=1))
    null_id = {**rows[2], "content_id": None}
    bad_day = {**rows[3], "content_id": "bad-day", "ds": "2026-11-2\u00e9"}
    schema = pa.schema([f.with_nullable(True) for f in CORPUS.schema])  # a corpus someone else owns may allow null ids
    table = pa.Table.from_pylist([*rows, newer, older, null_id, bad_day, {**rows[5], "content_id": "undecodable"}], schema=schema)
    table = not_utf8(not_utf8(table, "title", 4), "content_id", table.num_rows - 1)
    lakehouse = tmp_path_factory.mktemp("crafted") / "lakehouse"
    write_deltalake(str(lakehouse / "corpus"), table, partition_by=["ds"])
    settings = settings_for(lakehouse, *CHEAP_SIGNALS)
    return settings, rows


def test_backfill_keeps_one_row_per_id_and_reports_what_it_skipped(spark, crafted):
    settings, rows = crafted
    result = run_backfill(spark, settings)
    assert result.status == "succeeded"
    assert "skipped 5 corpus rows" in result.message
    assert "2 with a null or undecodable content_id" in result.message and "1 whose ds is not a day (e.g. '2026-11-2\u00e9')" in result.message
    assert rows[0]["content_id"] in result.message and rows[1]["content_id"] in result.message
    ids = sorted(r["content_id"] for r in rows)
    for table in ("embeddings", "labels"):
        got = DeltaTable(settings.table_root(table)).to_pyarrow_table()
        for signal in set(got["signal"].to_pylist()):
            mine = got.filter(pc.equal(got["signal"], signal))
            assert sorted(set(mine["content_id"].to_pylist())) == ids, (table, signal)
            assert "2026-11-2\u00e9" not in mine["ds"].to_pylist()
    embeddings = {(r["content_id"], r["signal"]): r for r in DeltaTable(settings.table_root("embeddings")).to_pyarrow_table().to_pylist()}
    assert embeddings[(rows[1]["content_id"], "text_embedding")]["ds"] == rows[1]["ds"]  # the older copy's day is not used
    bad_text = embeddings[(rows[4]["content_id"], "text_embedding")]
    assert bad_text["status"] == "error" and "not valid UTF-8" in bad_text["error"]
    assert embeddings[(rows[4]["content_id"], "image_embedding")]["status"] == "ok"


def test_the_newer_copy_is_the_one_computed(spark, crafted):
    settings, rows = crafted
    from signals.hashing import text_input_hash

    embeddings = {(r["content_id"], r["signal"]): r for r in DeltaTable(settings.table_root("embeddings")).to_pyarrow_table().to_pylist()}
    assert embeddings[(rows[0]["content_id"], "text_embedding")]["input_hash"] == text_input_hash("the newer copy wins", rows[0]["description"])


def test_a_window_never_computes_an_id_whose_newer_row_is_outside_it(spark, crafted):
    settings, rows = crafted
    result = run_backfill(spark, settings, window=Window("2020-01-01", "2020-01-01"))
    assert result.status == "nothing to do" and "no corpus items" in result.message


def test_refresh_and_dedup_apply_the_same_rule_and_are_in_the_ledger(spark, crafted):
    settings, rows = crafted
    refreshed = run_refresh(spark, settings)
    assert refreshed.status in ("succeeded", "nothing to do")
    again = run_refresh(spark, settings)
    assert again.status == "nothing to do"
    deduped = run_dedup(spark, settings)
    duplicates = DeltaTable(settings.table_root("duplicates")).to_pyarrow_table()
    assert sorted(duplicates["content_id"].to_pylist()) == sorted(r["content_id"] for r in rows)
    assert "skipped 5 corpus rows" in deduped.message
    runs = delta_io.read_arrow(settings.table_root("runs")).to_pylist()
    by_run = {(r["run_id"], r["status"]) for r in runs}
    assert (again.run_id, "nothing to do") in by_run
    assert (deduped.run_id, "succeeded") in by_run
    dedup_row = next(r for r in runs if r["run_id"] == deduped.run_id and r["status"] == "succeeded")
    assert dedup_row["rows_in"] == len(rows) and dedup_row["table_version"] is not None


def test_items_by_day_counts_what_one_row_per_id_keeps_on_each_day(spark, crafted):
    """The monitor's row-count rule counts the corpus's items per day from the key columns only;
    checked against the rows the jobs keep (duplicates across days, a bad day, null ids)."""
    settings, rows = crafted
    source = CorpusSource.of(settings)
    keys = source.keys(spark)
    kept = {r["ds"]: r["count"] for r in one_row_per_id(source.read(spark), newest_of_ids(keys)).groupBy("ds").count().collect()}
    assert "2020-01-01" not in kept and sum(kept.values()) == 12  # the older copy's day keeps nothing
    wanted = [*sorted({r["ds"] for r in rows})[1:], "2020-01-01"]  # one day left out
    assert items_by_day(keys, wanted) == {day: n for day, n in kept.items() if day in wanted}


def test_the_monitor_counts_items_per_day_without_spark_only_where_the_count_is_sparks(spark, crafted, tmp_path, monkeypatch):
    """The row-count rule's items per day, counted from a small Delta corpus's key columns on the
    driver (`CorpusTable.count_items`), are Spark's (`items_by_day`) on a corpus of repins to a later
    day, same-day copies, an older and an undated copy, a tie, a null id and a day no calendar has,
    and no Spark job runs for them; on a corpus whose ids are null or not UTF-8 too (`latest_rows`
    failed on such an id: that corpus went to Spark); a corpus.filter, a parquet corpus and a corpus
    above KEYS_WITHOUT_SPARK rows go to Spark."""
    from jobs.monitor import corpus_items
    from lake import corpus as lake_corpus

    _, rows = crafted
    latest_day = max(r["ds"] for r in rows)
    edited = [{**rows[0], "title": "newer, same day", "updated_at": rows[0]["updated_at"] + timedelta(days=1)},
              {**rows[1], "title": "older, another day", "ds": "2020-01-01", "updated_at": rows[1]["updated_at"] - timedelta(days=1)},
              {**rows[2], "title": "repinned later", "ds": latest_day, "updated_at": rows[2]["updated_at"] + timedelta(days=1)},
              {**rows[3], "title": "undated, later", "ds": latest_day, "updated_at": None},
              {**rows[4], "title": "tied"}, {**rows[5], "content_id": None}, {**rows[6], "content_id": "bad-day", "ds": "2026-02-30"}]
    schema = pa.schema([f.with_nullable(True) for f in CORPUS.schema])
    lakehouse = tmp_path / "lakehouse"
    write_deltalake(str(lakehouse / "corpus"), pa.Table.from_pylist([*rows, *edited], schema=schema), partition_by=["ds"])
    settings = settings_for(lakehouse, *CHEAP_SIGNALS)
    source = CorpusSource.of(settings)
    days = sorted({r["ds"] for r in [*rows, *edited]} | {"2026-01-01"})
    expected = {}
    for r in rows:  # by hand: every sample id once, the repinned one on the latest day
        day = latest_day if r["content_id"] == rows[2]["content_id"] else r["ds"]
        expected[day] = expected.get(day, 0) + 1
    assert items_by_day(source.keys(spark), days) == expected
    tracker = spark.sparkContext.statusTracker()
    before = set(tracker.getJobIdsForGroup(None))
    assert source.count_items(days) == corpus_items(spark, settings)(days) == expected
    assert set(tracker.getJobIdsForGroup(None)) == before  # no Spark job
    assert CorpusSource.of(settings_for(lakehouse, *CHEAP_SIGNALS, "corpus.filter=title <> 'tied'")).count_items(days) is None
    monkeypatch.setattr(lake_corpus, "KEYS_WITHOUT_SPARK", len(rows) + len(edited) - 1)
    assert source.count_items(days) is None
    assert corpus_items(spark, settings)(days) == expected  # by Spark
    monkeypatch.undo()
    pq.write_table(pa.Table.from_pylist([*rows, *edited], schema=schema), str(tmp_path / "corpus.parquet"))
    assert CorpusSource.of(settings_for(lakehouse, "corpus.format=parquet", f"corpus.path={tmp_path / 'corpus.parquet'}")).count_items(days) is None
    crafted_source = CorpusSource.of(crafted[0])  # its last row's id is not UTF-8
    crafted_days = sorted({r["ds"] for r in rows})
    by_spark = items_by_day(crafted_source.keys(spark), crafted_days)
    before = set(tracker.getJobIdsForGroup(None))
    assert crafted_source.count_items(crafted_days) == corpus_items(spark, crafted[0])(crafted_days) == by_spark
    assert set(tracker.getJobIdsForGroup(None)) == before


def _kept(items) -> list[tuple[str, str, str]]:
    return sorted((r["content_id"], r["ds"], r["title"]) for r in items.select("content_id", "ds", "title").collect())


def test_told_which_ids_repeat_the_rule_keeps_the_same_rows_and_shuffles_no_image_when_none_does(spark, crafted):
    """`one_row_per_id` told the check's count of repeated ids keeps exactly the rows it keeps
    without it; with none repeated its plan has no shuffle at all (the images stay where they were read)."""
    settings, rows = crafted
    source = CorpusSource.of(settings)
    newest = newest_of_ids(source.keys(spark))
    every = source.read(spark)
    check = check_rows(every, newest)
    assert check.repeated_ids == 2  # the newer copy's id and the older copy's
    assert _kept(one_row_per_id(every, newest, check.repeated_ids)) == _kept(one_row_per_id(every, newest))
    unique = every.filter(~every["content_id"].isin(rows[0]["content_id"], rows[1]["content_id"]))
    assert check_rows(unique, newest).repeated_ids == 0
    assert _kept(one_row_per_id(unique, newest, 0)) == _kept(one_row_per_id(unique, newest))
    plan = one_row_per_id(unique, None, 0)._jdf.queryExecution().executedPlan().toString()
    assert "Exchange" not in plan and "Window" not in plan, plan


def test_the_check_reads_its_rows_once_and_counts_what_the_rule_skips(spark, crafted):
    """`check_rows` groups the rows by id once (the refresh's, backfill's and dedup's corpus check:
    it aggregated them twice, each aggregate its own scan and jobs, and joined the two), and counts
    what the crafted corpus holds: two ids not UTF-8 or null, one day not a day, two older copies.
    The day is the one written: Spark's reader decoded its folder `ds=2026-11-2%C3%A9` byte by byte."""
    settings, rows = crafted
    source = CorpusSource.of(settings)
    newest = newest_of_ids(source.keys(spark)).persist()  # as the refresh has it: computed and cached before the check
    newest.count()
    sc = spark.sparkContext
    sc.setJobGroup("corpus-check", "the corpus check")
    try:
        check = check_rows(source.read(spark), newest)
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
        newest.unpersist()
    jobs = len(sc.statusTracker().getJobIdsForGroup("corpus-check"))
    assert check == CorpusCheck(items=12, null_ids=2, bad_days=["2026-11-2\u00e9"], duplicates=2,  # the day written, not `2026-11-2Ã©`
                                duplicate_examples=sorted([rows[0]["content_id"], rows[1]["content_id"]]), bad_day_rows=1, repeated_ids=2)
    assert jobs <= 4, jobs  # 6 when the check aggregated its rows twice (Spark 4.2, AQE: a job per query stage)


def test_an_undated_row_is_older_than_a_row_dated_before_1970_as_training_keeps_it(spark, corpus_lakehouse, tmp_path):
    from datetime import UTC, datetime

    rows = DeltaTable(corpus_lakehouse.root).to_pyarrow_table().sort_by("content_id").slice(0, 3).to_pylist()
    undated = {**rows[0], "title": "undated", "updated_at": None, "ds": "2026-11-20"}
    dated = {**rows[0], "title": "dated 1960", "updated_at": datetime(1960, 1, 1, tzinfo=UTC), "ds": "2026-11-14"}
    schema = pa.schema([f.with_nullable(True) for f in CORPUS.schema])
    write_deltalake(str(tmp_path / "lakehouse" / "corpus"), pa.Table.from_pylist([*rows[1:], undated, dated], schema=schema), partition_by=["ds"])
    source = CorpusSource.of(settings_for(tmp_path / "lakehouse", *CHEAP_SIGNALS))
    newest = newest_of_ids(source.keys(spark))
    every = source.read(spark)
    kept = _kept(one_row_per_id(every, newest))
    training = source.latest(["content_id", "ds", "title"])
    assert kept == sorted(zip(*(training[c].to_pylist() for c in ("content_id", "ds", "title"))))
    assert check_rows(every, newest).items == len(kept) == 3


def test_a_day_no_calendar_has_is_skipped_and_reported_as_the_command_line_refuses_it(spark, corpus_lakehouse, tmp_path):
    """Found in review: `ds` 2026-02-30 matched the day pattern, so its item was computed into a
    partition that `--start`, `--end` and `monitor --day` refuse to name; a day with a trailing
    newline passed Spark's `$`. Kept days are exactly those `date.fromisoformat` reads, as training keeps them."""
    from datetime import date

    rows = DeltaTable(corpus_lakehouse.root).to_pyarrow_table().sort_by("content_id").slice(0, 2).to_pylist()
    days = {"feb-30": "2026-02-30", "leap": "2024-02-29", "not-leap": "2100-02-29", "year-0": "0000-01-01", "newline": "2026-11-20\n"}
    schema = pa.schema([f.with_nullable(True) for f in CORPUS.schema])
    odd = [{**rows[0], "content_id": name, "ds": day} for name, day in days.items()]
    write_deltalake(str(tmp_path / "lakehouse" / "corpus"), pa.Table.from_pylist([*rows, *odd], schema=schema))
    source = CorpusSource.of(settings_for(tmp_path / "lakehouse", *CHEAP_SIGNALS))
    newest = newest_of_ids(source.keys(spark))
    every = source.read(spark)

    def is_day(ds: str) -> bool:
        try:
            return len(ds) == 10 and bool(date.fromisoformat(ds))
        except ValueError:
            return False

    kept = _kept(one_row_per_id(every, newest))
    assert [c for c, _, _ in kept] == sorted(r["content_id"] for r in [*rows, *odd] if is_day(r["ds"])) == sorted([*(r["content_id"] for r in rows), "leap"])
    training = source.latest(["content_id", "ds", "title"])
    assert kept == sorted(zip(*(training[c].to_pylist() for c in ("content_id", "ds", "title"))))
    check = check_rows(every, newest)
    assert check.items == 3 and check.bad_day_rows == 4 and "'2026-02-30'" in check.describe()
