"""Deterministic sample corpus of pins (image + title + description) with ground truth.

The embedding/labelling job needs realistic input that runs offline and in tests, so the
corpus is built from real photos that ship inside installed wheels (scikit-image's
``skimage.data`` and scikit-learn's sample images).  Each item is a variant of one of those
photos -- re-encoded, cropped, blurred, shrunk, overlaid with text, duplicated, stored in an
unusual colour mode -- or a deliberately broken image, and a parallel truth table records
what was done so the job's labels (blur, low resolution, text overlay, duplicates, bad
images) can be checked against it.  Titles and descriptions also carry edge cases (empty,
null, very long, odd unicode, whitespace only).

Everything random comes from ``numpy.random.default_rng`` seeded by ``seed``, so the same
arguments give byte-identical tables.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import json
import math
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

from signals.contracts import CORPUS, UTC_MICROS

CORPUS_SCHEMA = CORPUS.schema  # the job's input contract (signals.contracts)

TRUTH_SCHEMA = pa.schema(
    [
        pa.field("content_id", pa.string(), nullable=False),
        pa.field("base_id", pa.string()),
        pa.field("variant", pa.string(), nullable=False),
        pa.field("params", pa.string(), nullable=False),
        pa.field("duplicate_of", pa.string()),
        pa.field("is_blurred", pa.bool_(), nullable=False),
        pa.field("is_low_res", pa.bool_(), nullable=False),
        pa.field("has_text_overlay", pa.bool_(), nullable=False),
        pa.field("is_exact_duplicate", pa.bool_(), nullable=False),
        pa.field("is_near_duplicate", pa.bool_(), nullable=False),
        pa.field("is_bad_image", pa.bool_(), nullable=False),
        pa.field("bad_image_kind", pa.string()),
        pa.field("text_kind", pa.string(), nullable=False),
    ]
)

MAX_SIDE = 512  # originals are capped here so every variant stays small and fast to encode

# --------------------------------------------------------------------------------------
# Base photos
# --------------------------------------------------------------------------------------

# (base_id, subject the description templates talk about).  Only real photographs whose
# loaders work offline.  Left out on purpose: clock (already motion blurred, which would
# contradict is_blurred=False on its originals), page/text (contain printed text, which
# would blur the has_text_overlay signal), synthetic images (horse, logo, colorwheel,
# checkerboard, ...), tiny ones (lfw_subset, microaneurysms) and pooch-only downloads.
SKIMAGE_PHOTOS: tuple[tuple[str, str], ...] = (
    ("astronaut", "an astronaut in a flight suit"),
    ("chelsea", "a tabby cat"),
    ("coffee", "a cup of coffee"),
    ("rocket", "a rocket launch"),
    ("camera", "a photographer with a camera"),
    ("coins", "ancient Greek coins"),
    ("moon", "the surface of the moon"),
    ("hubble_deep_field", "distant galaxies"),
    ("retina", "a human retina"),
    ("immunohistochemistry", "stained tissue under a microscope"),
    ("cell", "a single cell under a microscope"),
    ("brick", "an old brick wall"),
    ("grass", "a patch of grass"),
    ("gravel", "a gravel path"),
)
SKLEARN_PHOTOS: tuple[tuple[str, str], ...] = (
    ("china", "a temple in China"),
    ("flower", "a flower in bloom"),
)
SUBJECTS: dict[str, str] = dict(SKIMAGE_PHOTOS + SKLEARN_PHOTOS)
BASE_IDS: tuple[str, ...] = tuple(SUBJECTS)


def _fit(img: Image.Image, max_side: int = MAX_SIDE) -> Image.Image:
    """Shrink so the longer side is at most ``max_side``; pins are served at about that size."""
    scale = max_side / max(img.size)
    if scale >= 1:
        return img
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.Resampling.LANCZOS)


@functools.lru_cache(maxsize=None)
def _photo(base_id: str) -> Image.Image:
    """Decoded RGB photo, capped at MAX_SIDE; cached because many variants reuse it.

    Callers must not draw on the returned image in place (it is shared).
    """
    if base_id in dict(SKLEARN_PHOTOS):
        from sklearn.datasets import load_sample_image  # heavy import, only when needed

        pixels = load_sample_image(f"{base_id}.jpg")
    else:
        import skimage.data  # heavy import, only when needed

        pixels = getattr(skimage.data, base_id)()
    return _fit(Image.fromarray(np.asarray(pixels)).convert("RGB"))


def _clean_caption(line: str) -> str:
    """Turn a loader docstring's first line into a pin-like caption."""
    text = line.strip().rstrip(".").replace('"', "")
    text = re.sub(r"^(Color image of the|Gray-level)\s+", "", text)
    text = re.sub(r"\s+image$", "", text)
    return text[:1].upper() + text[1:]


@functools.lru_cache(maxsize=None)
def _caption(base_id: str) -> str:
    """Title of a base photo, taken from what its package says about it.

    scikit-learn has one loader for both images, so its DESCR is used instead of a
    docstring: file stem plus the Flickr user from the image's source URL (the
    "Attribution" line of flower.jpg repeats china.jpg's author, the URL does not).
    """
    if base_id in dict(SKLEARN_PHOTOS):
        from sklearn.datasets import load_sample_images

        block = load_sample_images().DESCR.split(f"Image: {base_id}.jpg", 1)[1]
        user = re.search(r"flickr\.com/photos/([^/\s]+)", block)
        credit = f", photographed by {user.group(1)} on Flickr" if user else ""
        return f"{base_id.capitalize()}{credit}"
    import skimage.data

    doc = getattr(skimage.data, base_id).__doc__ or base_id
    return _clean_caption(doc.strip().splitlines()[0])


# --------------------------------------------------------------------------------------
# Image variants: one function per kind, each returns (image bytes, params for the truth)
# --------------------------------------------------------------------------------------

Builder = Callable[[np.random.Generator, Image.Image | None], tuple[bytes | None, dict[str, Any]]]


def _encode(img: Image.Image, fmt: str = "JPEG", **options: Any) -> bytes:
    """Encode in memory; JPEG defaults to q90 like a typical upload pipeline."""
    if fmt == "JPEG":
        options.setdefault("quality", 90)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **options)
    return buf.getvalue()


def _uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """A float rounded to 3 decimals, so params JSON stays readable and exact."""
    return round(float(rng.uniform(low, high)), 3)


def _pick(rng: np.random.Generator, options: Sequence[Any]) -> Any:
    """One element of a sequence (rng.choice would turn tuples into arrays)."""
    return options[int(rng.integers(len(options)))]


def _random_crop(rng: np.random.Generator, img: Image.Image, low: float, high: float) -> tuple[Image.Image, dict[str, Any]]:
    """Keep a random low..high fraction of each side, at a random position."""
    w, h = (max(1, round(side * _uniform(rng, low, high))) for side in img.size)
    left = int(rng.integers(img.width - w + 1))
    top = int(rng.integers(img.height - h + 1))
    return img.crop((left, top, left + w, top + h)), {"box": [left, top, left + w, top + h]}


def _original(rng: np.random.Generator, img: Image.Image) -> tuple[bytes, dict[str, Any]]:
    """The photo as uploaded: JPEG q90 at most MAX_SIDE px."""
    return _encode(img), {"quality": 90, "size": list(img.size)}


def _crop(rng: np.random.Generator, img: Image.Image) -> tuple[bytes, dict[str, Any]]:
    """A re-framed upload of the same photo (70-90% of each side)."""
    cropped, params = _random_crop(rng, img, 0.7, 0.9)
    return _encode(cropped), params


def _rescale(rng: np.random.Generator, img: Image.Image) -> tuple[bytes, dict[str, Any]]:
    """Mild resize (0.8-1.25x) that keeps the shorter side >= 256 px, so not low-res."""
    scale = max(_uniform(rng, 0.8, 1.25), math.ceil(256_000 / min(img.size)) / 1000)
    size = (round(img.width * scale), round(img.height * scale))
    return _encode(img.resize(size, Image.Resampling.BICUBIC)), {"scale": scale, "size": list(size)}


def _recompress(rng: np.random.Generator, img: Image.Image) -> tuple[bytes, dict[str, Any]]:
    """Heavy JPEG artefacts (q15-40) without changing the content."""
    quality = int(rng.integers(15, 41))
    return _encode(img, quality=quality), {"quality": quality}


def _flip(rng: np.random.Generator, img: Image.Image) -> tuple[bytes, dict[str, Any]]:
    """Mirror image: same content, different pixels."""
    return _encode(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)), {"direction": "horizontal"}


def _blur(rng: np.random.Generator, img: Image.Image) -> tuple[bytes, dict[str, Any]]:
    """Clearly out of focus (Gaussian radius 2.5-6) -> is_blurred."""
    radius = _uniform(rng, 2.5, 6.0)
    return _encode(img.filter(ImageFilter.GaussianBlur(radius))), {"radius": radius}


def _low_res(rng: np.random.Generator, img: Image.Image) -> tuple[bytes, dict[str, Any]]:
    """Thumbnail-sized upload (longer side 32-64 px) -> is_low_res."""
    longer = int(rng.integers(32, 65))
    small = _fit(img, longer)
    return _encode(small), {"longer_side": longer, "size": list(small.size)}


OVERLAY_PHRASES: tuple[str, ...] = (
    "SALE 50% OFF", "DIY IDEAS", "BEST EVER", "FOLLOW ME", "10 TIPS",
    "LINK IN BIO", "NEW IN", "SAVE THIS", "HOW TO", "TOP PICKS",
)


def _text_overlay(rng: np.random.Generator, img: Image.Image) -> tuple[bytes, dict[str, Any]]:
    """1-3 lines of big outlined text across the photo, like a promo pin -> has_text_overlay."""
    n_lines = int(rng.integers(1, 4))
    lines = [OVERLAY_PHRASES[i] for i in rng.choice(len(OVERLAY_PHRASES), size=n_lines, replace=False)]
    out = img.copy()  # the base photo is cached and shared
    draw = ImageDraw.Draw(out)
    size = out.height // (n_lines + 1)
    font = ImageFont.load_default(size=size)
    while size > 8 and max(draw.textlength(line, font=font) for line in lines) > 0.9 * out.width:
        size = int(size * 0.9)  # shrink until the widest line fits in 90% of the width
        font = ImageFont.load_default(size=size)
    fill = _pick(rng, ((255, 255, 255), (255, 230, 0), (255, 60, 60)))
    line_height = size * 1.2
    top = (out.height - line_height * n_lines) / 2
    for k, line in enumerate(lines):
        xy = (out.width / 2, top + line_height * (k + 0.5))
        draw.text(xy, line, font=font, fill=fill, anchor="mm", stroke_width=max(1, size // 12), stroke_fill=(0, 0, 0))
    return _encode(out), {"lines": lines, "font_size": size, "fill": list(fill)}


def _near_duplicate(rng: np.random.Generator, img: Image.Image) -> tuple[bytes, dict[str, Any]]:
    """Re-upload of an earlier item: tiny crop (95-99%), q70-85, slight brightness change."""
    cropped, params = _random_crop(rng, img.convert("RGB"), 0.95, 0.99)
    brightness = _uniform(rng, 0.9, 1.1)
    quality = int(rng.integers(70, 86))
    out = ImageEnhance.Brightness(cropped).enhance(brightness)
    return _encode(out, quality=quality), {**params, "brightness": brightness, "quality": quality}


def _grayscale(rng: np.random.Generator, img: Image.Image) -> tuple[bytes, dict[str, Any]]:
    """Single-channel 'L' JPEG."""
    return _encode(img.convert("L")), {"mode": "L", "format": "JPEG"}


def _cmyk(rng: np.random.Generator, img: Image.Image) -> tuple[bytes, dict[str, Any]]:
    """Print-style CMYK JPEG, which naive RGB pipelines mis-handle."""
    return _encode(img.convert("CMYK")), {"mode": "CMYK", "format": "JPEG"}


def _rgba(rng: np.random.Generator, img: Image.Image) -> tuple[bytes, dict[str, Any]]:
    """PNG with a real alpha channel: opaque centre fading to transparent corners."""
    floor = int(rng.integers(0, 128))
    yy, xx = np.mgrid[-1 : 1 : img.height * 1j, -1 : 1 : img.width * 1j]
    fade = np.clip(1.0 - np.hypot(xx, yy) / np.sqrt(2), 0.0, 1.0)
    alpha = (floor + (255 - floor) * fade).astype(np.uint8)
    out = img.copy()
    out.putalpha(Image.fromarray(alpha))
    return _encode(out, "PNG"), {"mode": "RGBA", "format": "PNG", "corner_alpha": floor}


def _palette(rng: np.random.Generator, img: Image.Image) -> tuple[bytes, dict[str, Any]]:
    """Indexed-colour ('P') PNG with 16-128 colours."""
    colors = int(rng.integers(16, 129))
    return _encode(img.quantize(colors=colors), "PNG"), {"mode": "P", "format": "PNG", "colors": colors}


def _gray16(rng: np.random.Generator, img: Image.Image) -> tuple[bytes, dict[str, Any]]:
    """16-bit grayscale PNG (mode 'I;16'), as scientific/medical sources produce."""
    deep = np.asarray(img.convert("L"), dtype=np.uint16) * 257  # full 0..65535 range
    return _encode(Image.fromarray(deep), "PNG"), {"mode": "I;16", "format": "PNG"}


JFIF_HEADER = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"


def _corrupt(rng: np.random.Generator, img: None) -> tuple[bytes, dict[str, Any]]:
    """Looks like a JPEG (SOI + JFIF APP0) but the rest is noise.

    Noise bytes avoid 0xFF so no JPEG marker can follow the header and decoding fails
    for sure rather than by luck.
    """
    n = int(rng.integers(1024, 8193))
    noise = rng.integers(0, 255, size=n, dtype=np.uint8).tobytes()
    return JFIF_HEADER + noise, {"header_bytes": len(JFIF_HEADER), "noise_bytes": n}


def _truncated(rng: np.random.Generator, img: Image.Image) -> tuple[bytes, dict[str, Any]]:
    """Interrupted upload: first 40-60% of a valid JPEG (header parses, pixels do not)."""
    full = _encode(img)
    fraction = _uniform(rng, 0.4, 0.6)
    return full[: int(len(full) * fraction)], {"fraction": fraction, "full_bytes": len(full)}


def _empty(rng: np.random.Generator, img: None) -> tuple[bytes, dict[str, Any]]:
    """Zero-byte upload."""
    return b"", {}


NOT_IMAGE_TEXTS: tuple[str, ...] = (
    "<!DOCTYPE html><html><body><h1>404 Not Found</h1></body></html>",
    '{"error": "AccessDenied", "message": "Request has expired"}',
    "Ceci n'est pas une image. 这不是图片。",
)


def _not_image(rng: np.random.Generator, img: None) -> tuple[bytes, dict[str, Any]]:
    """Text where an image should be (error pages, JSON errors)."""
    text = _pick(rng, NOT_IMAGE_TEXTS)
    return text.encode("utf-8"), {"text": text}


def _null(rng: np.random.Generator, img: None) -> tuple[None, dict[str, Any]]:
    """Missing image (NULL column value)."""
    return None, {}


HUGE_SIZES: tuple[tuple[int, int], ...] = ((100_000, 100_000), (65_535, 200_000), (250_000, 80_000))


def _huge_header(rng: np.random.Generator, img: Image.Image) -> tuple[bytes, dict[str, Any]]:
    """Small valid PNG whose IHDR claims a gigantic size (decompression-bomb shape).

    Only width/height are rewritten and the IHDR CRC is recomputed, so header parsers
    accept the file and report the claimed size.
    """
    thumb = _fit(img, 16)
    png = bytearray(_encode(thumb, "PNG"))
    width, height = _pick(rng, HUGE_SIZES)
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
    uses_photo: bool  # built from a base photo (duplicates inherit their source's base)
    build: Builder | None  # None: copy the source item's bytes verbatim


KINDS: tuple[Kind, ...] = (
    Kind("original", 22.0, "normal", None, True, _original),
    Kind("crop", 11.0, "normal", None, True, _crop),
    Kind("rescale", 11.0, "normal", None, True, _rescale),
    Kind("recompress", 11.0, "normal", None, True, _recompress),
    Kind("flip", 11.0, "normal", None, True, _flip),
    Kind("blur", 4.0, "flagged", "is_blurred", True, _blur),
    Kind("low_res", 4.0, "flagged", "is_low_res", True, _low_res),
    Kind("text_overlay", 4.0, "flagged", "has_text_overlay", True, _text_overlay),
    Kind("exact_duplicate", 4.0, "duplicate", "is_exact_duplicate", False, None),
    Kind("near_duplicate", 4.0, "duplicate", "is_near_duplicate", False, _near_duplicate),
    Kind("grayscale", 1.6, "color_mode", None, True, _grayscale),
    Kind("cmyk", 1.6, "color_mode", None, True, _cmyk),
    Kind("rgba", 1.6, "color_mode", None, True, _rgba),
    Kind("palette", 1.6, "color_mode", None, True, _palette),
    Kind("gray16", 1.6, "color_mode", None, True, _gray16),
    Kind("corrupt", 0.5, "bad", "is_bad_image", False, _corrupt),
    Kind("truncated", 0.5, "bad", "is_bad_image", True, _truncated),
    Kind("empty", 0.5, "bad", "is_bad_image", False, _empty),
    Kind("not_image", 0.5, "bad", "is_bad_image", False, _not_image),
    Kind("null", 0.5, "bad", "is_bad_image", False, _null),
    Kind("huge_header", 0.5, "bad", "is_bad_image", True, _huge_header),
)
KIND_BY_NAME: dict[str, Kind] = {kind.name: kind for kind in KINDS}
FLAG_COLUMNS: tuple[str, ...] = (
    "is_blurred", "is_low_res", "has_text_overlay", "is_exact_duplicate", "is_near_duplicate", "is_bad_image",
)

# --------------------------------------------------------------------------------------
# Titles and descriptions
# --------------------------------------------------------------------------------------

TEXT_WEIGHTS: dict[str, float] = {
    "normal": 88.0, "empty": 2.0, "null": 2.0, "long": 2.0, "unicode": 4.0, "whitespace": 2.0,
}

SENTENCES: tuple[str, ...] = (
    "A {adj} photo of {subject}.",
    "Found this shot of {subject} and had to save it.",
    "Pinned for my {board} board: {subject}.",
    "Love how {adj} {subject} looks here.",
    "Reference picture of {subject}, {adj} light and nice detail.",
    "{Subject}, saved for later.",
    "Could not stop looking at {subject} today.",
    "Great inspiration for anyone into {board}: {subject}.",
)
ADJECTIVES: tuple[str, ...] = ("crisp", "moody", "bright", "textured", "classic", "striking", "calm", "vivid")
BOARDS: tuple[str, ...] = ("science", "travel", "photography", "home decor", "weekend", "mood", "art class")
UNICODE_FRAGMENTS: tuple[str, ...] = (
    "😍🔥✨",
    "👩\u200d👩\u200d👧\u200d👦 family day",  # zero-width-joiner emoji sequence
    "🏳️\u200d🌈",
    "صورة رائعة جدا",  # Arabic (RTL)
    "תמונה יפה מאוד",  # Hebrew (RTL)
    "\u202eright-to-left override\u202c",
    "美しい写真です",
    "非常漂亮的照片",
    "정말 멋진 사진",
    "Cafe\u0301 cre\u0300me bru\u0302le\u0301e",  # combining accents
    "Z\u0351\u0364a\u0308\u0301l\u0308g\u036do\u0489",  # stacked combining marks
    "zero\u200bwidth\u200cspaces\u200dhere\ufeff",
)
WHITESPACE: tuple[str, ...] = (" ", "   ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2003")


def _sentence(rng: np.random.Generator, subject: str) -> str:
    """One templated sentence about the subject."""
    template = _pick(rng, SENTENCES)
    return template.format(
        subject=subject, Subject=subject[:1].upper() + subject[1:], adj=_pick(rng, ADJECTIVES), board=_pick(rng, BOARDS)
    )


def _whitespace(rng: np.random.Generator) -> str:
    """Non-empty text that is blank once stripped (ASCII and unicode spaces)."""
    return "".join(_pick(rng, WHITESPACE) for _ in range(int(rng.integers(1, 6))))


def _text(rng: np.random.Generator, text_kind: str, caption: str, subject: str) -> tuple[str | None, str | None]:
    """(title, description) for one item, with the requested edge case."""
    if text_kind == "empty":
        return "", ""
    if text_kind == "null":
        return None, None
    if text_kind == "whitespace":
        return _whitespace(rng), _whitespace(rng)
    if text_kind == "unicode":
        fragments = [UNICODE_FRAGMENTS[i] for i in rng.choice(len(UNICODE_FRAGMENTS), size=3, replace=False)]
        return f"{caption} {fragments[0]}", " ".join([_sentence(rng, subject), *fragments[1:]])
    if text_kind == "long":
        length = int(rng.integers(20_000, 100_001))
        parts: list[str] = []
        total = 0
        while total < length:
            parts.append(_sentence(rng, subject))
            total += len(parts[-1]) + 1
        return caption, " ".join(parts)[:length]
    return caption, " ".join(_sentence(rng, subject) for _ in range(int(rng.integers(1, 4))))


# --------------------------------------------------------------------------------------
# Assembly
# --------------------------------------------------------------------------------------


def _plan(rng: np.random.Generator, n: int, weights: dict[str, float], first: str) -> list[str]:
    """Kinds for n items: ``first`` leads, every other kind appears at least once when n
    allows, the rest are drawn by weight, then all but the first are shuffled.

    Leading with a normal item guarantees that duplicates always have an earlier source.
    """
    names = list(weights)
    share = np.array([weights[name] for name in names])
    extra = rng.choice(len(names), size=max(0, n - len(names)), p=share / share.sum())
    rest = [name for name in names if name != first] + [names[i] for i in extra]
    return ([first] + [rest[i] for i in rng.permutation(len(rest))])[:n]


def _timestamps(rng: np.random.Generator, n: int, end_date: dt.date, days: int) -> tuple[np.ndarray, np.ndarray]:
    """created_at (microseconds since epoch, UTC) spread over the ``days`` days ending at
    end_date, non-decreasing with content_id (so duplicates are also older in time);
    updated_at is either created_at or a later moment inside the window.
    """
    window_end = dt.datetime.combine(end_date + dt.timedelta(days=1), dt.time(), tzinfo=dt.timezone.utc)
    end_us = int(window_end.timestamp()) * 1_000_000
    start_us = end_us - days * 86_400 * 1_000_000
    created = np.sort(rng.integers(start_us, end_us, size=n))
    later = rng.integers(created, end_us)
    updated = np.where(rng.random(n) < 0.5, created, later)
    return created, updated


def _day(micros: int) -> str:
    """YYYY-MM-DD (UTC) of a microsecond timestamp; the ds partition value."""
    return dt.datetime.fromtimestamp(micros // 1_000_000, tz=dt.timezone.utc).date().isoformat()


def generate_corpus(
    n_items: int = 480,
    seed: int = 7,
    end_date: dt.date = dt.date(2026, 11, 20),
    days: int = 7,
) -> tuple[pa.Table, pa.Table]:
    """Return (corpus, truth) with exactly n_items rows each, same content_id order.

    Items cycle through the base photos; duplicates copy or perturb a random earlier
    normal item (and so share its base).  Each item draws from its own generator seeded
    by (seed, index), so changing one transform does not reshuffle every other item.
    """
    rng = np.random.default_rng(seed)
    kinds = _plan(rng, n_items, {kind.name: kind.weight for kind in KINDS}, first="original")
    text_kinds = _plan(rng, n_items, TEXT_WEIGHTS, first="normal")
    created, updated = _timestamps(rng, n_items, end_date, days)

    ids = [f"pin-{i:06d}" for i in range(n_items)]
    images: list[bytes | None] = []
    base_ids: list[str | None] = []
    sources: list[int] = []  # indices of earlier normal items, candidates for duplication
    truth: dict[str, list[Any]] = {field.name: [] for field in TRUTH_SCHEMA}
    titles: list[str | None] = []
    descriptions: list[str | None] = []
    photos_used = 0

    for i, (name, text_kind) in enumerate(zip(kinds, text_kinds)):
        kind = KIND_BY_NAME[name]
        item_rng = np.random.default_rng([seed, i])
        duplicate_of = None
        if kind.group == "duplicate":
            source = sources[int(item_rng.integers(len(sources)))]
            duplicate_of, base_id = ids[source], base_ids[source]
            if kind.build is None:
                image, params = images[source], {}
            else:
                image, params = kind.build(item_rng, Image.open(io.BytesIO(images[source])))
        else:
            base_id = BASE_IDS[photos_used % len(BASE_IDS)] if kind.uses_photo else None
            photos_used += kind.uses_photo
            image, params = kind.build(item_rng, _photo(base_id) if base_id else None)
        if kind.group == "normal":
            sources.append(i)

        caption = _caption(base_id) if base_id else "Untitled pin"
        title, description = _text(item_rng, text_kind, caption, SUBJECTS.get(base_id, "this picture"))
        images.append(image)
        base_ids.append(base_id)
        titles.append(title)
        descriptions.append(description)

        row = {
            "content_id": ids[i], "base_id": base_id, "variant": name,
            "params": json.dumps(params, sort_keys=True, ensure_ascii=False), "duplicate_of": duplicate_of,
            **{column: column == kind.flag for column in FLAG_COLUMNS},
            "bad_image_kind": name if kind.group == "bad" else None, "text_kind": text_kind,
        }
        for column, value in row.items():
            truth[column].append(value)

    corpus = pa.table(
        {
            "content_id": ids,
            "image": images,
            "title": titles,
            "description": descriptions,
            "created_at": pa.array(created, UTC_MICROS),
            "updated_at": pa.array(updated, UTC_MICROS),
            "ds": [_day(int(us)) for us in created],
        },
        schema=CORPUS_SCHEMA,
    )
    return corpus, pa.table(truth, schema=TRUTH_SCHEMA)


TRUTH_TABLE = "corpus_truth"


def write_sample_corpus(lakehouse_root: str, n_items: int, seed: int) -> bool:
    """Write the corpus and truth tables under `lakehouse_root`; False if this exact corpus is
    already there (same generator, size and seed), so repeated demos do not rewrite it."""
    from deltalake import CommitProperties, DeltaTable, write_deltalake

    root = f"{lakehouse_root.rstrip('/')}/{CORPUS.name}"
    marker = {"generator": __name__, "n_items": str(n_items), "seed": str(seed)}
    if DeltaTable.is_deltatable(root) and all(DeltaTable(root).history(1)[0].get(k) == v for k, v in marker.items()):
        return False
    corpus, truth = generate_corpus(n_items=n_items, seed=seed)
    props = CommitProperties(custom_metadata=marker)
    write_deltalake(root, corpus, mode="overwrite", partition_by=list(CORPUS.partition_by), commit_properties=props)
    write_deltalake(f"{lakehouse_root.rstrip('/')}/{TRUTH_TABLE}", truth, mode="overwrite", commit_properties=props)
    return True
