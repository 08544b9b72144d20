"""The UDF layer inside Spark: one model per Python worker, hashes that match Python's."""
from __future__ import annotations

import hashlib
import os
import re
from datetime import UTC, datetime

import pyarrow as pa
import pytest
import torch
from conftest import SMALL_CORPUS, settings_for
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.corpus import CorpusSource
from jobs.engine import Run, signal_rows
from lake import spark_io
from rollout.models import build_signals
from signals.base import ModelRef, SignalConfig
from signals.contracts import EMBEDDINGS, UTC_MICROS
from signals.hashing import image_input_hash, text_input_hash
from udfs.columns import input_hash_column, result_column
from udfs.resources import Placement
from udfs.rows import evened, signal_inputs

pytestmark = pytest.mark.spark


def test_the_model_loads_once_per_python_worker(spark, corpus_lakehouse, tmp_path):
    """The jobs' path (jobs.engine.signal_rows: the corpus evened into 16 tasks, udfs.rows.output_rows
    run by lake.spark_io.write_files): each Python worker loads the model once and every later
    task in it reuses it. The fake signal appends a line to <pid>.loads whenever it really loads."""
    from signals.embedders.text import TextEmbedder

    class CountingEmbedder(TextEmbedder):  # defined here: Spark ships it to the workers by value
        dim = 2

        def resource_key(self):
            return ("counting", self.config.params["loads"])  # a key no other test's worker has cached

        def load_resources(self, device):
            with open(os.path.join(self.config.params["loads"], f"{os.getpid()}.loads"), "a") as f:
                f.write("load\n")
            return "weights"

        def forward(self, prepared):
            return torch.tensor([[1.0, float(len(text))] for text in prepared])

    loads = tmp_path / "loads"
    loads.mkdir()
    settings = settings_for(corpus_lakehouse.settings.lakehouse_root, "spark.partitions_per_slot=8", "compute_once=false")
    signal = CountingEmbedder(SignalConfig("counting_embedding", ModelRef("counting", "1"), batch_size=3, device="cpu",
                                           params={"loads": str(loads)}))
    corpus = spark_io.read_spark(spark, corpus_lakehouse.root)
    run = Run.begin("load-once")
    source = signal_rows(corpus, signal, settings, run, SMALL_CORPUS, Placement((), "cpu"))  # local[2]: no resource profile
    files = spark_io.write_files([source], str(tmp_path / "embeddings"), EMBEDDINGS, f"part-{run.run_id}")

    assert sum(f.num_items for f in files) == SMALL_CORPUS
    tasks = {re.search(r"-s\d+-p(\d+)-a\d+-", f.path).group(1) for f in files}
    per_worker = {path.stem: path.read_text().count("load") for path in loads.glob("*.loads")}
    assert len(tasks) == 2 * 8  # local[2], 8 partitions a slot
    assert set(per_worker.values()) == {1}, per_worker  # never a second load in a worker
    assert len(per_worker) <= len(tasks) / 2  # workers are reused across tasks: the model is not per task


def test_the_udf_keeps_row_order_across_arrow_and_model_batches(spark, corpus_lakehouse):
    signal = build_signals(corpus_lakehouse.settings)["text_embedding"]  # model batch 9, Arrow batch 7
    corpus = spark_io.read_spark(spark, corpus_lakehouse.root).select("content_id", "title", "description")
    rows = corpus.select("content_id", "title", "description", result_column(signal).alias("r")).collect()
    direct = signal.load()
    for row in rows[:20]:
        try:
            expected = direct.compute([direct.prepare(row.asDict())])[0]
        except ValueError:
            assert row.r.status == "error"
            continue
        assert row.r.status == "ok"
        assert max(abs(a - b) for a, b in zip(row.r.vector, expected)) <= 1e-5, row.content_id


def test_spark_input_hashes_equal_the_python_definition(spark, corpus_lakehouse):
    signals = build_signals(corpus_lakehouse.settings)
    corpus = CorpusSource.of(corpus_lakehouse.settings).read(spark)
    rows = corpus.select(
        "image",
        "title",
        "description",
        input_hash_column(signals["image_embedding"]).alias("image_hash"),
        input_hash_column(signals["text_embedding"]).alias("text_hash"),
    ).collect()
    assert len(rows) > 0
    for row in rows:
        assert row.image_hash == image_input_hash(row.image)
        assert row.text_hash == text_input_hash(row.title, row.description)


def test_spark_text_hashes_of_fields_holding_the_separator_or_the_escape_equal_the_python_definition(spark, corpus_lakehouse):
    """The JVM escapes a field's own unit separator and escape as Python does: pairs whose bare
    join is the same text get different hashes, each Python's; Java regex and replacement
    characters are plain text; text that is not UTF-8 is hashed by its bytes, as before."""
    signal = build_signals(corpus_lakehouse.settings)["text_embedding"]
    pairs = [("a\x1fb", None), ("a", "b\x1f"), ("a\x1f b", "c"), ("a", " b\x1fc"), ("\x1f", ""), ("", "\x1f"),
             ("a\x1b", "b"), ("a", "\x1bb"), ("a\x1b\x1f", "b"), ("a", "\x1b\x1fb"), ("a\x1b\x1b\x1f\x1f", "\x1b"),
             ("$1 \\ .* [\\x1f]", "\\u001f \\Q\x1f\\E $0"), ("Caf\u00e9 \U0001f45f\x1f", "\x1bline\nline"), (None, None)]
    texts = spark.createDataFrame(pairs, "title string, description string")
    hashes = [r.h for r in texts.select(input_hash_column(signal).alias("h")).collect()]
    assert hashes == [text_input_hash(*pair) for pair in pairs]
    assert len(set(hashes)) == len(pairs)
    not_utf8 = b"caf\xed\xa0\x80 \xff"  # no escape or separator: its hash is the bare join's
    raw = spark.createDataFrame([(not_utf8,)], "b binary").select(F.col("b").cast("string").alias("title"), F.lit("d").alias("description"))
    assert raw.select(input_hash_column(signal).alias("h")).first().h == hashlib.sha256(not_utf8 + b"\x1fd").hexdigest()


def test_spark_input_hashes_of_images_by_uri_equal_the_python_definition(spark, corpus_lakehouse):
    """Inline bytes win over a URI; a URI is hashed with updated_at (to the microsecond, before
    the epoch too, null as empty); neither is a null hash."""
    signal = build_signals(corpus_lakehouse.settings)["image_embedding"]
    times = [None, datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC), None, datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), None]
    table = pa.table({
        "image": pa.array([b"\xff\xd8bytes", b"\xff\xd8bytes", None, None, None], pa.binary()),
        "image_uri": pa.array([None, "http://images.test/a.jpg", "s3://images/caf\u00e9.jpg", "file:///a b.jpg", None], pa.string()),
        "updated_at": pa.array(times, UTC_MICROS),
    })
    hashes = [r.h for r in spark.createDataFrame(table).select(input_hash_column(signal).alias("h")).collect()]
    assert hashes == [image_input_hash(*row.values()) for row in table.to_pylist()]
    assert hashes[0] == hashes[1] and hashes[-1] is None and len(set(hashes[:4])) == 3


def test_an_image_signals_uris_reach_the_workers_as_bytes(spark, corpus_lakehouse):
    """Spark hands a string's bytes to Arrow unchecked: a URI that is not UTF-8 failed its whole
    batch's conversion to pandas, so the workers get URIs as bytes and decode each row's alone."""
    signal = build_signals(corpus_lakehouse.settings)["image_embedding"]
    uris = ["http://images.test/a.jpg", "s3://images/caf\u00e9.jpg"]
    corpus = spark.createDataFrame(pa.table({"content_id": ["a", "b"], "ds": ["2026-11-20"] * 2, "image": pa.nulls(2, pa.binary()),
                                             "image_uri": uris, "updated_at": pa.nulls(2, UTC_MICROS)}))
    inputs = signal_inputs(corpus, signal)
    assert isinstance(inputs.schema["image_uri"].dataType, T.BinaryType)
    assert [bytes(r.image_uri) for r in inputs.orderBy("content_id").collect()] == [u.encode() for u in uris]


def test_small_jobs_are_spread_over_the_slots_and_tiny_ones_coalesced(spark):
    days = spark.range(0, 400, numPartitions=1).select(
        F.col("id").cast("string").alias("content_id"), F.concat(F.lit("2026-11-0"), (F.col("id") % 7 + 1).cast("string")).alias("ds"))
    spread = evened(days, partitions_per_slot=4, rows=400, rows_per_partition=32)
    assert spread.rdd.getNumPartitions() == 2 * 4  # local[2]: two slots
    assert sorted(r.content_id for r in spread.collect()) == sorted(r.content_id for r in days.collect())  # nothing lost
    assert evened(days, 4, rows=60, rows_per_partition=32).rdd.getNumPartitions() == 2  # never under a model batch each
    scattered = days.repartition(6)
    assert evened(scattered, 4, rows=10, rows_per_partition=32).rdd.getNumPartitions() == 1  # a refresh's few new items
    assert evened(scattered, 0, rows=10, rows_per_partition=32) is scattered  # 0: the scan's partitions, always
    many = days.repartition(12)
    assert evened(many, 4, rows=4000, rows_per_partition=32) is many  # enough partitions: no shuffle


def test_a_module_the_executors_python_cannot_import_is_a_usage_error_naming_it_not_a_traceback(spark, tmp_path, monkeypatch):
    """Code or a dependency the driver has and the executors' Python lacks (no --py-files archive,
    requirements not installed there): the task's ModuleNotFoundError is told as exit 2 naming
    the module and what to ship, not as a bug's traceback."""
    from jobs.failures import BAD_INPUT, explain

    (tmp_path / "driver_only_code.py").write_text("def rows(batches):\n    yield from batches\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # the driver's path only: the workers started without it
    from driver_only_code import rows

    with pytest.raises(Exception, match="No module named 'driver_only_code'") as failed:
        spark.range(3).mapInArrow(rows, "id long").collect()
    failure = explain(failed.value)
    assert failure is not None and failure.status == BAD_INPUT
    assert "executors' Python cannot import 'driver_only_code'" in failure.message and "--py-files" in failure.message


def test_an_executors_python_of_another_minor_version_is_a_usage_error_naming_both_not_a_traceback(spark, tmp_path, monkeypatch):
    """PySpark runs a task only in a worker of the driver's Python minor version: a worker
    started with another (spark.pyspark.python naming the cluster's python3, an environment built
    elsewhere) fails every task with PYTHON_VERSION_MISMATCH, which is told as exit 2 naming both
    versions and what to ship, not as a bug's traceback. The worker's version is faked by a
    sitecustomize on the workers' path only (spark.executorEnv.PYTHONPATH), which pyspark's
    worker reads as sys.version_info."""
    import sys

    from jobs.failures import BAD_INPUT, explain

    driver = f"{sys.version_info.major}.{sys.version_info.minor}"
    worker = f"{sys.version_info.major}.{sys.version_info.minor + 1}"
    (tmp_path / "sitecustomize.py").write_text(
        "import collections, sys\n"
        "sys.version_info = collections.namedtuple('version_info', 'major minor micro releaselevel serial')"
        f"({sys.version_info.major}, {sys.version_info.minor + 1}, 0, 'final', 0)\n")
    monkeypatch.setitem(spark.sparkContext.environment, "PYTHONPATH", str(tmp_path))  # new workers for this environment

    def rows(batches):
        yield from batches

    with pytest.raises(Exception, match="PYTHON_VERSION_MISMATCH") as failed:
        spark.range(3).mapInArrow(rows, "id long").collect()
    failure = explain(failed.value)
    assert failure is not None and failure.status == BAD_INPUT
    assert f"executors' Python is {worker} and the driver's {driver}" in failure.message
    assert "spark.pyspark.python" in failure.message and "make dist-env" in failure.message
