"""Compute once per unique input in the jobs: items sharing an input reach the model once per
run, a refresh copies committed rows of the same input (never a head's), and the tables equal computing each item."""
from __future__ import annotations

import ast
import os

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import torch
from conftest import CHEAP_SIGNALS, lakehouse_with_corpus, rewrite_as_errors, settings_for
from deltalake import DeltaTable, write_deltalake
from pyspark.sql import functions as F
from test_refresh import _assert_same_rows

from conf.settings import Settings
from jobs.backfill import run_backfill
from jobs.engine import Run, signal_rows
from jobs.refresh import run_refresh
from lake import spark_io
from signals.base import ModelRef, SignalConfig
from signals.contracts import EMBEDDINGS, LABELS
from signals.hashing import text_input_hash
from signals.labels.quality import ImageQualityLabeler
from udfs.resources import Placement
from udfs.rows import grouped_by_input

pytestmark = pytest.mark.spark

FIRST_DAY, REPIN_DAY = "2026-11-19", "2026-11-21"  # the sample corpus's last two days are read, repins come after them
LAST_DAYS = f"corpus.filter=ds >= '{FIRST_DAY}'"


def repin(root: str, every: int) -> list[str]:
    """Append to the corpus at `root`, on a new day, a copy under a new id of every `every`-th
    item with an image from FIRST_DAY on (the same image, title and description: a repin).
    Returns the new ids."""
    corpus = DeltaTable(root).to_pyarrow_table().sort_by("content_id")
    with_image = corpus.filter(pc.and_(pc.is_valid(corpus["image"]), pc.greater_equal(corpus["ds"], FIRST_DAY)))
    copies = with_image.take(list(range(0, with_image.num_rows, every)))
    ids = [f"repin-{cid}" for cid in copies["content_id"].to_pylist()]
    copies = copies.set_column(copies.schema.get_field_index("content_id"), corpus.schema.field("content_id"), pa.array(ids, pa.string()))
    copies = copies.set_column(copies.schema.get_field_index("ds"), corpus.schema.field("ds"), pa.array([REPIN_DAY] * len(ids), pa.string()))
    write_deltalake(root, copies.cast(corpus.schema), mode="append", partition_by=["ds"])
    return ids


def test_items_sharing_an_input_are_in_one_partition_sorted_by_hash(spark):
    """udfs.rows.grouped_by_input: as many partitions as the slots want (a tiny job: one), each
    hash in one partition only, partitions sorted by hash, nothing lost."""
    items = spark.range(0, 400, numPartitions=3).select(F.col("id").cast("string").alias("content_id"),
                                                        (F.col("id") % 37).cast("string").alias("input_hash"))
    grouped = grouped_by_input(items, partitions_per_slot=4, rows=400, rows_per_partition=32)
    assert grouped.rdd.getNumPartitions() == 2 * 4  # local[2]: two slots
    rows = grouped.select("input_hash", "content_id", F.spark_partition_id().alias("p"), F.monotonically_increasing_id().alias("at")).collect()
    parts = [[(r.input_hash, r.content_id) for r in sorted(rows, key=lambda r: r.at) if r.p == p] for p in range(2 * 4)]
    assert sorted(i for part in parts for _, i in part) == sorted(str(i) for i in range(400))
    assert all([h for h, _ in part] == sorted(h for h, _ in part) for part in parts)
    owners = {h: {n for n, part in enumerate(parts) if any(h == g for g, _ in part)} for h in {str(k) for k in range(37)}}
    assert all(len(o) == 1 for o in owners.values())
    assert grouped_by_input(items, 4, rows=10, rows_per_partition=32).rdd.getNumPartitions() == 1


def test_items_sharing_an_input_reach_the_model_once(spark, corpus_lakehouse, tmp_path):
    """jobs.engine.signal_rows with compute_once: every item gets its row, and the model prepares
    about one row per distinct input (a repeat whose result left before it arrived is computed
    again: at most once per Arrow batch), counted by a fake signal in the workers."""
    from signals.embedders.text import TextEmbedder

    class CountingEmbedder(TextEmbedder):  # defined here: Spark ships it to the workers by value
        dim = 2

        def resource_key(self):
            return ("counting-once", self.config.params["counts"])

        def load_resources(self, device):
            return "weights"

        def prepare(self, row):
            with open(os.path.join(self.config.params["counts"], f"{os.getpid()}.rows"), "a") as f:
                f.write("row\n")
            return super().prepare(row)

        def forward(self, prepared):
            return torch.tensor([[1.0, float(len(text))] for text in prepared])

    counts = tmp_path / "counts"
    counts.mkdir()
    corpus = spark_io.read_spark(spark, corpus_lakehouse.root)
    items = corpus.unionByName(corpus.withColumn("content_id", F.concat("content_id", F.lit("-copy")))).unionByName(
        corpus.withColumn("content_id", F.concat("content_id", F.lit("-copy2"))))
    rows = items.select("title", "description").collect()
    distinct = len({text_input_hash(r["title"], r["description"]) for r in rows})
    settings = settings_for(corpus_lakehouse.settings.lakehouse_root)
    signal = CountingEmbedder(SignalConfig("counting_embedding", ModelRef("counting", "1"), batch_size=3, device="cpu",
                                           params={"counts": str(counts)}))
    run = Run.begin("compute-once")
    source = signal_rows(items, signal, settings, run, len(rows), Placement((), "cpu"))
    files = spark_io.write_files([source], str(tmp_path / "embeddings"), EMBEDDINGS, f"part-{run.run_id}")

    assert sum(f.num_items for f in files) == len(rows)
    prepared = sum(p.read_text().count("row") for p in counts.glob("*.rows"))
    arrow_batches = -(-len(rows) // int(spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch"))) + source.frame.rdd.getNumPartitions()
    assert distinct <= prepared <= distinct + arrow_batches < len(rows)


def test_tables_equal_computing_each_item(spark, corpus_lakehouse, tmp_path):
    """A backfill with compute_once, then repins and a refresh that copies their rows, equal a
    backfill of the same corpus computing every item (the corpus's last days only: it is the
    path that is compared, not the amount)."""
    once = lakehouse_with_corpus(corpus_lakehouse, tmp_path / "once", *CHEAP_SIGNALS, LAST_DAYS)
    every = lakehouse_with_corpus(corpus_lakehouse, tmp_path / "every", *CHEAP_SIGNALS, LAST_DAYS, "compute_once=false")
    run_backfill(spark, once)
    ids = repin(once.table_root("corpus"), every=3)
    repin(every.table_root("corpus"), every=3)
    _split_across_files(once.table_root("labels"), [i.removeprefix("repin-") for i in ids], "image_quality", "blurry")

    failed = {table: {(r["signal"], r["content_id"]) for r in DeltaTable(once.table_root(table)).to_pyarrow_table(
        columns=["signal", "content_id", "status"]).to_pylist() if r["status"] != "ok"} for table in ("embeddings", "labels")}
    refreshed = run_refresh(spark, once)
    run_backfill(spark, every)

    _assert_same_rows(once, every)
    for table in ("embeddings", "labels"):  # every repin of an ok row copied, the repins of an error computed
        metadata = DeltaTable(once.table_root(table)).history(1)[0]
        computed, reused = ast.literal_eval(metadata["computed"]), ast.literal_eval(metadata["reused"])
        errors = {signal: sum((signal, i.removeprefix("repin-")) in failed[table] for i in ids) for signal in computed}
        assert computed == errors and reused == {signal: len(ids) - n for signal, n in errors.items()}, metadata
        assert sum(errors.values()) < sum(reused.values())
    rows = DeltaTable(once.table_root("labels")).to_pyarrow_table()
    copied = rows.filter(pc.is_in(rows["content_id"], pa.array(ids)))
    assert set(copied["run_id"].to_pylist()) == {refreshed.run_id} and set(copied["ds"].to_pylist()) == {REPIN_DAY}


def _split_across_files(root: str, candidates: list[str], signal: str, label: str) -> None:
    """Move the first candidate's row of the label (an item with an ok row of `signal`) to a file of
    its own, as a compaction that cut its output files between an item's label rows leaves them."""
    table = DeltaTable(root)
    rows = table.to_pyarrow_table(filters=[("signal", "=", signal), ("label", "=", label)])
    content_id = next(c for c in candidates if c in set(rows["content_id"].to_pylist()))
    table.delete(f"content_id = '{content_id}' AND signal = '{signal}' AND label = '{label}'")
    write_deltalake(root, rows.filter(pc.equal(rows["content_id"], content_id)), mode="append", partition_by=list(LABELS.partition_by))


def _copy_of(root: str, content_id: str, new_id: str) -> None:
    """Append to the corpus at `root` the item's row under a new id (a repin, on the item's day)."""
    corpus = DeltaTable(root).to_pyarrow_table()
    copy = corpus.filter(pc.equal(corpus["content_id"], content_id))
    copy = copy.set_column(copy.schema.get_field_index("content_id"), corpus.schema.field("content_id"), pa.array([new_id], pa.string()))
    write_deltalake(root, copy.cast(corpus.schema), mode="append", partition_by=["ds"])


def _a_good_image_item(settings: Settings) -> str:
    """The first item (by id) of the corpus's last days with an image that is not a bad one."""
    corpus = DeltaTable(settings.table_root("corpus")).to_pyarrow_table().sort_by("content_id")
    bad = set(pc.filter(*(DeltaTable(settings.table_root("corpus_truth")).to_pyarrow_table()[c] for c in ("content_id", "is_bad_image"))).to_pylist())
    return next(c for c, image, day in zip(*(corpus[k].to_pylist() for k in ("content_id", "image", "ds")))
                if image is not None and day >= FIRST_DAY and c not in bad)


def test_a_refresh_copies_an_ok_row_of_an_input_rather_than_an_error_row_of_it(spark, corpus_lakehouse, tmp_path):
    """Two committed items of one input, the first (by id) an error row that is not retried (as a
    fetch by URI that failed for one item and not another leaves): a new repin of that input gets
    a copy of the ok row."""
    settings = lakehouse_with_corpus(corpus_lakehouse, tmp_path / "lake", *CHEAP_SIGNALS, LAST_DAYS,
                                     "signals.image_quality.enabled=false", "signals.text_safety.enabled=false")
    corpus_root, root = settings.table_root("corpus"), settings.table_root("embeddings")
    original = _a_good_image_item(settings)
    _copy_of(corpus_root, original, f"repin-{original}")  # after the original by id: the one a plain min picks is the original
    run_backfill(spark, settings)
    rewrite_as_errors(root, lambda t: pc.and_(pc.equal(t["content_id"], original), pc.equal(t["signal"], "image_embedding")),
                      "not found: the URI answered 404")
    _copy_of(corpus_root, original, "repin-again")

    run_refresh(spark, settings)

    rows = {(r["content_id"], r["signal"]): r for r in DeltaTable(root).to_pyarrow_table().to_pylist()}
    copied, source = rows[("repin-again", "image_embedding")], rows[(f"repin-{original}", "image_embedding")]
    assert rows[(original, "image_embedding")]["status"] == "error" and source["status"] == "ok"
    assert copied["status"] == "ok" and copied["vector"] == source["vector"] and copied["input_hash"] == source["input_hash"]


def test_a_refresh_decides_a_copied_label_row_at_the_configured_thresholds(spark, corpus_lakehouse, tmp_path):
    """Thresholds come from the profile, not the model version: a repin's label rows copied by a
    refresh run with other thresholds hold the source's scores decided at the refresh's
    thresholds, as computing the repin would (not the source's thresholds and decisions)."""
    only_quality = (*CHEAP_SIGNALS, LAST_DAYS, *(f"signals.{n}.enabled=false" for n in ("image_embedding", "text_embedding", "text_safety")))
    settings = lakehouse_with_corpus(corpus_lakehouse, tmp_path / "lake", *only_quality)
    run_backfill(spark, settings)
    original = _a_good_image_item(settings)
    _copy_of(settings.table_root("corpus"), original, "repin")

    run_refresh(spark, settings_for(settings.lakehouse_root, *only_quality, "signals.image_quality.params.thresholds.blurry=0.01"))

    rows = DeltaTable(settings.table_root("labels")).to_pyarrow_table().to_pandas()
    source, copied = (rows[rows["content_id"] == c].set_index("label").sort_index() for c in (original, "repin"))
    assert ast.literal_eval(DeltaTable(settings.table_root("labels")).history(1)[0]["reused"]) == {"image_quality": 1}
    assert (source["status"] == "ok").all() and list(copied.index) == list(source.index) and (copied["score"] == source["score"]).all()
    assert source.loc["blurry", "threshold"] == 0.5 and copied.loc["blurry", "threshold"] == 0.01
    assert (copied["threshold"] == [0.01 if label == "blurry" else 0.5 for label in copied.index]).all()
    assert (copied["decision"] == (copied["score"] >= copied["threshold"])).all()


def test_a_refresh_computes_a_repin_whose_input_has_only_an_error_row(spark, corpus_lakehouse, tmp_path):
    """A permanent error can be of the configuration or of the moment, not of the input alone (an
    image over the decode limits of its run, a URI not allowed or not found then): a repin of an
    input whose only committed row is an error is computed, as without compute once, not copied."""
    only_quality = (*CHEAP_SIGNALS, LAST_DAYS, *(f"signals.{n}.enabled=false" for n in ("image_embedding", "text_embedding", "text_safety")))
    settings = lakehouse_with_corpus(corpus_lakehouse, tmp_path / "lake", *only_quality)
    original = _a_good_image_item(settings)
    image = DeltaTable(settings.table_root("corpus")).to_pyarrow_table(filters=[("content_id", "=", original)])["image"][0].as_py()
    run_backfill(spark, settings_for(settings.lakehouse_root, *only_quality, f"decode.max_bytes={len(image) - 1}"))
    _copy_of(settings.table_root("corpus"), original, "repin")

    run_refresh(spark, settings)

    rows = DeltaTable(settings.table_root("labels")).to_pyarrow_table().to_pandas()
    source, repin = (rows[rows["content_id"] == c] for c in (original, "repin"))
    assert list(source["status"]) == ["error"] and "byte limit" in source["error"].iloc[0]
    assert set(repin["status"]) == {"ok"} and sorted(repin["label"]) == sorted(ImageQualityLabeler.default_thresholds)
    assert ast.literal_eval(DeltaTable(settings.table_root("labels")).history(1)[0]["computed"]) == {"image_quality": 1}


def test_a_refresh_computes_a_heads_row_rather_than_copying_it_from_another_item_of_its_input(spark, corpus_lakehouse, tmp_path):
    """A head's input is the item's own stored embedding row, which items of one input hash need
    not share (a fetch by URI that failed for one and not another): a repin whose embedding is an
    error and which has no head row yet (as a canary that did not reach it leaves) gets the head's
    error row of that embedding, not a copy of the ok row of the item it repins."""
    from lake.registry import CHAMPION, Registry
    from signals.labels.head import build_head
    from training.heads import TrainedHead, save_head

    only_head = (*CHEAP_SIGNALS, LAST_DAYS, *(f"signals.{n}.enabled=false" for n in ("text_embedding", "image_quality", "text_safety")),
                 "signals.head_low_quality.enabled=true")
    settings = lakehouse_with_corpus(corpus_lakehouse, tmp_path / "lake", *only_head)
    torch.manual_seed(0)
    weights = save_head(TrainedHead(build_head(1280, 0), 1280, 0), tmp_path / "head", {"task": "low_quality"})
    registry = Registry(settings.registry_uri)
    version = registry.register("head_low_quality", str(weights), {"kind": "image_embedding_head", "weights_path": str(weights),
                                                                   "embedding_signal": "image_embedding", "embedding_model_version": "1"})
    registry.client.set_registered_model_alias("head_low_quality", CHAMPION, version.version)
    settings = settings_for(settings.lakehouse_root, *only_head)  # the head's version is the registry's champion
    original = _a_good_image_item(settings)
    _copy_of(settings.table_root("corpus"), original, "repin")
    run_backfill(spark, settings)
    rewrite_as_errors(settings.table_root("embeddings"), lambda t: pc.equal(t["content_id"], "repin"), "not found: the URI answered 404")
    DeltaTable(settings.table_root("labels")).delete("content_id = 'repin'")

    refreshed = run_refresh(spark, settings)

    labels = DeltaTable(settings.table_root("labels"))
    rows = {r["content_id"]: r for r in labels.to_pyarrow_table().to_pylist() if r["content_id"] in (original, "repin")}
    assert rows[original]["status"] == "ok" and rows["repin"]["input_hash"] == rows[original]["input_hash"]
    assert rows["repin"]["status"] == "error" and rows["repin"]["error"] == "input embedding: not found: the URI answered 404"
    metadata = labels.history(1)[0]
    assert ast.literal_eval(metadata["computed"]) == {"head_low_quality": 1} and ast.literal_eval(metadata["reused"]) == {"head_low_quality": 0}
    assert refreshed.message.startswith("computed 1 items, copied 0 from committed rows of the same input")
