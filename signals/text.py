"""The text a text signal reads, built the same way everywhere (job, tests, online scorer)."""
from __future__ import annotations

import unicodedata

from signals.decode import InputError

FIELD_SEPARATOR = "\n"


def compose_text(title: str | None, description: str | None, max_chars: int = 4096) -> str:
    """Title and description as one NFC-normalised text, truncated; InputError if nothing is left.

    Truncating characters before tokenising keeps a 100k-character description from costing
    more than the model will read anyway (the tokenizer truncates to its own limit after).
    """
    parts = [unicodedata.normalize("NFC", p).strip() for p in (title, description) if p is not None]
    text = FIELD_SEPARATOR.join(p for p in parts if p)
    if not text:
        raise InputError("text is empty (no title or description)")
    return text[:max_chars]
