"""The analysts' Spark views: registering them starts no Spark job, whatever the number of files
of a table (Spark lists more than 32 paths with a job), and they read the latest snapshot."""
from __future__ import annotations

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
