"""Tests for udfs.fingerprints' per-image hashing: any failure is that image's error, and a flat
image's hash is flagged so that dedup links nothing by it."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from benchmarks.hostile import malformed_exif_jpeg
from signals.decode import DecodeLimits
from signals.labels.perceptual_hash import perceptual_hash
from udfs.fingerprints import phash_or_error


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def test_malformed_exif_is_the_images_error_not_the_jobs() -> None:
    result = phash_or_error(malformed_exif_jpeg(0x011A, 1), DecodeLimits())
    assert result["phash"] is None and result["flat"] is None
    assert "corrupt" in result["error"]


def test_the_limits_given_are_applied() -> None:
    data = _png(Image.new("RGB", (64, 64), (200, 30, 30)))
    assert phash_or_error(data, DecodeLimits(max_pixels=100))["error"].startswith("image claims 64x64 pixels")


def test_flat_images_are_flagged_and_a_photo_is_not() -> None:
    for colour in ((0, 0, 0), (255, 255, 255), (200, 30, 30)):
        result = phash_or_error(_png(Image.new("RGB", (64, 48), colour)), DecodeLimits())
        assert result == {"phash": 0, "flat": True, "error": None}
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8))
    result = phash_or_error(_png(noise), DecodeLimits())
    assert result["flat"] is False and result["phash"] == perceptual_hash(noise)
