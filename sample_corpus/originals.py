"""Originals of the sample corpus: new pictures cut from the base photos, each a random window
resized to a random size, chosen (from many candidate windows hashed at once through a summed-area
table) so that its mean hash survives copying and differs from the earlier originals of its photo;
photos with too little to frame differently are also shot in random uneven light."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from sample_corpus.draws import uniform
from sample_corpus.encoding import encode
from sample_corpus.photos import base_photo

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


def _mean_hash(img: Image.Image, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """64-bit average hash as 64 bools: 8x8 box-averaged luminance above its mean."""
    cells = np.asarray(img.convert("L").resize((8, 8), Image.Resampling.BOX, box=box), dtype=np.float32)
    return (cells > cells.mean()).ravel()


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
    luminance = np.asarray(base_photo(base_id).convert("L"), dtype=np.float64)
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
    strength = uniform(rng, 0.35, 0.55) if mode == "shade" else uniform(rng, 25.0, 45.0)
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


def original(
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
    photo = base_photo(base_id)
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
    return encode(picture), params, _mean_hash(picture)
