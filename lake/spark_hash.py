"""Spark's `xxhash64(col, ...)` computed without Spark: XXH64 of each value's bytes in turn, each
hash the seed of the next (42 first), a null leaving the seed as it was, read as a signed long.
The corpus rule breaks a tie between two rows of one id by it (lake/corpus.py), so a reader
without Spark picks the row a job picks."""
from __future__ import annotations

from collections.abc import Iterable

SPARK_SEED = 42
_MASK = (1 << 64) - 1
_P1, _P2, _P3, _P4, _P5 = 11400714785074694791, 14029467366897019727, 1609587929392839161, 9650029242287828579, 2870177450012600261


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _MASK


def _round(acc: int, lane: int) -> int:
    return (_rotl((acc + lane * _P2) & _MASK, 31) * _P1) & _MASK


def _merge(acc: int, value: int) -> int:
    return ((acc ^ _round(0, value)) * _P1 + _P4) & _MASK


def xxh64(data: bytes, seed: int) -> int:
    """The XXH64 digest of `data` with `seed` (both as unsigned 64-bit integers)."""
    seed, n, i = seed & _MASK, len(data), 0
    if n >= 32:
        v = [(seed + _P1 + _P2) & _MASK, (seed + _P2) & _MASK, seed, (seed - _P1) & _MASK]
        while i + 32 <= n:
            v = [_round(acc, int.from_bytes(data[i + 8 * k:i + 8 * k + 8], "little")) for k, acc in enumerate(v)]
            i += 32
        h = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & _MASK
        for acc in v:
            h = _merge(h, acc)
    else:
        h = (seed + _P5) & _MASK
    h = (h + n) & _MASK
    while i + 8 <= n:
        h = (_rotl(h ^ _round(0, int.from_bytes(data[i:i + 8], "little")), 27) * _P1 + _P4) & _MASK
        i += 8
    if i + 4 <= n:
        h = (_rotl(h ^ (int.from_bytes(data[i:i + 4], "little") * _P1 & _MASK), 23) * _P2 + _P3) & _MASK
        i += 4
    for byte in data[i:]:
        h = (_rotl(h ^ (byte * _P5 & _MASK), 11) * _P1) & _MASK
    h = ((h ^ (h >> 33)) * _P2) & _MASK
    h = ((h ^ (h >> 29)) * _P3) & _MASK
    return h ^ (h >> 32)


def spark_xxhash64(values: Iterable[bytes | str | None]) -> int:
    """What Spark's `xxhash64` gives for these string or binary values of one row."""
    h = SPARK_SEED
    for value in values:
        if value is not None:
            h = xxh64(value.encode() if isinstance(value, str) else value, h)
    return h - (1 << 64) if h >> 63 else h
