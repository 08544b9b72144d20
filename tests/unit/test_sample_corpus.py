"""Tests for sample_corpus.generate: the sample corpus is only useful as a benchmark if its
ground truth is right and it is reproducible, so these check both."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import itertools
import json
from collections import Counter, defaultdict

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from sample_corpus.generate import CORPUS_SCHEMA, TRUTH_SCHEMA, generate_corpus
from sample_corpus.kinds import KINDS
from sample_corpus.texts import TEXT_WEIGHTS

BAD_KINDS = {kind.name for kind in KINDS if kind.group == "bad"}
COPY_KINDS = {
    "exact_duplicate", "near_duplicate", "recompress", "rescale", "grayscale", "cmyk", "rgba", "palette", "gray16",
}
EDIT_KINDS = {"crop", "flip", "blur", "low_res", "text_overlay", "watermark", "truncated", "huge_header"}
NO_SOURCE_KINDS = {"original", "corrupt", "empty", "not_image", "null"}
EXPECTED_MODES = {"grayscale": "L", "cmyk": "CMYK", "rgba": "RGBA", "palette": "P", "gray16": "I;16"}


@pytest.fixture(scope="module")
def small() -> tuple[pa.Table, pa.Table]:
    return generate_corpus(n_items=60, seed=11)


@pytest.fixture(scope="module")
def medium() -> tuple[pa.Table, pa.Table]:
    return generate_corpus(n_items=120, seed=3)


@pytest.fixture(scope="module")
def full() -> tuple[pa.Table, pa.Table]:
    """The demo corpus (write_sample_corpus's default size and seed)."""
    return generate_corpus(n_items=480, seed=7)


def _rows(corpus: pa.Table, truth: pa.Table) -> list[tuple[dict, dict]]:
    return list(zip(corpus.to_pylist(), truth.to_pylist()))


def _mean_hash(data: bytes) -> np.ndarray:
    """64-bit average hash: 8x8 box-averaged luminance above its mean."""
    with Image.open(io.BytesIO(data)) as img:
        cells = np.asarray(img.convert("L").resize((8, 8), Image.Resampling.BOX), dtype=np.float64)
    return (cells > cells.mean()).ravel()


def _hamming(a: bytes, b: bytes) -> int:
    return int(np.count_nonzero(_mean_hash(a) != _mean_hash(b)))


def _decodes(data: bytes | None) -> bool:
    """Whether PIL can fully decode the bytes (header and pixels)."""
    if data is None:
        return False
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
    except (OSError, Image.DecompressionBombError, SyntaxError, ValueError):
        return False
    return True


def test_same_seed_gives_identical_tables() -> None:
    first = generate_corpus(n_items=60, seed=5)
    second = generate_corpus(n_items=60, seed=5)
    assert first[0].equals(second[0])
    assert first[1].equals(second[1])


def test_different_seed_gives_different_tables(small: tuple[pa.Table, pa.Table]) -> None:
    other_corpus, other_truth = generate_corpus(n_items=60, seed=12)
    assert not small[0].equals(other_corpus)
    assert small[1]["variant"].to_pylist() != other_truth["variant"].to_pylist()


@pytest.mark.parametrize("n_items", [0, 1, 7, 60, 97])
def test_row_counts_and_schemas(n_items: int) -> None:
    corpus, truth = generate_corpus(n_items=n_items, seed=1)
    assert corpus.schema.equals(CORPUS_SCHEMA)
    assert truth.schema.equals(TRUTH_SCHEMA)
    assert corpus.num_rows == truth.num_rows == n_items
    assert corpus["content_id"].to_pylist() == truth["content_id"].to_pylist()
    assert corpus["content_id"].to_pylist() == [f"pin-{i:06d}" for i in range(n_items)]


def test_every_kind_present_at_60(small: tuple[pa.Table, pa.Table]) -> None:
    _, truth = small
    assert set(truth["variant"].to_pylist()) == {kind.name for kind in KINDS}
    assert set(truth["bad_image_kind"].drop_null().to_pylist()) == BAD_KINDS
    assert set(truth["text_kind"].to_pylist()) == set(TEXT_WEIGHTS)


def test_flags_match_variant(medium: tuple[pa.Table, pa.Table]) -> None:
    flag_of = {kind.name: kind.flag for kind in KINDS}
    flags = ["is_blurred", "is_low_res", "has_text_overlay", "is_exact_duplicate", "is_near_duplicate", "is_bad_image"]
    for row in medium[1].to_pylist():
        assert [row[f] for f in flags] == [f == flag_of[row["variant"]] for f in flags], row
        assert (row["bad_image_kind"] is not None) == row["is_bad_image"]
        assert (row["duplicate_of"] is not None) == (row["is_exact_duplicate"] or row["is_near_duplicate"])
        json.loads(row["params"])


def test_duplicates_point_to_earlier_items_of_same_base(medium: tuple[pa.Table, pa.Table]) -> None:
    corpus, truth = medium
    index = {cid: i for i, cid in enumerate(truth["content_id"].to_pylist())}
    rows = truth.to_pylist()
    duplicates = [r for r in rows if r["duplicate_of"] is not None]
    assert duplicates
    for row in duplicates:
        source = index[row["duplicate_of"]]
        assert source < index[row["content_id"]]
        assert rows[source]["base_id"] == row["base_id"] is not None
        assert not rows[source]["is_bad_image"]


def test_exact_duplicates_are_byte_identical(medium: tuple[pa.Table, pa.Table]) -> None:
    corpus, truth = medium
    images = dict(zip(corpus["content_id"].to_pylist(), corpus["image"].to_pylist()))
    exact = [r for r in truth.to_pylist() if r["is_exact_duplicate"]]
    assert exact
    for row in exact:
        assert images[row["content_id"]] == images[row["duplicate_of"]]


def test_near_duplicates_differ_but_stay_close(medium: tuple[pa.Table, pa.Table]) -> None:
    corpus, truth = medium
    images = dict(zip(corpus["content_id"].to_pylist(), corpus["image"].to_pylist()))
    for row in (r for r in truth.to_pylist() if r["is_near_duplicate"]):
        near = Image.open(io.BytesIO(images[row["content_id"]]))
        source = Image.open(io.BytesIO(images[row["duplicate_of"]]))
        assert images[row["content_id"]] != images[row["duplicate_of"]]
        assert 0.94 <= near.width / source.width <= 1.0 and 0.94 <= near.height / source.height <= 1.0


def test_good_images_decode_in_expected_mode(medium: tuple[pa.Table, pa.Table]) -> None:
    for item, row in _rows(*medium):
        if row["is_bad_image"]:
            continue
        assert _decodes(item["image"]), row
        with Image.open(io.BytesIO(item["image"])) as img:
            assert img.mode == EXPECTED_MODES.get(row["variant"], img.mode), row
            if row["is_low_res"]:
                assert max(img.size) <= 64
            elif row["variant"] in {"original", "crop", "rescale", "recompress", "flip", "blur", "text_overlay", "watermark"}:
                assert max(img.size) >= 256


def test_bad_images_do_not_decode(small: tuple[pa.Table, pa.Table]) -> None:
    bad = [(item, row) for item, row in _rows(*small) if row["is_bad_image"]]
    assert {row["bad_image_kind"] for _, row in bad} == BAD_KINDS
    for item, row in bad:
        assert not _decodes(item["image"]), row
        expected = {"empty": b"", "null": None}
        if row["bad_image_kind"] in expected:
            assert item["image"] == expected[row["bad_image_kind"]]
        if row["bad_image_kind"] == "not_image":
            item["image"].decode("utf-8")


def test_huge_header_reports_claimed_size(small: tuple[pa.Table, pa.Table], monkeypatch: pytest.MonkeyPatch) -> None:
    huge = [(item, row) for item, row in _rows(*small) if row["bad_image_kind"] == "huge_header"]
    assert huge
    for item, row in huge:
        claimed = tuple(json.loads(row["params"])["claimed_size"])
        assert claimed[0] * claimed[1] >= 10**9
        with pytest.raises(Image.DecompressionBombError):  # PIL's default guard trips on open
            Image.open(io.BytesIO(item["image"]))
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
        with Image.open(io.BytesIO(item["image"])) as img:  # header alone; never load() this
            assert img.format == "PNG"
            assert img.size == claimed
        monkeypatch.undo()


def test_timestamps_and_partition(medium: tuple[pa.Table, pa.Table]) -> None:
    corpus, _ = medium
    start = dt.datetime(2026, 11, 14, tzinfo=dt.UTC)
    end = dt.datetime(2026, 11, 21, tzinfo=dt.UTC)
    created = corpus["created_at"].to_pylist()
    assert created == sorted(created)
    for row in corpus.to_pylist():
        assert start <= row["created_at"] <= row["updated_at"] < end
        assert row["ds"] == row["created_at"].date().isoformat()
    assert len(set(corpus["ds"].to_pylist())) == 7


def test_window_follows_end_date_and_days() -> None:
    corpus, _ = generate_corpus(n_items=40, seed=2, end_date=dt.date(2025, 1, 2), days=3)
    assert set(corpus["ds"].to_pylist()) <= {"2024-12-31", "2025-01-01", "2025-01-02"}


def test_text_edge_cases(medium: tuple[pa.Table, pa.Table]) -> None:
    seen = set()
    for item, row in _rows(*medium):
        title, description, kind = item["title"], item["description"], row["text_kind"]
        seen.add(kind)
        if kind == "empty":
            assert title == description == ""
        elif kind == "null":
            assert title is None and description is None
        elif kind == "whitespace":
            assert title and description and not title.strip() and not description.strip()
        elif kind == "long":
            assert 20_000 <= len(description) <= 100_000
        elif kind == "unicode":
            assert any(ord(ch) > 0x7F for ch in title + description)
        else:
            assert title and title.strip() and description and description.strip()
    assert seen == set(TEXT_WEIGHTS)


def test_titles_come_from_real_photos(medium: tuple[pa.Table, pa.Table]) -> None:
    titles = {
        row["base_id"]: item["title"]
        for item, row in _rows(*medium)
        if row["text_kind"] == "normal" and row["base_id"] is not None and not row["is_spam_text"]
    }
    assert titles["astronaut"] == "Astronaut Eileen Collins"
    assert titles["china"].startswith("China")
    assert len(set(titles)) >= 10


# --------------------------------------------------------------------------------------
# Duplicate truth: source_id, dup_group, dup_relation
# --------------------------------------------------------------------------------------


def test_kind_sets_cover_every_kind() -> None:
    assert COPY_KINDS | EDIT_KINDS | NO_SOURCE_KINDS == {kind.name for kind in KINDS}
    assert {kind.name: kind.relation for kind in KINDS} == {
        **{name: "copy" for name in COPY_KINDS}, **{name: "edit" for name in EDIT_KINDS},
        **{name: "none" for name in NO_SOURCE_KINDS},
    }


@pytest.mark.parametrize("corpus_name", ["small", "medium", "full"])
def test_duplicate_columns_follow_the_variant(corpus_name: str, request: pytest.FixtureRequest) -> None:
    _, truth = request.getfixturevalue(corpus_name)
    for row in truth.to_pylist():
        variant, own = row["variant"], row["content_id"]
        if variant in COPY_KINDS:
            assert row["dup_relation"] == "copy" and row["source_id"] is not None, row
            assert row["dup_group"] == row["source_id"], row
        elif variant in EDIT_KINDS:
            assert row["dup_relation"] == "edit" and row["source_id"] is not None, row
            assert row["dup_group"] == own, row
        else:
            assert row["dup_relation"] == "none" and row["source_id"] is None, row
            assert row["dup_group"] == own, row
        if variant in {"exact_duplicate", "near_duplicate"}:
            assert row["duplicate_of"] == row["source_id"], row
        else:
            assert row["duplicate_of"] is None, row
        assert (row["base_id"] is None) == (variant in NO_SOURCE_KINDS - {"original"}), row


@pytest.mark.parametrize("corpus_name", ["small", "medium", "full"])
def test_sources_and_groups_are_earlier_originals(corpus_name: str, request: pytest.FixtureRequest) -> None:
    _, truth = request.getfixturevalue(corpus_name)
    rows = truth.to_pylist()
    index = {row["content_id"]: i for i, row in enumerate(rows)}
    for i, row in enumerate(rows):
        if row["source_id"] is not None:
            source = rows[index[row["source_id"]]]
            assert index[row["source_id"]] < i, row
            assert source["variant"] == "original" and source["base_id"] == row["base_id"], row
        if row["dup_relation"] == "copy":
            group = rows[index[row["dup_group"]]]
            assert index[row["dup_group"]] < i and group["variant"] == "original", row
    assert rows[0]["variant"] == "original"


def test_no_identical_bytes_across_dup_groups(full: tuple[pa.Table, pa.Table]) -> None:
    """Byte-identical images are the same picture, so they must share a dup_group.  Only
    bad images without a picture (zero bytes, the same error text) may repeat."""
    groups_by_digest: dict[bytes, set[str]] = defaultdict(set)
    for item, row in _rows(*full):
        if item["image"] is None or (row["is_bad_image"] and row["source_id"] is None):
            continue
        groups_by_digest[hashlib.sha256(item["image"]).digest()].add(row["dup_group"])
    shared = {digest: groups for digest, groups in groups_by_digest.items() if len(groups) > 1}
    assert not shared
    assert len(groups_by_digest) > 0.7 * full[0].num_rows


def test_exact_duplicates_are_their_sources_bytes(full: tuple[pa.Table, pa.Table]) -> None:
    corpus, truth = full
    images = dict(zip(corpus["content_id"].to_pylist(), corpus["image"].to_pylist()))
    exact = [row for row in truth.to_pylist() if row["variant"] == "exact_duplicate"]
    assert exact
    for row in exact:
        assert images[row["content_id"]] == images[row["source_id"]] == images[row["dup_group"]]


def test_originals_of_one_photo_are_different_pictures(full: tuple[pa.Table, pa.Table]) -> None:
    originals: dict[str, list[bytes]] = defaultdict(list)
    for item, row in _rows(*full):
        if row["variant"] == "original":
            originals[row["base_id"]].append(item["image"])
    assert len(originals) >= 10 and all(len(images) >= 2 for images in originals.values())
    distances = []
    for base_id, images in originals.items():
        assert len(set(images)) == len(images), base_id
        for a, b in itertools.combinations(images, 2):
            distance = _hamming(a, b)
            assert distance >= 12, base_id
            distances.append(distance)
    assert sum(distances) / len(distances) >= 20


def test_copies_keep_their_sources_picture(full: tuple[pa.Table, pa.Table]) -> None:
    corpus, truth = full
    images = dict(zip(corpus["content_id"].to_pylist(), corpus["image"].to_pylist()))
    checked = Counter()
    for row in truth.to_pylist():
        if row["variant"] in {"rescale", "recompress", "near_duplicate", "exact_duplicate"}:
            assert _hamming(images[row["content_id"]], images[row["source_id"]]) <= 8, row
            checked[row["variant"]] += 1
    assert len(checked) == 4


def test_originals_are_new_frames_at_pin_size(full: tuple[pa.Table, pa.Table]) -> None:
    widths: dict[str, set[float]] = defaultdict(set)
    for item, row in _rows(*full):
        if row["variant"] != "original":
            continue
        params = json.loads(row["params"])
        left, top, right, bottom = params["box"]
        photo_width, photo_height = params["photo_size"]
        assert 0 <= left < right <= photo_width and 0 <= top < bottom <= photo_height
        assert (right - left) * (bottom - top) < photo_width * photo_height or row["base_id"] in {"brick", "grass", "gravel"}
        widths[row["base_id"]].add((right - left) / photo_width)
        with Image.open(io.BytesIO(item["image"])) as img:
            assert img.format == "JPEG" and list(img.size) == params["size"]
            assert 400 <= max(img.size) <= 512 and min(img.size) >= 256
    for texture in ("brick", "grass", "gravel"):  # their scale varies, not only the position
        assert max(widths[texture]) / min(widths[texture]) >= 1.3


@pytest.mark.parametrize("seed", [1, 5, 11, 12])
def test_some_original_has_two_copies(seed: int) -> None:
    _, truth = generate_corpus(n_items=60, seed=seed)
    groups = Counter(truth["dup_group"].to_pylist())
    originals = [row["content_id"] for row in truth.to_pylist() if row["variant"] == "original"]
    assert max(groups[cid] for cid in originals) >= 3  # the original and two copies


def test_spam_texts_change_nothing_else(medium: tuple[pa.Table, pa.Table]) -> None:
    """Spam rewrites some normal texts and nothing else: the spam items' texts carry spam, and every
    other column equals a corpus generated with spam switched off (SPAM_SHARE 0)."""
    import sample_corpus.generate as generate

    corpus, truth = medium
    spam = truth["is_spam_text"].to_pylist()
    assert 0 < sum(spam) < len(spam)
    assert all(kind == "normal" for kind, s in zip(truth["text_kind"].to_pylist(), spam) if s)
    original = generate.SPAM_SHARE
    try:
        generate.SPAM_SHARE = 0.0
        plain_corpus, plain_truth = generate_corpus(n_items=120, seed=3)
    finally:
        generate.SPAM_SHARE = original
    assert plain_truth.drop_columns(["is_spam_text"]).equals(truth.drop_columns(["is_spam_text"]))
    assert plain_corpus.drop_columns(["title", "description"]).equals(corpus.drop_columns(["title", "description"]))
    for plain, item, s in zip(plain_corpus.to_pylist(), corpus.to_pylist(), spam):
        assert (plain["description"] != item["description"]) == s
