"""Model versions through the MLflow registry: a challenger computed beside the champion on a
stable slice, champion rows untouched, the comparison report, promotion and rollback; weights
changed after they were registered fail the job."""
from __future__ import annotations

import shutil

import pyarrow.compute as pc
import pytest
from conftest import copy_lakehouse, lakehouse_with_corpus
from deltalake import DeltaTable
from pyspark.sql import functions as F

from conf.settings import UsageError
from jobs import backfill
from jobs.backfill import run_backfill
from lake import delta_io
from lake.lakehouse import Lakehouse
from lake.registry import AliasMoved
from rollout.compare import compare_in_lakehouse
from rollout.models import CHALLENGER, build_signals, registry_for
from signals.embedders.efficientnet import default_weights_path
from tests.reference import perturbed_efficientnet
from udfs.columns import in_slice

pytestmark = pytest.mark.spark

ONLY_IMAGE_EMBEDDING = tuple(
    f"signals.{n}.enabled=false"
    for n in ("text_embedding", "image_safety", "text_safety", "language", "image_topics", "text_topics", "image_quality")
)


def _rows(settings, version: str):
    rows = DeltaTable(settings.table_root("embeddings")).to_pyarrow_table()
    return rows.filter(pc.equal(rows["model_version"], version)).sort_by("content_id")


def _files(settings) -> set[str]:
    """The embeddings table's live files, as its log names them (relative: alike in a copy)."""
    return {f.path for f in delta_io.live_files(settings.table_root("embeddings"))}


@pytest.fixture(scope="module")
def challenged(spark, corpus_lakehouse, tmp_path_factory):
    """A lakehouse whose image embedding has champion v1 (computed) and a challenger v2 with
    perturbed weights, computed on a stable 30% canary slice. Read only: `with_challenger` copies it."""
    folder = tmp_path_factory.mktemp("challenged")
    settings = lakehouse_with_corpus(corpus_lakehouse, folder / "lakehouse", *ONLY_IMAGE_EMBEDDING)
    run_backfill(spark, settings)
    registry = registry_for(settings)
    assert registry.aliases("image_embedding") == {"champion": "1"}
    champion_files = _files(settings)
    champion_rows = _rows(settings, "1")

    path = perturbed_efficientnet(folder / "efficientnet-v2.pth")
    v2 = registry.register("image_embedding", path, {"kind": "efficientnet_lite0_image", "weights_path": path})
    registry.client.set_registered_model_alias("image_embedding", CHALLENGER, v2.version)
    canary = run_backfill(spark, settings, role=CHALLENGER, slice_percent=30)
    return settings, v2.version, champion_files, champion_rows, canary


@pytest.fixture
def with_challenger(challenged, tmp_path):
    """A writable copy of `challenged`, with its registry."""
    settings, v2, champion_files, champion_rows, canary = challenged
    copy = copy_lakehouse(settings, tmp_path / "lakehouse", *ONLY_IMAGE_EMBEDDING)
    return copy, registry_for(copy), v2, champion_files, champion_rows, canary


def test_the_challenger_lands_beside_the_champion_on_a_stable_slice(spark, with_challenger):
    settings, registry, v2, champion_files, champion_rows, canary = with_challenger
    assert v2 == "2" and [o.model.version for o in canary.outcomes] == ["2"]
    assert _rows(settings, "1").equals(champion_rows)  # byte for byte, run ids and times included
    assert champion_files <= _files(settings)
    slice_ids = _rows(settings, "2")["content_id"].to_pylist()
    total = champion_rows.num_rows
    assert 0.15 * total <= len(slice_ids) <= 0.45 * total
    run_backfill(spark, settings, role=CHALLENGER, slice_percent=30)  # again: the same slice, replaced
    assert _rows(settings, "2")["content_id"].to_pylist() == slice_ids
    assert _rows(settings, "1").equals(champion_rows)
    history = DeltaTable(settings.table_root("embeddings")).history(1)[0]
    assert history["role"] == "challenger" and "'image_embedding': '2'" in history["model_versions"]


def test_the_report_shows_differences_and_none_for_identical_versions(with_challenger):
    settings, *_ = with_challenger
    different = compare_in_lakehouse(settings.lakehouse_root, "image_embedding", "1", "2")
    same = compare_in_lakehouse(settings.lakehouse_root, "image_embedding", "1", "1")
    assert different.differences and not same.differences
    assert different.metrics["items_compared"] > 0


def test_a_canary_whose_share_holds_no_item_replaces_the_canary_before_it(spark, with_challenger):
    """A narrower canary is the window's challenger rows replaced by its share; one whose share
    held no item committed nothing, said the window held no items, and left the wider canary's rows."""
    settings, _, v2, *_ = with_challenger
    assert _rows(settings, v2).num_rows > 0  # the 30% canary
    ids = spark.createDataFrame([(i,) for i in _rows(settings, "1")["content_id"].to_pylist()], "content_id string")
    empty_share = ids.select(F.min(F.pmod(F.xxhash64("content_id"), F.lit(100)))).first()[0]  # every bucket below it is empty
    assert empty_share >= 1 and ids.filter(in_slice(empty_share)).count() == 0
    result = run_backfill(spark, settings, role=CHALLENGER, slice_percent=empty_share)
    assert "holds no corpus items" not in (result.message or "")
    assert _rows(settings, v2).num_rows == 0  # as a 10% canary after a 30% one leaves 10%


def test_promote_then_rollback_switch_what_consumers_read_without_recomputing(spark, with_challenger):
    settings, registry, v2, *_ = with_challenger
    lakehouse = Lakehouse(settings.lakehouse_root, settings.registry_uri)
    version = DeltaTable(settings.table_root("embeddings")).version()
    assert set(lakehouse.champion("embeddings")["model_version"].to_pylist()) == {"1"}
    registry.promote("image_embedding", v2, ledger_root=settings.table_root("runs"), signal="image_embedding")
    assert set(lakehouse.champion("embeddings")["model_version"].to_pylist()) == {"2"}
    assert registry.aliases("image_embedding")[CHALLENGER] == v2  # still named, but no challenger: a canary of it would
    with pytest.raises(UsageError, match="image_embedding's is its champion, version 2"):  # cut the champion to its slice
        run_backfill(spark, settings, role=CHALLENGER, slice_percent=30)
    registry.rollback("image_embedding", ledger_root=settings.table_root("runs"), signal="image_embedding")
    assert set(lakehouse.champion("embeddings")["model_version"].to_pylist()) == {"1"}
    assert DeltaTable(settings.table_root("embeddings")).version() == version  # nothing recomputed
    jobs = [r["job"] for r in DeltaTable(settings.table_root("runs")).to_pyarrow_table().to_pylist()]
    assert jobs.count("promote") == 1 and jobs.count("rollback") == 1


def test_a_canary_whose_version_is_promoted_while_it_runs_leaves_the_champions_rows_whole(spark, with_challenger, monkeypatch):
    """Found in review: a promote landing while a canary of the promoted version ran (judged on a
    shadow run's rows of every item) had the canary's commit cut the new champion's rows down to its slice."""
    settings, registry, v2, *_ = with_challenger
    run_backfill(spark, settings, role=CHALLENGER)  # a shadow run: version 2 has a row of every item, as version 1
    every_item = _rows(settings, "1")["content_id"].to_pylist()
    assert _rows(settings, v2)["content_id"].to_pylist() == every_item
    compute_and_commit = backfill.write_and_commit

    def promoted_meanwhile(*args, **kwargs):
        registry.promote("image_embedding", v2, expected="1")
        return compute_and_commit(*args, **kwargs)
    monkeypatch.setattr(backfill, "write_and_commit", promoted_meanwhile)
    with pytest.raises(AliasMoved, match="image_embedding version 2 became the champion"):
        run_backfill(spark, settings, role=CHALLENGER, slice_percent=30)
    assert set(Lakehouse(settings.lakehouse_root, settings.registry_uri).champion("embeddings")["model_version"].to_pylist()) == {v2}
    assert _rows(settings, v2)["content_id"].to_pylist() == every_item


def test_weights_overwritten_after_registration_fail_the_job(spark, fresh_lakehouse, tmp_path):
    weights = tmp_path / "efficientnet.pth"
    shutil.copy(default_weights_path(), weights)
    settings = fresh_lakehouse(*ONLY_IMAGE_EMBEDDING, f"signals.image_embedding.params.weights_path={weights}")
    registered = build_signals(settings)["image_embedding"].config.weights_sha256  # registered as version 1
    perturbed_efficientnet(weights)  # overwritten in place
    with pytest.raises(Exception, match=f"was registered with sha256 {registered}"):
        run_backfill(spark, settings)  # rows stamped version 1 would come from other weights: none are written
    root = settings.table_root("embeddings")
    assert not DeltaTable.is_deltatable(root) or DeltaTable(root).to_pyarrow_table().num_rows == 0
