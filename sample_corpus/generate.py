"""Deterministic sample corpus of pins (image + title + description) with ground truth.

The embedding/labelling job needs realistic input that runs offline and in tests, so the
corpus is built from real photos that ship inside installed wheels (scikit-image's
``skimage.data`` and scikit-learn's sample images).  Items come in two steps:

- an ``original`` is a new picture: a random window of one of those photos (35-75% of each
  side; 45-100% for texture-like photos, so their scale varies too), resized to a random
  output size (longer side 400-512 px) and saved as JPEG.  Windows are chosen so that
  originals of the same photo look different (their 8x8 mean hashes differ in many bits),
  and photos with too little to frame differently (textures, the moon, a starfield) are
  also shot in random uneven light: originals are different pins, never duplicates of each
  other.  Their hashes are also chosen to survive copying, so copies stay close to them.
- every other item with a picture derives from one specific, earlier original (a random
  one): re-encoded, cropped, blurred, shrunk, overlaid with text or a tiled watermark,
  duplicated, stored in an unusual colour mode, or broken (truncated, lying header).  The
  rest are broken images with no picture at all (noise, zero bytes, text, NULL).

A parallel truth table records what was done so the job's labels (blur, low resolution,
text overlay, duplicates, bad images) can be checked against it.  Titles and descriptions
also carry edge cases (empty, null, very long, odd unicode, whitespace only).

Duplicate truth.  ``source_id`` is the original an item derives from (null for originals and
for bad images without a picture).  ``dup_relation`` says how it relates to that source:

- ``copy``: the same picture, re-encoded, resized, recoloured or trimmed by at most 5% per
  side (exact_duplicate, near_duplicate, recompress, rescale, grayscale, cmyk, rgba, palette,
  gray16).  A copy's ``dup_group`` is its source's content_id.
- ``edit``: derived but not a plain copy (crop of 70-90% per side, flip, blur, low_res,
  text_overlay, watermark, truncated, huge_header).  Its ``dup_group`` is its own content_id.
- ``none``: originals and bad images without a picture; ``dup_group`` is the own content_id.

So an original and all its copies form one ``dup_group``; every other item is alone in its
group, and no two items of different groups have byte-identical images (bad images without
a picture aside: several are empty or the same error text).  For near-duplicate evaluation,
pairs in the same dup_group are duplicates; pairs in different groups that share a root
(``source_id``, or the own content_id of an original) involve an edit of that original and
are ambiguous (an edit and its source, or two edits / an edit and a copy of one original):
ignore them; all other pairs are distinct pictures, including two originals of the same
photo.  ``duplicate_of`` keeps its narrower meaning: the source of an exact_duplicate or
near_duplicate item (the items flagged is_exact_duplicate / is_near_duplicate), else null.

Everything random comes from ``numpy.random.default_rng`` seeded by ``seed``, so the same
arguments give byte-identical tables.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import io
import json
import math
import re
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

from signals.contracts import CORPUS, UTC_MICROS, keeps_rows

CORPUS_SCHEMA = CORPUS.schema  # the job's input contract (signals.contracts)

TRUTH_SCHEMA = pa.schema(
    [
        pa.field("content_id", pa.string(), nullable=False),
        pa.field("base_id", pa.string()),  # photo the picture comes from; null without a picture
        pa.field("variant", pa.string(), nullable=False),  # a KINDS name
        pa.field("params", pa.string(), nullable=False),  # JSON of what the variant did
        # exact_duplicate / near_duplicate only: the original it duplicates (== source_id)
        pa.field("duplicate_of", pa.string()),
        # the earlier original this item derives from; null for originals and bad images
        # without a picture (corrupt, empty, not_image, null)
        pa.field("source_id", pa.string()),
        # copies: their source original's content_id; everything else: its own content_id.
        # Same dup_group = same picture (true near-duplicates).
        pa.field("dup_group", pa.string(), nullable=False),
        # "copy" (same picture as source_id), "edit" (derived from source_id but not a plain
        # copy: ambiguous against its source's dup_group and against other items derived
        # from the same source; evaluations ignore such pairs) or "none" (no source)
        pa.field("dup_relation", pa.string(), nullable=False),
        pa.field("is_blurred", pa.bool_(), nullable=False),
        pa.field("is_low_res", pa.bool_(), nullable=False),
        pa.field("has_text_overlay", pa.bool_(), nullable=False),
        pa.field("is_exact_duplicate", pa.bool_(), nullable=False),
        pa.field("is_near_duplicate", pa.bool_(), nullable=False),
        pa.field("is_bad_image", pa.bool_(), nullable=False),
        pa.field("bad_image_kind", pa.string()),
        pa.field("text_kind", pa.string(), nullable=False),
        # the title and description were rewritten as spam (SPAM_SHARE of "normal" texts)
        pa.field("is_spam_text", pa.bool_(), nullable=False),
    ]
)
COPY, EDIT, NONE = "copy", "edit", "none"  # dup_relation values

MAX_SIDE = 512  # longest side of an original; every variant stays small and fast to encode
MIN_SIDE = 400  # shortest "longest side" of an original, so 70% crops stay >= 256 px
MAX_ASPECT = 1.5  # originals are at most 3:2 either way, so their short side is >= 267 px
MAX_UPSCALE = 2.0  # more than that and the interpolation reads as blur
WINDOW = (0.35, 0.75)  # fraction of each side of the photo an original keeps
# Texture-like photos look the same at every position, so their originals also vary the
# scale: windows from 45% to the whole photo (a 2x zoom range).
TEXTURE_WINDOW = (0.45, 1.0)
TEXTURES = frozenset({"brick", "grass", "gravel"})
# Photos without large-scale structure (textures, a starfield, the even grey moon): at 8x8
# their cells all sit near the mean, so any picture of them hashes to noise and a copy
# would not keep its hash.  Their originals are shot in uneven light instead: "shade" darkens
# parts of the picture, "glow" adds a sky-glow gradient to a dark one.
LIGHTING: dict[str, str] = {
    "brick": "shade", "grass": "shade", "gravel": "shade", "moon": "shade", "hubble_deep_field": "glow",
}
LIGHT_NODES = 3  # the light field interpolates a 3x3 grid of random levels
LIGHT_BELOW = 20  # other originals get uneven light too if no window is this many bits away
HASH_TARGET = 26  # originals of one photo: wanted mean-hash distance to the earlier ones
WINDOW_TRIES = 512  # candidate windows (or light fields) per original, hashed at once
FRAGILE_LEVEL = 1.5  # an 8x8 cell this close (grey levels) to the mean may flip when re-encoded
STABLE_SCORE = 5  # candidates at most this unstable are preferred (see _instability)
STABLE_POOL = 32  # ... or the most stable ones, when fewer qualify

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
    """Shrink so the longer side is at most ``max_side``."""
    scale = max_side / max(img.size)
    if scale >= 1:
        return img
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.Resampling.LANCZOS)


@functools.cache
def _photo(base_id: str) -> Image.Image:
    """Decoded RGB photo at full resolution; cached because every original of it crops it.

    Callers must not draw on the returned image in place (it is shared).
    """
    if base_id in dict(SKLEARN_PHOTOS):
        from sklearn.datasets import load_sample_image  # heavy import, only when needed

        pixels = load_sample_image(f"{base_id}.jpg")
    else:
        import skimage.data  # heavy import, only when needed

        pixels = getattr(skimage.data, base_id)()
    return Image.fromarray(np.asarray(pixels)).convert("RGB")


def _mean_hash(img: Image.Image, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """64-bit average hash as 64 bools: 8x8 box-averaged luminance above its mean."""
    cells = np.asarray(img.convert("L").resize((8, 8), Image.Resampling.BOX, box=box), dtype=np.float32)
    return (cells > cells.mean()).ravel()


def _clean_caption(line: str) -> str:
    """Turn a loader docstring's first line into a pin-like caption."""
    text = line.strip().rstrip(".").replace('"', "")
    text = re.sub(r"^(Color image of the|Gray-level)\s+", "", text)
    text = re.sub(r"\s+image$", "", text)
    return text[:1].upper() + text[1:]


@functools.cache
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
# Originals: a new picture cut from a base photo
# --------------------------------------------------------------------------------------


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


def _windows(rng: np.random.Generator, size: tuple[int, int], fractions: tuple[float, float], n: int) -> np.ndarray:
    """n random boxes (left, top, right, bottom) keeping a ``fractions`` share of each side
    of a ``size`` photo, at most MAX_ASPECT either way, at random positions."""
    width, height = size
    w = np.maximum(1, np.round(width * rng.uniform(*fractions, size=n)))
    low = np.maximum(fractions[0] * height, w / MAX_ASPECT)
    high = np.minimum(fractions[1] * height, w * MAX_ASPECT)
    h = np.clip(np.round(rng.uniform(low, np.maximum(low, high))), 1, height)
    left = np.floor(rng.random(n) * (width - w + 1))
    top = np.floor(rng.random(n) * (height - h + 1))
    return np.stack([left, top, left + w, top + h], axis=1).astype(np.int64)


@functools.cache
def _summed_area(base_id: str) -> np.ndarray:
    """Summed-area table of the photo's luminance (one row and column of zeros first)."""
    luminance = np.asarray(_photo(base_id).convert("L"), dtype=np.float64)
    table = np.zeros((luminance.shape[0] + 1, luminance.shape[1] + 1))
    table[1:, 1:] = luminance.cumsum(axis=0).cumsum(axis=1)
    return table


def _cells(table: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Mean luminance of the 8x8 cells of many windows at once (n, 64), from a summed-area
    table: what _mean_hash thresholds, with cell edges rounded to whole pixels."""
    steps = np.arange(9) / 8
    xs = np.round(boxes[:, :1] + (boxes[:, 2:3] - boxes[:, :1]) * steps).astype(np.int64)
    ys = np.round(boxes[:, 1:2] + (boxes[:, 3:4] - boxes[:, 1:2]) * steps).astype(np.int64)
    corners = table[ys[:, :, None], xs[:, None, :]]  # (n, 9, 9)
    sums = corners[:, 1:, 1:] - corners[:, :-1, 1:] - corners[:, 1:, :-1] + corners[:, :-1, :-1]
    areas = np.diff(ys, axis=1)[:, :, None] * np.diff(xs, axis=1)[:, None, :]
    return (sums / np.maximum(areas, 1)).reshape(len(boxes), 64)


def _bits(cells: np.ndarray) -> np.ndarray:
    """Mean hashes (n, 64) of cell means (n, 64)."""
    return cells > cells.mean(axis=1, keepdims=True)


def _fragile(cells: np.ndarray) -> np.ndarray:
    """How many cells of each row sit within FRAGILE_LEVEL of the row's mean."""
    return (np.abs(cells - cells.mean(axis=1, keepdims=True)) < FRAGILE_LEVEL).sum(axis=1)


def _instability(table: np.ndarray, boxes: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """How far each window's mean hash is from surviving a copy: fragile cells (re-encoding)
    plus the most bits that keeping 96% of each side at a 0-3% offset flips (near_duplicate)."""
    w = (boxes[:, 2] - boxes[:, 0])[:, None]
    h = (boxes[:, 3] - boxes[:, 1])[:, None]
    bits = _bits(cells)
    flipped = np.zeros(len(boxes), dtype=np.int64)
    for dx, dy in ((0.03, 0.0), (0.0, 0.03), (0.03, 0.03), (0.015, 0.015)):
        left, top = boxes[:, :1] + np.round(dx * w), boxes[:, 1:2] + np.round(dy * h)
        inner = np.hstack([left, top, left + np.round(0.96 * w), top + np.round(0.96 * h)]).astype(np.int64)
        flipped = np.maximum(flipped, (_bits(_cells(table, inner)) != bits).sum(axis=1))
    return _fragile(cells) + flipped


def _most_distinct(bits: np.ndarray, earlier: Sequence[np.ndarray], pool: np.ndarray) -> tuple[int, int]:
    """(index into ``bits``, distance) of the first candidate in ``pool`` whose hash is
    HASH_TARGET bits from every earlier one, else of the one farthest from its nearest
    earlier hash; the distance is to that nearest earlier hash (64 when there is none)."""
    if not earlier:
        return int(pool[0]), 64
    distances = (bits[pool, None, :] != np.asarray(earlier)[None, :, :]).sum(axis=2).min(axis=1)
    far_enough = np.flatnonzero(distances >= HASH_TARGET)
    best = int(far_enough[0]) if len(far_enough) else int(np.argmax(distances))
    return int(pool[best]), int(distances[best])


def _stable_pool(instability: np.ndarray) -> np.ndarray:
    """Candidates (in drawing order) unstable at most STABLE_SCORE, or the STABLE_POOL most stable."""
    pool = np.flatnonzero(instability <= STABLE_SCORE)
    if len(pool) < STABLE_POOL:
        pool = np.sort(np.argsort(instability, kind="stable")[:STABLE_POOL])
    return pool


def _smooth_weights(n: int) -> np.ndarray:
    """(n, LIGHT_NODES) weights interpolating LIGHT_NODES levels across n pixels (smoothstep
    between neighbouring nodes, so the light has no visible kinks)."""
    u = (np.arange(n) + 0.5) / n * (LIGHT_NODES - 1)
    k = np.minimum(np.floor(u).astype(np.int64), LIGHT_NODES - 2)
    t = u - k
    t = t * t * (3 - 2 * t)
    weights = np.zeros((n, LIGHT_NODES))
    weights[np.arange(n), k] = 1 - t
    weights[np.arange(n), k + 1] = t
    return weights


def _lit(pixels: np.ndarray, field: np.ndarray, mode: str, strength: float) -> np.ndarray:
    """Pixels (or cell means) under a light field in [0, 1] (broadcast over channels)."""
    if mode == "shade":
        return pixels * (1.0 - strength * (1.0 - field))
    return pixels + strength * field  # glow


def _light(
    rng: np.random.Generator, picture: Image.Image, mode: str, earlier: Sequence[np.ndarray]
) -> tuple[Image.Image, dict[str, Any]]:
    """The picture in uneven light: of WINDOW_TRIES random light fields the one that makes its
    mean hash stable and most distinct from the earlier originals (like the windows)."""
    strength = _uniform(rng, 0.35, 0.55) if mode == "shade" else _uniform(rng, 25.0, 45.0)
    grids = rng.random((WINDOW_TRIES, LIGHT_NODES, LIGHT_NODES))
    low, high = grids.min(axis=(1, 2), keepdims=True), grids.max(axis=(1, 2), keepdims=True)
    grids = np.round((grids - low) / (high - low), 3)  # each field spans the whole 0..1
    cells = np.asarray(picture.convert("L").resize((8, 8), Image.Resampling.BOX), dtype=np.float64)
    at_cells = np.einsum("yi,kij,xj->kyx", _smooth_weights(8), grids, _smooth_weights(8))
    lit_cells = _lit(cells[None], at_cells, mode, strength).reshape(WINDOW_TRIES, 64)
    choice, _ = _most_distinct(_bits(lit_cells), earlier, _stable_pool(_fragile(lit_cells)))
    grid = grids[choice]
    field = _smooth_weights(picture.height) @ grid @ _smooth_weights(picture.width).T
    pixels = _lit(np.asarray(picture, dtype=np.float64), field[:, :, None], mode, strength)
    out = Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8))
    return out, {"mode": mode, "strength": strength, "grid": grid.tolist()}


def _original(
    rng: np.random.Generator, base_id: str, earlier: Sequence[np.ndarray]
) -> tuple[bytes, dict[str, Any], np.ndarray]:
    """A new pin cut from the photo: (JPEG q90 bytes, params, mean hash of the picture).

    WINDOW_TRIES random windows are drawn; among those whose mean hash would survive
    copying (_stable_pool), the first at least HASH_TARGET bits away from every earlier
    original of this photo (``earlier``) is kept, else the one farthest from its nearest
    earlier original, so originals of one photo are different pictures.  Windows are never
    so small that the picture would be upscaled more than MAX_UPSCALE; it is resized
    (LANCZOS) to a random longer side of MIN_SIDE..MAX_SIDE px.  Photos in LIGHTING hash to
    noise whatever the window, so there the window is random and the light decides; other
    photos get uneven light too when no window is LIGHT_BELOW bits from the earlier ones
    (a photo with little to frame differently, like the rocket at dusk).
    """
    photo = _photo(base_id)
    low, high = TEXTURE_WINDOW if base_id in TEXTURES else WINDOW
    low = min(high, max(low, MIN_SIDE / MAX_UPSCALE / max(photo.size)))
    boxes = _windows(rng, photo.size, (low, high), WINDOW_TRIES)
    choice, distance = 0, 0
    if base_id not in LIGHTING:
        table = _summed_area(base_id)
        cells = _cells(table, boxes)
        choice, distance = _most_distinct(_bits(cells), earlier, _stable_pool(_instability(table, boxes, cells)))
    box = tuple(int(v) for v in boxes[choice])
    w, h = box[2] - box[0], box[3] - box[1]
    longest = min(MAX_SIDE, max(MIN_SIDE, math.floor(MAX_UPSCALE * max(w, h))))
    longer = int(rng.integers(MIN_SIDE, longest + 1))
    scale = longer / max(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    picture = photo.resize(size, Image.Resampling.LANCZOS, box=box)
    params: dict[str, Any] = {"box": list(box), "photo_size": list(photo.size), "size": list(size), "quality": 90}
    if distance < LIGHT_BELOW:  # LIGHTING photos, or no window different enough
        picture, params["light"] = _light(rng, picture, LIGHTING.get(base_id, "shade"), earlier)
    return _encode(picture), params, _mean_hash(picture)


# --------------------------------------------------------------------------------------
# Derived variants: one function per kind, each gets the source original (or None for bad
# images without a picture) and returns (image bytes, params for the truth)
# --------------------------------------------------------------------------------------


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


def _random_crop(rng: np.random.Generator, img: Image.Image, low: float, high: float) -> tuple[Image.Image, dict[str, Any]]:
    """Keep a random low..high fraction of each side, at a random position."""
    w, h = (max(1, round(side * _uniform(rng, low, high))) for side in img.size)
    left = int(rng.integers(img.width - w + 1))
    top = int(rng.integers(img.height - h + 1))
    return img.crop((left, top, left + w, top + h)), {"box": [left, top, left + w, top + h]}


def _crop(rng: np.random.Generator, src: Source) -> tuple[bytes, dict[str, Any]]:
    """A re-framed upload of the original (70-90% of each side)."""
    cropped, params = _random_crop(rng, src.image, 0.7, 0.9)
    return _encode(cropped), params


def _rescale(rng: np.random.Generator, src: Source) -> tuple[bytes, dict[str, Any]]:
    """Mild resize (0.8-1.25x) that keeps the shorter side >= 256 px, so not low-res."""
    img = src.image
    scale = max(_uniform(rng, 0.8, 1.25), math.ceil(256_000 / min(img.size)) / 1000)
    size = (round(img.width * scale), round(img.height * scale))
    return _encode(img.resize(size, Image.Resampling.BICUBIC)), {"scale": scale, "size": list(size)}


def _recompress(rng: np.random.Generator, src: Source) -> tuple[bytes, dict[str, Any]]:
    """Heavy JPEG artefacts (q15-40) without changing the content."""
    quality = int(rng.integers(15, 41))
    return _encode(src.image, quality=quality), {"quality": quality}


def _flip(rng: np.random.Generator, src: Source) -> tuple[bytes, dict[str, Any]]:
    """Mirror image (same content, different pixels), re-saved at q75-95."""
    quality = int(rng.integers(75, 96))
    flipped = src.image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return _encode(flipped, quality=quality), {"direction": "horizontal", "quality": quality}


def _blur(rng: np.random.Generator, src: Source) -> tuple[bytes, dict[str, Any]]:
    """Clearly out of focus (Gaussian radius 2.5-6) -> is_blurred."""
    radius = _uniform(rng, 2.5, 6.0)
    return _encode(src.image.filter(ImageFilter.GaussianBlur(radius))), {"radius": radius}


def _low_res(rng: np.random.Generator, src: Source) -> tuple[bytes, dict[str, Any]]:
    """Thumbnail-sized upload (longer side 32-64 px) -> is_low_res."""
    longer = int(rng.integers(32, 65))
    small = _fit(src.image, longer)
    return _encode(small), {"longer_side": longer, "size": list(small.size)}


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
    fill = _pick(rng, ((255, 255, 255), (255, 230, 0), (255, 60, 60)))
    line_height = size * 1.2
    top = (out.height - line_height * n_lines) / 2
    for k, line in enumerate(lines):
        xy = (out.width / 2, top + line_height * (k + 0.5))
        draw.text(xy, line, font=font, fill=fill, anchor="mm", stroke_width=max(1, size // 12), stroke_fill=(0, 0, 0))
    return _encode(out), {"lines": lines, "font_size": size, "fill": list(fill)}


WATERMARK_PHRASES: tuple[str, ...] = ("SAMPLE", "PREVIEW", "STOCK PHOTO", "DO NOT COPY", "PROOF")


def _watermark(rng: np.random.Generator, src: Source) -> tuple[bytes, dict[str, Any]]:
    """A stock-photo watermark: one phrase tiled over the whole picture, faint (25-45% opaque) and
    turned 20-40 degrees, which OCR reads worse than an upright overlay -> has_text_overlay."""
    phrase = _pick(rng, WATERMARK_PHRASES)
    opacity = _uniform(rng, 0.25, 0.45)
    angle = _uniform(rng, 20.0, 40.0) * _pick(rng, (-1, 1))
    shade = _pick(rng, (255, 0))
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
    return _encode(out.convert("RGB")), {"phrase": phrase, "opacity": opacity, "angle": angle, "font_size": size, "shade": shade}


def _exact_duplicate(rng: np.random.Generator, src: Source) -> tuple[bytes, dict[str, Any]]:
    """The original's file uploaded again, byte for byte."""
    return src.data, {}


def _near_duplicate(rng: np.random.Generator, src: Source) -> tuple[bytes, dict[str, Any]]:
    """Re-upload of the original: tiny crop (95-99%), q70-85, slight brightness change."""
    cropped, params = _random_crop(rng, src.image, 0.95, 0.99)
    brightness = _uniform(rng, 0.9, 1.1)
    quality = int(rng.integers(70, 86))
    out = ImageEnhance.Brightness(cropped).enhance(brightness)
    return _encode(out, quality=quality), {**params, "brightness": brightness, "quality": quality}


def _grayscale(rng: np.random.Generator, src: Source) -> tuple[bytes, dict[str, Any]]:
    """Single-channel 'L' JPEG."""
    return _encode(src.image.convert("L")), {"mode": "L", "format": "JPEG"}


def _cmyk(rng: np.random.Generator, src: Source) -> tuple[bytes, dict[str, Any]]:
    """Print-style CMYK JPEG, which naive RGB pipelines mis-handle."""
    return _encode(src.image.convert("CMYK")), {"mode": "CMYK", "format": "JPEG"}


def _rgba(rng: np.random.Generator, src: Source) -> tuple[bytes, dict[str, Any]]:
    """PNG with a real alpha channel: opaque centre fading to semi-transparent corners."""
    img = src.image
    floor = int(rng.integers(0, 128))
    yy, xx = np.mgrid[-1 : 1 : img.height * 1j, -1 : 1 : img.width * 1j]
    fade = np.clip(1.0 - np.hypot(xx, yy) / np.sqrt(2), 0.0, 1.0)
    alpha = (floor + (255 - floor) * fade).astype(np.uint8)
    out = img.copy()
    out.putalpha(Image.fromarray(alpha))
    return _encode(out, "PNG"), {"mode": "RGBA", "format": "PNG", "corner_alpha": floor}


def _palette(rng: np.random.Generator, src: Source) -> tuple[bytes, dict[str, Any]]:
    """Indexed-colour ('P') PNG with 16-128 colours."""
    colors = int(rng.integers(16, 129))
    indexed = src.image.quantize(colors=colors, method=Image.Quantize.FASTOCTREE)
    return _encode(indexed, "PNG"), {"mode": "P", "format": "PNG", "colors": colors}


def _gray16(rng: np.random.Generator, src: Source) -> tuple[bytes, dict[str, Any]]:
    """16-bit grayscale PNG (mode 'I;16'), as scientific/medical sources produce."""
    deep = np.asarray(src.image.convert("L"), dtype=np.uint16) * 257  # full 0..65535 range
    return _encode(Image.fromarray(deep), "PNG"), {"mode": "I;16", "format": "PNG"}


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
    fraction = _uniform(rng, 0.4, 0.6)
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
    text = _pick(rng, NOT_IMAGE_TEXTS)
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
    relation: str  # dup_relation to the source original: copy | edit | none (no source)
    build: Builder | None  # None: originals, built by _original from a base photo

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
FLAG_COLUMNS: tuple[str, ...] = (
    "is_blurred", "is_low_res", "has_text_overlay", "is_exact_duplicate", "is_near_duplicate", "is_bad_image",
)
UNIQUE_TRIES = 20  # edits are redrawn (with the item's generator) until their bytes are new

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


# Spam texts, for the spam_text training task: a share of the "normal" texts, chosen after the
# rest of the plan and written with each item's own generator after its other draws, so every
# other item, image, day and truth column is what it was before spam existed. Some carry the
# phrases and links a rule knows, some only the stuffing and shouting it weighs less.
SPAM_SHARE = 0.2
SPAM_HOOKS: tuple[str, ...] = (
    "Click here to make money from home!!!!", "Limited time offer, buy now at the lowest price",
    "DM me for a promo code", "You have won a free gift, check my profile", "Earn cash with crypto, 100% guaranteed",
    "Best deals of the week on {subject}", "Cheap {subject} prints shipped today",
)
SPAM_LINKS: tuple[str, ...] = ("www.cheap-deals.xyz", "http://bit.ly/3xYz", "best-prints.shop/sale", "promo-hub.top")
SPAM_STUFFING: tuple[str, ...] = ("cheap", "sale", "deal", "wholesale", "discount", "prints", "shipping")


def _spam_text(rng: np.random.Generator, caption: str, subject: str) -> tuple[str, str]:
    """(title, description) of a spam pin about `subject`: a hook, keyword stuffing, sometimes links
    and shouting."""
    hook = _pick(rng, SPAM_HOOKS).format(subject=subject)
    words = [_pick(rng, SPAM_STUFFING) for _ in range(int(rng.integers(4, 9)))]
    links = [_pick(rng, SPAM_LINKS) for _ in range(int(rng.integers(0, 3)))]
    description = " ".join([hook, " ".join(words * 2), *links])
    title = f"{caption} {hook}" if rng.random() < 0.5 else hook
    return (title.upper() if rng.random() < 0.3 else title), description


# --------------------------------------------------------------------------------------
# Assembly
# --------------------------------------------------------------------------------------


def _plan(rng: np.random.Generator, n: int, weights: dict[str, float], first: str) -> list[str]:
    """Kinds for n items: ``first`` leads, every other kind appears at least once when n
    allows, the rest are drawn by weight, then all but the first are shuffled.

    Leading with an original guarantees that every derived item has an earlier source.
    """
    names = list(weights)
    share = np.array([weights[name] for name in names])
    extra = rng.choice(len(names), size=max(0, n - len(names)), p=share / share.sum())
    rest = [name for name in names if name != first] + [names[i] for i in extra]
    return ([first] + [rest[i] for i in rng.permutation(len(rest))])[:n]


def _timestamps(rng: np.random.Generator, n: int, end_date: dt.date, days: int) -> tuple[np.ndarray, np.ndarray]:
    """created_at (microseconds since epoch, UTC) spread over the ``days`` days ending at
    end_date, non-decreasing with content_id (so sources are also older in time);
    updated_at is either created_at or a later moment inside the window.
    """
    window_end = dt.datetime.combine(end_date + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    end_us = int(window_end.timestamp()) * 1_000_000
    start_us = end_us - days * 86_400 * 1_000_000
    created = np.sort(rng.integers(start_us, end_us, size=n))
    later = rng.integers(created, end_us)
    updated = np.where(rng.random(n) < 0.5, created, later)
    return created, updated


def _day(micros: int) -> str:
    """YYYY-MM-DD (UTC) of a microsecond timestamp; the ds partition value."""
    return dt.datetime.fromtimestamp(micros // 1_000_000, tz=dt.UTC).date().isoformat()


def _pick_source(rng: np.random.Generator, originals: Sequence[int], copies: Counter[int], last_copy: bool) -> int:
    """A random earlier original to derive from.

    ``last_copy``: the plan's last copy item; if no original has two copies yet, it goes to
    an original that has one, so every corpus holds a dup_group of three or more.
    """
    candidates = list(originals)
    if last_copy and max(copies.values(), default=0) < 2:
        candidates = [j for j in originals if copies[j] == 1] or candidates
    return _pick(rng, candidates)


def generate_corpus(
    n_items: int = 480,
    seed: int = 7,
    end_date: dt.date = dt.date(2026, 11, 20),
    days: int = 7,
) -> tuple[pa.Table, pa.Table]:
    """Return (corpus, truth) with exactly n_items rows each, same content_id order.

    Originals cycle through the base photos; every other item with a picture derives from a
    random earlier original (and so shares its base).  The plan always leads with an
    original.  Each item draws from its own generator seeded by (seed, index), so changing
    one transform does not reshuffle every other item.
    """
    rng = np.random.default_rng(seed)
    kinds = _plan(rng, n_items, {kind.name: kind.weight for kind in KINDS}, first="original")
    text_kinds = _plan(rng, n_items, TEXT_WEIGHTS, first="normal")
    created, updated = _timestamps(rng, n_items, end_date, days)
    spam = (rng.random(n_items) < SPAM_SHARE) & (np.array(text_kinds) == "normal")
    copy_items = [i for i, name in enumerate(kinds) if KIND_BY_NAME[name].relation == COPY]

    ids = [f"pin-{i:06d}" for i in range(n_items)]
    images: list[bytes | None] = []
    base_ids: list[str | None] = []
    originals: list[int] = []  # indices of the originals so far: the possible sources
    hashes: dict[str, list[np.ndarray]] = {base_id: [] for base_id in BASE_IDS}  # per photo
    copies: Counter[int] = Counter()  # copies made of each original so far
    seen: set[bytes] = set()  # sha256 of every image so far
    truth: dict[str, list[Any]] = {field.name: [] for field in TRUTH_SCHEMA}
    titles: list[str | None] = []
    descriptions: list[str | None] = []

    for i, (name, text_kind) in enumerate(zip(kinds, text_kinds)):
        kind = KIND_BY_NAME[name]
        item_rng = np.random.default_rng([seed, i])
        source: int | None = None
        if kind.build is None:  # an original
            base_id = BASE_IDS[len(originals) % len(BASE_IDS)]
            image, params, mean_hash = _original(item_rng, base_id, hashes[base_id])
            hashes[base_id].append(mean_hash)
            originals.append(i)
        elif kind.derived:
            source = _pick_source(item_rng, originals, copies, bool(copy_items) and i == copy_items[-1])
            base_id, src = base_ids[source], Source(images[source])
            for _ in range(UNIQUE_TRIES if kind.relation == EDIT else 1):
                image, params = kind.build(item_rng, src)
                if image is None or hashlib.sha256(image).digest() not in seen:
                    break  # an edit that repeats an earlier one (same flip, same size) is redrawn
            if kind.relation == COPY:
                copies[source] += 1
        else:
            base_id = None
            image, params = kind.build(item_rng, None)
        if image is not None:
            seen.add(hashlib.sha256(image).digest())

        caption = _caption(base_id) if base_id else "Untitled pin"
        title, description = _text(item_rng, text_kind, caption, SUBJECTS.get(base_id, "this picture"))
        if spam[i]:
            title, description = _spam_text(item_rng, caption, SUBJECTS.get(base_id, "this picture"))
        images.append(image)
        base_ids.append(base_id)
        titles.append(title)
        descriptions.append(description)

        source_id = ids[source] if source is not None else None
        row = {
            "content_id": ids[i], "base_id": base_id, "variant": name,
            "params": json.dumps(params, sort_keys=True, ensure_ascii=False),
            "duplicate_of": source_id if kind.group == "duplicate" else None,
            "source_id": source_id,
            "dup_group": source_id if kind.relation == COPY else ids[i],
            "dup_relation": kind.relation,
            **{column: column == kind.flag for column in FLAG_COLUMNS},
            "bad_image_kind": name if kind.group == "bad" else None, "text_kind": text_kind,
            "is_spam_text": bool(spam[i]),
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


def truth_root(lakehouse_root: str) -> str:
    """The sample corpus truth table of the lakehouse, or a FileNotFoundError saying where it comes
    from: only `make-corpus` writes it (a lakehouse without it holds another corpus, or is mistyped)."""
    from deltalake import DeltaTable

    root = f"{lakehouse_root.rstrip('/')}/{TRUTH_TABLE}"
    if not DeltaTable.is_deltatable(root):
        raise FileNotFoundError(f"no sample corpus truth at {root}: it is written with the sample corpus (content-signals "
                                "make-corpus); or check --profile/--set lakehouse")
    return root


def write_sample_corpus(lakehouse_root: str, n_items: int, seed: int, videos: bool = False) -> bool:
    """Write the corpus and truth tables under `lakehouse_root`; False if this exact corpus is
    already there (same generator, size, seed and videos), so repeated demos do not rewrite it.
    With `videos`, the sample videos (sample_corpus/videos.py) are extra items in a `video` column,
    with their own truth table. The corpus is committed last: its commit's marker says the truths are
    written, so a run killed between the tables' commits is written again by the next."""
    from deltalake import CommitProperties, DeltaTable, write_deltalake

    root = f"{lakehouse_root.rstrip('/')}/{CORPUS.name}"
    marker = {"generator": __name__, "n_items": str(n_items), "seed": str(seed), "videos": str(videos).lower()}
    if DeltaTable.is_deltatable(root):
        # the newest commit that wrote rows: `maintain` vacuums the sample corpus and may set its log retention, which change none
        written = next((c for c in DeltaTable(root).history() if not keeps_rows(c)), {})
        if all(written.get(k, "false" if k == "videos" else None) == v for k, v in marker.items()):
            return False
    corpus, truth = generate_corpus(n_items=n_items, seed=seed)
    props = CommitProperties(custom_metadata=marker)
    overwrite = {"mode": "overwrite", "schema_mode": "overwrite", "commit_properties": props}
    if videos:
        from sample_corpus.videos import VIDEO_TRUTH_TABLE, with_videos

        corpus, video_truth = with_videos(corpus, seed)
        write_deltalake(f"{lakehouse_root.rstrip('/')}/{VIDEO_TRUTH_TABLE}", video_truth, **overwrite)
    write_deltalake(f"{lakehouse_root.rstrip('/')}/{TRUTH_TABLE}", truth, **overwrite)
    write_deltalake(root, corpus, partition_by=list(CORPUS.partition_by), **overwrite)
    return True
