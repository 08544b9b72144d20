"""The input hash stored on every signal row: the sha256 of what the signal read.

A refresh compares it with the corpus to find changed inputs, so the Python definition here
and the Spark expression in `udfs.columns.input_hash_column` must agree byte for byte (a test checks that).
"""
from __future__ import annotations

import hashlib

TEXT_FIELD_SEPARATOR = "\x1f"  # unit separator: cannot be confused with text content


def image_input_hash(image: bytes | None) -> str | None:
    """sha256 hex of the image bytes; None when there is no image."""
    return None if image is None else hashlib.sha256(bytes(image)).hexdigest()


def text_input_hash(title: str | None, description: str | None) -> str:
    """sha256 hex of title and description joined by a unit separator, null read as empty."""
    joined = TEXT_FIELD_SEPARATOR.join([title or "", description or ""])
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()
