"""The kinds of sample corpus items: one function per kind building it from the source original
(or from nothing, for bad images without a picture) and returning its bytes and the params for the
truth, and the `Kind` table saying how often each appears, what it flags in the truth and how it
relates to its source."""

from __future__ import annotations

import functools
import io
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

from sample_corpus.draws import pick, uniform
from sample_corpus.encoding import encode

COPY, EDIT, NONE = "copy", "edit", "none"  # dup_relation values


class Source:
    """The earlier original an item derives from: its uploaded bytes and decoded picture."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    @functools.cached_property
    def image(self) -> Image.Image:
        """The original as decoded from its JPEG (what a re-upload would start from)."""
        with Image.open(io.BytesIO(self.data)) as img:
            return img.convert("RGB")


Builder = Callable[[np.random.Generator, Source | None], tuple[bytes | None, dict[str, Any]]]


def _fit(img: Image.Image, max_side: int) -> Image.Image:
    """Shrink so the longer side is at most ``max_side``."""
    scale = max_side / max(img.size)
    if scale >= 1:
        return img
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.Resampling.LANCZOS)


def _random_crop(rng: np.random.Generator, img: Image.Image, low: float, high: float) -> tuple[Image.Image, dict[str, Any]]:
    """Keep a random low..high fraction of each side, at a random position."""
    w, h = (max(1, round(side * uniform(rng, low, high))) for side in img.size)
    left = int(rng.integers(img.width - w + 1))
    top = int(rng.integers(img.height - h + 1))
    return img.crop((left, top, left + w, top + h)), {"box": [left, top, left + w, top + h]}


def _crop(rng: np.random.Generator, src: Source) -> tuple[bytes, dict[str, Any]]:
    """A re-framed upload of the original (70-90% of each side)."""
    cropped, params = _random_crop(rng, src.image, 0.7, 0.9)
    return encode(cropped), params


def _rescale(rng: np.random.Generator, src: Source) -> tuple[bytes, dict[str, Any]]:
    """Mild resize (0.8-1.25x) that keeps the shorter side >= 256 px, so not low-res."""
    img = src.image
    scale = max(uniform(rng, 0.8, 1.25), math.ceil(256_000 / min(img.size)) / 1000)
    size = (round(img.width * scale), round(img.height * scale))
    return encode(img.resize(size, Image.Resampling.BICUBIC)), {"scale": scale, "size": list(size)}


def _recompress(rng: np.random.Generator, src: Source) -> tuple[bytes, dict[str, Any]]:
    """Heavy JPEG artefacts (q15-40) without changing the content."""
    quality = int(rng.integers(15, 41))
    return encode(src.image, quality=quality), {"quality": quality}


def _flip(rng: np.random.Generator, src: Source) -> tuple[bytes, dict[str, Any]]:
    """Mirror image (same content, different pixels), re-saved at q75-95."""
    quality = int(rng.integers(75, 96))
    flipped = src.image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return encode(flipped, quality=quality), {"direction": "horizontal", "quality": quality}


def _blur(rng: np.random.Generator, src: Source) -> tuple[bytes, dict[str, Any]]:
    """Clearly out of focus (Gaussian radius 2.5-6) -> is_blurred."""
    radius = uniform(rng, 2.5, 6.0)
    return encode(src.image.filter(ImageFilter.GaussianBlur(radius))), {"radius": radius}


def _low_res(rng: np.random.Generator, src: Source) -> tuple[bytes, dict[str, Any]]:
    """Thumbnail-sized upload (longer side 32-64 px) -> is_low_res."""
    longer = int(rng.integers(32, 65))
    small = _fit(src.image, longer)
    return encode(small), {"longer_side": longer, "size": list(small.size)}


OVERLAY_PHRASES: tuple[str, ...] = (
    "SALE 50% OFF", "DIY IDEAS", "BEST EVER", "FOLLOW ME", "10 TIPS",
    "LINK IN BIO", "NEW IN", "SAVE THIS", "HOW TO", "TOP PICKS",
)


def _text_overlay(rng: np.random.Generator, src: Source) -> tuple[bytes, dict[str, Any]]:
    """1-3 lines of big outlined text across the picture, like a promo pin -> has_text_overlay."""
    n_lines = int(rng.integers(1, 4))
    lines = [OVERLAY_PHRASES[i] for i in rng.choice(len(OVERLAY_PHRASES), size=n_lines, replace=False)]
    out = src.image.copy()  # the decoded picture is cached on the Source
    draw = ImageDraw.Draw(out)
    size = out.height // (n_lines + 1)
    font = ImageFont.load_default(size=size)
    while size > 8 and max(draw.textlength(line, font=font) for line in lines) > 0.9 * out.width:
        size = int(size * 0.9)  # shrink until the widest line fits in 90% of the width
        font = ImageFont.load_default(size=size)
    fill = pick(rng, ((255, 255, 255), (255, 230, 0), (255, 60, 60)))
    line_height = size * 1.2
    top = (out.height - line_height * n_lines) / 2
    for k, line in enumerate(lines):
        xy = (out.width / 2, top + line_height * (k + 0.5))
        draw.text(xy, line, font=font, fill=fill, anchor="mm", stroke_width=max(1, size // 12), stroke_fill=(0, 0, 0))
    return encode(out), {"lines": lines, "font_size": size, "fill": list(fill)}


WATERMARK_PHRASES: tuple[str, ...] = ("SAMPLE", "PREVIEW", "STOCK PHOTO", "DO NOT COPY", "PROOF")


def _watermark(rng: np.random.Generator, src: Source) -> tuple[bytes, dict[str, Any]]:
    """A stock-photo watermark: one phrase tiled over the whole picture, faint (25-45% opaque) and
    turned 20-40 degrees, which OCR reads worse than an upright overlay -> has_text_overlay."""
    phrase = pick(rng, WATERMARK_PHRASES)
    opacity = uniform(rng, 0.25, 0.45)
    angle = uniform(rng, 20.0, 40.0) * pick(rng, (-1, 1))
    shade = pick(rng, (255, 0))
    out = src.image.convert("RGBA")
    side = 2 * max(out.size)  # a layer that still covers the picture once turned
    layer = Image.new("RGBA", (side, side), (shade, shade, shade, 0))
    draw = ImageDraw.Draw(layer)
    size = max(10, out.height // 6)
    font = ImageFont.load_default(size=size)
    step_x, step_y = int(draw.textlength(phrase, font=font) + size), int(size * 2.2)
    for row, y in enumerate(range(0, side, step_y)):
        for x in range(-(row % 2) * step_x // 2, side, step_x):
            draw.text((x, y), phrase, font=font, fill=(shade, shade, shade, round(255 * opacity)))
    layer = layer.rotate(angle, resample=Image.Resampling.BICUBIC)
    left, top = (side - out.width) // 2, (side - out.height) // 2
    out.alpha_composite(layer.crop((left, top, left + out.width, top + out.height)))
    return encode(out.convert("RGB")), {"phrase": phrase, "opacity": opacity, "angle": angle, "font_size": size, "shade": shade}


def _exact_duplicate(rng: np.random.Generator, src: Source) -> tuple[bytes, dict[str, Any]]:
    """The original's file uploaded again, byte for byte."""
    return src.data, {}


def _near_duplicate(rng: np.random.Generator, src: Source) -> tuple[bytes, dict[str, Any]]:
    """Re-upload of the original: tiny crop (95-99%), q70-85, slight brightness change."""
    cropped, params = _random_crop(rng, src.image, 0.95, 0.99)
    brightness = uniform(rng, 0.9, 1.1)
    quality = int(rng.integers(70, 86))
    out = ImageEnhance.Brightness(cropped).enhance(brightness)
    return encode(out, quality=quality), {**params, "brightness": brightness, "quality": quality}


def _grayscale(rng: np.random.Generator, src: Source) -> tuple[bytes, dict[str, Any]]:
    """Single-channel 'L' JPEG."""
    return encode(src.image.convert("L")), {"mode": "L", "format": "JPEG"}


def _cmyk(rng: np.random.Generator, src: Source) -> tuple[bytes, dict[str, Any]]:
    """Print-style CMYK JPEG, which naive RGB pipelines mis-handle."""
    return encode(src.image.convert("CMYK")), {"mode": "CMYK", "format": "JPEG"}


def _rgba(rng: np.random.Generator, src: Source) -> tuple[bytes, dict[str, Any]]:
    """PNG with a real alpha channel: opaque centre fading to semi-transparent corners."""
    img = src.image
    floor = int(rng.integers(0, 128))
    yy, xx = np.mgrid[-1 : 1 : img.height * 1j, -1 : 1 : img.width * 1j]
    fade = np.clip(1.0 - np.hypot(xx, yy) / np.sqrt(2), 0.0, 1.0)
    alpha = (floor + (255 - floor) * fade).astype(np.uint8)
    out = img.copy()
    out.putalpha(Image.fromarray(alpha))
    return encode(out, "PNG"), {"mode": "RGBA", "format": "PNG", "corner_alpha": floor}


def _palette(rng: np.random.Generator, src: Source) -> tuple[bytes, dict[str, Any]]:
    """Indexed-colour ('P') PNG with 16-128 colours."""
    colors = int(rng.integers(16, 129))
    indexed = src.image.quantize(colors=colors, method=Image.Quantize.FASTOCTREE)
    return encode(indexed, "PNG"), {"mode": "P", "format": "PNG", "colors": colors}


def _gray16(rng: np.random.Generator, src: Source) -> tuple[bytes, dict[str, Any]]:
    """16-bit grayscale PNG (mode 'I;16'), as scientific/medical sources produce."""
    deep = np.asarray(src.image.convert("L"), dtype=np.uint16) * 257  # full 0..65535 range
    return encode(Image.fromarray(deep), "PNG"), {"mode": "I;16", "format": "PNG"}


JFIF_HEADER = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"


def _corrupt(rng: np.random.Generator, src: None) -> tuple[bytes, dict[str, Any]]:
    """Looks like a JPEG (SOI + JFIF APP0) but the rest is noise.

    Noise bytes avoid 0xFF so no JPEG marker can follow the header and decoding fails
    for sure rather than by luck.
    """
    n = int(rng.integers(1024, 8193))
    noise = rng.integers(0, 255, size=n, dtype=np.uint8).tobytes()
    return JFIF_HEADER + noise, {"header_bytes": len(JFIF_HEADER), "noise_bytes": n}


def _truncated(rng: np.random.Generator, src: Source) -> tuple[bytes, dict[str, Any]]:
    """Interrupted upload of the original: the first 40-60% of its JPEG file (header parses,
    pixels do not)."""
    fraction = uniform(rng, 0.4, 0.6)
    return src.data[: int(len(src.data) * fraction)], {"fraction": fraction, "full_bytes": len(src.data)}


def _empty(rng: np.random.Generator, src: None) -> tuple[bytes, dict[str, Any]]:
    """Zero-byte upload."""
    return b"", {}


NOT_IMAGE_TEXTS: tuple[str, ...] = (
    "<!DOCTYPE html><html><body><h1>404 Not Found</h1></body></html>",
    '{"error": "AccessDenied", "message": "Request has expired"}',
    "Ceci n'est pas une image. 这不是图片。",
)


def _not_image(rng: np.random.Generator, src: None) -> tuple[bytes, dict[str, Any]]:
    """Text where an image should be (error pages, JSON errors)."""
    text = pick(rng, NOT_IMAGE_TEXTS)
    return text.encode("utf-8"), {"text": text}


def _null(rng: np.random.Generator, src: None) -> tuple[None, dict[str, Any]]:
    """Missing image (NULL column value)."""
    return None, {}


HUGE_SIZES: tuple[tuple[int, int], ...] = ((100_000, 100_000), (65_535, 200_000), (250_000, 80_000))


def _huge_header(rng: np.random.Generator, src: Source) -> tuple[bytes, dict[str, Any]]:
    """Small valid PNG (a 12-20 px thumbnail of the original) whose IHDR claims a gigantic
    size (decompression-bomb shape).

    Only width/height are rewritten and the IHDR CRC is recomputed, so header parsers
    accept the file and report the claimed size.
    """
    thumb = _fit(src.image, int(rng.integers(12, 21)))
    png = bytearray(encode(thumb, "PNG"))
    width, height = pick(rng, HUGE_SIZES)
    # PNG: 8-byte signature, then IHDR = length(4) type(4) data(13: width, height, ...) crc(4)
    png[16:20] = width.to_bytes(4, "big")
    png[20:24] = height.to_bytes(4, "big")
    png[29:33] = zlib.crc32(bytes(png[12:29])).to_bytes(4, "big")
    return bytes(png), {"claimed_size": [width, height], "real_size": list(thumb.size)}


@dataclass(frozen=True)
class Kind:
    """One variant kind: how often it appears, what it starts from and what it means."""

    name: str
    weight: float  # percent of the corpus (before every kind is guaranteed once)
    group: str  # normal | flagged | color_mode | duplicate | bad
    flag: str | None  # TRUTH_SCHEMA bool column set for this kind
    relation: str  # dup_relation to the source original: copy | edit | none (no source)
    build: Builder | None  # None: originals, built by originals.original from a base photo

    @property
    def derived(self) -> bool:
        """Built from an earlier original's picture (so it has a source_id)."""
        return self.relation != NONE


KINDS: tuple[Kind, ...] = (
    Kind("original", 19.0, "normal", None, NONE, None),
    Kind("crop", 11.0, "normal", None, EDIT, _crop),
    Kind("rescale", 11.0, "normal", None, COPY, _rescale),
    Kind("recompress", 11.0, "normal", None, COPY, _recompress),
    Kind("flip", 11.0, "normal", None, EDIT, _flip),
    Kind("blur", 4.0, "flagged", "is_blurred", EDIT, _blur),
    Kind("low_res", 4.0, "flagged", "is_low_res", EDIT, _low_res),
    Kind("text_overlay", 4.0, "flagged", "has_text_overlay", EDIT, _text_overlay),
    Kind("watermark", 3.0, "flagged", "has_text_overlay", EDIT, _watermark),
    Kind("exact_duplicate", 4.0, "duplicate", "is_exact_duplicate", COPY, _exact_duplicate),
    Kind("near_duplicate", 4.0, "duplicate", "is_near_duplicate", COPY, _near_duplicate),
    Kind("grayscale", 1.6, "color_mode", None, COPY, _grayscale),
    Kind("cmyk", 1.6, "color_mode", None, COPY, _cmyk),
    Kind("rgba", 1.6, "color_mode", None, COPY, _rgba),
    Kind("palette", 1.6, "color_mode", None, COPY, _palette),
    Kind("gray16", 1.6, "color_mode", None, COPY, _gray16),
    Kind("corrupt", 0.5, "bad", "is_bad_image", NONE, _corrupt),
    Kind("truncated", 0.5, "bad", "is_bad_image", EDIT, _truncated),
    Kind("empty", 0.5, "bad", "is_bad_image", NONE, _empty),
    Kind("not_image", 0.5, "bad", "is_bad_image", NONE, _not_image),
    Kind("null", 0.5, "bad", "is_bad_image", NONE, _null),
    Kind("huge_header", 0.5, "bad", "is_bad_image", EDIT, _huge_header),
)
KIND_BY_NAME: dict[str, Kind] = {kind.name: kind for kind in KINDS}
