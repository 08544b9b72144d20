"""The analysts' Spark views: registering them starts no Spark job, whatever the number of files
of a table (Spark lists more than 32 paths with a job), and they read the latest snapshot."""
from __future__ import annotations

import warnings

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from lake.lakehouse import Lakehouse
from lake.spark_io import PARALLEL_LISTING

pytestmark = pytest.mark.spark
FILES = 40


def test_register_views_starts_no_job_and_the_views_read_the_tables(spark, tmp_path) -> None:
    for i in range(FILES):
        write_deltalake(str(tmp_path / "runs"), pa.table({"run_id": [f"r{i}"], "rows_in": [i]}), mode="append")
    write_deltalake(str(tmp_path / "runs"), pa.table({"run_id": ["r0"], "rows_in": [0]}), mode="overwrite",
                    predicate="run_id = 'r0'")  # the log, not the folder, says which files are live
    threshold = spark.conf.get(PARALLEL_LISTING)
    sc = spark.sparkContext
    sc.setJobGroup("register_views", "register_views")
    try:
        assert Lakehouse(str(tmp_path)).register_views(spark) == ["runs"]
        assert list(sc.statusTracker().getJobIdsForGroup("register_views")) == []
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
    assert spark.conf.get(PARALLEL_LISTING) == threshold
    assert spark.sql("SELECT count(*) AS n, sum(rows_in) AS s FROM runs").first().asDict() == {"n": FILES, "s": sum(range(FILES))}


def test_a_version_a_vacuum_removed_is_refused_in_spark_as_in_arrow(spark, tmp_path) -> None:
    """Found in review: `Lakehouse.arrow` of a version whose files a vacuum removed says so, but `Lakehouse.spark` and
    `register_views(spark, versions)` of it were Spark's PATH_NOT_FOUND naming a data file, which reads as damage."""
    from deltalake import DeltaTable

    from conf.settings import UsageError

    root = str(tmp_path / "runs")
    write_deltalake(root, pa.table({"run_id": [f"r{i}" for i in range(5)], "rows_in": list(range(5))}))
    DeltaTable(root).delete("run_id = 'r3'")  # rewrites the file: version 0's is then an old version's only
    DeltaTable(root).vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    lakehouse = Lakehouse(str(tmp_path))
    assert lakehouse.spark(spark, "runs", 1).count() == 4  # the version after the delete still reads
    for read in (lambda: lakehouse.spark(spark, "runs", 0), lambda: lakehouse.register_views(spark, {"runs": 0})):
        with pytest.raises(UsageError, match="version 0 of .*runs can no longer be read: a vacuum"):
            read()


def test_a_champion_view_without_rows_warns_as_lakehouse_champion_does(spark, tmp_path) -> None:
    """Found in review: `Lakehouse.champion` warns of a champion without rows (a version put in place before it was
    computed), but its `<table>_champion` view read as a signal without items, silently."""
    from datetime import UTC, datetime

    from signals.contracts import EMBEDDINGS

    row = {"content_id": "pin-1", "signal": "image_embedding", "model_name": "m", "model_version": "1", "input_hash": "h",
           "vector": [1.0, 0.0], "dim": 2, "status": "ok", "error": None, "run_id": "run", "computed_at": datetime(2026, 11, 20, tzinfo=UTC),
           "ds": "2026-11-19"}
    write_deltalake(str(tmp_path / "embeddings"), pa.Table.from_pylist([row], schema=EMBEDDINGS.schema), partition_by=list(EMBEDDINGS.partition_by))
    held, unheld = Lakehouse(str(tmp_path), pinned={"image_embedding": "1"}), Lakehouse(str(tmp_path), pinned={"image_embedding": "3"})
    with pytest.warns(UserWarning, match=r"embeddings_champion: no rows of the champion of image_embedding \(model version 3\)"):
        unheld.register_views(spark)
    assert spark.table("embeddings_champion").count() == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        held.register_views(spark)
    assert spark.table("embeddings_champion").count() == 1


def test_the_keyframes_table_has_a_champion_view_as_the_other_signal_tables(spark, tmp_path) -> None:
    """Found in review: `Lakehouse.champion("keyframes")` read its champion rows, but `register_views` made champion
    views of embeddings and labels only, so a video challenger's keyframe rows could not be told apart in Spark."""
    from datetime import UTC, datetime

    from signals.contracts import KEYFRAMES

    def keyframe(version: str, index: int) -> dict:
        return {"content_id": "video-1", "keyframe_index": index, "signal": "image_embedding", "vector": [1.0, 0.0], "dim": 2,
                "model_name": "m", "model_version": version, "input_hash": "h", "status": "ok", "run_id": f"run-{version}",
                "computed_at": datetime(2026, 11, 20, tzinfo=UTC), "ds": "2026-11-19"}

    write_deltalake(str(tmp_path / "keyframes"), pa.Table.from_pylist([keyframe("1", 0), keyframe("1", 1), keyframe("2", 0)], schema=KEYFRAMES.schema),
                    partition_by=list(KEYFRAMES.partition_by))
    lakehouse = Lakehouse(str(tmp_path), pinned={"image_embedding": "1"})

    assert lakehouse.register_views(spark) == ["keyframes", "keyframes_champion"]
    expected = sorted((r["model_version"], r["keyframe_index"]) for r in lakehouse.champion("keyframes").to_pylist())
    assert sorted(tuple(r) for r in spark.sql("SELECT model_version, keyframe_index FROM keyframes_champion").collect()) == expected == [("1", 0), ("1", 1)]


def test_a_champion_view_of_a_version_before_a_signal_was_added_warns_of_nothing(spark, tmp_path) -> None:
    """Found in review: `register_views(spark, versions)` took the signals from the latest version, so a view of a version
    before a signal's first run warned that its champion had no rows, "a version promoted before it was computed"."""
    from datetime import UTC, datetime

    from signals.contracts import EMBEDDINGS

    def embedded(signal: str) -> pa.Table:
        return pa.Table.from_pylist([{"content_id": "pin-1", "signal": signal, "model_name": "m", "model_version": "1", "input_hash": "h",
                                      "vector": [1.0, 0.0], "dim": 2, "status": "ok", "error": None, "run_id": "run",
                                      "computed_at": datetime(2026, 11, 20, tzinfo=UTC), "ds": "2026-11-19"}], schema=EMBEDDINGS.schema)

    write_deltalake(str(tmp_path / "embeddings"), embedded("image_embedding"), partition_by=list(EMBEDDINGS.partition_by))
    write_deltalake(str(tmp_path / "embeddings"), embedded("text_embedding"), partition_by=list(EMBEDDINGS.partition_by), mode="append")
    lakehouse = Lakehouse(str(tmp_path), pinned={"image_embedding": "1", "text_embedding": "1"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lakehouse.register_views(spark, {"embeddings": 0})
    assert [tuple(r) for r in spark.sql("SELECT signal, model_version FROM embeddings_champion").collect()] == [("image_embedding", "1")]
