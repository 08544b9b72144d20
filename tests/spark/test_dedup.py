"""Near-duplicate groups in Spark: fingerprints equal to Python's, components, the table."""
from __future__ import annotations

import hashlib
import itertools
from collections import defaultdict

import numpy as np
import pyarrow as pa
import pytest
from conftest import copy_lakehouse, edit_corpus, jpeg_bytes, settings_for
from deltalake import DeltaTable, write_deltalake

from jobs.dedup import connected_components, edges, fingerprints, run_dedup
from signals.decode import InputError, decode_image
from signals.labels.perceptual_hash import embedding_simhash, perceptual_hash

pytestmark = pytest.mark.spark


TAKEN_DOWN = ("pin-000015", "pin-000027")  # originals with an exact copy each (pin-000022, pin-000050), emptied after the backfill
UNDATED = "pin-000022"  # its created_at cleared: it counts as the newest of its group


@pytest.fixture(scope="module")
def deduped(spark, backfilled, tmp_path_factory):
    """The dedup job on a copy of the backfill (which other tests read as it is), whose corpus then
    lost two images (their embeddings from the backfill stay) and one item's date."""
    lakehouse = tmp_path_factory.mktemp("deduped") / "lakehouse"
    settings = copy_lakehouse(backfilled.settings, lakehouse)
    corpus = DeltaTable(settings.table_root("corpus")).to_pyarrow_table()
    ids = corpus["content_id"].to_pylist()
    images = [b"" if c in TAKEN_DOWN else i for c, i in zip(ids, corpus["image"].to_pylist())]
    created = [None if c == UNDATED else t for c, t in zip(ids, corpus["created_at"].to_pylist())]
    corpus = corpus.set_column(corpus.schema.get_field_index("image"), corpus.schema.field("image"), pa.array(images, corpus.schema.field("image").type))
    corpus = corpus.set_column(corpus.schema.get_field_index("created_at"), corpus.schema.field("created_at"),
                               pa.array(created, corpus.schema.field("created_at").type))
    write_deltalake(settings.table_root("corpus"), corpus, mode="overwrite", partition_by=["ds"])
    result = run_dedup(spark, settings)
    return settings, result, DeltaTable(settings.table_root("duplicates")).to_pyarrow_table().to_pylist()


def _copy_of(backfilled, folder) -> str:
    """A copy of the backfilled lakehouse (other tests read it as it is): its corpus table's root."""
    return copy_lakehouse(backfilled.settings, folder).table_root("corpus")


def _grouped_ids(settings) -> list[str]:
    return sorted(DeltaTable(settings.table_root("duplicates")).to_pyarrow_table()["content_id"].to_pylist())


def test_dedup_groups_the_pinned_corpus_version(spark, backfilled, tmp_path):
    """With `corpus.version` pinned (what the backfill computed and `--dry-run` names), dedup
    groups the items of that version, not those of a later one (before, it read the latest)."""
    root = _copy_of(backfilled, tmp_path / "lakehouse")
    pinned = DeltaTable(root).version()
    edit_corpus(root)  # a later version: some items gone, some new
    settings = settings_for(tmp_path / "lakehouse", f"corpus.version={pinned}")
    run_dedup(spark, settings)
    assert _grouped_ids(settings) == sorted(DeltaTable(root, version=pinned).to_pyarrow_table()["content_id"].to_pylist())


def test_a_corpus_commit_while_dedup_runs_is_not_read_half(spark, backfilled, tmp_path, monkeypatch):
    """Dedup counts and groups one read of the corpus: before, a corpus commit landing after it
    counted the items and before it grouped them failed the run (N items written for M)."""
    import jobs.dedup

    root = _copy_of(backfilled, tmp_path / "lakehouse")
    read = DeltaTable(root).version()
    counted = jobs.dedup.check_rows

    def count_then_commit(rows):
        check = counted(rows)
        edit_corpus(root)
        return check

    monkeypatch.setattr(jobs.dedup, "check_rows", count_then_commit)
    settings = settings_for(tmp_path / "lakehouse")
    run_dedup(spark, settings)
    assert _grouped_ids(settings) == sorted(DeltaTable(root, version=read).to_pyarrow_table()["content_id"].to_pylist())
    assert DeltaTable(settings.table_root("duplicates")).history(1)[0]["corpus_version"] == str(read)  # the commit says which it read


def test_connected_components_take_the_smallest_reachable_id(spark):
    nodes = spark.createDataFrame([(c,) for c in "abcdefg"], ["content_id"])
    links = spark.createDataFrame([("c", "b"), ("b", "a"), ("e", "d"), ("g", "e")], ["a", "b"])
    groups = dict(connected_components(nodes, links).collect())
    assert groups == {"a": "a", "b": "a", "c": "a", "d": "d", "e": "d", "g": "d", "f": "f"}


def test_connected_components_settle_long_chains_and_a_random_graph_as_union_find_does(spark):
    """Chains of 200 copies (ids growing along it; shuffled along it; and the smallest id at one end
    with the others falling away from it, which took min-label propagation with one pointer jump a
    round per copy, far over its 30 rounds) and 300 random links among 400 items, against scipy."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as components

    rng = np.random.default_rng(3)
    chains = [[f"{kind}{i:03d}" for i in order] for kind, order in
              (("c", range(200)), ("s", rng.permutation(200)), ("f", [0, *range(199, 0, -1)]))]
    chain_links = [link for chain in chains for link in zip(chain, chain[1:])]
    random_links = [(f"r{a:03d}", f"r{b:03d}") for a, b in rng.integers(0, 400, (300, 2)) if a != b]
    ids = sorted({c for link in chain_links + random_links for c in link} | {f"r{i:03d}" for i in range(400)})
    at = {c: i for i, c in enumerate(ids)}
    pairs = np.array([(at[a], at[b]) for a, b in chain_links + random_links])
    _, label = components(coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(ids), len(ids))), directed=False)
    expected = {c: min(d for d in ids if label[at[d]] == label[at[c]]) for c in ids}
    nodes = spark.createDataFrame([(c,) for c in ids], ["content_id"])
    links = spark.createDataFrame(chain_links + random_links, ["a", "b"])
    groups = connected_components(nodes, links)
    assert dict(groups.collect()) == expected
    # The planner's size estimate of the result: Spark estimates a join as the product of its sides,
    # and one kept through each round's checkpoint squared every pass (3,695 digits after a chain of
    # 41 copies; on these chains the last checkpoints took minutes of estimating).
    assert groups._jdf.queryExecution().optimizedPlan().stats().sizeInBytes() < 2**64


def test_a_taken_down_item_is_an_error_row_alone_and_its_copies_keep_a_live_canonical_item(deduped):
    _, _, rows = deduped
    by_id = {r["content_id"]: r for r in rows}
    for gone, copy in zip(TAKEN_DOWN, ("pin-000022", "pin-000050")):
        assert (by_id[gone]["status"], by_id[gone]["group_size"], by_id[gone]["exact_hash"]) == ("error", 1, None)  # empty: no shared hash
        assert by_id[copy]["group_id"] != gone
        group = [r for r in rows if r["group_id"] == by_id[copy]["group_id"]]
        assert [r["status"] for r in group if r["is_canonical"]] == ["ok"]


def test_spark_fingerprints_equal_python(spark, backfilled):
    from jobs.corpus import CorpusSource

    rows = fingerprints(spark, backfilled.settings, CorpusSource.of(backfilled.settings).read(spark)).collect()
    corpus = {r["content_id"]: r["image"] for r in DeltaTable(backfilled.settings.table_root("corpus")).to_pyarrow_table().to_pylist()}
    for row in rows:
        image = corpus[row.content_id]
        try:
            assert row.phash == perceptual_hash(decode_image(image))  # all 64 bits, no float rounding
        except InputError as exc:
            assert row.phash is None and row.error == str(exc)
        assert row.exact_hash == (hashlib.sha256(image).hexdigest() if image else None)  # empty inputs share no hash
    rules = backfilled.settings.dedup
    embedded = [row for row in rows if row.vector is not None]
    expected = embedding_simhash(np.array([row.vector for row in embedded], dtype=np.float32), rules.simhash_seed, rules.simhash_bits)
    assert [row.simhash for row in embedded] == expected.tolist() and len(embedded) > 10 and len(expected[0]) == rules.simhash_bits // 64


def test_every_item_has_one_row_and_byte_identical_images_share_a_group(deduped):
    settings, result, rows = deduped
    corpus = DeltaTable(settings.table_root("corpus")).to_pyarrow_table().to_pylist()
    assert sorted(r["content_id"] for r in rows) == sorted(r["content_id"] for r in corpus)
    group = {r["content_id"]: r["group_id"] for r in rows}
    by_bytes = defaultdict(set)
    for item in corpus:
        if item["image"]:
            by_bytes[hashlib.sha256(item["image"]).hexdigest()].add(group[item["content_id"]])
    assert all(len(groups) == 1 for groups in by_bytes.values())
    assert result.table_versions["duplicates"] == DeltaTable(settings.table_root("duplicates")).version()


def test_groups_are_consistent(deduped):
    settings, _, rows = deduped
    created = {r["content_id"]: r["created_at"] for r in DeltaTable(settings.table_root("corpus")).to_pyarrow_table().to_pylist()}
    members = defaultdict(list)
    for r in rows:
        members[r["group_id"]].append(r)
    for group_id, mine in members.items():
        assert group_id == min(r["content_id"] for r in mine)
        assert {r["group_size"] for r in mine} == {len(mine)}
        canonical = [r["content_id"] for r in mine if r["is_canonical"]]
        oldest = min(mine, key=lambda r: (r["status"] != "ok", created[r["content_id"]] is None, created[r["content_id"]] or 0, r["content_id"]))
        assert canonical == [oldest["content_id"]]
        if len(mine) > 1:
            assert all(r["matched_id"] in {m["content_id"] for m in mine} for r in mine)


def test_flat_images_get_no_phash_edges_but_keep_their_exact_ones(spark):
    from conf.settings import DedupSettings

    rows = [  # three flat images of different colours (all pHash 0) and a byte copy of one of them
        ("black", "h-black", 0, True), ("white", "h-white", 0, True), ("red", "h-red", 0, True), ("red-copy", "h-red", 0, True),
        ("photo", "h-photo", 12345, False), ("photo-near", "h-near", 12345 ^ 0b111, False),
    ]
    items = spark.createDataFrame(rows, "content_id string, exact_hash string, phash long, flat boolean").selectExpr(
        "*", "cast(null as array<float>) as vector", "cast(null as array<bigint>) as simhash", "cast(null as array<bigint>) as keyframe_phashes")
    found = {(r.a, r.b): r.method for r in edges(items, DedupSettings()).collect()}
    assert found == {("red", "red-copy"): "exact", ("photo", "photo-near"): "phash"}


def test_each_keyframe_of_a_video_is_a_candidate_and_the_closest_pair_counts(spark):
    from conf.settings import DedupSettings
    from signals.labels.perceptual_hash import hamming, to_int64

    rng = np.random.default_rng(3)
    photo, far, other = (to_int64(int(h)) for h in rng.integers(0, 2**63, 3, dtype=np.uint64) * 2 + 1)
    keyframes = {"video": [far, photo ^ 0b1011], "other-video": [other]}  # the video's second keyframe is the photo's picture
    rows = [("photo", "h-photo", photo, False, None), *[(cid, f"h-{cid}", hashes[0], False, hashes) for cid, hashes in keyframes.items()]]
    items = spark.createDataFrame(rows, "content_id string, exact_hash string, phash long, flat boolean, keyframe_phashes array<bigint>").selectExpr(
        "*", "cast(null as array<float>) as vector", "cast(null as array<bigint>) as simhash")
    found = {(r.a, r.b): (r.method, r.hamming) for r in edges(items, DedupSettings()).collect()}
    assert found == {("photo", "video"): ("phash", min(hamming(photo, h) for h in keyframes["video"]))}
    assert found[("photo", "video")][1] == 3 and min(hamming(other, h) for h in [photo, *keyframes["video"]]) > DedupSettings().confirm_hamming


def test_a_slideshow_joins_the_group_of_one_photo_it_shows_not_all_of_them(spark):
    """A video whose keyframes are three unrelated photos is within reach of each; through it they
    were one group. It keeps its best edge to a picture (the photo 1 bit away), and its re-encoding."""
    from conf.settings import DedupSettings
    from jobs.dedup import one_picture_per_video
    from signals.labels.perceptual_hash import to_int64

    photos = [to_int64(int(h)) for h in np.random.default_rng(8).integers(0, 2**63, 3, dtype=np.uint64) * 2 + 1]
    shows = [photos[0] ^ 0b11, photos[1] ^ 0b1, photos[2] ^ 0b111]
    rows = [*[(f"photo-{i}", f"h-photo-{i}", h, False, None) for i, h in enumerate(photos)],
            ("slideshow", "h-slideshow", shows[0], False, shows), ("slideshow-copy", "h-copy", shows[0], False, shows)]
    items = spark.createDataFrame(rows, "content_id string, exact_hash string, phash long, flat boolean, keyframe_phashes array<bigint>").selectExpr(
        "*", "cast(null as array<float>) as vector", "cast(null as array<bigint>) as simhash")
    links = edges(items, DedupSettings())
    assert {(r.a, r.b) for r in links.collect()} == {*((f"photo-{i}", "slideshow") for i in range(3)), ("slideshow", "slideshow-copy")}
    kept = one_picture_per_video(links, items)
    assert {(r.a, r.b) for r in kept.collect()} == {("photo-1", "slideshow"), ("slideshow", "slideshow-copy")}
    groups = dict(connected_components(items.select("content_id"), kept).collect())
    assert groups == {"photo-0": "photo-0", "photo-1": "photo-1", "photo-2": "photo-2", "slideshow": "photo-1", "slideshow-copy": "photo-1"}


def test_two_encodings_of_a_video_stay_together_when_a_photo_shares_their_keyframe(spark):
    """Both encodings of a slideshow show photo-1 at its very pHash, photo-1's id being smaller: as
    that hash's smallest id it stood for them, so they were paired with it and never with each
    other, each then kept its own best picture (photo-0, photo-1), and the copies fell in two
    groups. The videos of a hash are paired with its smallest video, and their edge counts."""
    from conf.settings import DedupSettings
    from jobs.dedup import one_picture_per_video
    from signals.labels.perceptual_hash import to_int64

    p0, p1 = (to_int64(int(h)) for h in np.random.default_rng(9).integers(0, 2**63, 2, dtype=np.uint64) * 2 + 1)
    rows = [("photo-0", "h-photo-0", p0, False, None), ("photo-1", "h-photo-1", p1, False, None),
            ("slideshow", "h-slideshow", p0, False, [p0, p1]), ("slideshow-copy", "h-copy", p0 ^ 0b1, False, [p0 ^ 0b1, p1])]
    items = spark.createDataFrame(rows, "content_id string, exact_hash string, phash long, flat boolean, keyframe_phashes array<bigint>").selectExpr(
        "*", "cast(null as array<float>) as vector", "cast(null as array<bigint>) as simhash")
    kept = one_picture_per_video(edges(items, DedupSettings()), items)
    assert ("slideshow", "slideshow-copy") in {(r.a, r.b) for r in kept.collect()}
    groups = dict(connected_components(items.select("content_id"), kept).collect())
    assert groups["slideshow"] == groups["slideshow-copy"] == "photo-0"


def test_spark_candidates_are_the_pairs_within_reach_as_brute_force_finds(spark):
    from pyspark.sql import functions as F

    from conf.settings import DedupSettings
    from jobs.dedup import _band_keys, candidate_pairs
    from signals.labels.perceptual_hash import band_keys, hamming, to_int64, words_apart

    rules, rng = DedupSettings(simhash_bits=128), np.random.default_rng(5)  # SimHashes of two words: reach 18 and 29 bits
    def near(h, bits):
        return to_int64(h ^ sum(1 << int(i) for i in rng.choice(64, size=bits, replace=False)))
    rows = []
    for g, (p, *s) in enumerate(zip(*(rng.integers(0, 2**63, (3, 20), dtype=np.uint64) * 2 + 1))):
        p, s = to_int64(int(p)), [to_int64(int(w)) for w in s]
        for k in range(3):  # an original and two copies, some beyond reach: pHash 0-24 bits, SimHash 0-20 + 0-14 bits away
            rows.append((f"{g:02d}-{k}", f"h-{g}-{k}", near(p, int(rng.integers(0, 25))) if k else p, False,
                         [near(s[0], int(rng.integers(0, 21))), near(s[1], int(rng.integers(0, 15)))] if k else s))
    items = spark.createDataFrame(rows, "content_id string, exact_hash string, phash long, flat boolean, simhash array<bigint>").selectExpr(
        "*", "cast(null as array<float>) as vector", "cast(null as array<bigint>) as keyframe_phashes")
    def simhashes_meet(a, b):  # beyond what the bands promise, a SimHash pair is a candidate only if its first words share a key
        return bool(set(band_keys(a[4][0], rules.simhash_bands)) & set(band_keys(b[4][0], rules.simhash_bands)))
    brute = {(a[0], b[0]) for a, b in itertools.combinations(rows, 2)
             if hamming(a[2], b[2]) <= rules.max_hamming or simhashes_meet(a, b) and (words_apart(a[4], b[4]) <= rules.simhash_hamming
             or (words_apart(a[4], b[4]) <= rules.simhash_confirm_hamming and hamming(a[2], b[2]) <= rules.confirm_hamming))}
    in_reach_of_first_words_only = {(a[0], b[0]) for a, b in itertools.combinations(rows, 2) if simhashes_meet(a, b)
                                    and hamming(a[4][0], b[4][0]) <= rules.simhash_hamming < words_apart(a[4], b[4])
                                    and hamming(a[2], b[2]) > rules.confirm_hamming}
    candidates = {(r.a, r.b) for r in candidate_pairs(items, rules).collect()}
    assert candidates == brute and len(brute) > 20
    assert in_reach_of_first_words_only and not in_reach_of_first_words_only & candidates  # the second word rules some pairs out
    keys = items.select("phash", _band_keys(F.col("phash"), rules.bands).alias("keys")).collect()
    assert all(r.keys == band_keys(r.phash, rules.bands) for r in keys)  # the Spark column is the Python scheme


def test_copies_of_one_picture_are_grouped_through_one_copy_per_hash_in_any_bucket(spark):
    """Seven copies of one picture at two pHashes 2 bits apart share buckets of 5 and 7. Each copy
    is paired with the first copy of its pHash, and those two with each other: connected, in 6
    pairs of the 21, with buckets over `max_bucket` items (here 4: before, those were skipped) and
    under it (before, every pair: 2,000 copies of one hash cost 2 million pairs, 2,001 cost 2,000)."""
    from conf.settings import DedupSettings
    from jobs.dedup import candidate_pairs
    from signals.labels.perceptual_hash import to_int64

    picture = to_int64(int(np.random.default_rng(11).integers(0, 2**63, dtype=np.uint64)) * 2 + 1)
    copies = [(f"copy-{i}", picture if i < 5 else picture ^ 0b101) for i in range(7)]
    items = spark.createDataFrame([(c, f"h-{c}", h, False) for c, h in copies], "content_id string, exact_hash string, phash long, flat boolean").selectExpr(
        "*", "cast(null as array<float>) as vector", "cast(null as array<bigint>) as simhash", "cast(null as array<bigint>) as keyframe_phashes")
    expected = {*(("copy-0", f"copy-{i}") for i in range(1, 6)), ("copy-5", "copy-6")}
    for rules in (DedupSettings(max_bucket=4), DedupSettings()):
        assert {(r.a, r.b) for r in candidate_pairs(items, rules).collect()} == expected


def test_embedding_copies_are_candidates_whatever_the_phash_rules_bands(spark):
    """Forty pairs of vectors at cosine 0.99 (the embedding rule's: `min_cosine` 0.985) with
    unrelated pHashes: every pair is compared. With `max_hamming: 2` the SimHash was bucketed on the
    pHash rule's single band of 64 bits, and most of these pairs never met."""
    from conf.settings import DedupSettings
    from jobs.dedup import candidate_pairs
    from signals.labels.perceptual_hash import embedding_simhash, to_int64

    rules, rng = DedupSettings(max_hamming=2), np.random.default_rng(17)
    a = rng.standard_normal((40, 64))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    other = rng.standard_normal((40, 64))
    other -= (other * a).sum(1, keepdims=True) * a
    other /= np.linalg.norm(other, axis=1, keepdims=True)
    b = 0.99 * a + np.sqrt(1 - 0.99**2) * other
    phashes = [to_int64(int(h)) for h in rng.integers(0, 2**63, 80, dtype=np.uint64)]
    rows = [(f"{side}-{i:02d}", f"h-{side}-{i}", phashes[2 * i + (side == "b")], False, [float(x) for x in v], [int(w) for w in h])
            for side, vectors in (("a", a), ("b", b)) for i, (v, h) in enumerate(zip(vectors, embedding_simhash(vectors.astype(np.float32), rules.simhash_seed, rules.simhash_bits)))]
    items = spark.createDataFrame(rows, "content_id string, exact_hash string, phash long, flat boolean, vector array<float>, simhash array<bigint>").selectExpr(
        "*", "cast(null as array<bigint>) as keyframe_phashes")
    candidates = {(r.a, r.b) for r in candidate_pairs(items, rules).collect()}
    assert {(f"a-{i:02d}", f"b-{i:02d}") for i in range(40)} <= candidates


def test_an_items_embedding_is_that_of_its_input_as_it_is_now_and_one_row_per_item(spark, tmp_path):
    """An item whose image changed since its embedding was computed (no refresh yet) was matched by
    the old picture's vector, and an item ingested again on a later day (its embedding rows in both
    days' partitions until a refresh moves them) had two fingerprint rows, which failed the run
    (N items written for M). Only rows of the item's current input count, one of them."""
    import datetime as dt

    from lake.corpus import CANONICAL
    from signals.contracts import EMBEDDINGS
    from signals.hashing import image_input_hash

    settings = settings_for(tmp_path / "lakehouse", "signals.image_embedding.model.version=1")
    images = {"kept": jpeg_bytes(1), "changed": jpeg_bytes(2), "again": jpeg_bytes(3)}
    day = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    corpus = spark.createDataFrame([(c, image, None, "t", None, day, day, "2026-01-02", None) for c, image in images.items()],
                                   ", ".join(f"{name} {kind}" for name, kind in CANONICAL))
    kept, again = (v / np.linalg.norm(v) for v in np.random.default_rng(0).standard_normal((2, 16)).astype(np.float32))
    stored = [("kept", kept, images["kept"], "2026-01-02"), ("changed", kept, jpeg_bytes(4), "2026-01-01"),  # its picture was kept's copy
              ("again", again, images["again"], "2026-01-01"), ("again", again, images["again"], "2026-01-02")]
    rows = [{"content_id": c, "signal": settings.dedup.embedding_signal, "model_name": "m", "model_version": "1", "input_hash": image_input_hash(image),
             "vector": v.tolist(), "dim": len(v), "status": "ok", "error": None, "run_id": "r", "computed_at": day, "ds": ds} for c, v, image, ds in stored]
    write_deltalake(settings.table_root("embeddings"), pa.Table.from_pylist(rows, EMBEDDINGS.schema), partition_by=list(EMBEDDINGS.partition_by))
    found = sorted((r.content_id, r.vector) for r in fingerprints(spark, settings, corpus).collect())
    assert found == [("again", again.tolist()), ("changed", None), ("kept", kept.tolist())]


def test_copies_of_one_phash_are_paired_when_every_bucket_of_it_is_crowded(spark):
    """A viral picture: two re-saves at one pHash (other bytes) among its 64 re-encodes one bit away
    each. Every bucket of that pHash holds 50 to 65 distinct hashes, over `max_bucket` (here 4):
    all were skipped, and the two copies (and the re-encodes) were never paired with them, though
    equal hashes need no bucket to be within reach. Each item is now paired with the first of its
    hash whatever the crowd; a bucket over the cap still pairs none of its distinct hashes."""
    from conf.settings import DedupSettings
    from jobs.dedup import candidate_pairs
    from signals.labels.perceptual_hash import band_keys, to_int64

    picture = to_int64(int(np.random.default_rng(12).integers(0, 2**63, dtype=np.uint64)) * 2 + 1)
    hashes = {"copy-0": picture, "copy-1": picture, **{f"re-{bit:02d}": to_int64(picture ^ (1 << bit)) for bit in range(64)}}
    rules = DedupSettings(max_bucket=4)
    buckets = defaultdict(set)
    for h in set(hashes.values()):
        for key in band_keys(h, rules.bands):
            buckets[key].add(h)
    assert min(len(buckets[key]) for key in band_keys(picture, rules.bands)) > rules.max_bucket  # every bucket of the picture is skipped
    items = spark.createDataFrame([(c, f"h-{c}", h, False) for c, h in hashes.items()], "content_id string, exact_hash string, phash long, flat boolean").selectExpr(
        "*", "cast(null as array<float>) as vector", "cast(null as array<bigint>) as simhash", "cast(null as array<bigint>) as keyframe_phashes")
    candidates = {(r.a, r.b) for r in candidate_pairs(items, rules).collect()}
    assert ("copy-0", "copy-1") in candidates
    assert not any("copy-0" in pair and pair != ("copy-0", "copy-1") for pair in candidates)  # its crowded buckets still pair no distinct hashes


def test_a_videos_keyframes_are_those_of_its_video_as_it_is_now(spark, tmp_path):
    """A video replaced since the video pass (no refresh yet) kept the old video's keyframes'
    pHashes, and was grouped with the photo the old video showed. Only keyframe rows of the item's
    current bytes count; without them it is an error row saying so, as an unseen video is."""
    import datetime as dt

    from lake.corpus import CANONICAL
    from signals.contracts import EMBEDDINGS, KEYFRAMES
    from signals.hashing import image_input_hash

    settings = settings_for(tmp_path / "lakehouse", "signals.image_embedding.model.version=1")
    signal, day = settings.dedup.embedding_signal, dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    videos = {"replaced": (b"the new video", b"the old video"), "kept": (b"a kept video", b"a kept video")}  # (now, when its keyframes were made)
    corpus = spark.createDataFrame([(c, None, None, "t", None, day, day, "2026-01-02", now) for c, (now, _) in videos.items()],
                                   ", ".join(f"{name} {kind}" for name, kind in CANONICAL))
    phashes = {"replaced": 0x1234_5678_9ABC_DEF1, "kept": 0x0FED_CBA9_8765_4321}
    keyframes = [{"content_id": c, "keyframe_index": 0, "shot_index": 0, "start_s": 0.0, "end_s": 1.0, "time_s": 0.5, "phash": phashes[c],
                  "signal": signal, "model_name": "m", "model_version": "1", "input_hash": image_input_hash(then), "status": "ok",
                  "run_id": "r", "computed_at": day, "ds": "2026-01-02"} for c, (_, then) in videos.items()]
    write_deltalake(settings.table_root("keyframes"), pa.Table.from_pylist(keyframes, KEYFRAMES.schema), partition_by=list(KEYFRAMES.partition_by))
    write_deltalake(settings.table_root("embeddings"), EMBEDDINGS.schema.empty_table(), partition_by=list(EMBEDDINGS.partition_by))
    found = {r.content_id: (r.keyframe_phashes, r.error) for r in fingerprints(spark, settings, corpus).collect()}
    assert found["kept"] == ([phashes["kept"]], None)
    assert found["replaced"][0] is None and found["replaced"][1].startswith(f"no keyframe rows of {signal} 1 for this video")
