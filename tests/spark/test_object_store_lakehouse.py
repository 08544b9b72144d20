"""The lakehouse on an S3-compatible store (moto's S3 server on loopback, its real HTTP API): a
backfill and a refresh with the corpus and every table in the bucket, read back with delta-rs,
equal the same runs in a local folder; a Delta table and a parquet dataset on the store read into
Spark as from a folder; and two commits racing on one table version of the store conflict
cleanly (the store's conditional writes)."""
from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest
from conftest import CHEAP_SIGNALS, edit_corpus, lakehouse_with_corpus, settings_for
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError
from pyarrow import fs as pafs

from benchmarks.corpus import add_new_items
from benchmarks.servers import S3Server
from jobs.backfill import run_backfill
from jobs.refresh import run_refresh
from signals.contracts import CORPUS

pytestmark = pytest.mark.spark

BUCKET = "lake"
TABLES = ("embeddings", "labels")
# one embedding and one label signal: the storage is under test, not the models
SIGNALS = (*CHEAP_SIGNALS, "signals.text_embedding.enabled=false", "signals.text_safety.enabled=false")
# what the tables are compared on: everything a run computes, not when or by which run
VOLATILE = ("run_id", "computed_at", "attempt")
FLOAT_NOISE = {"vector": 1e-5, "score": 1e-4}
REPO = Path(__file__).resolve().parents[2]


# moto's S3 in a process of its own: delta-rs holds the GIL in some calls (is_deltatable) while it
# waits for the store, so a server thread in the test's process would never answer it
SERVE = "import sys; from benchmarks.servers import S3Server; s = S3Server(); s.start(); print(s.endpoint_url, flush=True); sys.stdin.read()"


@pytest.fixture(scope="module")
def store_process() -> str:
    """The endpoint of an S3 server process, stopped when the module's tests are done."""
    server = subprocess.Popen([sys.executable, "-c", SERVE], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        yield server.stdout.readline().strip()
    finally:
        server.stdin.close()
        server.wait(timeout=30)


@pytest.fixture
def store(store_process, monkeypatch) -> dict[str, str]:
    """The store's location and credentials in this process's environment, as a user sets them for the job."""
    env = {"AWS_ENDPOINT_URL": store_process, "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1", **S3Server.CREDENTIALS}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    pafs.S3FileSystem(endpoint_override=store_process, scheme="http", region="us-east-1", allow_bucket_creation=True).create_dir(BUCKET)
    return env


def _rows(root: str) -> pa.Table:
    table = DeltaTable(root).to_pyarrow_table()
    table = table.drop_columns([c for c in VOLATILE if c in table.column_names])
    return table.sort_by([(c, "ascending") for c in ("content_id", "signal", "model_version") if c in table.column_names])


@pytest.fixture
def spark_on_store(spark, store):
    """The shared session with the store's location in its Python workers' environment too (what
    `spark.executorEnv` gives a session started with it: Python workers start with the
    SparkContext's `environment`)."""
    environment = spark.sparkContext.environment
    before = dict(environment)
    environment.update(store)
    yield spark
    environment.clear()
    environment.update(before)


def _differing_columns(a: pa.Table, b: pa.Table) -> list[str]:
    """The columns in which two tables differ: computed values (vectors, scores) within the float
    noise of batches composed differently, everything else exactly."""
    if a.num_rows != b.num_rows or a.schema != b.schema:
        return [f"rows {a.num_rows} vs {b.num_rows}", *(str(s) for s in (a.schema, b.schema) if a.schema != b.schema)]
    return [c for c in a.column_names if not (a[c].equals(b[c]) or c in FLOAT_NOISE and _close(a[c], b[c], FLOAT_NOISE[c]))]


def _close(a: pa.ChunkedArray, b: pa.ChunkedArray, atol: float) -> bool:
    pairs = zip(a.to_pylist(), b.to_pylist())
    return all((x is None) == (y is None) and (x is None or np.allclose(x, y, atol=atol, equal_nan=True)) for x, y in pairs)


def test_a_backfill_and_a_refresh_on_the_store_equal_the_same_runs_in_a_folder(spark_on_store, corpus_lakehouse, tmp_path, empty_registry_db):
    lakehouse = f"s3://{BUCKET}/lakehouse-{tmp_path.name}"
    corpus = DeltaTable(corpus_lakehouse.root).to_pyarrow_table()
    write_deltalake(f"{lakehouse}/{CORPUS.name}", corpus, partition_by=list(CORPUS.partition_by))
    registry = tmp_path / "registry"
    registry.mkdir()
    shutil.copy(empty_registry_db, registry / "mlflow.db")
    on_store = settings_for(lakehouse, *SIGNALS, f"registry.tracking_uri=sqlite:///{registry}/mlflow.db")
    local = lakehouse_with_corpus(corpus_lakehouse, tmp_path / "local", *SIGNALS)

    for settings in (local, on_store):
        run_backfill(spark_on_store, settings)
    for table in TABLES:
        assert _differing_columns(_rows(f"{lakehouse}/{table}"), _rows(local.table_root(table))) == [], table

    for settings in (local, on_store):
        edit_corpus(settings.table_root(CORPUS.name))  # takedowns: files rewritten without their rows
        add_new_items(settings.table_root(CORPUS.name), 0.05)  # a new day
        run_refresh(spark_on_store, settings)
    for table in TABLES:
        rows_on_store, in_folder = _rows(f"{lakehouse}/{table}"), _rows(local.table_root(table))
        assert _differing_columns(rows_on_store, in_folder) == [], table
        ids = rows_on_store["content_id"].to_pylist()
        assert "pin-new-0" in ids and sorted(corpus["content_id"].to_pylist())[5] not in ids
    assert DeltaTable(f"{lakehouse}/embeddings").version() == DeltaTable(local.table_root("embeddings")).version()


def test_two_commits_of_one_version_on_the_store_conflict_and_one_lands(store) -> None:
    root = f"s3://{BUCKET}/race-table"
    write_deltalake(root, pa.table({"n": [0]}))
    tables = [DeltaTable(root) for _ in range(2)]  # both at version 0
    start, outcomes = threading.Barrier(2), []

    def commit(table: DeltaTable, n: int) -> None:
        start.wait()
        try:
            write_deltalake(table, pa.table({"n": [n]}), mode="overwrite")
            outcomes.append("landed")
        except CommitFailedError:
            outcomes.append("conflict")

    threads = [threading.Thread(target=commit, args=(t, n)) for n, t in enumerate(tables, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = DeltaTable(root)  # both replaced version 0's file: only one of them can have
    assert sorted(outcomes) == ["conflict", "landed"]
    assert final.version() == 1 and final.to_pyarrow_table()["n"].to_pylist() in ([1], [2])


def test_a_delta_table_and_a_parquet_dataset_on_the_store_read_into_spark_as_from_a_folder(spark_on_store, corpus_lakehouse, tmp_path):
    from lake.spark_io import read_parquet_dataset, read_spark

    corpus = DeltaTable(corpus_lakehouse.root).to_pyarrow_table()
    on_store = f"s3://{BUCKET}/reads-{tmp_path.name}"
    write_deltalake(f"{on_store}/delta", corpus, partition_by=["ds"])
    pq_root = f"{on_store}/parquet"
    ds.write_dataset(corpus, pq_root.removeprefix("s3://"), format="parquet", filesystem=pafs.FileSystem.from_uri(pq_root)[0],
                     partitioning=ds.partitioning(pa.schema([("ds", pa.string())]), flavor="hive"))
    local = tmp_path / "parquet"
    ds.write_dataset(corpus, local, format="parquet", partitioning=ds.partitioning(pa.schema([("ds", pa.string())]), flavor="hive"))

    def collected(frame) -> list[tuple]:
        # Spark's reader types a folder like ds=2026-11-14 as a date, pyarrow's as a string
        return sorted((r.content_id, str(r.ds), r.title, r.image, r.updated_at) for r in frame.collect())

    want = collected(read_spark(spark_on_store, corpus_lakehouse.root))
    assert len(want) == corpus.num_rows
    assert collected(read_spark(spark_on_store, f"{on_store}/delta")) == want
    assert collected(read_parquet_dataset(spark_on_store, pq_root)) == collected(read_parquet_dataset(spark_on_store, str(local))) == want
    days = read_spark(spark_on_store, f"{on_store}/delta", partitions=[("ds", "=", corpus["ds"][0].as_py())], file_column="file")
    files = {r.file for r in days.select("file").distinct().collect()}
    assert files and all(f.startswith(f"{on_store}/delta/ds={corpus['ds'][0].as_py()}/") for f in files)
    assert days.count() == pc.sum(pc.equal(corpus["ds"], corpus["ds"][0])).as_py()


def test_a_delta_table_on_the_store_with_escaped_partition_folders_reads_every_file_once(spark_on_store, tmp_path):
    """delta-rs lists a file on the store under its percent-encoded root and the rest as stored,
    partition folders Hive-escaped (`ds=2026%2011%2014`); the executors unescaped all of it again
    and looked for a folder that does not exist. Each file is read once with its day as written,
    and its file column maps onto the log's files (what a refresh matches changed files by); an
    empty day, in a folder `ds=`, is null as the log says (it was read as "")."""
    from urllib.parse import unquote

    from lake import delta_io
    from lake.spark_io import read_spark

    root = f"s3://{BUCKET}/their pins-{tmp_path.name}"
    days = ["2026-11-14", "2026 11 14", "a/b", "a%2Fb", "a=b", None, ""]
    write_deltalake(root, pa.table({"content_id": [f"pin-{i}" for i in range(len(days))], "ds": pa.array(days, pa.string())}),
                    partition_by=["ds"])
    read = read_spark(spark_on_store, root, file_column="file").collect()
    assert sorted(((r.content_id, r.ds) for r in read), key=repr) == sorted(((f"pin-{i}", d or None) for i, d in enumerate(days)), key=repr)
    assert {delta_io.relative_path(root, r.file) for r in read} == {unquote(f.path) for f in delta_io.live_files(root)}
