"""A user's parquet corpus in an object store (moto's S3), read as the executors read it
(lake/spark_io.py, without Spark): flat, hive-partitioned, or one file, its rows as pyarrow reads
them from a local folder."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from lake.spark_io import _parquet_reader, stored_parquet_dataset

ROWS = pa.table({"pin_id": ["a", "b", "c", "d"], "title": ["t1", "t2", None, "t4"], "day": ["2026-11-20", "2026-11-20", "2026-11-21", "2026-11-21"]})


@pytest.fixture
def store(s3_server, monkeypatch) -> pafs.FileSystem:
    for name, value in {"AWS_ENDPOINT_URL": s3_server.endpoint_url, "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    s3_server.put("corpora", {})
    return pafs.S3FileSystem(endpoint_override=s3_server.endpoint_url, scheme="http", region="us-east-1")


def _rows(location: str) -> list[dict]:
    base, uris, schema, partitions = stored_parquet_dataset(location)
    read = _parquet_reader(base, schema, tuple(partitions), None)
    batches = list(read(iter([pa.RecordBatch.from_pydict({"uri": uris})])))
    return sorted(pa.Table.from_batches(batches, schema).select(ROWS.column_names).to_pylist(), key=lambda r: r["pin_id"])


def test_a_flat_dataset_a_partitioned_one_and_one_file_read_every_value(store, tmp_path):
    pq.write_table(ROWS.slice(0, 2), "corpora/flat/part-0.parquet", filesystem=store)
    pq.write_table(ROWS.slice(2), "corpora/flat/part-1.parquet", filesystem=store)
    pq.write_table(ROWS, "corpora/one/corpus.parquet", filesystem=store)
    ds.write_dataset(ROWS, "corpora/hive", format="parquet", filesystem=store,
                     partitioning=ds.partitioning(pa.schema([("day", pa.string())]), flavor="hive"))
    expected = sorted(ROWS.to_pylist(), key=lambda r: r["pin_id"])
    assert stored_parquet_dataset("s3://corpora/flat")[3] == [] and stored_parquet_dataset("s3://corpora/hive")[3] == ["day"]
    for location in ("s3://corpora/flat", "s3://corpora/hive", "s3://corpora/one/corpus.parquet"):
        assert _rows(location) == expected, location


def test_a_column_only_later_files_have_is_read(store):
    """A corpus whose writer added a column: the first file's schema left it out, so it was read
    as null in every row, the files that have it too (found in review)."""
    pq.write_table(ROWS.slice(0, 2).drop_columns(["title"]), "corpora/grown/part-0.parquet", filesystem=store)
    pq.write_table(ROWS.slice(2), "corpora/grown/part-1.parquet", filesystem=store)
    expected = [{**r, "title": None if r["pin_id"] < "c" else r["title"]} for r in ROWS.to_pylist()]
    assert _rows("s3://corpora/grown") == expected
