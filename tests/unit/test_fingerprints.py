"""Tests for udfs.fingerprints' per-image hashing: any failure is that image's error, and a flat
image's hash is flagged so that dedup links nothing by it."""
from __future__ import annotations

import hashlib
import io

import numpy as np
from PIL import Image

from benchmarks.hostile import malformed_exif_jpeg
from signals.decode import DecodeLimits
from signals.fetch import FetchPolicy
from signals.labels.perceptual_hash import perceptual_hash
from udfs.fingerprints import fingerprint_or_error, phash_or_error


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


def test_an_image_by_uri_is_fingerprinted_as_its_bytes_and_a_uri_outside_the_allowlist_is_never_read(tmp_path):
    noise = Image.fromarray(np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8))
    data = _png(noise)
    (tmp_path / "allowed").mkdir()
    (tmp_path / "allowed" / "a.png").write_bytes(data)
    (tmp_path / "secret.png").write_bytes(data)
    policy = FetchPolicy(file_roots=(str(tmp_path / "allowed"),))

    inline = fingerprint_or_error(data, None, DecodeLimits(), policy)
    by_uri = fingerprint_or_error(None, (tmp_path / "allowed" / "a.png").as_uri(), DecodeLimits(), policy)
    assert inline["phash"] is not None and inline["fetched_sha256"] is None
    assert by_uri["phash"] == inline["phash"] and by_uri["fetched_sha256"] == hashlib.sha256(data).hexdigest()
    outside = fingerprint_or_error(None, (tmp_path / "secret.png").as_uri(), DecodeLimits(), policy)
    assert outside["phash"] is None and outside["fetched_sha256"] is None and "not allowed" in outside["error"]
    # dedup hands the UDF its URIs as bytes: one that is not UTF-8 (Spark passes a string's bytes on unchecked) is its row's error
    as_bytes = fingerprint_or_error(None, (tmp_path / "allowed" / "a.png").as_uri().encode(), DecodeLimits(), policy)
    assert as_bytes["phash"] == inline["phash"]
    not_utf8 = fingerprint_or_error(None, b"file:///\xff.png", DecodeLimits(), policy)
    assert not_utf8["phash"] is None and not_utf8["error"].startswith("image_uri is not valid UTF-8")


def test_whatever_a_uri_does_is_its_rows_error_never_the_tasks(monkeypatch) -> None:
    """The dedup's pHash UDF runs this per row: an exception escaping it would fail the task on every retry, and the job."""
    from udfs import fingerprints

    malformed = fingerprint_or_error(None, "http://[x/a.jpg", DecodeLimits(), FetchPolicy())
    assert malformed["phash"] is None and malformed["error"].startswith("not allowed (malformed URI")

    def broken(uri: str, policy: FetchPolicy) -> bytes:
        raise RuntimeError("a client library's own failure")

    monkeypatch.setattr(fingerprints, "fetch", broken)
    failed = fingerprint_or_error(None, "http://images.example.com/a.jpg", DecodeLimits(), FetchPolicy())
    assert failed["error"] == "fetch failed: RuntimeError: a client library's own failure"
