"""In-memory encoding of the sample corpus's pictures, one default for originals and derived items alike."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image


def encode(img: Image.Image, fmt: str = "JPEG", **options: Any) -> bytes:
    """Encode in memory; JPEG defaults to q90 like a typical upload pipeline."""
    if fmt == "JPEG":
        options.setdefault("quality", 90)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **options)
    return buf.getvalue()
