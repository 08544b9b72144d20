"""Tests for jobs.sample_corpus: the sample corpus is only useful as a benchmark if its
ground truth is right and it is reproducible, so these check both."""

from __future__ import annotations

import datetime as dt
import io
import json

import pyarrow as pa
import pytest
from PIL import Image

from jobs.sample_corpus import CORPUS_SCHEMA, KINDS, TEXT_WEIGHTS, TRUTH_SCHEMA, generate_corpus

BAD_KINDS = {kind.name for kind in KINDS if kind.group == "bad"}
EXPECTED_MODES = {"grayscale": "L", "cmyk": "CMYK", "rgba": "RGBA", "palette": "P", "gray16": "I;16"}


@pytest.fixture(scope="module")
def small() -> tuple[pa.Table, pa.Table]:
    return generate_corpus(n_items=60, seed=11)


@pytest.fixture(scope="module")
def medium() -> tuple[pa.Table, pa.Table]:
    return generate_corpus(n_items=120, seed=3)


def _rows(corpus: pa.Table, truth: pa.Table) -> list[tuple[dict, dict]]:
    return list(zip(corpus.to_pylist(), truth.to_pylist()))


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
            elif row["variant"] in {"original", "crop", "rescale", "recompress", "flip", "blur", "text_overlay"}:
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
    start = dt.datetime(2026, 11, 14, tzinfo=dt.timezone.utc)
    end = dt.datetime(2026, 11, 21, tzinfo=dt.timezone.utc)
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
        if row["text_kind"] == "normal" and row["base_id"] is not None
    }
    assert titles["astronaut"] == "Astronaut Eileen Collins"
    assert titles["china"].startswith("China")
    assert len(set(titles)) >= 10
