"""The refresh: only what is new or changed is computed, takedowns vanish from every signal,
nothing-to-do commits nothing, interrupted runs are finished by the next one, and concurrent
runs either both land or one stops with a conflict and succeeds when retried. Every case is
compared with a from-scratch backfill of the same corpus that was never interrupted."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from conftest import CHEAP_SIGNALS, copy_lakehouse, edit_corpus, lakehouse_with_corpus, rewrite_as_errors
from deltalake import DeltaTable
from pyspark.sql.classic.dataframe import DataFrame  # the session's frames: pyspark.sql.DataFrame is their interface

from jobs.backfill import run_backfill
from jobs.corpus import Window
from jobs.engine import CORPUS_VERSION
from jobs.refresh import run_refresh
from lake import delta_io, ledger, spark_io
from monitoring.monitor import read_stats, stats_rows
from rollout.models import build_signals
from signals.contracts import EMBEDDINGS, LABELS

pytestmark = pytest.mark.spark

STABLE = ["content_id", "signal", "model_version", "input_hash", "vector", "dim", "status", "error", "ds"]


def _embeddings(settings) -> pa.Table:
    rows = DeltaTable(settings.table_root("embeddings")).to_pyarrow_table().select(STABLE)
    return rows.sort_by([("content_id", "ascending"), ("signal", "ascending")])


def _assert_same_rows(settings, reference_settings) -> None:
    got, want = _embeddings(settings), _embeddings(reference_settings)
    keys = list(zip(got["content_id"].to_pylist(), got["signal"].to_pylist()))
    assert len(keys) == len(set(keys)), "duplicate keys"
    assert got.num_rows == want.num_rows
    for column in STABLE:
        if column != "vector":
            assert got[column].equals(want[column]), column
    # batches are composed differently when only some items are computed: allow float noise
    for a, b in zip(got["vector"].to_pylist(), want["vector"].to_pylist()):
        assert (a is None and b is None) or np.max(np.abs(np.subtract(a, b))) <= 1e-5
    order = [("content_id", "ascending"), ("signal", "ascending"), ("label", "ascending")]
    got, want = (DeltaTable(s.table_root("labels")).to_pyarrow_table().sort_by(order) for s in (settings, reference_settings))
    for column in ("content_id", "signal", "label", "status", "error", "decision", "input_hash"):
        assert got[column].equals(want[column]), column
    assert np.allclose(got["score"].to_numpy(zero_copy_only=False), want["score"].to_numpy(zero_copy_only=False), atol=1e-4, equal_nan=True)


def _text_only(settings):
    """The same settings with every image signal switched off."""
    image_signals = {n for n, s in build_signals(settings).items() if s.input_kind == "image"}
    signals = {n: s.model_copy(update={"enabled": False}) if n in image_signals else s for n, s in settings.signals.items()}
    return settings.model_copy(update={"signals": signals})


@pytest.fixture
def lakehouse(tmp_path, corpus_lakehouse):
    """A lakehouse with the sample corpus, for the run under test."""
    return lakehouse_with_corpus(corpus_lakehouse, tmp_path / "a", *CHEAP_SIGNALS)


@pytest.fixture
def two_lakehouses(tmp_path, corpus_lakehouse, lakehouse):
    """(the lakehouse under test, a reference lakehouse) with the same corpus, for tests that edit
    both corpora (the others compare with the shared `cheap_backfilled`)."""
    return lakehouse, lakehouse_with_corpus(corpus_lakehouse, tmp_path / "b", *CHEAP_SIGNALS)


@pytest.fixture
def backfilled_and_reference(tmp_path, corpus_lakehouse, cheap_backfilled):
    """(a copy of the shared backfill's lakehouse, for the run under test; a reference lakehouse
    with the same corpus). Only after a backfill: a refresh records the corpus's location, which
    a copy changes, so the copy of a refreshed lakehouse would compare its whole corpus."""
    return (copy_lakehouse(cheap_backfilled, tmp_path / "a", *CHEAP_SIGNALS),
            lakehouse_with_corpus(corpus_lakehouse, tmp_path / "b", *CHEAP_SIGNALS))


def test_a_first_refresh_equals_a_backfill_and_a_second_one_commits_nothing(spark, lakehouse, cheap_backfilled):
    settings = lakehouse
    first = run_refresh(spark, settings)
    _assert_same_rows(settings, cheap_backfilled)
    embeddings = DeltaTable(settings.table_root("embeddings")).version()
    again = run_refresh(spark, settings)
    assert again.status == ledger.NOTHING_TO_DO and not again.table_versions
    assert DeltaTable(settings.table_root("embeddings")).version() == embeddings
    ledger_rows = [r for r in delta_io.read_arrow(settings.table_root("runs")).to_pylist() if r["run_id"] == again.run_id]
    assert sorted({r["status"] for r in ledger_rows}) == [ledger.NOTHING_TO_DO, ledger.STARTED]  # a no-op run is in the ledger too
    assert first.status == ledger.SUCCEEDED


def test_only_new_and_changed_items_are_computed_and_takedowns_vanish_from_every_signal(spark, backfilled_and_reference, monkeypatch):
    import jobs.refresh

    settings, reference = backfilled_and_reference
    edits = edit_corpus(settings.table_root("corpus"))
    edit_corpus(reference.table_root("corpus"))
    text_only = _text_only(settings)
    ruled = []  # how many rows each call of the one-row-per-id rule was given (the plan's and the write's)
    rule = jobs.refresh.one_row_per_id
    monkeypatch.setattr(jobs.refresh, "one_row_per_id", lambda rows, *args: ruled.append(rows.count()) or rule(rows, *args))
    result = run_refresh(spark, text_only)  # image rows of deleted items must go all the same
    computed = {o.signal: o.rows_in for o in result.outcomes}
    assert computed == {name: len(edits["retitled"]) + len(edits["added"]) for name in text_only.enabled_signals}
    # the write's rule is given the items it computes, not every row of their days (the new items copy
    # other items' inputs: compute once copies their rows, so the retitled ones are all it computes)
    assert min(ruled) == len(edits["retitled"]) < max(ruled)
    monkeypatch.undo()
    for table in ("embeddings", "labels"):
        rows = DeltaTable(settings.table_root(table)).to_pyarrow_table()
        assert not set(edits["dropped"]) & set(rows["content_id"].to_pylist()), table
    # nor are their vectors (nor the retitled items' old ones) kept in the samples of the backfill's statistics
    # of their days, which the refresh leaves: every sampled vector is one the table still holds (found in review)
    held = {tuple(np.float32(v).tolist()) for v in delta_io.read_arrow(settings.table_root("embeddings"))["vector"].to_pylist() if v}
    sampled = [tuple(v.tolist()) for r in stats_rows(read_stats(settings)) if r["sample"] is not None for v in r["sample"]]
    assert sampled and not [v for v in sampled if v not in held]
    run_refresh(spark, settings)  # now the image signal: only the added items
    run_backfill(spark, reference)
    _assert_same_rows(settings, reference)
    history = DeltaTable(settings.table_root("embeddings")).history()
    assert history[0]["job"] == "refresh" and int(history[0]["stale_items"]) == 0


@pytest.mark.parametrize("module, die_at", [(spark_io, "write_files"), (delta_io, "commit_files_made")], ids=["write", "commit"])
def test_a_run_that_dies_before_its_commit_is_finished_by_the_next(spark, lakehouse, cheap_backfilled, monkeypatch, module, die_at):
    settings = lakehouse
    real = getattr(module, die_at)

    def dies(*args, **kwargs):  # in commit_files_made: the data files are written, the commit never made
        if ledger.RUNS in args:  # the ledger's appends commit the same way: the run is killed in its table's commit, not in them
            return real(*args, **kwargs)
        raise KeyboardInterrupt(f"killed in {die_at}")

    monkeypatch.setattr(module, die_at, dies)
    with pytest.raises(KeyboardInterrupt):
        run_refresh(spark, settings)
    monkeypatch.setattr(module, die_at, real)
    assert delta_io.read_arrow(settings.table_root("embeddings")).num_rows == 0  # nothing half-written is visible
    run_refresh(spark, settings)
    _assert_same_rows(settings, cheap_backfilled)
    statuses = [r["status"] for r in DeltaTable(settings.table_root("runs")).to_pyarrow_table().to_pylist()]
    signals = len(settings.enabled_signals)
    assert statuses.count(ledger.FAILED) == signals and statuses.count(ledger.SUCCEEDED) == signals


def test_a_run_that_dies_after_its_commit_is_recovered_not_redone(spark, lakehouse, cheap_backfilled, monkeypatch):
    settings = lakehouse
    real = ledger.record_runs

    def dead_after_commit(root, records):
        if records[0].status != ledger.STARTED:
            raise KeyboardInterrupt("killed after the commit")
        real(root, records)

    monkeypatch.setattr(ledger, "record_runs", dead_after_commit)
    with pytest.raises(KeyboardInterrupt):
        run_refresh(spark, settings)
    monkeypatch.setattr(ledger, "record_runs", real)
    committed = DeltaTable(settings.table_root("embeddings")).version()
    again = run_refresh(spark, settings)
    assert again.status == ledger.NOTHING_TO_DO  # nothing computed twice
    _assert_same_rows(settings, cheap_backfilled)
    assert DeltaTable(settings.table_root("embeddings")).version() == committed
    # the next run that writes the ledger closes the dead run's entry from the commit log
    run_backfill(spark, settings, Window("2000-01-01", "2000-01-01"))
    runs = DeltaTable(settings.table_root("runs")).to_pyarrow_table().to_pylist()
    recovered = [r for r in runs if r["message"] and r["message"].startswith("recovered")]
    assert {r["signal"] for r in recovered} == set(settings.enabled_signals)
    assert all(r["table_version"] == committed and r["rows_in"] == 60 for r in recovered)


def _race(monkeypatch, spark, first_settings, first_window, second_settings, second_window):
    """Run a backfill that, after writing its files and before committing, lets another land."""
    real = spark_io.write_files
    state = {"raced": False}

    def write_then_let_the_other_commit(*args, **kwargs):
        files = real(*args, **kwargs)
        if not state["raced"]:
            state["raced"] = True
            run_backfill(spark, second_settings, second_window)
        return files

    monkeypatch.setattr(spark_io, "write_files", write_then_let_the_other_commit)
    return lambda: run_backfill(spark, first_settings, first_window)


def test_racing_runs_on_the_same_slice_conflict_clearly_and_the_retry_is_exact(spark, two_lakehouses, monkeypatch):
    settings = _text_only(two_lakehouses[0])
    day = sorted(set(DeltaTable(settings.table_root("corpus")).to_pyarrow_table()["ds"].to_pylist()))[0]
    first = _race(monkeypatch, spark, settings, Window(day, day), settings, Window(day, day))
    with pytest.raises(delta_io.CommitConflict, match="Re-run"):
        first()
    monkeypatch.undo()
    run_backfill(spark, settings, Window(day, day))  # the retry
    rows = _embeddings(settings)
    in_day = DeltaTable(settings.table_root("corpus")).to_pyarrow_table(filters=[("ds", "=", day)]).num_rows
    assert rows.num_rows == len(set(rows["content_id"].to_pylist())) == in_day


def test_racing_runs_on_disjoint_slices_both_land(spark, lakehouse, cheap_backfilled, monkeypatch):
    settings = lakehouse
    days = sorted(set(DeltaTable(settings.table_root("corpus")).to_pyarrow_table()["ds"].to_pylist()))
    early, late = Window(days[0], days[len(days) // 2]), Window(days[len(days) // 2 + 1], days[-1])
    _race(monkeypatch, spark, settings, early, settings, late)()
    _assert_same_rows(settings, cheap_backfilled)


def _edit_in_place(settings) -> dict[str, list[str]]:
    """Edit the corpus the way a daily pipeline does, each edit rewriting only the files it
    touches: a new day of items, a deletion, a retitle."""
    from benchmarks.corpus import add_new_items

    root = settings.table_root("corpus")
    ids = sorted(DeltaTable(root).to_pyarrow_table()["content_id"].to_pylist())
    dropped, retitled = ids[7:9], ids[40:41]
    added = add_new_items(root, 2 / len(ids))
    DeltaTable(root).delete(" OR ".join(f"content_id = '{i}'" for i in dropped))
    DeltaTable(root).update(updates={"title": "'edited title'"}, predicate=f"content_id = '{retitled[0]}'")
    return {"dropped": dropped, "retitled": retitled, "added": added}


def _scope(settings, full: bool = False):
    """The scope the next refresh of `settings` would compare, for the embeddings table."""
    from jobs.corpus import CorpusSource
    from jobs.engine import by_output
    from jobs.refresh import plan_scope
    
    source = CorpusSource.of(settings)
    mine = by_output(build_signals(settings))[EMBEDDINGS]
    return plan_scope(settings.table_root("embeddings"), mine, (source, source.version()), full)


def _write_jobs(spark, monkeypatch) -> dict[str, list[int]]:
    """Spark jobs of each table's write (jobs.engine.write_and_commit's block), by its description, filled as writes end."""
    import jobs.engine

    shown, written = jobs.engine.spark_progress, {}

    @contextmanager
    def watched(sc, description, *args, **kwargs):
        with shown(sc, description, *args, **kwargs):
            group = sc.getLocalProperty("spark.jobGroup.id")
            yield
        written[description] = list(spark.sparkContext.statusTracker().getJobIdsForGroup(group))

    monkeypatch.setattr(jobs.engine, "spark_progress", watched)
    return written


def test_a_refresh_after_a_refresh_compares_only_the_changed_corpus_files_and_ends_where_a_full_one_ends(spark, two_lakehouses, monkeypatch):
    settings, reference = two_lakehouses
    assert _scope(settings).since is None  # nothing refreshed yet: the whole corpus
    for s in (settings, reference):
        run_refresh(spark, s)
        edits = _edit_in_place(s)
    scope = _scope(settings)
    total = DeltaTable(settings.table_root("corpus")).to_pyarrow_table().num_rows
    assert scope.since is not None and 0 < scope.items < total
    written = _write_jobs(spark, monkeypatch)
    result = run_refresh(spark, settings)
    monkeypatch.undo()
    # each table's write reads the days' corpus rows and runs the one-row-per-id rule once for both of its signals:
    # 12 jobs each when every signal's rows scanned the days, ran the rule's window and broadcast its ids again (8 now;
    # Spark 4.2, AQE: a job per query stage)
    counts = {description: len(ids) for description, ids in written.items()}
    assert len(counts) == 2 and max(counts.values()) <= 9, counts
    assert "since version" in result.message
    computed = {o.signal: o.rows_in for o in result.outcomes}
    image = {n for n, s in build_signals(settings).items() if s.input_kind == "image"}
    assert computed == {n: len(edits["added"]) + (0 if n in image else len(edits["retitled"])) for n in settings.enabled_signals}
    assert "whole corpus" in run_refresh(spark, reference, full=True).message
    _assert_same_rows(settings, reference)
    for table in ("embeddings", "labels"):
        rows = DeltaTable(settings.table_root(table)).to_pyarrow_table()
        assert not set(edits["dropped"]) & set(rows["content_id"].to_pylist()), table


def test_the_tables_of_one_refresh_share_its_corpus_check(spark, backfilled_and_reference, monkeypatch):
    """The corpus check (one Spark action) is made once per set of corpus rows a refresh compares,
    not once per table, and it is what checking those rows alone finds; nothing the tables' plans
    share is cached twice (Spark warns "Asked to cache already cached data" on each such persist)."""
    import jobs.refresh
    from jobs.corpus import CorpusSource, check_rows, newest_of_ids

    settings, _ = backfilled_and_reference
    source = CorpusSource.of(settings)
    monkeypatch.setattr(jobs.refresh.driver_plan, "compares_on_driver", lambda *args: False)  # a large day's: Spark compares it
    cached_again, persist = [], DataFrame.persist

    def persist_noting_cached(frame, *args):
        if frame.storageLevel.useMemory or frame.storageLevel.useDisk:  # the cache already holds its plan
            cached_again.append(frame)
        return persist(frame, *args)

    monkeypatch.setattr(DataFrame, "persist", persist_noting_cached)
    checks, plans = [], []
    check, plan = jobs.refresh.check_rows, jobs.refresh.plan_refresh
    monkeypatch.setattr(jobs.refresh, "check_rows", lambda rows, newest: checks.append(rows.inputFiles()) or check(rows, newest))
    monkeypatch.setattr(jobs.refresh, "plan_refresh", lambda *args, **kwargs: plans.append(plan(*args, **kwargs)) or plans[-1])
    for edit in (lambda: None, lambda: _edit_in_place(settings)):  # the whole corpus (after the backfill), then the changed files
        edit()
        checks.clear()
        plans.clear()
        run_refresh(spark, settings)
        assert [p.contract.name for p in plans] == ["embeddings", "labels"] and len(checks) == 1
        rows = source.read(spark, source.version(), only=None if plans[0].scope.since is None else
                           {unquote(f.path) for f in plans[0].scope.added})
        alone = check_rows(rows, newest_of_ids(source.keys(spark, source.version())))
        assert all(p.corpus_check == alone for p in plans)
    assert alone.items > 0 and not cached_again


def _plan_facts(plan) -> dict:
    """Everything a plan tells its apply, its frames collected."""
    def rows(frame):
        return sorted(tuple(sorted(v) if isinstance(v, list) else v for v in r) for r in frame.collect())

    reused = plan.reused_items if plan.reused_items is not None and any(plan.reused.values()) else None
    return {"todo": plan.todo, "todo_days": plan.todo_days, "reused": plan.reused, "reused_files": plan.reused_files,
            "corpus_check": plan.corpus_check, "rewrite": plan.rewrite.files, "dropped": rows(plan.rewrite.dropped),
            "todo_items": rows(plan.todo_items), "reused_items": [] if reused is None else rows(reused),
            "newest": rows(plan.newest.join(plan.todo_items.select("content_id"), "content_id"))}


def test_a_small_day_compared_on_the_driver_is_planned_as_spark_plans_it(spark, backfilled_and_reference, monkeypatch):
    """A daily refresh's few changed files are compared on the driver without a Spark job
    (jobs/driver_plan.py), into the plan Spark's comparison makes of them, field for field: a new
    day, takedowns, a retitle, items ingested again, a repin, a row whose day is not a day, and
    stored errors that are retried."""
    import datetime as dt

    from deltalake import write_deltalake

    import jobs.refresh
    from benchmarks.corpus import add_new_items
    from jobs.corpus import CorpusSource
    from jobs.engine import by_output

    settings, _ = backfilled_and_reference
    root = settings.table_root("corpus")
    add_new_items(root, 0.05)
    run_refresh(spark, settings)  # records the corpus version the next one compares from
    _edit_in_place(settings)
    corpus = DeltaTable(root).to_pyarrow_table().sort_by("content_id")
    _ingest_again(settings, corpus["content_id"].to_pylist()[20:22], "2026-12-01")
    extra = corpus.slice(25, 2)  # a repin of an item's image and text, and a row whose day is not a day
    extra = extra.set_column(0, corpus.schema.field("content_id"), pa.array(["pin-repin", "pin-bad-day"]))
    extra = extra.set_column(extra.schema.get_field_index("ds"), corpus.schema.field("ds"), pa.array(["2026-12-01", "2026-02-30"]))
    extra = extra.set_column(extra.schema.get_field_index("updated_at"), corpus.schema.field("updated_at"),
                             pa.array([dt.datetime(2026, 12, 1, tzinfo=dt.UTC)] * 2, corpus.schema.field("updated_at").type))
    write_deltalake(root, extra.cast(corpus.schema), mode="append", partition_by=["ds"])
    scope = _scope(settings)
    assert scope.since is not None
    retried = corpus["content_id"].to_pylist()[30:32]  # in files the day did not change
    rewrite_as_errors(settings.table_root("embeddings"), lambda rows: pc.is_in(rows["content_id"], pa.array(retried)), "transient: timed out")

    source = CorpusSource.of(settings)
    signals = by_output(build_signals(settings))
    tracker, facts = spark.sparkContext.statusTracker(), {}
    for contract in (EMBEDDINGS, LABELS):
        spark.sparkContext.setJobGroup("driver-plan", "a small day's plan")
        try:
            on_driver = jobs.refresh.plan_refresh(spark, settings, contract, signals[contract], (source, source.version()), scope)
        finally:
            spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
        assert list(tracker.getJobIdsForGroup("driver-plan")) == []
        with monkeypatch.context() as m:
            m.setattr(jobs.refresh.driver_plan, "compares_on_driver", lambda *args: False)
            in_spark = jobs.refresh.plan_refresh(spark, settings, contract, signals[contract], (source, source.version()), scope)
        facts[contract.name] = _plan_facts(on_driver)
        assert facts[contract.name] == _plan_facts(in_spark), contract.name
        in_spark.release()
    embeddings = facts["embeddings"]
    assert embeddings["rewrite"] and embeddings["reused_items"] and embeddings["corpus_check"].bad_day_rows == 1
    again = {r[0] for r in embeddings["todo_items"]} | {r[1] for r in embeddings["reused_items"]}
    assert {"pin-repin", *retried} <= again and set(retried) <= {r[0] for r in embeddings["dropped"]}


def test_an_unchanged_corpus_is_not_read_at_all(spark, two_lakehouses):
    settings, _ = two_lakehouses
    run_refresh(spark, settings)
    tracker = spark.sparkContext.statusTracker()
    spark.sparkContext.setJobGroup("unchanged-corpus", "a refresh with nothing to compare")
    try:
        again = run_refresh(spark, settings)
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
    assert again.status == ledger.NOTHING_TO_DO and "0 corpus files added and 0 removed" in again.message
    assert list(tracker.getJobIdsForGroup("unchanged-corpus")) == []


def test_the_whole_corpus_is_compared_when_the_changes_cannot_be_known(spark, backfilled_and_reference):
    settings, _ = backfilled_and_reference
    assert "no refresh" in _scope(settings).why  # a backfill brings only its window in line
    _edit_in_place(settings)
    run_refresh(spark, _text_only(settings))
    assert "the last refresh was of" in _scope(settings).why  # the image signal was not part of it
    run_refresh(spark, settings)
    assert _scope(settings).since is not None
    assert _scope(settings, full=True).why == "--full"
    corpus = DeltaTable(settings.table_root("corpus"))
    corpus.delete(f"content_id = '{corpus.to_pyarrow_table()['content_id'][0]}'")
    corpus.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    assert "vacuumed" in _scope(settings).why


@pytest.mark.parametrize("old_item_too", [True, False], ids=["racing-refresh-commits", "racing-refresh-commits-nothing"])
def test_a_backfill_that_read_the_corpus_before_a_takedown_a_refresh_saw_leaves_no_row_of_it(spark, two_lakehouses, monkeypatch, old_item_too):
    """The backfill of a new day reads the corpus; its items (and an old one) are taken down and
    the daily refresh runs (nothing of the new day to drop yet: it commits only the old item's
    removal, or nothing); then the backfill commits the new day's rows. The next incremental
    refresh must drop them: they are in no corpus file changed since the last refresh's version,
    only since the backfill's."""
    from benchmarks.corpus import add_new_items

    settings, reference = two_lakehouses
    run_refresh(spark, settings)
    root = settings.table_root("corpus")
    new = add_new_items(root, 2 / 60)
    day = DeltaTable(root).to_pyarrow_table(filters=[("content_id", "=", new[0])])["ds"][0].as_py()
    gone = [*new, *sorted(DeltaTable(root).to_pyarrow_table()["content_id"].to_pylist())[3:4 if old_item_too else 3]]
    real, raced = delta_io.commit_files_made, []

    def take_down_and_refresh_first(root_, contract, files, app_id, metadata, **kwargs):
        if not raced and metadata.get("job") == "backfill":
            raced.append(True)
            DeltaTable(root).delete(" OR ".join(f"content_id = '{i}'" for i in gone))
            assert run_refresh(spark, settings).status == (ledger.SUCCEEDED if old_item_too else ledger.NOTHING_TO_DO)
        return real(root_, contract, files, app_id, metadata, **kwargs)

    monkeypatch.setattr(delta_io, "commit_files_made", take_down_and_refresh_first)
    assert run_backfill(spark, settings, Window(day, day)).status == ledger.SUCCEEDED
    monkeypatch.undo()
    assert set(new) <= set(_embeddings(settings)["content_id"].to_pylist())  # the race happened: the backfill landed them
    assert _scope(settings).since is not None and "since version" in run_refresh(spark, settings).message
    _assert_taken_down_as_a_full_refresh_takes_them_down(spark, settings, reference, gone)


def _assert_taken_down_as_a_full_refresh_takes_them_down(spark, settings, reference, gone: list[str]) -> None:
    """No table holds a row of the `gone` items, and the tables hold what a full refresh of the same
    edits (a day of new items, those taken down) made of the reference lakehouse."""
    from benchmarks.corpus import add_new_items

    for table in ("embeddings", "labels"):
        assert not set(gone) & set(DeltaTable(settings.table_root(table)).to_pyarrow_table()["content_id"].to_pylist()), table
    add_new_items(reference.table_root("corpus"), 2 / 60)
    DeltaTable(reference.table_root("corpus")).delete(" OR ".join(f"content_id = '{i}'" for i in gone))
    run_refresh(spark, reference, full=True)
    _assert_same_rows(settings, reference)


def _ingest_again(settings, ids: list[str], day: str) -> None:
    """The items' rows appended again on `day`, a day newer, their content unchanged (a double ingestion)."""
    import datetime as dt

    from deltalake import write_deltalake

    root = settings.table_root("corpus")
    table = DeltaTable(root).to_pyarrow_table()
    rows = table.filter(pc.is_in(table["content_id"], pa.array(ids)))
    later = pa.array([dt.datetime(2026, 12, 1, tzinfo=dt.UTC)] * rows.num_rows, rows.schema.field("updated_at").type)
    rows = rows.set_column(rows.schema.get_field_index("updated_at"), rows.schema.field("updated_at"), later)
    rows = rows.set_column(rows.schema.get_field_index("ds"), rows.schema.field("ds"), pa.array([day] * rows.num_rows, rows.schema.field("ds").type))
    write_deltalake(root, rows, mode="append", partition_by=["ds"])


def test_an_item_ingested_again_moves_to_its_new_day_and_a_change_to_its_older_row_leaves_it(spark, two_lakehouses):
    settings, reference = two_lakehouses
    run_refresh(spark, settings)
    corpus = DeltaTable(settings.table_root("corpus")).to_pyarrow_table().sort_by("content_id")
    last_day = max(corpus["ds"].to_pylist())
    moved, twice = [c for c, d in zip(corpus["content_id"].to_pylist(), corpus["ds"].to_pylist()) if d != last_day][3:5]
    old_day = dict(zip(corpus["content_id"].to_pylist(), corpus["ds"].to_pylist()))[twice]
    for s in (settings, reference):
        _ingest_again(s, [moved, twice], last_day)
    run_refresh(spark, settings)  # both move to the last day: their rows in the old day's partition are stale
    for s in (settings, reference):  # the older row of `twice` edited: its newer row, the one computed, is unchanged
        DeltaTable(s.table_root("corpus")).update(updates={"title": "'older row edited'"}, predicate=f"content_id = '{twice}' AND ds = '{old_day}'")
    assert "since version" in run_refresh(spark, settings).message
    run_refresh(spark, reference, full=True)
    _assert_same_rows(settings, reference)
    rows = _embeddings(settings)
    days = {(c, d) for c, d in zip(rows["content_id"].to_pylist(), rows["ds"].to_pylist()) if c in (moved, twice)}
    assert days == {(moved, last_day), (twice, last_day)}


def test_a_backfill_of_the_day_an_item_was_ingested_again_drops_its_row_on_the_older_day(spark, backfilled_and_reference):
    settings, reference = backfilled_and_reference
    corpus = DeltaTable(settings.table_root("corpus")).to_pyarrow_table().sort_by("content_id")
    last_day = max(corpus["ds"].to_pylist())
    moved = [c for c, d in zip(corpus["content_id"].to_pylist(), corpus["ds"].to_pylist()) if d != last_day][3]
    for s in (settings, reference):
        _ingest_again(s, [moved], last_day)
    result = run_backfill(spark, settings, Window(last_day, last_day))
    assert result.status == ledger.SUCCEEDED
    run_backfill(spark, reference)
    _assert_same_rows(settings, reference)  # one row per key, in the newest corpus row's day, in both tables
    assert {d for c, d in zip(*(_embeddings(settings)[k].to_pylist() for k in ("content_id", "ds"))) if c == moved} == {last_day}
    from jobs.engine import by_output

    for contract, mine in by_output(build_signals(settings)).items():  # the commit says how many rows it moved: one per signal
        assert DeltaTable(settings.table_root(contract.name)).history(1)[0]["moved_items"] == str(len(mine)), contract.name


def test_an_item_whose_newer_row_is_deleted_moves_back_to_its_older_row_as_a_full_refresh_moves_it(spark, two_lakehouses):
    settings, reference = two_lakehouses
    corpus = DeltaTable(settings.table_root("corpus")).to_pyarrow_table().sort_by("content_id")
    last_day = max(corpus["ds"].to_pylist())
    moved = [c for c, d in zip(corpus["content_id"].to_pylist(), corpus["ds"].to_pylist()) if d != last_day][3]
    for s in (settings, reference):
        _ingest_again(s, [moved], last_day)
    run_refresh(spark, settings)  # its rows move to the last day
    for s in (settings, reference):  # the newer ingestion is retracted: its older row is the item again
        DeltaTable(s.table_root("corpus")).delete(f"content_id = '{moved}' AND ds = '{last_day}'")
    assert "since version" in run_refresh(spark, settings).message
    run_refresh(spark, reference, full=True)
    _assert_same_rows(settings, reference)


def test_a_refresh_after_the_corpus_filter_changed_ends_where_a_full_one_ends(spark, two_lakehouses):
    settings, reference = two_lakehouses
    run_refresh(spark, settings)
    excluded = sorted(DeltaTable(settings.table_root("corpus")).to_pyarrow_table()["content_id"].to_pylist())[3]
    settings, reference = (s.model_copy(update={"corpus": s.corpus.model_copy(update={"filter": f"content_id <> '{excluded}'"})})
                           for s in (settings, reference))
    run_refresh(spark, settings)
    run_refresh(spark, reference, full=True)
    _assert_same_rows(settings, reference)
    assert excluded not in _embeddings(settings)["content_id"].to_pylist()


def test_an_error_row_without_a_reason_is_kept_once_not_computed_beside_itself(spark, backfilled, tmp_path):
    """A row written by hand with status error and no reason is not a retried error (as
    `is_retried_error(None)`), so a refresh leaves it: it was judged neither stale nor in line, and
    computed again beside itself (a second row of its key)."""
    settings = copy_lakehouse(backfilled.settings, tmp_path / "lake")
    root = settings.table_root("embeddings")
    rows = rewrite_as_errors(root, lambda t: pc.and_(pc.equal(t["content_id"], t["content_id"][0]), pc.equal(t["signal"], t["signal"][0])), None)

    run_refresh(spark, settings)

    after = DeltaTable(root).to_pyarrow_table()
    keys = list(zip(after["content_id"].to_pylist(), after["signal"].to_pylist(), after["model_version"].to_pylist()))
    assert len(keys) == len(set(keys)) and after.num_rows == rows.num_rows
    kept = after.filter(pc.and_(pc.equal(after["content_id"], rows["content_id"][0]), pc.equal(after["signal"], rows["signal"][0])))
    assert kept["status"].to_pylist() == ["error"] and kept["error"].to_pylist() == [None]


def test_a_backfill_that_lands_between_a_refresh_s_read_and_its_commit_leaves_no_row_of_a_takedown(spark, two_lakehouses, monkeypatch):
    """The backfill of a new day reads the corpus; its items and an old one are taken down; the
    daily refresh reads the table (nothing of the new day yet) and, before it commits the old
    item's removal, the backfill's embeddings commit lands (other partitions: both land). The
    refresh's commit says the table is in line with a corpus without those items, but the
    backfill's rows of them came in under it: the next incremental refresh must drop them."""
    from benchmarks.corpus import add_new_items

    settings, reference = (_text_only(s) for s in two_lakehouses)
    run_refresh(spark, settings)
    root = settings.table_root("corpus")
    new = add_new_items(root, 2 / 60)
    day = DeltaTable(root).to_pyarrow_table(filters=[("content_id", "=", new[0])])["ds"][0].as_py()
    gone = [*new, sorted(DeltaTable(root).to_pyarrow_table()["content_id"].to_pylist())[3]]
    real, pending = delta_io.commit_files_made, []

    def backfill_lands_inside_the_refresh(root_, contract, files, app_id, metadata, **kwargs):
        if metadata.get("job") == "refresh" and pending:
            pending.pop()()  # the backfill's commit, after the refresh read the table
        elif metadata.get("job") == "backfill" and contract is EMBEDDINGS and not delta_io.committed(root_, app_id):
            pending.append(lambda: real(root_, contract, files, app_id, metadata, **kwargs))
            DeltaTable(root).delete(" OR ".join(f"content_id = '{i}'" for i in gone))
            assert run_refresh(spark, settings).status == ledger.SUCCEEDED
        return real(root_, contract, files, app_id, metadata, **kwargs)

    monkeypatch.setattr(delta_io, "commit_files_made", backfill_lands_inside_the_refresh)
    assert run_backfill(spark, settings, Window(day, day)).status == ledger.SUCCEEDED
    monkeypatch.undo()
    assert not pending and set(new) <= set(_embeddings(settings)["content_id"].to_pylist())  # the race happened
    assert "since version" in run_refresh(spark, settings).message
    _assert_taken_down_as_a_full_refresh_takes_them_down(spark, settings, reference, gone)


def _killed_after_the_embeddings_commit(spark, settings, run_id: str, monkeypatch) -> None:
    """A refresh with this run id killed between its embeddings commit and its labels commit."""
    real = delta_io.commit_files_made

    def killed_before_the_labels_commit(root, contract, *args, **kwargs):
        if contract is LABELS:
            raise KeyboardInterrupt("killed after the embeddings commit")
        return real(root, contract, *args, **kwargs)

    monkeypatch.setattr(delta_io, "commit_files_made", killed_before_the_labels_commit)
    with pytest.raises(KeyboardInterrupt):
        run_refresh(spark, settings, run_id=run_id)
    monkeypatch.undo()


def test_a_refresh_retried_on_a_changed_corpus_after_its_embeddings_commit_claims_no_work_it_did_not_commit(
        spark, backfilled_and_reference, monkeypatch):
    """Found in review: a `refresh --run-id` retried after its embeddings commit landed, the corpus
    having changed in between, computed the embeddings of the change and did not commit them (the
    run id's commit was already in the log), and said it succeeded."""
    settings, reference = backfilled_and_reference
    for lakehouse in (settings, reference):
        edit_corpus(lakehouse.table_root("corpus"))
    _killed_after_the_embeddings_commit(spark, settings, "refresh-retried", monkeypatch)
    for lakehouse in (settings, reference):
        edit_corpus(lakehouse.table_root("corpus"), drop=0, add=0)  # retitles the same items again before the retry
    root, app_id = settings.table_root("embeddings"), "content-signals/refresh-retried"
    committed = delta_io.version_of_commit(root, app_id)
    retried = run_refresh(spark, settings, run_id="refresh-retried")
    written = {str(p.relative_to(root)) for p in Path(root).rglob("part-refresh-retried*.parquet")}
    assert written and written <= {unquote(f.path) for f in delta_io.live_files(root)}  # nothing computed and left uncommitted
    assert retried.status == ledger.SUCCEEDED and retried.table_versions["embeddings"] == committed
    read = {table: delta_io.commit_of(settings.table_root(table), app_id)[CORPUS_VERSION] for table in ("embeddings", "labels")}
    assert read["embeddings"] == read["labels"]  # the run's tables agree with one corpus version
    run_refresh(spark, settings)  # the next refresh brings every table to the corpus
    run_backfill(spark, reference)
    _assert_same_rows(settings, reference)


def test_two_refreshes_with_one_run_id_at_once_keep_the_statistics_of_the_commits_that_landed(spark, backfilled_and_reference, monkeypatch):
    """Left alone twice, reproduced here: the first of two refreshes given one run id, paused at its first commit
    while the corpus changes and the second runs whole, finds each commit of the run id made (the second's) and
    kept the statistics of its own files, which no table holds, in place of the second's."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from monitoring.monitor import read_stats
    from monitoring.stats import compute_stats

    settings, _ = backfilled_and_reference
    edit_corpus(settings.table_root("corpus"))
    real, at_commit, other_done, first = delta_io.commit_files_made, threading.Event(), threading.Event(), []

    def first_waits_for_the_other(*args, **kwargs):
        if first == [threading.get_ident()] and not other_done.is_set():
            at_commit.set()
            other_done.wait(timeout=600)
        return real(*args, **kwargs)

    def refresh_first():
        first.append(threading.get_ident())
        return run_refresh(spark, settings, run_id="refresh-twice")

    monkeypatch.setattr(delta_io, "commit_files_made", first_waits_for_the_other)
    with ThreadPoolExecutor(1) as pool:
        paused = pool.submit(refresh_first)
        assert at_commit.wait(timeout=600)
        edit_corpus(settings.table_root("corpus"), drop=0, retitle=2, add=0)  # the second computes two items the first did not
        second = run_refresh(spark, settings, run_id="refresh-twice")
        other_done.set()
        first_result = paused.result(timeout=600)
    assert second.status == first_result.status == ledger.SUCCEEDED and first_result.table_versions == second.table_versions

    def items(stats: pa.Table) -> dict:
        return {(r["kind"], r["signal"], r["model_version"], r["ds"]): (r["items"], r["error_items"]) for r in stats.to_pylist()}
    kept = read_stats(settings, pc.field("run_id") == "refresh-twice")
    in_tables = compute_stats(spark, settings.lakehouse_root, "refresh-twice", "refresh", settings.monitor.sample_size, settings.monitor.seed)
    assert items(kept) == items(in_tables)  # of the files the tables hold, as `monitor --recompute` makes them


def test_a_refresh_retried_after_its_embeddings_commit_keeps_the_statistics_of_every_row_it_wrote(spark, backfilled_and_reference, monkeypatch):
    """Found in review: a `refresh --run-id` killed after its embeddings commit, retried, kept statistics from the
    files of the retry's commits alone, in place of the run's: its embeddings had none, so the monitor never
    judged them (nor were the statistics and verdicts they superseded dropped)."""
    from monitoring.monitor import read_stats

    settings, _ = backfilled_and_reference
    edit_corpus(settings.table_root("corpus"))
    _killed_after_the_embeddings_commit(spark, settings, "refresh-retried", monkeypatch)
    assert run_refresh(spark, settings, run_id="refresh-retried").status == ledger.SUCCEEDED
    written = pa.concat_tables([delta_io.read_arrow(settings.table_root(c.name), filters=pc.field("run_id") == "refresh-retried",
                                                    columns=["signal", "ds", "content_id"]) for c in (EMBEDDINGS, LABELS)])
    items = {(r["signal"], r["ds"]): r["content_id_count_distinct"]
             for r in written.group_by(["signal", "ds"]).aggregate([("content_id", "count_distinct")]).to_pylist()}
    assert {"image_embedding", "text_embedding"} <= {signal for signal, _ in items}  # the first attempt's embeddings
    kept = read_stats(settings, pc.field("run_id") == "refresh-retried").to_pylist()
    assert {(r["signal"], r["ds"]): r["items"] for r in kept} == items

