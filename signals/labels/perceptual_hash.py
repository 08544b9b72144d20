"""64-bit DCT perceptual hash (pHash) and LSH band keys, for near-duplicate detection.

pHash as in pHash.org (Zauner 2010): luminance, a 7x7 mean filter against noise and JPEG
artefacts, resize to 32x32, 2-D DCT, keep the 8x8 lowest frequencies *after* the first row and
column (the DC term and the coarsest gradients carry brightness, not structure), and set one bit
per coefficient that is above their median. Re-encoding, mild resizing and brightness changes
move few bits; different photos differ in ~32 of 64.

A flat image (one colour, or variations under half a grey level) has no structure for the hash
to describe: its 64 coefficients are all about zero, so every bit is rounding noise, and all
flat images share the hash 0 (nothing is above the median). `phash_of` says so: such a hash
must not link images, or every blank, all-white or all-black upload would join one duplicate
group. A cosine pattern of amplitude a grey levels gives a coefficient of 16a (orthonormal DCT
over 32x32), so FLAT_COEFFICIENT = 8 means no pattern of half a grey level, below what 8 bits
can show.

Hashes are Python ints in the signed int64 range (bit 63 set -> negative), so Spark and Arrow
store them as LongType/int64 without overflow; `hamming` and `band_keys` accept either sign.
"""
from __future__ import annotations

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


def band_keys(h: int, bands: int = 4) -> list[int]:
    """LSH keys: the hash cut into `bands` chunks of 64 / bands bits, each tagged with its band.

    Two hashes within Hamming distance < bands agree on at least one whole chunk (pigeonhole),
    so joining on these keys finds every such pair as a candidate. The band index sits above the
    chunk bits, so equal chunks in different bands never collide; keys are int64-compatible.
    """
    if bands < 1 or HASH_BITS % bands:
        raise ValueError(f"bands must divide {HASH_BITS}, got {bands}")
    width = HASH_BITS // bands
    value = h & _MASK
    chunk_mask = (1 << width) - 1
    return [to_int64((band << width) | ((value >> (band * width)) & chunk_mask)) for band in range(bands)]


def embedding_simhash(vectors: np.ndarray, seed: int = 0) -> np.ndarray:
    """64-bit SimHash of each row (random-hyperplane LSH, Charikar 2002) as int64.

    Vectors at angle t disagree on a bit with probability t / pi, so near-identical embeddings
    share most bits and `band_keys` finds them as candidates. The hyperplanes depend only on
    the dimension and the seed, so every worker computes the same hashes.
    """
    planes = np.random.default_rng(seed).standard_normal((vectors.shape[1], HASH_BITS))
    bits = (vectors @ planes) > 0
    weights = (1 << np.arange(HASH_BITS - 1, -1, -1, dtype=np.uint64)).astype(np.uint64)
    return (bits.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64).view(np.int64)
