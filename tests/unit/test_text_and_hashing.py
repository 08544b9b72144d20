"""Tests for signals.text.compose_text and signals.hashing: the text a text signal reads, and the
input hashes a refresh compares with the corpus."""

from __future__ import annotations

import hashlib
import itertools
import unicodedata
from datetime import UTC, datetime, timedelta

import pytest

from signals.decode import InputError
from signals.hashing import image_input_hash, text_input_hash
from signals.text import FIELD_SEPARATOR, compose_text

# --------------------------------------------------------------------------------------
# compose_text
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "description", "expected"),
    [
        pytest.param("Red shoes", "Leather, size 9", "Red shoes\nLeather, size 9", id="both"),
        pytest.param("Red shoes", None, "Red shoes", id="no-description"),
        pytest.param(None, "Leather, size 9", "Leather, size 9", id="no-title"),
        pytest.param("", "Leather", "Leather", id="empty-title"),
        pytest.param("Red shoes", "   ", "Red shoes", id="blank-description"),
        pytest.param("  Red shoes \n", "\tLeather  ", "Red shoes\nLeather", id="stripped"),
        pytest.param("Line one\nline two", None, "Line one\nline two", id="inner-newlines-kept"),
        pytest.param("Cafe\u0301", "nai\u0308ve", "Caf\u00e9\nna\u00efve", id="nfc-combining-marks"),
        pytest.param("\u212b", None, "\u00c5", id="nfc-angstrom-sign"),
        pytest.param("Red shoes", "\u200b", "Red shoes", id="zero-width-description-left-out"),
        pytest.param("\U0001f469\u200d\U0001f692", None, "\U0001f469\u200d\U0001f692", id="inner-zero-width-joiner-kept"),
        pytest.param("\u2764\ufe0f", "\u3164Soup", "\u2764\ufe0f\n\u3164Soup", id="a-variation-selector-or-filler-beside-text-kept"),
    ],
)
def test_compose_text(title, description, expected: str) -> None:
    text = compose_text(title, description)
    assert text == expected
    assert unicodedata.is_normalized("NFC", text)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        pytest.param(("ab", "c"), ("a", "bc"), id="boundary-moves"),
        pytest.param(("abc", None), ("ab", "c"), id="one-field-or-two"),
    ],
)
def test_the_field_separator_keeps_title_and_description_apart(left, right) -> None:
    # the model reads where the title ends: fields that only concatenate alike stay different texts
    assert compose_text(*left) != compose_text(*right)
    assert compose_text("ab", "c").split(FIELD_SEPARATOR) == ["ab", "c"]


@pytest.mark.parametrize(
    ("title", "description"),
    [
        pytest.param(None, None, id="both-none"),
        pytest.param("", "", id="both-empty"),
        pytest.param("", None, id="empty-and-none"),
        pytest.param("   ", "\n\t ", id="whitespace"),
        pytest.param(None, "\u00a0\u3000", id="unicode-whitespace"),
        pytest.param("\u200b", "\ufeff\u2060 \u200d", id="zero-width-and-byte-order-marks"),
        pytest.param("\x00\x00", "\u00ad", id="nuls-and-a-soft-hyphen"),
        pytest.param("\u3164\u3164\u3164", "\u115f\uffa0", id="hangul-fillers"),
        pytest.param("\ufe0f\ufe0f", "\U000e0100 \u034f", id="lone-variation-selectors-and-a-grapheme-joiner"),
        pytest.param("\u2800\u2800", "\u180e\u180b", id="blank-braille-and-mongolian-selectors"),
    ],
)
def test_nothing_to_read_is_an_input_error(title, description) -> None:
    with pytest.raises(InputError, match="text is empty"):
        compose_text(title, description)


@pytest.mark.parametrize(("value", "kind"), [(5, "int"), (10**12, "int"), (True, "bool"), (["a"], "list"), (2.5, "float")])
def test_a_field_that_is_not_text_is_an_input_error_naming_its_type(value, kind: str) -> None:
    """bytes(value) was taken of any value: an int n became n NUL characters (an ok row of NULs,
    or for 10**12 a terabyte asked of the allocator), a list failed as a TypeError."""
    with pytest.raises(InputError, match=rf"^title is {kind}, not text$"):
        compose_text(value, "a description")


def test_a_missing_field_as_pandas_writes_it_is_missing() -> None:
    """NaN, pandas' missing value in a column of objects, is a missing field, not a failed row."""
    assert compose_text("a title", float("nan")) == "a title"


@pytest.mark.parametrize(
    ("title", "description", "max_chars", "expected"),
    [
        pytest.param("abcdef", None, 3, "abc", id="title-cut"),
        pytest.param("abc", "def", 5, "abc\nd", id="cut-inside-description"),
        pytest.param("abc", "def", 7, "abc\ndef", id="exactly-max"),
        pytest.param("abc", "def", 100, "abc\ndef", id="under-max"),
        pytest.param("Cafe\u0301!", None, 4, "Caf\u00e9", id="counts-nfc-characters"),
    ],
)
def test_truncation_to_max_chars(title, description, max_chars: int, expected: str) -> None:
    assert compose_text(title, description, max_chars=max_chars) == expected


def test_default_truncation_is_4096_characters() -> None:
    text = compose_text("t", "x" * 100_000)
    assert len(text) == 4096
    assert text.startswith("t\nxxx")


# --------------------------------------------------------------------------------------
# hashing
# --------------------------------------------------------------------------------------


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    "image",
    [b"\x89PNG\r\n\x1a\n", b"\x00", bytes(range(256)) * 40, bytearray(b"abc"), memoryview(b"abc")],
    ids=["png-magic", "one-byte", "10k", "bytearray", "memoryview"],
)
def test_image_input_hash_is_sha256_of_the_bytes(image) -> None:
    assert image_input_hash(image) == _sha(bytes(image))


def test_image_input_hash_of_no_image_is_none() -> None:
    assert image_input_hash(None) is None


def test_image_input_hash_of_empty_bytes_is_not_none() -> None:
    # an empty image is a (bad) input, unlike a missing one
    assert image_input_hash(b"") == _sha(b"")


def test_an_image_by_uri_is_hashed_by_its_uri_and_updated_at() -> None:
    when = datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    micros = str(int(when.timestamp()) * 10**6 + 123456)
    assert image_input_hash(None, "s3://b/k.jpg", when) == _sha(f"uri\x1fs3://b/k.jpg\x1f{micros}".encode())
    assert image_input_hash(None, "s3://b/k.jpg", when.replace(tzinfo=None)) == image_input_hash(None, "s3://b/k.jpg", when)  # naive: UTC
    assert image_input_hash(None, "s3://b/k.jpg", None) == _sha(b"uri\x1fs3://b/k.jpg\x1f")
    changed = [image_input_hash(None, "s3://b/other.jpg", when), image_input_hash(None, "s3://b/k.jpg", when + timedelta(microseconds=1))]
    assert image_input_hash(None, "s3://b/k.jpg", when) not in changed
    assert image_input_hash(b"bytes", "s3://b/k.jpg", when) == image_input_hash(b"bytes")  # inline bytes win
    assert image_input_hash(None, None, when) is None


def test_text_input_hash_is_sha256_of_title_unit_separator_description() -> None:
    # the documented byte layout, written out: utf-8 title, 0x1f, utf-8 description
    assert text_input_hash("Red shoes", "Leather") == _sha(b"Red shoes\x1fLeather")
    assert text_input_hash("Caf\u00e9", "\U0001f45f") == _sha("Caf\u00e9\x1f\U0001f45f".encode("utf-8"))


@pytest.mark.parametrize(
    ("left", "right"),
    [
        pytest.param((None, None), ("", ""), id="both"),
        pytest.param((None, "d"), ("", "d"), id="title"),
        pytest.param(("t", None), ("t", ""), id="description"),
    ],
)
def test_text_input_hash_reads_none_as_empty(left, right) -> None:
    assert text_input_hash(*left) == text_input_hash(*right)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        pytest.param(("ab", "c"), ("a", "bc"), id="boundary-moves"),
        pytest.param(("abc", None), (None, "abc"), id="field-swapped"),
        pytest.param(("abc", ""), ("ab", "c"), id="all-in-title"),
        pytest.param(("a\nb", None), ("a", "b"), id="newline-is-not-the-separator"),
        # a field's own unit separator: the bare join of each pair is the same text
        pytest.param(("a\x1fb", None), ("a", "b\x1f"), id="separator-moves-between-fields"),
        pytest.param(("a\x1f b", "c"), ("a", " b\x1fc"), id="separator-moves-and-the-model-reads-other-text"),
        pytest.param(("\x1f", ""), ("", "\x1f"), id="only-a-separator"),
        # and the escape: once a separator is escaped, an escape must not read as one
        pytest.param(("a\x1b", "b"), ("a", "\x1bb"), id="escape-moves-between-fields"),
        pytest.param(("a\x1b\x1f", "b"), ("a", "\x1b\x1fb"), id="escape-and-separator-move"),
        pytest.param(("a\x1b", "\x1fb"), ("a\x1b\x1fb", None), id="an-escape-before-the-real-separator"),
    ],
)
def test_text_input_hash_differs_when_the_inputs_differ(left, right) -> None:
    assert text_input_hash(*left) != text_input_hash(*right)


@pytest.mark.parametrize(
    ("title", "description", "data"),
    [
        pytest.param("t", "d", b"t\x1fd", id="both"),
        pytest.param(None, None, b"\x1f", id="none-is-empty-but-the-separator-stays"),
        pytest.param("a\x1fb", None, b"a\x1b\x1fb\x1f", id="separator-inside-a-field-escaped"),
        pytest.param("a\x1bb", "\x1b\x1f", b"a\x1b\x1bb\x1f\x1b\x1b\x1b\x1f", id="escape-inside-a-field-doubled"),
    ],
)
def test_text_input_hash_is_lowercase_hex_sha256_of_the_layout(title, description, data: bytes) -> None:
    # lowercase hex as hashlib writes it (and Spark's sha2 does): the two must compare equal as strings
    assert text_input_hash(title, description) == hashlib.sha256(data).hexdigest()


def test_text_input_hash_tells_apart_every_pair_of_short_fields_of_separators_and_escapes() -> None:
    """Every (title, description) of up to 3 characters from "a", the escape and the separator:
    as many hashes as pairs (the bare join gave the 1,600 pairs 1,395 hashes)."""
    fields = ["".join(chars) for n in range(4) for chars in itertools.product("a\x1b\x1f", repeat=n)]
    pairs = list(itertools.product(fields, fields))
    assert len({text_input_hash(title, description) for title, description in pairs}) == len(pairs)


@pytest.mark.parametrize(
    ("title", "description"),
    [
        pytest.param("Red shoes", "Leather, size 9", id="plain"),
        pytest.param("Caf\u00e9 \U0001f45f", "line one\nline two\t\r\n", id="unicode-and-whitespace"),
        pytest.param("C:\\path\\$1 .* [a-z]+ (x)|y ^$", "\\x1f \\u001f \\Q\\E", id="regex-and-backslashes"),
        pytest.param("\x00\x1a\x1c\x1d\x1e\x7f", "\u2028\ufeff", id="other-control-characters"),
        pytest.param(None, "", id="empty"),
    ],
)
def test_text_input_hash_of_text_without_separator_or_escape_is_the_bare_joins(title, description) -> None:
    """Escaping changes no stored hash of a text holding neither: it is the sha256 of the fields
    joined bare, as before, so a stored corpus is not computed again."""
    bare = "\x1f".join([title or "", description or ""]).encode("utf-8")
    assert text_input_hash(title, description) == hashlib.sha256(bare).hexdigest()
