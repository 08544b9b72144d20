"""64-bit DCT perceptual hash (pHash), SimHash of embeddings and LSH band keys, for near-duplicate detection.

pHash as in pHash.org (Zauner 2010): luminance, a 7x7 mean filter against noise and JPEG
artefacts, resize to 32x32, 2-D DCT, keep the 8x8 lowest frequencies *after* the first row and
column (the DC term and the coarsest gradients carry brightness, not structure), and set one bit
per coefficient that is above their median. Re-encoding, mild resizing and brightness changes
move few bits; different photos differ in ~32 of 64.

A flat image has no structure for the hash to describe: one colour, variations under half a
grey level, structure along one axis only (stripes, a gradient, two bands: the first row and
column are left out), or only finer than the 8x8 lowest frequencies. Its 64 coefficients are all
about zero, so every bit is rounding noise, and all flat images share the hash 0 (nothing is
above the median). `phash_of` says so: such a hash must not link images, or every blank,
all-white or all-black upload would join one duplicate group; their copies are found by the
embeddings alone (jobs.dedup). A cosine pattern of amplitude a grey levels gives a coefficient of 16a (orthonormal DCT
over 32x32), so FLAT_COEFFICIENT = 8 means no pattern of half a grey level, below what 8 bits
can show.

Hashes are Python ints in the signed int64 range (bit 63 set -> negative), so Spark and Arrow
store them as LongType/int64 without overflow; `hamming` and `band_keys` accept either sign.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageFilter
from scipy.fft import dctn

HASH_BITS = 64
_MASK = (1 << HASH_BITS) - 1
FLAT_COEFFICIENT = 8.0


def to_int64(value: int) -> int:
    """A 64-bit pattern as the signed int64 with the same bits."""
    value &= _MASK
    return value - (1 << HASH_BITS) if value >> (HASH_BITS - 1) else value


def _coefficients(image: Image.Image) -> np.ndarray:
    """The 64 DCT coefficients the hash is made of."""
    small = image.convert("L").filter(ImageFilter.BoxBlur(3)).resize((32, 32), Image.Resampling.BILINEAR)
    return dctn(np.asarray(small, dtype=np.float64), type=2, norm="ortho")[1:9, 1:9].ravel()


def _bits(coefficients: np.ndarray) -> int:
    bits = coefficients > np.median(coefficients)
    return to_int64(int("".join("1" if b else "0" for b in bits), 2))


def perceptual_hash(image: Image.Image) -> int:
    """The 64-bit pHash of an image, as a signed int64-compatible int."""
    return _bits(_coefficients(image))


def phash_of(image: Image.Image) -> tuple[int, bool]:
    """The pHash and whether the image is flat (its hash is noise that must link nothing)."""
    coefficients = _coefficients(image)
    return _bits(coefficients), bool(np.abs(coefficients).max() < FLAT_COEFFICIENT)


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two 64-bit hashes."""
    return ((a ^ b) & _MASK).bit_count()


_TAG_SHIFT = 56  # a key's band index sits above its chunk bits (chunks are at most 32 bits wide from 2 bands on)


def bands_for(max_distance: int) -> int:
    """The fewest bands of `band_probes` that make every pair within `max_distance` bits share a
    key: d differing bits over b bands leave a band with at most d // b of them (pigeonhole),
    and two hashes share a key of a band where they differ in at most 2 bits."""
    return max(1, -(-(max_distance + 1) // 3))


def bands_for_cosine(cosine: float, miss: float = 1e-4) -> int:
    """The fewest bands of `band_probes` that make two vectors at `cosine` share a key of their
    64-bit SimHashes but with probability under `miss`: each bit differs independently with
    probability angle / pi, and a band meets when it differs in at most 2 of its bits."""
    p = math.acos(max(-1.0, min(1.0, cosine))) / math.pi
    for bands in range(1, HASH_BITS // 2 + 1):
        base, extra = divmod(HASH_BITS, bands)
        widths = [base + (band < extra) for band in range(bands)]
        missed = math.prod(1 - sum(math.comb(w, k) * p**k * (1 - p) ** (w - k) for k in range(3)) for w in widths)
        if missed < miss:
            return bands
    return HASH_BITS // 2


def band_probes(bands: int) -> list[tuple[int, int, int]]:
    """The LSH scheme, as (shift, mask, tag) per key: the key is ((h >>> shift) & mask) ^ tag.

    The 64 bits are cut into `bands` near-equal chunks; each chunk gives its own key and one
    key per single flipped bit (the tag carries the flip and the band index, so equal chunks in
    different bands never collide). Two hashes share a key exactly when some band differs in
    at most 2 bits, so every pair within 3 * bands - 1 bits shares one. One definition for
    `band_keys` and the dedup job's Spark column (jobs.dedup), so the two always match.
    """
    if not 1 <= bands <= HASH_BITS // 2:
        raise ValueError(f"bands must be between 1 and {HASH_BITS // 2}, got {bands}")
    base, extra = divmod(HASH_BITS, bands)
    probes, shift = [], 0
    for band in range(bands):
        width = base + (band < extra)
        probes += [(shift, to_int64((1 << width) - 1), to_int64((band << _TAG_SHIFT) | flip)) for flip in [0] + [1 << bit for bit in range(width)]]
        shift += width
    return probes


def band_keys(h: int, bands: int) -> list[int]:
    """The LSH keys of a 64-bit hash (`band_probes`); keys are int64-compatible."""
    value = h & _MASK
    return [to_int64(((value >> shift) & (mask & _MASK)) ^ (tag & _MASK)) for shift, mask, tag in band_probes(bands)]


def simhash_reach(cosine: float, bits: int = HASH_BITS, miss: float = 1e-4) -> int:
    """The distance between `bits`-bit SimHashes that two vectors at `cosine` exceed with
    probability below `miss`: each bit differs independently with probability angle / pi
    (random hyperplanes)."""
    p = math.acos(max(-1.0, min(1.0, cosine))) / math.pi
    beyond = 0.0  # P(distance > k), summed from the top so that small tails stay exact
    for k in range(bits, -1, -1):
        if beyond > miss:
            return k + 1
        beyond += math.comb(bits, k) * p**k * (1 - p) ** (bits - k)
    return 0


def embedding_simhash(vectors: np.ndarray, seed: int = 0, bits: int = HASH_BITS) -> np.ndarray:
    """`bits`-bit SimHash of each row (random-hyperplane LSH, Charikar 2002), as (rows, bits / 64)
    int64 words, the first word most significant.

    Vectors at angle t disagree on a bit with probability t / pi, so near-identical embeddings
    share most bits: the first word is what `band_keys` buckets, and the whole length is the
    finer estimate of the angle that decides which pairs of a bucket are compared (a 64-bit
    SimHash cannot tell cosine 0.93 from 0.985; docs/design.md, the LSH scheme). The
    hyperplanes depend only on the dimension, the seed and the length, so every worker
    computes the same hashes.
    """
    if bits < HASH_BITS or bits % HASH_BITS:
        raise ValueError(f"a SimHash is a whole number of {HASH_BITS}-bit words, got {bits} bits")
    signs = ((vectors @ _hyperplanes(vectors.shape[1], seed, bits)) > 0).astype(np.uint64).reshape(len(vectors), bits // HASH_BITS, HASH_BITS)
    weights = (1 << np.arange(HASH_BITS - 1, -1, -1, dtype=np.uint64)).astype(np.uint64)
    return (signs * weights).sum(axis=2, dtype=np.uint64).view(np.int64)


def embedding_simhashes(vectors: Sequence[np.ndarray | None], seed: int = 0, bits: int = HASH_BITS) -> list[np.ndarray | None]:
    """`embedding_simhash` of each vector (None for None), the vectors of each width hashed apart:
    another writer's rows of several widths in one signal version cannot be stacked, and a pair
    across widths has no cosine, so it makes no edge whatever its hashes."""
    hashes: list[np.ndarray | None] = [None] * len(vectors)
    by_width: dict[int, list[int]] = {}
    for i, vector in enumerate(vectors):
        if vector is not None:
            by_width.setdefault(len(vector), []).append(i)
    for rows in by_width.values():
        for i, words in zip(rows, embedding_simhash(np.stack([vectors[i] for i in rows]), seed, bits), strict=True):
            hashes[i] = words
    return hashes


@functools.lru_cache(maxsize=4)
def _hyperplanes(dim: int, seed: int, bits: int) -> np.ndarray:
    """The SimHash's random hyperplanes, drawn once per process, not once per Arrow batch."""
    planes = np.random.default_rng(seed).standard_normal((dim, bits))
    planes.flags.writeable = False
    return planes


def words_apart(a: Sequence[int], b: Sequence[int]) -> int:
    """Number of differing bits between two hashes of equal length, as 64-bit words."""
    return sum(hamming(int(x), int(y)) for x, y in zip(a, b, strict=True))
