"""Tests for signals.labels.perceptual_hash: near-duplicates of real photos stay within a few
bits, different photos are far apart (the LSH band keys: test_lsh_candidates.py)."""
from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
from PIL import Image
from reference import real_photos

from signals.labels.perceptual_hash import hamming, perceptual_hash, phash_of, to_int64

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


PHOTOS = real_photos("astronaut", "chelsea", "coffee", "camera", "rocket", "motorcycle", "china", "flower", "grace_hopper")


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue()))


def _resized(image: Image.Image, factor: float) -> Image.Image:
    return image.resize((round(image.width * factor), round(image.height * factor)), Image.Resampling.BICUBIC)


@pytest.mark.parametrize("name", sorted(PHOTOS))
def test_recompressed_and_resized_copies_stay_close(name: str) -> None:
    image = PHOTOS[name]
    h = perceptual_hash(image)
    assert hamming(h, perceptual_hash(_jpeg(image, 30))) <= 6
    assert hamming(h, perceptual_hash(_resized(image, 0.85))) <= 6
    assert hamming(h, perceptual_hash(_jpeg(_resized(image, 1.2), 60))) <= 6
    assert hamming(h, perceptual_hash(image.convert("L"))) <= 6


def test_different_photos_are_far_apart() -> None:
    hashes = {name: perceptual_hash(image) for name, image in PHOTOS.items()}
    distances = {(a, b): hamming(hashes[a], hashes[b]) for a, b in itertools.combinations(hashes, 2)}
    assert min(distances.values()) > 20, sorted(distances.items(), key=lambda kv: kv[1])[:3]


def test_hash_is_deterministic_and_int64() -> None:
    hashes = [perceptual_hash(image) for image in PHOTOS.values()]
    assert hashes == [perceptual_hash(image) for image in PHOTOS.values()]
    assert all(INT64_MIN <= h <= INT64_MAX for h in hashes)
    assert any(h < 0 for h in hashes) and any(h > 0 for h in hashes)  # bit 63 is a real bit
    assert all(bin(h & (2**64 - 1)).count("1") == 32 for h in hashes)  # median split: half the bits


def test_hamming() -> None:
    assert hamming(0, 0) == 0
    assert hamming(0, -1) == 64  # -1 is all 64 bits set
    assert hamming(to_int64(1 << 63), 0) == 1
    assert hamming(0b1011, 0b0110) == 3


def test_to_int64_round_trips_the_bits() -> None:
    assert to_int64(2**64 - 1) == -1
    assert to_int64(2**63) == INT64_MIN
    assert to_int64(2**63 - 1) == INT64_MAX
    assert to_int64(-5) == -5


def test_flat_images_all_hash_to_zero_and_are_flagged_as_flat() -> None:
    for value in (0, 1, 128, 254, 255):
        assert phash_of(Image.new("L", (50, 40), value)) == (0, True)


def test_structure_along_one_axis_is_flat_to_the_hash_and_along_both_is_not() -> None:
    """The hash leaves out the DCT's first row and column, so stripes, a gradient or two bands (one
    axis) give it nothing to describe, as the docs say; a checkerboard (both axes) does."""
    side = np.arange(256)
    one_axis = {"stripes": np.tile(side // 16 % 2 * 255, (256, 1)), "gradient": np.tile(side, (256, 1)),
                "two bands": np.repeat([0, 255], 128)[:, None] * np.ones(256)}
    for name, pixels in one_axis.items():
        assert phash_of(Image.fromarray(pixels.astype(np.uint8)))[1], name
    checkerboard = (side[:, None] // 32 + side[None, :] // 32) % 2 * 255
    assert not phash_of(Image.fromarray(checkerboard.astype(np.uint8)))[1]


def test_real_photos_are_not_flat() -> None:
    for name, image in PHOTOS.items():
        h, flat = phash_of(image)
        assert not flat, name
        assert h == perceptual_hash(image)
