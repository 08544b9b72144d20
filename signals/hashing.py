"""The input hash stored on every signal row: the sha256 of what the signal read.

An image given inline is hashed by its bytes. An image given by URI is hashed by the URI and the
item's `updated_at` (what the source sets when the item, its picture included, changes): its
bytes are only known once fetched, so a refresh fetches and computes a URI item again only when
its URI or its `updated_at` changed.

A refresh compares it with the corpus to find changed inputs, so the Python definition here
and the Spark expression in `udfs.columns.input_hash_column` must agree byte for byte (a test checks that).
"""
from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

TEXT_FIELD_SEPARATOR = "\x1f"  # unit separator: cannot be confused with text content
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


def text_input_hash(title: str | None, description: str | None) -> str:
    """sha256 hex of title and description joined by a unit separator, null read as empty."""
    joined = TEXT_FIELD_SEPARATOR.join([title or "", description or ""])
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()
