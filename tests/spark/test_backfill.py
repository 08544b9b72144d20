"""The backfill on the sample corpus: one row per item and signal, contracts, errors, re-runs."""
from __future__ import annotations

import hashlib
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import reference
from conftest import CHEAP_SIGNALS, clean_up_log, copy_lakehouse
from deltalake import DeltaTable, write_deltalake

from jobs.backfill import run_backfill
from jobs.corpus import Window
from jobs.maintain import run_maintain
from jobs.refresh import run_refresh
from lake import delta_io
from lake.lakehouse import Lakehouse
from signals.contracts import EMBEDDINGS

pytestmark = pytest.mark.spark

DIMS = {"image_embedding": 1280, "text_embedding": 384}


def _table(settings, name="embeddings", version=None) -> pa.Table:
    return DeltaTable(settings.table_root(name), version=version).to_pyarrow_table()


def _corpus(settings) -> dict[str, dict]:
    return {r["content_id"]: r for r in _table(settings, "corpus").to_pylist()}


def test_every_item_has_exactly_one_row_per_signal(backfilled):
    rows = _table(backfilled.settings)
    corpus = _corpus(backfilled.settings)
    for signal in DIMS:
        ids = pc.filter(rows["content_id"], pc.equal(rows["signal"], signal)).to_pylist()
        assert sorted(ids) == sorted(corpus), signal
    assert rows.schema.equals(EMBEDDINGS.schema)


def test_the_driver_reports_which_workers_ran_each_signal(backfilled):
    uses = backfilled.result.executors
    assert {u.signal for u in uses} == set(backfilled.settings.enabled_signals)
    for signal in backfilled.settings.enabled_signals:
        assert sum(u.items for u in uses if u.signal == signal) == len(_corpus(backfilled.settings)), signal
    # local[2]: no resource profile, Spark's one CPU per task, no GPU; computed in Python workers, not the driver
    assert all(u.executor_pid != os.getpid() and u.workers >= 1 and u.cpus == 1 and u.gpus == "" and u.tasks > 0 and u.load_s >= 0 for u in uses)


def test_ok_rows_are_unit_vectors_of_the_declared_dimension(backfilled):
    for row in _table(backfilled.settings).to_pylist():
        if row["status"] == "ok":
            assert row["dim"] == DIMS[row["signal"]] == len(row["vector"])
            assert abs(np.linalg.norm(row["vector"]) - 1.0) < 1e-4
            assert row["error"] is None
        else:
            assert row["status"] == "error" and row["error"] and row["vector"] is None


def test_bad_inputs_are_error_rows_with_a_reason(backfilled):
    truth = {r["content_id"]: r for r in _table(backfilled.settings, "corpus_truth").to_pylist()}
    corpus = _corpus(backfilled.settings)
    rows = {(r["content_id"], r["signal"]): r for r in _table(backfilled.settings).to_pylist()}
    bad_images = [cid for cid, t in truth.items() if t["is_bad_image"]]
    assert len(bad_images) >= 6
    for cid in truth:
        image_row = rows[(cid, "image_embedding")]
        assert (image_row["status"] == "error") == truth[cid]["is_bad_image"], (cid, truth[cid]["variant"], image_row["error"])
        item = corpus[cid]
        blank = not (item["title"] or "").strip() and not (item["description"] or "").strip()
        assert (rows[(cid, "text_embedding")]["status"] == "error") == blank, cid


def test_stored_embeddings_equal_the_models_called_directly(backfilled):
    corpus = _corpus(backfilled.settings)
    truth = {r["content_id"]: r for r in _table(backfilled.settings, "corpus_truth").to_pylist()}
    rows = [r for r in _table(backfilled.settings).to_pylist() if r["status"] == "ok"]
    plain = [r for r in rows if r["signal"] == "image_embedding" and truth[r["content_id"]]["variant"] in ("original", "crop", "blur", "text_overlay")]
    for row in plain[:6]:
        expected = reference.efficientnet_embedding(corpus[row["content_id"]]["image"])
        assert np.max(np.abs(np.asarray(row["vector"]) - expected)) <= 1e-5, row["content_id"]
    texts = [r for r in rows if r["signal"] == "text_embedding"]
    for row in texts[:8]:
        item = corpus[row["content_id"]]
        text = "\n".join(p.strip() for p in (item["title"], item["description"]) if p and p.strip())
        expected = reference.minilm_embedding(text[:4096])
        assert np.max(np.abs(np.asarray(row["vector"]) - expected)) <= 1e-5, row["content_id"]


def test_rows_record_model_input_hash_and_run(backfilled):
    rows = _table(backfilled.settings)
    assert set(rows["run_id"].to_pylist()) == {backfilled.result.run_id}
    assert set(zip(rows["signal"].to_pylist(), rows["model_name"].to_pylist())) == {
        ("image_embedding", "efficientnet-lite0"),
        ("text_embedding", "all-MiniLM-L6-v2"),
    }
    corpus = _corpus(backfilled.settings)
    for row in rows.to_pylist():
        if row["signal"] == "image_embedding" and corpus[row["content_id"]]["image"] is not None:
            assert row["input_hash"] == hashlib.sha256(corpus[row["content_id"]]["image"]).hexdigest()


def test_the_run_ledger_records_counts(backfilled):
    runs = [r for r in _table(backfilled.settings, "runs").to_pylist() if r["job"] == "backfill"]  # dedup's tests add theirs
    enabled = set(backfilled.settings.enabled_signals)
    assert sorted((r["signal"], r["status"]) for r in runs) == sorted((s, st) for s in enabled for st in ("started", "succeeded"))
    for run in (r for r in runs if r["status"] == "succeeded"):
        table = "embeddings" if run["signal"] in DIMS else "labels"
        rows = _table(backfilled.settings, table).filter(pc.field("signal") == run["signal"])
        errors = rows.filter(pc.field("status") == "error")
        assert run["rows_in"] == len(set(rows["content_id"].to_pylist())) == run["rows_ok"] + run["rows_error"] == 60
        assert run["rows_error"] == len(set(errors["content_id"].to_pylist()))
        assert run["table_version"] == backfilled.result.table_versions[table]


def test_rerunning_the_same_backfill_leaves_the_same_rows(spark, backfilled, tmp_path):
    settings = copy_lakehouse(backfilled.settings, tmp_path / "lakehouse")  # the first run is the shared backfill
    first = backfilled.result
    before = _table(settings).sort_by([("content_id", "ascending"), ("signal", "ascending")])
    second = run_backfill(spark, settings)
    after = _table(settings).sort_by([("content_id", "ascending"), ("signal", "ascending")])
    assert second.table_versions["embeddings"] == first.table_versions["embeddings"] + 1
    stable = [c for c in EMBEDDINGS.schema.names if c not in ("run_id", "computed_at")]
    assert after.select(stable).equals(before.select(stable))
    assert after.num_rows == before.num_rows
    history = DeltaTable(settings.table_root("embeddings")).history()
    assert [h.get("run_id") for h in history[:2]] == [second.run_id, first.run_id]


def test_a_committed_run_id_is_not_redone(spark, fresh_lakehouse):
    """Nor once its commits' log entries are cleaned up (a retry more than the log's retention later):
    before, that retry raised LookupError; it is skipped now, commits nothing, and says the versions are unknown."""
    settings = fresh_lakehouse("signals.image_embedding.enabled=false")
    first = run_backfill(spark, settings, run_id="nightly-2026-11-20")
    again = run_backfill(spark, settings, run_id="nightly-2026-11-20")
    assert again.status == "skipped" and again.table_versions == first.table_versions
    assert DeltaTable(settings.table_root("embeddings")).version() == first.table_versions["embeddings"]
    for table in first.table_versions:
        clean_up_log(settings.table_root(table))
    cleaned = {table: DeltaTable(settings.table_root(table)).version() for table in first.table_versions}
    late = run_backfill(spark, settings, run_id="nightly-2026-11-20")
    assert late.status == "skipped" and late.table_versions == dict.fromkeys(first.table_versions)
    assert late.message and "no longer known" in late.message
    assert {table: DeltaTable(settings.table_root(table)).version() for table in first.table_versions} == cleaned


def test_a_window_backfill_replaces_only_its_slice_even_in_a_file_it_shares_with_other_days(spark, fresh_lakehouse):
    """A table's files hold rows of several days (a task's, a compaction's): a backfill of one day
    writes such a file again without that day's rows (an item taken down since included), and the
    other days' rows stay as they were."""
    settings = fresh_lakehouse("signals.image_embedding.enabled=false", "maintain.min_small_files=1")
    full = run_backfill(spark, settings)
    run_maintain(settings, ["embeddings"])  # every day's rows folded into one file
    assert [f.days[0] < f.days[1] for f in delta_io.live_files(settings.table_root("embeddings"))] == [True]
    days = sorted(set(_table(settings, "corpus")["ds"].to_pylist()))
    before = _table(settings)
    taken_down = min(c for c, d in _corpus(settings).items() if d["ds"] == days[-1])
    DeltaTable(settings.table_root("corpus")).delete(f"content_id = '{taken_down}'")
    window = run_backfill(spark, settings, Window(days[-1], days[-1]))
    rows = _table(settings)
    last_day = pc.equal(rows["ds"], days[-1])
    assert set(pc.filter(rows["run_id"], last_day).to_pylist()) == {window.run_id}
    others = [t.filter(pc.invert(pc.equal(t["ds"], days[-1]))).sort_by("content_id") for t in (rows, before)]
    assert others[0].equals(others[1]) and set(others[0]["run_id"].to_pylist()) == {full.run_id}
    assert rows.num_rows == _table(settings, "corpus").num_rows and taken_down not in rows["content_id"].to_pylist()


def _ingested_again_beside_its_old_row(spark, settings) -> tuple[list[str], str]:
    """After a backfill, an item of the first day ingested again on the last, its older day's row kept
    beside the newer day's (as a backfill before a9ed157 left it; written with delta-rs), both in
    one file after `maintain`: (the corpus's days, the item)."""
    run_backfill(spark, settings)
    days = sorted(set(_table(settings, "corpus")["ds"].to_pylist()))
    item = min(c for c, d in _corpus(settings).items() if d["ds"] == days[0])
    for name, partition in (("corpus", ["ds"]), ("embeddings", list(EMBEDDINGS.partition_by))):
        rows = _table(settings, name).filter(pc.field("content_id") == item)
        write_deltalake(settings.table_root(name), rows.set_column(rows.schema.get_field_index("ds"), "ds", pa.array([days[-1]] * rows.num_rows)),
                        mode="append", partition_by=partition)
    run_maintain(settings, ["embeddings"])
    assert len(delta_io.live_files(settings.table_root("embeddings"))) == 1
    return days, item


def test_an_item_with_rows_of_two_days_in_one_compacted_file_is_counted_once(spark, fresh_lakehouse):
    """An item ingested again on a later day, whose older day's row a backfill before a9ed157 kept
    beside the later day's (written here with delta-rs), has both in one file after `maintain`: a
    backfill of the later day keeps it once, on that day, counts it once as moved, and leaves the
    other days' rows as they were (before f1d034c, its two rows in the file were counted as two
    items dropped: the commit expected one item less than the kept rows and refused)."""
    settings = fresh_lakehouse("signals.image_embedding.enabled=false", "signals.text_safety.enabled=false",
                               "signals.image_quality.enabled=false", "maintain.min_small_files=1")
    days, item = _ingested_again_beside_its_old_row(spark, settings)
    before = _table(settings)
    assert sorted(before.filter(pc.field("content_id") == item)["ds"].to_pylist()) == [days[0], days[-1]]
    window = run_backfill(spark, settings, Window(days[-1], days[-1]))
    rows = _table(settings)
    assert rows.filter(pc.field("content_id") == item).select(["signal", "ds", "run_id"]).to_pylist() == [
        {"signal": "text_embedding", "ds": days[-1], "run_id": window.run_id}]
    kept = [t.filter((pc.field("ds") != days[-1]) & (pc.field("content_id") != item)).sort_by("content_id") for t in (rows, before)]
    assert kept[0].equals(kept[1]) and kept[0].num_rows > 0
    assert rows.num_rows == len(_corpus(settings))
    assert DeltaTable(settings.table_root("embeddings")).history(1)[0]["moved_items"] == "1"


def test_an_item_with_rows_of_two_days_in_one_file_keeps_its_newest_day_row_when_the_other_is_dropped(spark, fresh_lakehouse, tmp_path):
    """An item with rows of two days in one file (its older day's row left by a backfill before
    a9ed157, folded beside the newer by a compaction or a relayout) has only the older day's row
    dropped, by a refresh (stale: not its corpus row's day) and by a backfill of the older day alone
    (a row of the window's days): before, a rewrite dropped an item's rows by key, whatever their
    day, and the item lost its newer row too, found in review. A new item of the same input, given
    a copy of its row by that refresh (compute once), gets one row, not a copy of each (review)."""
    text_embedding_only = (*CHEAP_SIGNALS, *(f"signals.{name}.enabled=false" for name in ("image_embedding", "text_safety", "image_quality")))
    settings = fresh_lakehouse(*text_embedding_only, "maintain.min_small_files=1")
    days, item = _ingested_again_beside_its_old_row(spark, settings)
    backfilled = copy_lakehouse(settings, tmp_path / "backfilled", *text_embedding_only)
    repin = _table(settings, "corpus").filter(pc.field("content_id") == item).slice(0, 1)  # the refresh copies the item's row of that input
    write_deltalake(settings.table_root("corpus"), repin.set_column(0, repin.schema.field("content_id"), pa.array(["repin"])), mode="append",
                    partition_by=["ds"])
    for lakehouse, run in ((settings, lambda: run_refresh(spark, settings)),
                           (backfilled, lambda: run_backfill(spark, backfilled, Window(days[0], days[0])))):
        run()
        rows = _table(lakehouse)
        assert rows.filter(pc.field("content_id") == item).select(["signal", "ds"]).to_pylist() == [{"signal": "text_embedding", "ds": days[-1]}]
        assert rows.num_rows == len(set(rows["content_id"].to_pylist())) == len(_corpus(lakehouse))


def test_spark_and_delta_rs_read_the_same_rows_at_every_version(spark, backfilled):
    from chispa import assert_df_equality

    lakehouse = Lakehouse(backfilled.settings.lakehouse_root)
    for version in (0, backfilled.result.table_versions["embeddings"]):
        via_spark = lakehouse.spark(spark, "embeddings", version)
        via_delta_rs = spark.createDataFrame(lakehouse.pandas("embeddings", version), schema=via_spark.schema)
        assert_df_equality(via_spark, via_delta_rs, ignore_row_order=True, ignore_nullable=True)
    assert lakehouse.spark(spark, "embeddings", 0).count() == 0


def test_reads_ignore_files_that_were_never_committed(backfilled, tmp_path):
    import shutil

    root = backfilled.settings.table_root("embeddings")
    copy = tmp_path / "embeddings"
    shutil.copytree(root, copy)
    stray = next(copy.glob("signal=*/model_version=*/*.parquet"))
    shutil.copy(stray, stray.with_name("part-orphan-of-a-failed-attempt.parquet"))
    assert delta_io.read_arrow(str(copy)).num_rows == delta_io.read_arrow(root).num_rows
