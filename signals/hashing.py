"""The input hash stored on every signal row: the sha256 of what the signal read.

An image given inline is hashed by its bytes. An image given by URI is hashed by the URI and the
item's `updated_at` (what the source sets when the item, its picture included, changes): its
bytes are only known once fetched, so a refresh fetches and computes a URI item again only when
its URI or its `updated_at` changed.

Title and description are joined by a unit separator (U+001F) after escaping each
(`escape_text_field`): an escape (U+001B) in a field is doubled and a separator in a field gets
an escape before it, so the joined text has one reading and two different (title, description)
pairs never share a hash. Joined bare, title "a<US>b" with no description and title "a" with
description "b<US>" did: compute once gave one item the other's rows, and a refresh missed an
edit that moved the separator between fields. A field holding neither character is unchanged,
so the hash of such a text is the bare join's, as it always was: no stored row is recomputed.
An image-by-URI hash joins a fixed tag, the URI and digits: only the URI may hold a separator,
so that join has one reading unescaped.

A refresh compares it with the corpus to find changed inputs, so the Python definition here
and the Spark expression in `udfs.columns.input_hash_column` must agree byte for byte (a test checks that).
"""
from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

TEXT_FIELD_SEPARATOR = "\x1f"  # unit separator between the fields of a hashed text
TEXT_FIELD_ESCAPE = "\x1b"  # escape: before a separator that is a field's own (rare in text, so few hashes differ from the bare join)
# (character, what a field holds instead), applied in order: the Python and the Spark escaping both read it
TEXT_FIELD_ESCAPES = ((TEXT_FIELD_ESCAPE, TEXT_FIELD_ESCAPE * 2), (TEXT_FIELD_SEPARATOR, TEXT_FIELD_ESCAPE + TEXT_FIELD_SEPARATOR))
URI_HASH_TAG = "uri"  # first field of an image-by-URI hash
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def image_input_hash(image: bytes | None, image_uri: str | None = None, updated_at: datetime | None = None) -> str | None:
    """sha256 hex of the image bytes; without bytes, of "uri", the URI and `updated_at` (in
    microseconds since the epoch; naive means UTC; null read as empty) joined by a unit
    separator; None when there is neither."""
    if image is not None:
        return hashlib.sha256(bytes(image)).hexdigest()
    if image_uri is None:
        return None
    micros = "" if updated_at is None else str((updated_at.replace(tzinfo=updated_at.tzinfo or UTC) - EPOCH) // timedelta(microseconds=1))
    return hashlib.sha256(TEXT_FIELD_SEPARATOR.join([URI_HASH_TAG, image_uri, micros]).encode("utf-8")).hexdigest()


def escape_text_field(text: str) -> str:
    """A field as a hashed text holds it (`TEXT_FIELD_ESCAPES`), so that no field's own unit
    separator reads as the one between fields."""
    for character, escaped in TEXT_FIELD_ESCAPES:
        text = text.replace(character, escaped)
    return text


def text_input_hash(title: str | None, description: str | None) -> str:
    """sha256 hex of title and description, each escaped, joined by a unit separator, null read as empty."""
    joined = TEXT_FIELD_SEPARATOR.join([escape_text_field(title or ""), escape_text_field(description or "")])
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()
