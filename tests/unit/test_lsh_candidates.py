"""The dedup's LSH scheme (signals.labels.perceptual_hash.band_probes) against brute force: every
pair within the promised distance is a candidate, chance meetings stay few as the corpus grows,
and SimHash pairs at the confirming cosine are found."""
from __future__ import annotations

import itertools
import math
from collections import defaultdict

import numpy as np
import pytest

from conf.settings import DedupSettings
from signals.labels.perceptual_hash import band_keys, band_probes, bands_for, embedding_simhash, embedding_simhashes, hamming, simhash_reach, to_int64, words_apart

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _random_hashes(rng: np.random.Generator, n: int) -> list[int]:
    return [to_int64(int(h)) for h in rng.integers(0, 2**63, size=n, dtype=np.uint64) * 2 + rng.integers(0, 2, size=n, dtype=np.uint64)]


def _flipped(rng: np.random.Generator, h: int, bits: int) -> int:
    return to_int64(h ^ sum(1 << int(i) for i in rng.choice(64, size=bits, replace=False)))


def _meetings(hashes: list[int], bands: int) -> set[tuple[int, int]]:
    """Index pairs (i < j) sharing a bucket: the bucket join of jobs.dedup, in Python."""
    buckets = defaultdict(set)
    for i, h in enumerate(hashes):
        for key in band_keys(h, bands):
            buckets[key].add(i)
    return {pair for members in buckets.values() for pair in itertools.combinations(sorted(members), 2)}


def _candidates(hashes: list[int], bands: int, within: int) -> set[tuple[int, int]]:
    return {(i, j) for i, j in _meetings(hashes, bands) if hamming(hashes[i], hashes[j]) <= within}


def _planted(rng: np.random.Generator, n: int, copies: int, most_bits: int) -> list[int]:
    """`n` random hashes, each original followed by `copies` near copies up to `most_bits` away."""
    hashes = []
    for h in _random_hashes(rng, n // (copies + 1)):
        hashes += [h] + [_flipped(rng, h, int(rng.integers(0, most_bits + 1))) for _ in range(copies)]
    return hashes


@pytest.mark.parametrize("max_distance", [0, 2, 5, 10, 14])
def test_every_pair_within_the_distance_is_a_candidate_as_brute_force_finds(max_distance: int) -> None:
    rng = np.random.default_rng(max_distance)
    bands = bands_for(max_distance)
    hashes = _planted(rng, 600, copies=2, most_bits=max_distance + 3) + [0, -1, to_int64(1 << 63)]
    brute = {(i, j) for i, j in itertools.combinations(range(len(hashes)), 2) if hamming(hashes[i], hashes[j]) <= max_distance}
    assert len(brute) > 50 and any(hamming(hashes[i], hashes[j]) == max_distance for i, j in brute)  # planted pairs up to the edge
    assert _candidates(hashes, bands, max_distance) == brute
    promised = 3 * bands - 1  # some band of any pair this close differs in at most 2 bits
    meetings = _meetings(hashes, bands)
    assert all(pair in meetings for pair in itertools.combinations(range(len(hashes)), 2) if hamming(hashes[pair[0]], hashes[pair[1]]) <= promised)


def test_band_keys_follow_the_probes_and_fit_int64() -> None:
    h = to_int64(0x0123_4567_89AB_CDEF)
    probes = band_probes(4)
    assert len(probes) == 4 * 17  # each 16-bit chunk and its 16 one-bit flips
    assert band_keys(h, 4)[:2] == [0xCDEF, 0xCDEF ^ 1] and band_keys(h, 4)[17] == (1 << 56) | 0x89AB
    assert len(set(band_keys(0, 4))) == len(probes)  # equal chunks in different bands do not collide
    for bands in (1, 3, 5, 32):
        keys = band_keys(-1, bands)
        assert len(keys) == bands + 64 and all(INT64_MIN <= k <= INT64_MAX for k in keys)
    with pytest.raises(ValueError):
        band_probes(33)


def test_random_hashes_meet_rarely_and_candidate_pairs_grow_with_the_corpus_not_its_square() -> None:
    rng = np.random.default_rng(1)
    rules = DedupSettings()
    per_item = {}
    for n in (300, 1200, 4800):
        hashes = _planted(rng, n, copies=2, most_bits=rules.max_hamming)  # groups of 3: an original and 2 near copies
        planted = {(i, j) for g in range(0, len(hashes), 3) for i, j in itertools.combinations(range(g, g + 3), 2)
                   if hamming(hashes[i], hashes[j]) <= rules.max_hamming}
        candidates = _candidates(hashes, rules.bands, rules.max_hamming)
        assert candidates == planted  # every planted pair, and no chance pair of unrelated hashes
        per_item[n] = len(candidates) / len(hashes)
    assert max(per_item.values()) <= 1.1 * min(per_item.values()), per_item
    unrelated = _random_hashes(rng, 4000)
    meetings = len(_meetings(unrelated, rules.bands)) / (4000 * 3999 / 2)
    assert meetings < 0.012  # 4 bands x 137 chunk values within 2 bits of 2^16: 0.0084 by design (8 bits exact: 0.031)


def _pairs_at(rng: np.random.Generator, cosine: float, pairs: int, dim: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """`pairs` random unit vectors and, for each, one at exactly `cosine` to it."""
    a = rng.standard_normal((pairs, dim))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    ortho = rng.standard_normal((pairs, dim))
    ortho -= (ortho * a).sum(1, keepdims=True) * a
    ortho /= np.linalg.norm(ortho, axis=1, keepdims=True)
    return a.astype(np.float32), (cosine * a + np.sqrt(1 - cosine**2) * ortho).astype(np.float32)


def _kept(rules: DedupSettings, a: np.ndarray, b: np.ndarray, reach: int) -> float:
    """The share of pairs (a, b) the dedup keeps as candidates on their SimHashes: their first
    words share a band key and the whole hashes are within `reach` bits."""
    ha, hb = (embedding_simhash(v, rules.simhash_seed, rules.simhash_bits) for v in (a, b))
    return float(np.mean([words_apart(x, y) <= reach and bool(set(band_keys(int(x[0]), rules.simhash_bands)) & set(band_keys(int(y[0]), rules.simhash_bands)))
                          for x, y in zip(ha, hb)]))


def test_simhash_pairs_at_the_confirming_cosine_are_candidates() -> None:
    rng = np.random.default_rng(3)
    rules = DedupSettings()
    found = {cosine: _kept(rules, *_pairs_at(rng, cosine, 3000), reach)
             for cosine, reach in ((rules.confirm_cosine, rules.simhash_confirm_hamming), (rules.min_cosine, rules.simhash_hamming))}
    assert found[rules.confirm_cosine] >= 0.99 and found[rules.min_cosine] == 1.0, found
    assert simhash_reach(1.0) == 0 and simhash_reach(-1.0) == 64 and simhash_reach(-1.0, 1024) == 1024
    assert rules.simhash_hamming < rules.simhash_confirm_hamming


@pytest.mark.parametrize("bits", [64, 256])
def test_simhash_reach_is_the_binomial_tail_scipy_inverts(bits: int) -> None:
    from scipy.stats import binom

    for miss in (1e-2, 1e-4, 1e-7):
        for cosine in np.linspace(-0.99, 0.9999, 400):
            want = int(binom.isf(miss, bits, math.acos(cosine) / math.pi))
            assert simhash_reach(float(cosine), bits, miss) == want, (miss, cosine)


def test_a_longer_simhash_tells_near_copies_from_similar_pictures() -> None:
    """Distinct pictures of one scene sit at cosine 0.9-0.95: a 64-bit SimHash within reach of
    0.985 keeps most of them as candidates, the configured length almost none."""
    rng = np.random.default_rng(4)
    short, long = DedupSettings(simhash_bits=64), DedupSettings()
    similar = _pairs_at(rng, 0.93, 2000)
    assert _kept(short, *similar, short.simhash_hamming) > 0.5
    assert _kept(long, *similar, long.simhash_hamming) < 0.01
    assert _kept(long, *_pairs_at(rng, long.min_cosine, 2000), long.simhash_hamming) == 1.0
    with pytest.raises(ValueError, match="64-bit words"):
        embedding_simhash(similar[0], bits=100)


def test_vectors_of_several_widths_are_hashed_each_with_their_own_widths_planes() -> None:
    """Another writer's rows of one signal version may hold vectors of two widths: each is hashed
    as it would be among vectors of its width alone, and a missing vector stays missing."""
    rng = np.random.default_rng(5)
    wide, narrow = rng.standard_normal((3, 16)), rng.standard_normal((2, 8))
    mixed = [wide[0], narrow[0], None, wide[1], narrow[1], wide[2]]
    hashes = embedding_simhashes(mixed, seed=3, bits=128)
    assert hashes[2] is None
    np.testing.assert_array_equal(np.stack([hashes[i] for i in (0, 3, 5)]), embedding_simhash(wide, seed=3, bits=128))
    np.testing.assert_array_equal(np.stack([hashes[i] for i in (1, 4)]), embedding_simhash(narrow, seed=3, bits=128))
    assert embedding_simhashes([None, None]) == [None, None]


@pytest.mark.parametrize("max_hamming", [0, 2, 5, 10])
def test_a_stricter_phash_rule_keeps_the_embedding_rules_pairs(max_hamming: int) -> None:
    """The SimHash's bands were the pHash rule's: `max_hamming: 2` left one band of 64 bits, and
    seven in ten pairs at `min_cosine` then shared no key and were never compared."""
    rules = DedupSettings(max_hamming=max_hamming)
    assert rules.simhash_bands >= rules.bands and DedupSettings().simhash_bands == DedupSettings().bands == 4
    assert _kept(rules, *_pairs_at(np.random.default_rng(max_hamming), rules.min_cosine, 3000), rules.simhash_hamming) == 1.0
