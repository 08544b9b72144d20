"""Images by URI through the refresh job: items whose image is a URI on the loopback HTTP server
or in moto's S3 get the same embeddings as the same images inline; every fault is an error row
with its reason, none missing; a second refresh fetches nothing for unchanged items (the
servers' request logs) and computes the transient errors again."""
from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from conf.settings import FetchSettings
from jobs.dedup import run_dedup
from jobs.refresh import run_refresh
from signals.contracts import UTC_MICROS
from signals.fetch import REASONS

pytestmark = pytest.mark.spark

PHOTOS = 4
ONLY_IMAGE_EMBEDDING = tuple(f"signals.{name}.enabled=false" for name in (
    "text_embedding", "image_safety", "text_safety", "language", "image_topics", "text_topics", "image_quality"))


def _photos(corpus_lakehouse) -> list[bytes]:
    """Real JPEG photos of the sample corpus: originals of different base photos, so no two are duplicates."""
    truth = DeltaTable(corpus_lakehouse.settings.table_root("corpus_truth")).to_pyarrow_table(columns=["content_id", "variant", "base_id"])
    originals = sorted((r["content_id"], r["base_id"]) for r in truth.to_pylist() if r["variant"] == "original")[:PHOTOS]
    assert len({base for _, base in originals}) == PHOTOS  # originals cycle through the base photos
    table = DeltaTable(corpus_lakehouse.root).to_pyarrow_table(columns=["content_id", "image"]).sort_by("content_id")
    chosen = {cid for cid, _ in originals}
    return [image for cid, image in zip(table["content_id"].to_pylist(), table["image"].to_pylist()) if cid in chosen]


def _corpus(root: str, items: list[tuple[str, bytes | None, str | None]]) -> None:
    """A Delta corpus table of the canonical columns: (content_id, image, image_uri) per item."""
    when = datetime(2026, 5, 1, tzinfo=UTC)
    n = len(items)
    write_deltalake(root, pa.table({
        "content_id": pa.array([i for i, _, _ in items], pa.string()),
        "ds": pa.array(["2026-05-01"] * n, pa.string()),
        "image": pa.array([b for _, b, _ in items], pa.binary()),
        "image_uri": pa.array([u for _, _, u in items], pa.string()),
        "title": pa.array([f"title {i}" for i, _, _ in items], pa.string()),
        "description": pa.array([None] * n, pa.string()),
        "created_at": pa.array([when] * n, UTC_MICROS),
        "updated_at": pa.array([when] * n, UTC_MICROS),
    }), partition_by=["ds"])


def _rows(settings) -> dict[str, dict]:
    table = DeltaTable(settings.table_root("embeddings")).to_pyarrow_table(columns=["content_id", "status", "error", "vector"])
    rows = table.to_pylist()
    assert len(rows) == len({r["content_id"] for r in rows}), "one row per item"
    return {r["content_id"]: r for r in rows}


@pytest.fixture
def uri_lakehouse(tmp_path, spark, monkeypatch, corpus_lakehouse, image_server, outside_server, s3_server):
    """Settings for a lakehouse whose corpus holds each photo inline, by HTTP and by S3, and the faults."""
    from conftest import settings_for

    photos = _photos(corpus_lakehouse)
    for i, photo in enumerate(photos):
        image_server.images[f"p{i}.jpg"] = photo
    s3_server.put("images", {**{f"p{i}.jpg": p for i, p in enumerate(photos)}, "faults/flaky-3/p0.jpg": photos[0],
                             "faults/slow/p0.jpg": photos[0]})
    for name, value in s3_server.CREDENTIALS.items():  # the Python workers' environment: moto's credentials
        monkeypatch.setitem(spark.sparkContext.environment, name, value)
    http = image_server.url
    faults = {
        "http-missing": (http("missing/p0.jpg"), "not found (HTTP 404)"),
        "http-forbidden": (http("forbidden/p0.jpg"), "forbidden (HTTP 403)"),
        "http-outside": (outside_server.url("img/p0.jpg"), "not allowed"),
        "http-slow": (http("slow/p0.jpg"), "transient: timeout"),
        "http-flaky": (http("flaky/3/p0.jpg"), "transient: server error (HTTP 500; 3 attempts)"),
        "http-huge": (http("huge"), "too large"),
        "http-endless": (http("endless"), "too large"),
        "http-redirect-out": (http("redirect?to=" + outside_server.url("img/p0.jpg")), "redirected out of bounds"),
        "s3-missing": ("s3://images/missing.jpg", "not found"),
        "s3-outside": ("s3://secret/p0.jpg", "not allowed"),
        "s3-flaky": ("s3://images/faults/flaky-3/p0.jpg", "transient: server error"),
        "s3-slow": ("s3://images/faults/slow/p0.jpg", "transient: timeout"),
    }
    items = [(f"inline-{i}", p, None) for i, p in enumerate(photos)]
    items += [(f"http-{i}", None, http(f"img/p{i}.jpg")) for i in range(len(photos))]
    items += [(f"s3-{i}", None, f"s3://images/p{i}.jpg") for i in range(len(photos))]
    items += [("http-redirect-in", None, http(f"redirect?to=/img/p{len(photos) - 1}.jpg"))]
    items += [(cid, None, uri) for cid, (uri, _) in faults.items()]
    settings = settings_for(tmp_path / "lakehouse", *ONLY_IMAGE_EMBEDDING)
    _corpus(settings.table_root("corpus"), items)
    fetch = FetchSettings(http_hosts=(image_server.netloc,), allowed_networks=("127.0.0.1/32",), s3_prefixes=("images",),
                          s3_endpoint_url=s3_server.endpoint_url, s3_region="us-east-1", connect_timeout_s=0.5,
                          read_timeout_s=0.5, backoff_s=0.01, max_bytes=4 * 1024 * 1024)
    image_server.log.clear()
    outside_server.log.clear()
    s3_server.log.clear()
    return settings.model_copy(update={"fetch": fetch}), len(photos), {cid: reason for cid, (_, reason) in faults.items()}


def test_images_by_uri_embed_like_inline_faults_are_reasons_and_only_transient_ones_are_fetched_again(
        spark, uri_lakehouse, image_server, outside_server, s3_server):
    settings, photos, faults = uri_lakehouse
    run_refresh(spark, settings)
    first_requests = (image_server.log.counts(), s3_server.log.counts())
    rows = _rows(settings)
    assert len(rows) == 3 * photos + 1 + len(faults)  # every item has its row
    for i in range(photos):
        inline = rows[f"inline-{i}"]
        assert inline["status"] == "ok"
        for by_uri in (rows[f"http-{i}"], rows[f"s3-{i}"]):
            assert by_uri["status"] == "ok", by_uri["error"]
            assert np.max(np.abs(np.subtract(by_uri["vector"], inline["vector"]))) <= 1e-5
    assert np.max(np.abs(np.subtract(rows["http-redirect-in"]["vector"], rows[f"inline-{photos - 1}"]["vector"]))) <= 1e-5
    for cid, reason in faults.items():
        assert rows[cid]["status"] == "error" and rows[cid]["error"].startswith(reason), (cid, rows[cid]["error"])
        assert rows[cid]["error"].removeprefix("transient: ").startswith(REASONS)
    assert outside_server.log.paths == []  # nothing outside the allowlist was ever requested
    assert not any(p.startswith(("GET /secret", "HEAD /secret")) for p in s3_server.log.paths)

    image_server.log.clear()
    s3_server.log.clear()
    run_refresh(spark, settings)
    rows = _rows(settings)
    # unchanged items are not fetched again: only the transient errors are, and the flaky ones pass now
    assert set(image_server.log.paths) == {"/slow/p0.jpg", "/flaky/3/p0.jpg"}
    assert {p.split(" ", 1)[1] for p in s3_server.log.paths} == {"/images/faults/flaky-3/p0.jpg", "/images/faults/slow/p0.jpg"}
    for cid in ("http-flaky", "s3-flaky"):
        assert rows[cid]["status"] == "ok", (cid, rows[cid]["error"], first_requests, image_server.log.paths, s3_server.log.paths)
        assert np.max(np.abs(np.subtract(rows[cid]["vector"], rows["inline-0"]["vector"]))) <= 1e-5
    for cid in ("http-slow", "s3-slow"):
        assert rows[cid]["error"].startswith("transient: timeout")
    for cid in set(faults) - {"http-flaky", "s3-flaky", "http-slow", "s3-slow"}:
        assert rows[cid]["error"].startswith(faults[cid])  # permanent: kept, never fetched again
    assert outside_server.log.paths == []


def test_dedup_fetches_images_by_uri_and_groups_them_with_their_inline_copies(spark, uri_lakehouse, outside_server, s3_server):
    settings, photos, faults = uri_lakehouse
    run_refresh(spark, settings)
    run_dedup(spark, settings)
    rows = {r["content_id"]: r for r in DeltaTable(settings.table_root("duplicates")).to_pyarrow_table().to_pylist()}
    assert len(rows) == 3 * photos + 1 + len(faults)
    for i in range(photos):
        copies = [rows[f"{kind}-{i}"] for kind in ("inline", "http", "s3")]
        assert len({r["group_id"] for r in copies}) == 1 and len({r["exact_hash"] for r in copies}) == 1, (i, copies)
        assert [r["match_method"] for r in copies if not r["is_canonical"]] == ["exact", "exact"]
    assert rows["http-redirect-in"]["group_id"] == rows[f"inline-{photos - 1}"]["group_id"]
    for cid in set(faults) - {"http-flaky", "s3-flaky"}:  # the flaky ones succeed on a retry
        assert rows[cid]["status"] == "error" and rows[cid]["group_size"] == 1, (cid, rows[cid])
    assert outside_server.log.paths == []
    assert not any(p.startswith(("GET /secret", "HEAD /secret")) for p in s3_server.log.paths)
