"""Shared fixtures: one local[2] SparkSession per test run, and small lakehouses built once.

Like delta's own test utilities, every Spark test shares one session (starting Spark costs
seconds) with the UI off and few shuffle partitions; each lakehouse lives in a temp folder.
"""
from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable, write_deltalake

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Every JVM the tests start (the shared session's, spark-submit's, a cluster's) runs for seconds to
# minutes on small data: the quick compiler alone and one GC thread halve their CPU time.
os.environ.setdefault("JAVA_TOOL_OPTIONS", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")

from conf.settings import Settings, SparkSettings, load_settings  # noqa: E402
from jobs.backfill import run_backfill  # noqa: E402
from jobs.engine import RunResult  # noqa: E402

SMALL_CORPUS = 60


NOT_UTF8 = b"caf\xed\xa0\x80 title"  # a lone surrogate as Java would write it: not UTF-8


def not_utf8(table: pa.Table, column: str, row: int) -> pa.Table:
    """`table` with `column` of row `row` replaced by bytes that are not UTF-8, as a corpus someone
    else wrote may hold them (pyarrow refuses to build such a string from Python, so the array is
    built from its buffers)."""
    values = [v if v is not None else b"" for v in table[column].cast(pa.binary()).to_pylist()]  # bytes: a row made so before stays so
    values[row] = NOT_UTF8
    offsets = [0]
    for v in values:
        offsets.append(offsets[-1] + len(v))
    nulls = table[column].combine_chunks().buffers()[0]
    array = pa.Array.from_buffers(pa.string(), len(values), [nulls, pa.array(offsets, pa.int32()).buffers()[1], pa.py_buffer(b"".join(values))])
    return table.set_column(table.schema.get_field_index(column), column, array)


@pytest.fixture
def empty_model_cache(monkeypatch):
    """An empty per-process model cache for the test (fakes load their own models); whatever the
    process had cached is restored afterwards. Not autouse: real models stay cached between tests."""
    from signals import model_cache

    monkeypatch.setattr(model_cache, "_models", {})
    monkeypatch.setattr(model_cache, "_loads", {})

@pytest.fixture(scope="session")
def empty_registry_db(tmp_path_factory) -> Path:
    """An empty MLflow registry database, made once: creating MLflow's tables takes seconds.
    Copy it where a test wants a registry of its own."""
    from lake.registry import Registry, local_store_uri

    folder = tmp_path_factory.mktemp("empty-registry")
    Registry(local_store_uri(folder))
    return folder / "mlflow.db"


TEST_SPARK = SparkSettings(
    master="local[2]",
    app_name="content-signals-tests",
    arrow_batch_rows=7,  # deliberately unlike any model batch size
    conf={
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "4",
        "spark.sql.files.maxPartitionBytes": "1m",
        "spark.driver.memory": "2g",
    },
)


# Mechanics tests (refresh, resume, races, kills) keep one cheap labeler per table-kind beside
# the embeddings: they test the plumbing, not the models.
CHEAP_SIGNALS = tuple(f"signals.{name}.enabled=false" for name in ("image_safety", "language", "image_topics", "text_topics"))


def clean_up_log(root: str) -> None:
    """What `maintain` does to a Delta log past its retention (made 0 seconds): a checkpoint, then every
    log entry behind it deleted (`lake.upkeep.expire_log`); the checkpoint keeps the app ids of the
    commits it replaces, not their records."""
    from lake.upkeep import LOG_RETENTION, expire_log

    DeltaTable(root).alter.set_table_properties({LOG_RETENTION: "interval 0 seconds"})
    DeltaTable(root).create_checkpoint()
    assert expire_log(root, (), timedelta(0), dry_run=False)[0] > 0


def settings_for(lakehouse: Path | str, *overrides: str) -> Settings:
    """The local profile pointed at `lakehouse`, with small model batches."""
    return load_settings(
        "local",
        [
            f"lakehouse={lakehouse}",
            "signals.image_embedding.batch_size=5",
            "signals.text_embedding.batch_size=9",
            *overrides,
        ],
    )


@pytest.fixture(scope="session")
def spark():
    from jobs.session import build_session

    session = build_session(TEST_SPARK)
    yield session
    session.stop()


@dataclass(frozen=True)
class Corpus:
    settings: Settings
    root: str
    empty_registry_db: Path


@pytest.fixture(scope="session")
def corpus_lakehouse(tmp_path_factory, empty_registry_db) -> Corpus:
    """A lakehouse holding only the generated sample corpus (60 items). Read it, never write."""
    from sample_corpus.generate import write_sample_corpus

    lakehouse = tmp_path_factory.mktemp("corpus-lakehouse")
    write_sample_corpus(str(lakehouse), SMALL_CORPUS, seed=7)
    settings = settings_for(lakehouse)
    return Corpus(settings, settings.table_root("corpus"), empty_registry_db)


def lakehouse_with_corpus(corpus: Corpus, dest: Path, *overrides: str) -> Settings:
    """Settings for a new lakehouse at `dest` holding a copy of the sample corpus tables and an empty
    registry (its first run would otherwise spend a second or two creating MLflow's tables)."""
    for name in ("corpus", "corpus_truth"):
        shutil.copytree(Path(corpus.settings.lakehouse_root) / name, dest / name)
    return with_empty_registry(settings_for(dest, *overrides), corpus.empty_registry_db)


def with_empty_registry(settings: Settings, empty_registry_db: Path) -> Settings:
    """`settings`, its local registry (where it has none yet) a copy of the empty one."""
    from lake.registry import sqlite_path

    if (db := sqlite_path(settings.registry_uri)) is not None and not db.exists():
        db.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(empty_registry_db, db)
    return settings


def copy_lakehouse(source: Settings, dest: Path, *overrides: str) -> Settings:
    """Settings for a writable copy at `dest` of the lakehouse `source` names (tables, run ledger,
    registry), as its runs left it: a test starts from a shared fixture's runs instead of its own."""
    shutil.copytree(source.lakehouse_root, dest)
    return settings_for(dest, *overrides)


@pytest.fixture
def fresh_lakehouse(tmp_path, corpus_lakehouse) -> Callable[..., Settings]:
    """Factory: a new, writable lakehouse with the sample corpus, settings overridden as asked."""
    return lambda *overrides: lakehouse_with_corpus(corpus_lakehouse, tmp_path / "lakehouse", *overrides)


def edit_corpus(root: str, drop: int = 3, retitle: int = 2, add: int = 2) -> dict[str, list[str]]:
    """Delete, retitle and add items of the corpus at `root` (new items copy existing images under new ids)."""
    corpus = DeltaTable(root).to_pyarrow_table().sort_by("content_id")
    ids = corpus["content_id"].to_pylist()
    dropped, retitled = ids[5 : 5 + drop], ids[20 : 20 + retitle]
    kept = corpus.filter(pc.invert(pc.is_in(corpus["content_id"], pa.array(dropped, pa.string()))))
    titles = [f"{t} (edited)" if cid in retitled else t for cid, t in zip(kept["content_id"].to_pylist(), kept["title"].to_pylist())]
    kept = kept.set_column(kept.schema.get_field_index("title"), "title", pa.array(titles, pa.string()))
    new = corpus.slice(30, add)
    new = new.set_column(0, corpus.schema.field("content_id"), pa.array([f"pin-new-{i}" for i in range(add)], pa.string()))
    write_deltalake(root, pa.concat_tables([kept, new]).cast(corpus.schema), mode="overwrite", partition_by=["ds"])
    return {"dropped": dropped, "retitled": retitled, "added": new["content_id"].to_pylist()}


@dataclass(frozen=True)
class Backfilled:
    settings: Settings
    result: RunResult


@pytest.fixture(scope="session")
def backfilled(spark, corpus_lakehouse, tmp_path_factory) -> Backfilled:
    """The sample corpus with one full backfill of the local profile's signals. Read only."""
    settings = lakehouse_with_corpus(corpus_lakehouse, tmp_path_factory.mktemp("backfilled") / "lakehouse")
    return Backfilled(settings, run_backfill(spark, settings))


def rewrite_as_errors(root: str, which: Callable[[pa.Table], pa.ChunkedArray], reason: str | None) -> pa.Table:
    """Rewrite the embeddings table at `root` with the rows `which` selects made error rows with
    this reason (no vector), as a writer other than the jobs could leave them; returns the rows
    written, sorted by content id and signal."""
    from signals.contracts import EMBEDDINGS

    rows = DeltaTable(root).to_pyarrow_table().sort_by([("content_id", "ascending"), ("signal", "ascending")])
    chosen = which(rows)
    for column, value in (("status", pa.scalar("error")), ("error", pa.scalar(reason, pa.string())),
                          ("vector", pa.scalar(None, rows.schema.field("vector").type))):
        rows = rows.set_column(rows.schema.get_field_index(column), column, pc.if_else(chosen, value, rows[column]))
    write_deltalake(root, rows, mode="overwrite", partition_by=list(EMBEDDINGS.partition_by))
    return rows


@pytest.fixture(scope="session")
def cheap_backfilled(spark, corpus_lakehouse, tmp_path_factory) -> Settings:
    """The sample corpus with one full backfill of the embeddings and CHEAP_SIGNALS' labelers: the
    uninterrupted run the mechanics tests compare theirs with. Read only."""
    settings = lakehouse_with_corpus(corpus_lakehouse, tmp_path_factory.mktemp("cheap-backfilled") / "lakehouse", *CHEAP_SIGNALS)
    run_backfill(spark, settings)
    return settings


# Loopback servers (benchmarks/servers.py), started once per test run by the tests that ask for them.
# `images` is the HTTP server's live image map: a test may add images to it.

def jpeg_bytes(seed: int, size: tuple[int, int] = (96, 64)) -> bytes:
    """A small JPEG of noise: a real image the decoders accept."""
    import io

    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


@pytest.fixture(scope="session")
def image_server():
    """The fault-injecting HTTP image server on 127.0.0.1, holding a.jpg and b.jpg."""
    from benchmarks.servers import ImageServer

    with ImageServer({"a.jpg": jpeg_bytes(1), "b.jpg": jpeg_bytes(2)}) as server:
        yield server


@pytest.fixture(scope="session")
def outside_server(image_server):
    """An image server that no allowlist names, on 127.0.0.2 at the image server's port: a
    request reaching it is a request that should never have been made."""
    from benchmarks.servers import ImageServer

    with ImageServer(dict(image_server.images), host="127.0.0.2", port=image_server.port) as server:
        yield server


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 in server mode on 127.0.0.1, its credentials in this process's environment
    (so the AWS SDK never looks for others, e.g. at an instance metadata address)."""
    from benchmarks.servers import S3Server

    with pytest.MonkeyPatch.context() as patch:
        for name, value in S3Server.CREDENTIALS.items():
            patch.setenv(name, value)
        with S3Server() as server:
            yield server
