"""Videos through the backfill: a corpus with a `video` column (a few good and bad videos beside
three photos) gives every item its rows, the keyframes table holds the image signals on each
keyframe, equal to the signal called directly on the decoded frame, a re-run never duplicates,
dedup groups a re-encoding with its video and a still video with its photo and nothing else, and
a refresh brings the keyframes in line with a changed and a taken-down video, a video item that
becomes a photo, and a corpus that stops mapping `video`."""
from __future__ import annotations

import hashlib
import io
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from PIL import Image

from jobs.backfill import run_backfill
from jobs.dedup import run_dedup
from jobs.refresh import run_refresh
from sample_corpus.photos import base_photo
from sample_corpus.videos import VIDEO_CORPUS_SCHEMA, bad_videos, encode_video, pan, reencode, still
from signals.contracts import UTC_MICROS
from signals.embedders.efficientnet import EfficientNetImageEmbedder
from signals.hashing import image_input_hash
from signals.labels.perceptual_hash import perceptual_hash
from signals.video.keyframes import video_keyframes
from signals.video.pooling import pooled_embedding
from tests.conftest import CHEAP_SIGNALS, settings_for, with_empty_registry
from tests.unit.labels_helpers import config

FPS, SIZE = 12, (160, 120)
DAY = "2026-11-20"
# one embedder, one labeler (both of a video's tables), tasks as scanned
VIDEO_SIGNALS = (*CHEAP_SIGNALS, "signals.text_embedding.enabled=false", "signals.text_safety.enabled=false", "spark.partitions_per_slot=0")


def _jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=90)
    return out.getvalue()


def _items() -> dict[str, dict]:
    rng = np.random.default_rng(5)
    frames = [*pan(base_photo("rocket"), 1.5, rng, FPS, SIZE), *pan(base_photo("coffee"), 1.5, rng, FPS, SIZE)]
    cuts = encode_video([np.asarray(f) for f in frames], FPS)
    videos = {
        "v-cuts": cuts,
        "v-cuts-vp9": reencode(cuts, "libvpx-vp9", "webm", 24, 90, {"deadline": "realtime", "cpu-used": "8"}),  # the same video
        "v-still": encode_video([np.asarray(f) for f in still(base_photo("chelsea"), 1.0, FPS, 120)], FPS),
        **{f"v-{b.kind}": b.data for b in bad_videos() if b.kind in ("empty", "audio_only", "image_renamed")},
    }
    photos = {"p-camera": _jpeg(base_photo("camera").resize(SIZE)), "p-coffee": _jpeg(base_photo("coffee").resize(SIZE)),
              "p-chelsea": _jpeg(base_photo("chelsea"))}  # the picture v-still shows: a pin and its video version
    return {**{k: {"video": v, "image": None} for k, v in videos.items()}, **{k: {"video": None, "image": v} for k, v in photos.items()}}


@pytest.fixture
def video_lakehouse(tmp_path, empty_registry_db):
    """The corpus in a new lakehouse with an empty registry; the image embedding and the quality
    labeler only (one embedder, one labeler: both of a video's tables), tasks as scanned."""
    items = _items()
    ids = sorted(items)
    when = pa.array([1_763_600_000_000_000] * len(ids), UTC_MICROS)
    corpus = pa.table({
        "content_id": ids, "image": [items[i]["image"] for i in ids], "title": [f"item {i}" for i in ids],
        "description": [None] * len(ids), "created_at": when, "updated_at": when, "ds": [DAY] * len(ids),
        "video": [items[i]["video"] for i in ids],
    }, schema=VIDEO_CORPUS_SCHEMA)
    write_deltalake(str(tmp_path / "lakehouse" / "corpus"), corpus, partition_by=["ds"])
    return with_empty_registry(settings_for(tmp_path / "lakehouse", *VIDEO_SIGNALS), empty_registry_db), items


def _table(settings, name: str) -> list[dict]:
    return DeltaTable(settings.table_root(name)).to_pyarrow_table().to_pylist()


def test_videos_through_the_backfill_and_the_refresh(spark, video_lakehouse) -> None:
    settings, items = video_lakehouse
    result = run_backfill(spark, settings)
    assert "keyframes" in result.table_versions
    embeddings = [r for r in _table(settings, "embeddings") if r["signal"] == "image_embedding"]
    by_id = {r["content_id"]: r for r in embeddings}
    assert sorted(by_id) == sorted(items) and len(embeddings) == len(items)  # every item, once
    for bad in ("v-empty", "v-audio_only", "v-image_renamed"):
        assert by_id[bad]["status"] == "error" and by_id[bad]["error"], bad
    assert by_id["v-empty"]["error"] == "video is empty (0 bytes)"
    assert all(by_id[i]["status"] == "ok" for i in ("v-cuts", "v-cuts-vp9", "v-still", "p-camera", "p-coffee", "p-chelsea"))
    assert by_id["v-cuts"]["input_hash"] == image_input_hash(items["v-cuts"]["video"])  # the JVM's hash of a video item: its bytes

    keyframes = _table(settings, "keyframes")
    assert {r["content_id"] for r in keyframes} == {i for i in items if items[i]["video"] is not None}
    assert {r["signal"] for r in keyframes} == {"image_embedding", "image_quality"}
    assert [r["keyframe_index"] for r in keyframes if r["content_id"] == "v-empty" and r["signal"] == "image_embedding"] == [-1]
    stored = sorted((r for r in keyframes if r["content_id"] == "v-cuts" and r["signal"] == "image_embedding"), key=lambda r: r["keyframe_index"])
    decoded = list(video_keyframes(items["v-cuts"]["video"], settings.video.limits, settings.video.sampling))
    assert [r["shot_index"] for r in stored] == [k.shot_index for k in decoded] == [0, 1]
    embedder = EfficientNetImageEmbedder(config("image_embedding")).load()
    direct = embedder.embed([embedder.transform(k.image) for k in decoded])
    for row, vector, keyframe in zip(stored, direct, decoded):
        assert row["time_s"] == pytest.approx(keyframe.time_s) and row["status"] == "ok"
        assert np.allclose(row["vector"], np.asarray(vector), atol=1e-5)
        assert row["phash"] == perceptual_hash(keyframe.image)
    pooled = pooled_embedding([np.asarray(r["vector"]) for r in stored], [r["end_s"] - r["start_s"] for r in stored])
    assert np.allclose(by_id["v-cuts"]["vector"], pooled, atol=1e-5)
    labels = [r for r in _table(settings, "labels") if r["signal"] == "image_quality" and r["content_id"] == "v-cuts"]
    keyframe_labels = [r for r in keyframes if r["signal"] == "image_quality" and r["content_id"] == "v-cuts"]
    assert {r["label"]: r["score"] for r in labels} == {
        label: max(r["score"] for r in keyframe_labels if r["label"] == label) for label in {r["label"] for r in keyframe_labels}}

    run_backfill(spark, settings)  # the same window again: replaced, never duplicated
    assert len(_table(settings, "keyframes")) == len(keyframes)
    assert len([r for r in _table(settings, "embeddings") if r["signal"] == "image_embedding"]) == len(items)

    # near-duplicates across formats: a re-encoding with its video, the still video with its photo, nothing else
    run_dedup(spark, settings)
    duplicates = {r["content_id"]: r for r in _table(settings, "duplicates")}
    assert sorted(duplicates) == sorted(items)  # one row per item
    groups = {r["group_id"]: sorted(i for i in duplicates if duplicates[i]["group_id"] == r["group_id"]) for r in duplicates.values()}
    assert sorted(groups.values()) == sorted([["v-cuts", "v-cuts-vp9"], ["p-chelsea", "v-still"], *[[i] for i in items if i not in
                                              ("v-cuts", "v-cuts-vp9", "v-still", "p-chelsea")]])
    longest = max((r for r in stored), key=lambda r: (r["end_s"] - r["start_s"], -r["keyframe_index"]))
    assert duplicates["v-cuts"]["phash"] == longest["phash"] and duplicates["v-cuts"]["exact_hash"] == hashlib.sha256(items["v-cuts"]["video"]).hexdigest()
    for bad in ("v-empty", "v-audio_only", "v-image_renamed"):  # a bad video: an error row with its video's reason
        assert (duplicates[bad]["status"], duplicates[bad]["error"]) == ("error", by_id[bad]["error"]), bad

    # the refresh: v-still taken down, v-cuts re-encoded as another video, the rest unchanged
    corpus = DeltaTable(settings.table_root("corpus"))
    changed = corpus.to_pyarrow_table(filters=[("content_id", "=", "v-cuts")])
    new_video = encode_video([np.asarray(f) for f in still(base_photo("camera"), 1.0, FPS, 120)], FPS)
    corpus.delete("content_id = 'v-cuts' OR content_id = 'v-still'")
    later = pa.array([1_763_700_000_000_000], UTC_MICROS)
    write_deltalake(corpus.table_uri, changed.set_column(changed.schema.get_field_index("video"), "video", pa.array([new_video], pa.binary()))
                    .set_column(changed.schema.get_field_index("updated_at"), "updated_at", later), mode="append")
    before = {(r["content_id"], r["signal"], r["keyframe_index"], r["label"]): r["run_id"] for r in _table(settings, "keyframes")}
    refreshed = run_refresh(spark, settings)
    after = _table(settings, "keyframes")
    assert "keyframes" in refreshed.table_versions
    assert not [r for r in after if r["content_id"] == "v-still"]  # a takedown reaches the keyframes
    cuts = [r for r in after if r["content_id"] == "v-cuts"]
    assert {r["signal"] for r in cuts} == {"image_embedding", "image_quality"}
    assert {r["input_hash"] for r in cuts} == {image_input_hash(new_video)} and {r["run_id"] for r in cuts} == {refreshed.run_id}
    assert [r["shot_index"] for r in cuts if r["signal"] == "image_embedding"] == [0]  # one still shot, not the two cuts of before
    untouched = [r for r in after if r["content_id"] not in ("v-cuts", "v-still")]
    assert {(r["content_id"], r["signal"], r["keyframe_index"], r["label"]): r["run_id"] for r in untouched} == \
        {k: v for k, v in before.items() if k[0] not in ("v-cuts", "v-still")}

    # v-cuts-vp9 becomes a photo by a newer row of the same day, its video row left in place: the incremental refresh (the
    # corpus has only an added file since the last one) drops its keyframes (they stayed: it was no changed video item)
    (video_row,) = [r for r in _table(settings, "corpus") if r["content_id"] == "v-cuts-vp9"]
    as_photo = {**video_row, "video": None, "image": _jpeg(base_photo("camera").resize(SIZE)), "updated_at": datetime.fromtimestamp(1_763_800_000, UTC)}
    write_deltalake(corpus.table_uri, pa.Table.from_pylist([as_photo], schema=VIDEO_CORPUS_SCHEMA), mode="append")
    photo = run_refresh(spark, settings)
    assert "keyframes: 1 corpus files added and 0 removed" in photo.message
    assert not [r for r in _table(settings, "keyframes") if r["content_id"] == "v-cuts-vp9"]
    assert {r["status"] for r in _table(settings, "embeddings") if r["content_id"] == "v-cuts-vp9"} == {"ok"}

    # the corpus stops mapping `video` as v-empty is taken down: no item carries a video any more, so the
    # refresh leaves no keyframe row, the taken-down item's included (they stayed for good before)
    corpus.delete("content_id = 'v-empty'")
    run_refresh(spark, settings_for(settings.lakehouse_root, *VIDEO_SIGNALS, "corpus.columns.video=null"))
    assert {r["content_id"] for r in _table(settings, "keyframes")} == set()


def test_a_head_scores_a_video_item_from_its_stored_video_embedding(spark, video_lakehouse, tmp_path) -> None:
    """A head is not run on keyframes: it scores each item's stored embedding row, a video's
    included, with the input hash that row was computed from, so a refresh finds nothing to do."""
    import torch

    from lake.ledger import NOTHING_TO_DO
    from lake.registry import CHALLENGER, Registry
    from signals.labels.head import build_head, load_head, score_vectors
    from training.heads import TrainedHead, save_head

    settings, items = video_lakehouse
    run_backfill(spark, settings)
    stored = {r["content_id"]: r for r in _table(settings, "embeddings") if r["signal"] == "image_embedding"}
    dim = len(next(r["vector"] for r in stored.values() if r["status"] == "ok"))
    torch.manual_seed(0)
    weights = save_head(TrainedHead(build_head(dim, 0), dim, 0), tmp_path / "head", {"task": "low_quality"})
    registry = Registry(settings.registry_uri)
    version = registry.register("head_low_quality", str(weights), {"kind": "image_embedding_head", "weights_path": str(weights),
                                                                   "embedding_signal": "image_embedding", "embedding_model_version": "1"})
    registry.client.set_registered_model_alias("head_low_quality", CHALLENGER, version.version)
    with_head = settings_for(settings.lakehouse_root, *VIDEO_SIGNALS, "signals.head_low_quality.enabled=true")
    run_backfill(spark, with_head, role=CHALLENGER)

    rows = {r["content_id"]: r for r in _table(settings, "labels") if r["signal"] == "head_low_quality"}
    assert sorted(rows) == sorted(items) and not [r for r in _table(settings, "keyframes") if r["signal"] == "head_low_quality"]
    ok = sorted(c for c, r in stored.items() if r["status"] == "ok")
    assert {"v-cuts", "v-still"} <= set(ok) and all(rows[c]["status"] == "ok" for c in ok)
    np.testing.assert_allclose([rows[c]["score"] for c in ok], score_vectors(load_head(weights), np.stack([stored[c]["vector"] for c in ok])),
                               atol=1e-6)
    assert rows["v-empty"]["error"] == f"input embedding: {stored['v-empty']['error']}"

    registry.client.set_registered_model_alias("head_low_quality", "champion", version.version)
    assert run_refresh(spark, with_head).status == NOTHING_TO_DO


def test_a_backfill_of_the_day_a_video_was_ingested_again_drops_its_keyframes_on_the_older_day(spark, video_lakehouse) -> None:
    """One key, one day: a video item ingested again on a later day, backfilled for that day, has
    its keyframes (and its video-level rows) there only, the same as those of its older day; one
    ingested again as a photo has none left, nor has the day backfilled once the corpus maps no video."""
    settings, _ = video_lakehouse
    run_backfill(spark, settings)
    before = [r for r in _table(settings, "keyframes") if r["content_id"] == "v-cuts-vp9"]
    corpus = DeltaTable(settings.table_root("corpus"))
    again = corpus.to_pyarrow_table(filters=[("content_id", "=", "v-cuts-vp9")])
    later_day = "2026-11-21"
    write_deltalake(corpus.table_uri, again.set_column(again.schema.get_field_index("ds"), "ds", pa.array([later_day], pa.string()))
                    .set_column(again.schema.get_field_index("updated_at"), "updated_at", pa.array([1_763_700_000_000_000], UTC_MICROS)),
                    mode="append", partition_by=["ds"])
    from jobs.corpus import Window

    run_backfill(spark, settings, Window(later_day, later_day))
    after = [r for r in _table(settings, "keyframes") if r["content_id"] == "v-cuts-vp9"]
    assert {r["ds"] for r in before} == {DAY} and {r["ds"] for r in after} == {later_day}
    key = lambda r: (r["signal"], r["keyframe_index"], r["label"])  # noqa: E731
    assert sorted(map(key, after)) == sorted(map(key, before))
    olds = {key(r): r for r in before}
    for row in after:
        old = olds[key(row)]
        assert (row["input_hash"], row["status"], row["score"] is None, row["vector"] is None) == \
            (old["input_hash"], old["status"], old["score"] is None, old["vector"] is None)
        assert np.allclose(row["vector"] or [], old["vector"] or [], atol=1e-5) and np.isclose(row["score"] or 0, old["score"] or 0, atol=1e-5)
    assert {r["ds"] for r in _table(settings, "embeddings") if r["content_id"] == "v-cuts-vp9"} == {later_day}
    assert DeltaTable(settings.table_root("keyframes")).history(1)[0]["moved_items"] == "2"  # the item, for each of the two image signals

    # ingested again as a photo, on a day with no video: the window's keyframes commit drops the old video's
    photo_day = "2026-11-22"
    still_again = corpus.to_pyarrow_table(filters=[("content_id", "=", "v-still")])
    changes = {"ds": pa.array([photo_day], pa.string()), "updated_at": pa.array([1_763_800_000_000_000], UTC_MICROS),
               "video": pa.array([None], pa.binary()), "image": pa.array([_jpeg(base_photo("chelsea"))], pa.binary())}
    for name, column in changes.items():
        still_again = still_again.set_column(still_again.schema.get_field_index(name), name, column)
    write_deltalake(corpus.table_uri, still_again, mode="append", partition_by=["ds"])
    assert "keyframes" in run_backfill(spark, settings, Window(photo_day, photo_day)).table_versions
    assert not [r for r in _table(settings, "keyframes") if r["content_id"] == "v-still"]
    assert {(r["ds"], r["status"]) for r in _table(settings, "embeddings") if r["content_id"] == "v-still"} == {(photo_day, "ok")}

    # a backfill of the first day once the corpus stops mapping `video` (v-empty taken down): no item of the window carries
    # a video, so the window's keyframes slice is replaced by nothing (it was left as it was, the takedown's included)
    corpus.delete("content_id = 'v-empty'")
    run_backfill(spark, settings_for(settings.lakehouse_root, *VIDEO_SIGNALS, "corpus.columns.video=null"), Window(DAY, DAY))
    assert {(r["content_id"], r["ds"]) for r in _table(settings, "keyframes")} == {("v-cuts-vp9", later_day)}


def test_a_refresh_computes_again_a_video_whose_keyframe_the_model_failed_on(spark, video_lakehouse) -> None:
    """A model failure on one keyframe leaves the video's keyframe rows part ok, part a retried
    error (signals.video.rows): the refresh computes all of them again, for the video and for a
    new item of the same video, never keeping or copying the ok part alone (it dropped the
    video's keyframes and computed none, and copied the ok part to the new item)."""
    settings, items = video_lakehouse
    run_backfill(spark, settings)
    failed = "model failed: RuntimeError: CUDA out of memory"
    DeltaTable(settings.table_root("keyframes")).update(
        {"status": "'error'", "error": f"'{failed}'", "vector": "null", "dim": "null"},
        predicate="content_id = 'v-cuts' AND signal = 'image_embedding' AND keyframe_index = 1")
    DeltaTable(settings.table_root("embeddings")).update(  # the video's row, as video_result makes it
        {"status": "'error'", "error": f"'{failed} (on a keyframe)'", "vector": "null", "dim": "null"},
        predicate="content_id = 'v-cuts' AND signal = 'image_embedding'")
    corpus = DeltaTable(settings.table_root("corpus"))
    repin = corpus.to_pyarrow_table(filters=[("content_id", "=", "v-cuts")])
    write_deltalake(corpus.table_uri, repin.set_column(repin.schema.get_field_index("content_id"), "content_id", pa.array(["v-repin"]))
                    .set_column(repin.schema.get_field_index("updated_at"), "updated_at", pa.array([1_763_700_000_000_000], UTC_MICROS)),
                    mode="append", partition_by=["ds"])
    run_refresh(spark, settings)
    decoded = list(video_keyframes(items["v-cuts"]["video"], settings.video.limits, settings.video.sampling))
    keyframes = _table(settings, "keyframes")
    stored = {item: sorted((r["keyframe_index"], r["status"]) for r in keyframes if r["content_id"] == item and r["signal"] == "image_embedding")
              for item in ("v-cuts", "v-repin")}
    assert stored == dict.fromkeys(("v-cuts", "v-repin"), [(k.index, "ok") for k in decoded])
