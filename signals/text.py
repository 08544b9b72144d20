"""The text a text signal reads, built the same way everywhere (job, tests, online scorer)."""
from __future__ import annotations

import math
import unicodedata

from signals.decode import InputError

FIELD_SEPARATOR = "\n"


def field_text(value: str | bytes | None, name: str) -> str | None:
    """A text field as str. Spark hands text to the workers as bytes, so that a row whose text is
    not valid UTF-8 is that row's InputError instead of a failure of the whole Arrow batch. NaN
    (pandas' missing value) is missing; any other value is an InputError naming its type."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, float) and math.isnan(value):
        return None
    if not isinstance(value, bytes | bytearray | memoryview):  # bytes(n) of an int n is n NULs
        raise InputError(f"{name} is {type(value).__name__}, not text")
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{name} is not valid UTF-8 (byte {exc.start})") from exc


_INVISIBLE = ("Cc", "Cf", "Zs", "Zl", "Zp")  # control, format (zero-width space, BOM, ...) and space characters
# Unicode's default-ignorable code points that are not format characters (the Hangul fillers,
# variation selectors, Mongolian free variation selectors, ...), and the blank braille pattern:
# letters and marks by category that show nothing, the usual ways to post an "invisible" title
_INVISIBLE_CHARACTERS = frozenset(
    chr(c) for c in (0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180B, 0x180C, 0x180D, 0x180F, 0x2800, 0x3164, 0xFFA0,
                     *range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0))
)


def _is_blank(text: str) -> bool:
    """Whether a text shows nothing: only spaces, control characters, format characters such as
    a zero-width space or a byte-order mark, which `str.strip` keeps, and characters that render
    as nothing (a Hangul filler, a lone variation selector), so a model would be handed a text
    with nothing to read and its row would be ok (the language of three Hangul fillers: Polish, 0.999)."""
    return all(c in _INVISIBLE_CHARACTERS or unicodedata.category(c) in _INVISIBLE for c in text)


def compose_text(title: str | bytes | None, description: str | bytes | None, max_chars: int = 4096) -> str:
    """Title and description as one NFC-normalised text, truncated; InputError if nothing is left
    or if it cannot be written as UTF-8 (a lone surrogate).

    Truncating characters before tokenising keeps a 100k-character description from costing
    more than the model will read anyway (the tokenizer truncates to its own limit after).
    """
    fields = (field_text(title, "title"), field_text(description, "description"))
    parts = [unicodedata.normalize("NFC", p).strip() for p in fields if p is not None]
    text = FIELD_SEPARATOR.join(p for p in parts if not _is_blank(p))
    if not text:
        raise InputError("text is empty (no title or description)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(f"text is not valid Unicode (character {exc.start} is a lone surrogate)") from exc
    return text[:max_chars]
