"""Tests for signals.decode: every kind of bad input becomes an InputError with a reason, and
every colour mode comes out as 8-bit RGB with the right pixels."""

from __future__ import annotations

import io
import os
import re
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from benchmarks.hostile import (
    EPS,
    lossless_jpeg,
    lying_ico,
    malformed_exif_jpeg,
    multi_picture,
    png,
    png_chunk,
    progressive_jpeg,
    sequential_jpeg,
    webp_claiming,
)
from signals.decode import (
    DECODABLE_FORMATS,
    FORMAT_BYTES_PER_PIXEL,
    MAX_GIF_BLOCKS,
    MAX_JPEG_MARKERS,
    MAX_JPEG_SCANS,
    MAX_PNG_CHUNKS,
    MODE_BYTES_PER_PIXEL,
    DecodeLimits,
    InputError,
    _jpeg_segments,
    check_size,
    decode_image,
    first_scan_components,
    jpeg_frame,
    webp_canvas,
)


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _noise_rgb(size: tuple[int, int] = (64, 48), seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8), mode="RGB")


def _with_ihdr_size(png: bytes, width: int, height: int) -> bytes:
    """The PNG with its IHDR width/height rewritten and the chunk CRC recomputed (a valid header)."""
    assert png[12:16] == b"IHDR"
    ihdr = struct.pack(">II", width, height) + png[24:29]
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return png[:16] + ihdr + crc + png[33:]


SMALL_PNG = _encode(Image.new("RGB", (8, 8), (10, 20, 30)), "PNG")
NOISY_PNG = _encode(_noise_rgb(), "PNG")
NOISY_JPEG = _encode(_noise_rgb(), "JPEG", quality=90)
JFIF_HEADER = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"


def _flip(data: bytes, start: int, stop: int) -> bytes:
    return data[:start] + bytes(b ^ 0xFF for b in data[start:stop]) + data[stop:]


# --------------------------------------------------------------------------------------
# Bad input -> InputError with a reason
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(None, r"^image is null$", id="null"),
        pytest.param(b"", r"empty \(0 bytes\)", id="empty-bytes"),
        pytest.param(bytearray(), r"empty \(0 bytes\)", id="empty-bytearray"),
        pytest.param("not bytes at all", r"^image is str, not bytes$", id="str"),
        pytest.param(12345, r"^image is int, not bytes$", id="int"),
        pytest.param([1, 2, 3], r"^image is list, not bytes$", id="list"),
        pytest.param(b"hello, this is plain text and no image" * 4, r"not a recognised image format", id="text"),
        pytest.param(b"\x00" * 512, r"not a recognised image format", id="zeros"),
        pytest.param(JFIF_HEADER + bytes(range(1, 255)) * 8, r"corrupt or truncated|not a recognised", id="jfif-header-then-noise"),
        pytest.param(_flip(NOISY_PNG, 100, 400), r"corrupt or truncated", id="png-flipped-idat"),
        pytest.param(NOISY_JPEG[: len(NOISY_JPEG) // 2], r"corrupt or truncated", id="jpeg-truncated-half"),
        pytest.param(NOISY_JPEG[:400], r"corrupt or truncated", id="jpeg-truncated-early"),
        pytest.param(NOISY_JPEG[:-2], r"corrupt or truncated", id="jpeg-missing-eoi"),
        pytest.param(NOISY_PNG[: int(len(NOISY_PNG) * 0.6)], r"corrupt or truncated", id="png-truncated"),
    ],
)
def test_bad_input_is_an_input_error_with_a_reason(data, reason: str) -> None:
    with pytest.raises(InputError, match=reason):
        decode_image(data)


def test_input_error_is_a_value_error() -> None:
    # callers that only know ValueError still treat it as a bad row
    assert issubclass(InputError, ValueError)


@pytest.mark.parametrize(
    ("width", "height"),
    [
        pytest.param(9_000, 9_000, id="81M-pixels-over-our-limit"),
        pytest.param(20_000, 20_000, id="400M-pixels-decompression-bomb"),
        pytest.param(100_000, 100_000, id="10G-pixels"),
        pytest.param(2**31 - 1, 2**31 - 1, id="max-png-side"),
        pytest.param(1, 100_000_000, id="one-pixel-wide"),
    ],
)
def test_header_claiming_a_huge_image_is_rejected_before_decoding(width: int, height: int) -> None:
    data = _with_ihdr_size(SMALL_PNG, width, height)
    assert len(data) == len(SMALL_PNG)  # a tiny file: only the header lies
    with pytest.raises(InputError, match=r"pixel"):
        decode_image(data)


def test_a_bombs_reason_does_not_depend_on_another_thread_decoding_meanwhile(monkeypatch) -> None:
    """Prepare threads decode at once, and one decode must not change what another sees. Here a
    thread begins a small image, a second begins a 144-megapixel header (between PIL's warning
    and its error), and the first finishes before the second opens it: process-wide warning
    filters, set and restored per call, would change the second's reason (docs/history.md,
    twenty-eighth session)."""
    import threading

    from signals import decode

    bomb = _with_ihdr_size(SMALL_PNG, 12_000, 12_000)
    with pytest.raises(InputError) as alone:
        decode_image(bomb)
    small_inside, bomb_inside, small_done = threading.Event(), threading.Event(), threading.Event()
    real_open = decode._open

    def interleaved(data: bytes, limits: DecodeLimits):
        if data == bomb:  # opens only once the small image's decode is over
            bomb_inside.set()
            assert small_done.wait(10)
        else:  # opens only once the bomb's decode has begun
            small_inside.set()
            assert bomb_inside.wait(10)
        return real_open(data, limits)

    monkeypatch.setattr(decode, "_open", interleaved)
    reasons: list[str] = []

    def decode_small() -> None:
        decode_image(SMALL_PNG)
        small_done.set()

    def decode_bomb() -> None:
        try:
            decode_image(bomb)
        except InputError as exc:
            reasons.append(str(exc))

    small, big = threading.Thread(target=decode_small), threading.Thread(target=decode_bomb)
    small.start()
    assert small_inside.wait(10)
    big.start()
    small.join(10)
    big.join(10)
    assert reasons == [str(alone.value)]


def test_rewritten_header_is_still_a_valid_png_header() -> None:
    # the helper must produce a header PIL believes, or the test above proves nothing
    data = _with_ihdr_size(SMALL_PNG, 9_000, 7_000)
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == (9_000, 7_000)


@pytest.mark.parametrize(
    ("limits", "ok"),
    [
        pytest.param(DecodeLimits(max_pixels=64), True, id="pixels-at-limit"),
        pytest.param(DecodeLimits(max_pixels=63), False, id="pixels-over-limit"),
        pytest.param(DecodeLimits(max_bytes=len(SMALL_PNG)), True, id="bytes-at-limit"),
        pytest.param(DecodeLimits(max_bytes=len(SMALL_PNG) - 1), False, id="bytes-over-limit"),
        pytest.param(DecodeLimits(min_side=8), True, id="side-at-minimum"),
        pytest.param(DecodeLimits(min_side=9), False, id="side-under-minimum"),
    ],
)
def test_limits_are_inclusive_bounds(limits: DecodeLimits, ok: bool) -> None:
    if ok:
        assert decode_image(SMALL_PNG, limits).size == (8, 8)
    else:
        with pytest.raises(InputError):
            decode_image(SMALL_PNG, limits)


def test_too_many_bytes_is_rejected_with_the_sizes_in_the_reason() -> None:
    with pytest.raises(InputError, match=rf"{len(NOISY_PNG)} bytes, over the 1000 byte limit"):
        decode_image(NOISY_PNG, DecodeLimits(max_bytes=1000))


def test_too_many_pixels_reason_names_the_claimed_size() -> None:
    with pytest.raises(InputError, match=r"64x48 pixels, over the 1000 pixel limit"):
        decode_image(NOISY_PNG, DecodeLimits(max_pixels=1000))


# --------------------------------------------------------------------------------------
# Good input -> RGB
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview], ids=["bytes", "bytearray", "memoryview"])
def test_bytes_like_inputs_decode(wrap) -> None:
    image = decode_image(wrap(NOISY_PNG))
    assert image.mode == "RGB"
    assert np.array_equal(np.asarray(image), np.asarray(_noise_rgb()))


def test_rgb_png_is_decoded_losslessly() -> None:
    image = decode_image(NOISY_PNG)
    assert (image.mode, image.size) == ("RGB", (64, 48))
    assert np.array_equal(np.asarray(image), np.asarray(_noise_rgb()))


def _rgba_image() -> Image.Image:
    img = Image.new("RGBA", (3, 1))
    img.putpixel((0, 0), (0, 0, 0, 0))  # fully transparent black
    img.putpixel((1, 0), (255, 0, 0, 255))  # opaque red
    img.putpixel((2, 0), (0, 0, 0, 128))  # half-transparent black
    return img


def _la_image() -> Image.Image:
    img = Image.new("LA", (2, 1))
    img.putpixel((0, 0), (0, 0))  # transparent black
    img.putpixel((1, 0), (40, 255))  # opaque dark grey
    return img


def _palette_image(transparent: bool) -> bytes:
    img = Image.new("P", (3, 1))
    img.putpalette([0, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 - 3) * 3)
    for x, index in enumerate((0, 1, 2)):
        img.putpixel((x, 0), index)
    return _encode(img, "PNG", **({"transparency": 0} if transparent else {}))


CONVERSIONS = [
    # (id, encoded bytes, mode PIL opens it as, expected RGB pixels of row 0, tolerance)
    ("L", _encode(Image.new("L", (2, 2), 100), "PNG"), "L", [(100, 100, 100)] * 2, 0),
    ("1", _encode(Image.new("1", (2, 2), 1), "PNG"), "1", [(255, 255, 255)] * 2, 0),
    ("CMYK-tiff", _encode(Image.new("CMYK", (2, 2), (0, 255, 255, 0)), "TIFF"), "CMYK", [(255, 0, 0)] * 2, 0),
    ("CMYK-jpeg", _encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", quality=95), "CMYK", [(255, 0, 0)] * 8, 8),
    ("RGBA", _encode(_rgba_image(), "PNG"), "RGBA", [(255, 255, 255), (255, 0, 0), (127, 127, 127)], 1),
    ("LA", _encode(_la_image(), "PNG"), "LA", [(255, 255, 255), (40, 40, 40)], 0),
    ("P-transparent", _palette_image(True), "P", [(255, 255, 255), (0, 255, 0), (0, 0, 255)], 0),
    ("P-opaque", _palette_image(False), "P", [(0, 0, 0), (0, 255, 0), (0, 0, 255)], 0),
]


@pytest.mark.parametrize(("data", "source_mode", "expected", "tolerance"), [c[1:] for c in CONVERSIONS], ids=[c[0] for c in CONVERSIONS])
def test_modes_convert_to_rgb(data: bytes, source_mode: str, expected: list, tolerance: int) -> None:
    with Image.open(io.BytesIO(data)) as raw:
        assert raw.mode == source_mode  # the fixture really is in the mode under test
    image = decode_image(data, DecodeLimits(formats=DECODABLE_FORMATS))  # TIFF too, off by default
    assert image.mode == "RGB"
    row = np.asarray(image)[0].astype(int)
    assert row.shape == (len(expected), 3)
    assert np.abs(row - np.array(expected)).max() <= tolerance, row.tolist()


def test_fully_transparent_rgba_image_is_white_not_black() -> None:
    data = _encode(Image.new("RGBA", (4, 4), (0, 0, 0, 0)), "PNG")
    assert np.all(np.asarray(decode_image(data)) == 255)


def _gray16(values: np.ndarray) -> bytes:
    data = _encode(Image.fromarray(values.astype(np.uint16)), "PNG")
    with Image.open(io.BytesIO(data)) as raw:
        assert raw.mode.startswith("I")  # 16-bit on disk, not silently 8-bit
    return data


def test_16_bit_gradient_is_scaled_not_clipped() -> None:
    gradient = np.tile(np.arange(0, 65536, 257, dtype=np.uint16), (16, 1))  # 0..65535 in 256 steps
    image = decode_image(_gray16(gradient))
    pixels = np.asarray(image)
    assert image.mode == "RGB" and pixels.shape == (16, 256, 3)
    assert not np.all(pixels == 255), "16-bit values were clipped to white"
    row = pixels[0, :, 0].astype(int)
    assert np.all(np.diff(row) >= 0)  # order preserved
    assert np.array_equal(row, np.arange(256))  # full-range 16-bit -> the 8-bit value v * 257 came from
    assert np.all(pixels[..., 0] == pixels[..., 1]) and np.all(pixels[..., 1] == pixels[..., 2])


@pytest.mark.parametrize(
    "levels",
    [
        pytest.param(np.tile(np.arange(60, 200, dtype=np.uint16), (8, 1)), id="partial-range-gradient"),
        pytest.param(np.full((4, 4), 255, dtype=np.uint16), id="uniform-white"),
        pytest.param(np.full((4, 4), 128, dtype=np.uint16), id="uniform-grey"),
    ],
)
def test_16_bit_image_decodes_like_its_8_bit_original(levels: np.ndarray) -> None:
    """A 16-bit image made from 8-bit levels (v * 257) must decode to those same levels."""
    pixels = np.asarray(decode_image(_gray16(levels * 257)))
    assert np.array_equal(pixels[..., 0], levels.astype(np.uint8))


def test_exif_orientation_is_applied() -> None:
    img = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = _encode(img, "JPEG", exif=exif.tobytes())
    assert decode_image(data).size == (20, 40)


# --------------------------------------------------------------------------------------
# Hostile input: malformed EXIF, formats off the allowlist, thin strips, costly modes
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "type_"),
    [pytest.param(0x0100, 2, id="width-as-ascii-struct-error"), pytest.param(0x011A, 1, id="resolution-as-byte-type-error")],
)
def test_malformed_exif_is_an_input_error_not_an_escaped_exception(tag: int, type_: int) -> None:
    data = malformed_exif_jpeg(tag, type_)
    with Image.open(io.BytesIO(data)) as raw:
        raw.load()  # the pixels are fine: only the EXIF rewrite fails
    with pytest.raises(InputError, match=r"corrupt"):
        decode_image(data)


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        pytest.param(EPS, "EPS", id="eps-would-start-ghostscript"),
        pytest.param(lying_ico(png(300, 300)), "ICO", id="ico-declaring-16x16"),
        pytest.param(_encode(Image.new("RGB", (8, 8)), "TIFF"), "TIFF", id="tiff-off-by-default"),
        pytest.param(_encode(Image.new("RGB", (8, 8)), "PPM"), "PPM", id="ppm"),
    ],
)
def test_formats_off_the_allowlist_are_rejected_by_name(data: bytes, fmt: str) -> None:
    with pytest.raises(InputError, match=rf"^format {fmt} not allowed"):
        decode_image(data)


def test_an_allowed_format_can_be_taken_off_and_tiff_put_on() -> None:
    with pytest.raises(InputError, match=r"format PNG not allowed"):
        decode_image(SMALL_PNG, DecodeLimits(formats=("JPEG",)))
    assert decode_image(_encode(Image.new("RGB", (8, 8)), "TIFF"), DecodeLimits(formats=("jpeg", "tiff"))).size == (8, 8)


def test_formats_whose_header_size_is_not_what_decodes_cannot_be_allowed() -> None:
    with pytest.raises(ValueError, match=r"ICO"):
        DecodeLimits(formats=("PNG", "ICO"))


@pytest.mark.parametrize(("width", "height"), [(2, 40_000), (1, 60_000), (40_000, 2), (21, 1)])
def test_thin_strips_are_rejected_by_aspect_ratio_before_decoding(width: int, height: int) -> None:
    data = png(width, height)
    assert len(data) < 2_000  # tiny files: the cost is all in the resize
    with pytest.raises(InputError, match=r"aspect ratio over the 20:1 limit"):
        decode_image(data)


def test_the_aspect_limit_is_inclusive() -> None:
    assert decode_image(png(20, 1)).size == (20, 1)


def test_the_size_after_the_models_resize_is_limited() -> None:
    data = png(10, 200)  # aspect 20: resized to a short side of 224, it is 224x4480
    assert decode_image(data, DecodeLimits(max_resized_pixels=224 * 4480), resize_short_side=224).size == (10, 200)
    with pytest.raises(InputError, match=r"224x4480, over the 1000000 pixel limit"):
        decode_image(data, DecodeLimits(max_resized_pixels=1_000_000), resize_short_side=224)


@pytest.mark.parametrize(
    ("color_type", "depth", "mode"),
    [(6, 8, "RGBA"), (0, 16, "I;16"), (2, 16, "RGB"), (6, 16, "RGBA")],
    ids=["rgba", "16-bit-grey", "16-bit-rgb", "16-bit-rgba"],
)
def test_8000_square_pngs_of_costly_modes_are_rejected_before_decoding(color_type: int, depth: int, mode: str) -> None:
    data = _with_ihdr_size(png(8, 8, color_type, depth), 8_000, 8_000)
    with Image.open(io.BytesIO(data)) as raw:
        assert (raw.mode, raw.size) == (mode, (8_000, 8_000))
    with pytest.raises(InputError, match=r"8000x8000"):
        decode_image(data)


def test_each_mode_is_charged_its_bytes_per_pixel() -> None:
    grey, rgba = png(100, 100, 0, 8), png(100, 100, 6, 8)
    limits = DecodeLimits(max_decode_bytes=100 * 100 * MODE_BYTES_PER_PIXEL["L"])
    assert decode_image(grey, limits).size == (100, 100)
    with pytest.raises(InputError, match=r"100x100 RGBA: decoding needs 120000 bytes, over the 90000 byte limit"):
        decode_image(rgba, limits)


def test_the_default_limits_keep_a_22_megapixel_rgb_photo_but_not_8000_square() -> None:
    assert 5_760 * 3_840 * MODE_BYTES_PER_PIXEL["RGB"] <= DecodeLimits().max_decode_bytes
    with pytest.raises(InputError):
        check_size(8_000, 8_000, "RGB", DecodeLimits())


def test_a_large_jpeg_for_a_model_is_decoded_at_a_reduced_scale_within_the_budget() -> None:
    """A 24-megapixel JPEG is over the default budget when decoded whole, but a model that
    resizes its short side to 224 gets it at 1/4 scale: a short side of at least 4 x 224."""
    rng = np.random.default_rng(0)
    small = Image.fromarray(rng.integers(0, 256, (400, 600, 3), dtype=np.uint8)).resize((6000, 4000))
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=80)
    data = buffer.getvalue()
    with pytest.raises(InputError, match="6000x4000 RGB: decoding needs"):
        decode_image(data)
    drafted = decode_image(data, resize_short_side=224)
    assert drafted.size == (1500, 1000) and min(drafted.size) >= 4 * 224
    reference = small.resize(drafted.size, Image.Resampling.BILINEAR)
    assert np.abs(np.asarray(drafted, dtype=np.float32) - np.asarray(reference, dtype=np.float32)).mean() < 40


def test_a_jpegs_frame_is_found_past_its_other_segments() -> None:
    """The frame marker of the image itself, not of the thumbnail its EXIF may hold (a JPEG of
    its own, with a baseline frame, inside the APP1 segment before the image's frame)."""
    photo = _noise_rgb((64, 48))
    exif = Image.Exif()
    exif[0x0112] = 1
    with_thumbnail = _encode(photo, "JPEG", progressive=True, exif=exif.tobytes())
    app1 = with_thumbnail.index(b"\xff\xe1")
    thumbnail = _encode(_noise_rgb((8, 8)), "JPEG")
    body = with_thumbnail[app1 + 4 : app1 + 2 + struct.unpack(">H", with_thumbnail[app1 + 2 : app1 + 4])[0]] + thumbnail
    with_thumbnail = with_thumbnail[:app1] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + with_thumbnail[app1 + 2 + struct.unpack(">H", with_thumbnail[app1 + 2 : app1 + 4])[0]:]
    assert decode_image(with_thumbnail).size == (64, 48)
    assert jpeg_frame(with_thumbnail) == 0xC2
    assert jpeg_frame(_encode(photo, "JPEG")) == 0xC0
    assert jpeg_frame(lossless_jpeg(16)) == 0xC3
    assert jpeg_frame(b"\xff\xd8\xff\xda" + bytes(20)) is None  # a scan before any frame
    assert jpeg_frame(b"\xff\xd8\xff\xe0\xff\xff") is None  # a segment longer than the bytes


def test_a_large_lossless_jpeg_is_decoded_at_its_full_size() -> None:
    """libjpeg cannot decode a lossless JPEG at a reduced scale: asked to, it failed, and a valid
    image was an error row ("broken data stream") wherever a model's resize called for a draft."""
    assert decode_image(lossless_jpeg(1800), resize_short_side=224).size == (1800, 1800)
    with pytest.raises(InputError, match="decoding needs"):
        decode_image(lossless_jpeg(1800), DecodeLimits(max_decode_bytes=1800 * 1800 * 9 - 1), resize_short_side=224)


def test_a_progressive_jpeg_is_charged_what_its_decoding_costs() -> None:
    """A JPEG's scans each walk the whole image (10,000 empty scans of a few bytes each took 49 s
    to decode), and a progressive one holds coefficients for every pixel of its full size even
    when drafted to a smaller one; both are refused from their bytes and header, before decoding."""
    with pytest.raises(InputError, match=f"JPEG has 10000 scans, over the {MAX_JPEG_SCANS} scan limit"):
        decode_image(progressive_jpeg(4600, 1, 10_000))
    with pytest.raises(InputError, match="progressive JPEG 9459x9459 CMYK: its coefficients need 715781448 bytes"):
        decode_image(progressive_jpeg(9459, 4), resize_short_side=224)
    assert decode_image(progressive_jpeg(256, 1, MAX_JPEG_SCANS)).size == (256, 256)  # at the limit: decoded
    with pytest.raises(InputError, match=f"JPEG has 10000 scans, over the {MAX_JPEG_SCANS} scan limit"):
        decode_image(multi_picture(progressive_jpeg(2000, 1, 10_000)))  # PIL's format says MPO: the same JPEG
    photo = io.BytesIO()
    Image.effect_noise((640, 480), 40).convert("RGB").save(photo, "JPEG", progressive=True, quality=85)  # a real encoder's scans
    assert decode_image(photo.getvalue()).size == (640, 480)


def _scan_cut(jpeg: bytes, keep: float) -> bytes:
    """The JPEG with its first scan's entropy-coded data cut to its first `keep` share, the EOI kept."""
    sos = next(at for marker, at in _jpeg_segments(jpeg) if marker == 0xDA)
    start = sos + 2 + struct.unpack(">H", jpeg[sos + 2 : sos + 4])[0]
    end = next(m.start() for m in re.finditer(rb"\xff[^\x00\xd0-\xd7]", jpeg[start:])) + start  # the marker after it
    return jpeg[: start + int((end - start) * keep)] + b"\xff\xd9"


def _claiming(jpeg: bytes, width: int, height: int) -> bytes:
    """The JPEG with its frame header rewritten to claim width x height pixels."""
    sof = next(at for marker, at in _jpeg_segments(jpeg) if marker == 0xC0)
    return jpeg[: sof + 5] + struct.pack(">HH", height, width) + jpeg[sof + 9 :]


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
@pytest.mark.parametrize("options", [{}, {"optimize": True}, {"progressive": True}])
@pytest.mark.parametrize("keep", [0.02, 0.5, 0.9])
def test_a_jpeg_whose_scan_data_ends_before_its_image_is_truncated(mode: str, options: dict, keep: float) -> None:
    """Found in review: with its EOI kept, libjpeg decodes the missing blocks as zero coefficients
    (flat mid-grey, from the cut to the end) with a warning PIL does not pass on, so a file cut in
    its scan data was an ok, mostly grey image; the design makes a truncated file an error row."""
    photo = _encode(_noise_rgb((200, 120)).convert(mode), "JPEG", quality=90, **options)
    assert decode_image(photo).size == (200, 120)
    cut = _scan_cut(photo, keep)
    decoded = np.asarray(Image.open(io.BytesIO(cut))).astype(int)  # what was stored before: mid-grey from the cut on
    assert np.all(np.abs(decoded[-1, -1] - 128) <= 4) and np.mean(np.abs(decoded - 128) <= 4) > (1 - keep) / 2
    with pytest.raises(InputError, match="^image is corrupt or truncated: its JPEG scan data ends before the image does"):
        decode_image(cut)
    with pytest.raises(InputError, match="truncated"):
        decode_image(cut, resize_short_side=16)  # drafted to a smaller scale: the same
    if options.get("progressive"):  # cut after its first scan, EOI kept: valid, its later scans are optional
        first_scan_only = _scan_cut(photo, 1.0)
        assert len(first_scan_only) < len(photo) / 2 and decode_image(first_scan_only).size == (200, 120)


def test_a_jpeg_whose_header_claims_more_than_its_scan_holds_is_truncated() -> None:
    """A 16x16 JPEG whose frame claims 2000x2000: a grey image of 4 million pixels before."""
    with pytest.raises(InputError, match="scan data ends before the image does"):
        decode_image(_claiming(_encode(_noise_rgb((16, 16)), "JPEG"), 2000, 2000))


def test_a_flat_mid_grey_jpeg_is_decoded() -> None:
    """Zero coefficients decode to mid-grey in a whole image too: its scan data ends with its blocks."""
    for image in (Image.new("RGB", (200, 120), (128, 128, 128)), Image.new("L", (64, 64), 128)):
        data = _encode(image, "JPEG", quality=90)
        assert np.array_equal(np.asarray(decode_image(data)), np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    assert decode_image(sequential_jpeg(256)).size == (256, 256)
    assert decode_image(progressive_jpeg(256, 3)).size == (256, 256)


def test_a_sequential_jpeg_of_a_scan_per_component_is_charged_its_coefficients() -> None:
    """libjpeg holds every coefficient of the full size for a sequential JPEG whose first scan
    holds fewer components than its frame, as for a progressive one, whatever the draft: a 2 MB
    13000x13000 one drafted to 1625x1625 for a model held 1 GB. The same pixels in one
    interleaved scan are streamed, and decode."""
    separate, together = sequential_jpeg(8000), sequential_jpeg(8000, interleaved=True)
    assert (first_scan_components(separate), first_scan_components(together)) == (1, 3)
    assert jpeg_frame(separate) == 0xC0
    with pytest.raises(InputError, match="JPEG of non-interleaved scans 8000x8000 RGB: its coefficients need 384000000 bytes"):
        decode_image(separate, resize_short_side=224)
    assert decode_image(together, resize_short_side=224).size == (1000, 1000)
    scan = separate.index(b"\xff\xda")  # a stray byte before the scan: libjpeg skips it, our walk of the segments stops
    with pytest.raises(InputError, match="JPEG whose first scan is not found 8000x8000 RGB: its coefficients need"):
        decode_image(separate[:scan] + b"\x00" + separate[scan:], resize_short_side=224)
    small = decode_image(sequential_jpeg(2000), resize_short_side=224)  # within the budget: decoded, the same pixels
    assert np.array_equal(np.asarray(small), np.asarray(decode_image(sequential_jpeg(2000, interleaved=True), resize_short_side=224)))


EMPTY_APP5 = b"\xff\xe5\x00\x02"  # a segment of no data: 4 bytes, a marker that PIL parses and keeps


@pytest.mark.parametrize("flood", [
    pytest.param(lambda jpeg: jpeg[:2] + EMPTY_APP5 * 200_000 + jpeg[2:], id="empty-segments"),
    pytest.param(lambda jpeg: jpeg[:2] + b"\xff" * 400_000 + jpeg[2:], id="fill-bytes"),
    pytest.param(lambda jpeg: jpeg[:2] + EMPTY_APP5 + b"junk" + EMPTY_APP5 * 200_000 + jpeg[2:], id="segments-after-stray-bytes"),
])
def test_a_flood_of_jpeg_markers_is_refused_before_pil_parses_them(flood) -> None:
    """PIL's JPEG parser walks the markers before the first scan in Python and keeps every APPn
    segment: 8 million empty APP5 segments (a 30 MiB file) took 24 s and about 1 GB, and became a
    value; so do fill bytes, one step each, and segments after stray bytes, which PIL skips."""
    plain = _encode(_noise_rgb((16, 16)), "JPEG")
    with pytest.raises(InputError, match=f"^JPEG has over {MAX_JPEG_MARKERS} markers before its first scan, over the limit$"):
        decode_image(flood(plain))


def test_a_jpeg_of_as_many_markers_as_the_limit_decodes() -> None:
    plain = _encode(_noise_rgb((16, 16)), "JPEG")
    own = len(list(_jpeg_segments(plain)))  # its segments up to and including the first scan
    at_limit = plain[:2] + EMPTY_APP5 * (MAX_JPEG_MARKERS - own) + plain[2:]
    assert np.array_equal(np.asarray(decode_image(at_limit)), np.asarray(decode_image(plain)))
    with pytest.raises(InputError, match="markers before its first scan"):
        decode_image(plain[:2] + EMPTY_APP5 * (MAX_JPEG_MARKERS - own + 1) + plain[2:])


@pytest.mark.parametrize("where", ["before-the-pixels", "after-the-pixels"])
@pytest.mark.parametrize("kind", [b"prVt", b"IDAT"])
def test_a_flood_of_png_chunks_is_refused_before_pil_reads_them(where: str, kind: bytes) -> None:
    """PIL reads a PNG's chunks one at a time in Python, keeping private ones: 2.7 million empty
    chunks (a 30 MiB file) took 13 s and became a value (an 8x8 picture), whether before the
    pixels' IDAT chunks, among them or after them."""
    small = png(8, 8)
    at = 33 if where == "before-the-pixels" else small.index(b"IEND") - 4  # after IHDR, or before IEND
    with pytest.raises(InputError, match=f"^PNG has over {MAX_PNG_CHUNKS} chunks, over the limit$"):
        decode_image(small[:at] + png_chunk(kind) * 200_000 + small[at:])


def test_a_png_of_as_many_chunks_as_the_limit_decodes() -> None:
    small = png(8, 8)
    own = 3  # png() writes IHDR, one IDAT and IEND
    at_limit = small[:33] + png_chunk(b"prVt") * (MAX_PNG_CHUNKS - own) + small[33:]
    assert np.array_equal(np.asarray(decode_image(at_limit)), np.asarray(decode_image(small)))
    with pytest.raises(InputError, match="PNG has over"):
        decode_image(small[:33] + png_chunk(b"prVt") * (MAX_PNG_CHUNKS - own + 1) + small[33:])


def _gif_with(blocks: bytes) -> bytes:
    """A 16x16 GIF with `blocks` between its global palette and its image, where PIL's GIF writes nothing."""
    gif = _encode(Image.new("P", (16, 16), 1), "GIF")
    image = 13 + (3 << ((gif[10] & 7) + 1))  # after the header, the screen and the global palette
    assert gif[10] & 0x80 and gif[image : image + 1] == b","
    return gif[:image] + blocks + gif[image:]


@pytest.mark.parametrize("blocks", [
    pytest.param(b"\x21\xfe\x01a\x00" * 200_000, id="comments"),
    pytest.param(b"\x21\xfe" + b"\x01a" * 200_000 + b"\x00", id="a-comment-of-one-byte-sub-blocks"),
    pytest.param(bytes(400_000), id="stray-bytes"),
])
def test_a_flood_of_gif_blocks_is_refused_before_pil_parses_them(blocks: bytes) -> None:
    """PIL's GIF parser steps through the blocks before the first image in Python, keeping a
    comment's sub-blocks as a bytes object each: 15 million one-byte sub-blocks (a 28 MiB file) took
    3 s and 1.4 GB and became a value (a 16x16 picture)."""
    with pytest.raises(InputError, match=f"^GIF has over {MAX_GIF_BLOCKS} blocks before its first image, over the limit$"):
        decode_image(_gif_with(blocks))


def test_a_gif_of_as_many_blocks_as_the_limit_decodes() -> None:
    """A comment is its introducer, its sub-blocks and the empty one that ends it."""
    at_limit = _gif_with(b"\x21\xfe" + b"\x01a" * (MAX_GIF_BLOCKS - 2) + b"\x00")
    assert np.array_equal(np.asarray(decode_image(at_limit)), np.asarray(decode_image(_gif_with(b""))))
    with pytest.raises(InputError, match="GIF has over"):
        decode_image(_gif_with(b"\x21\xfe" + b"\x01a" * (MAX_GIF_BLOCKS - 1) + b"\x00"))


def test_a_webp_is_charged_its_decoders_canvas() -> None:
    """libwebp decodes into an RGBA canvas of its own, which Pillow copies out as bytes before
    filling its image: a 4600x4600 RGB WebP, within the budget by its mode alone, peaked at
    324 MiB against the 192 MiB budget. The same pixels as a PNG cost only their mode."""
    photo = _noise_rgb((100, 100))
    limits = DecodeLimits(max_decode_bytes=100 * 100 * MODE_BYTES_PER_PIXEL["RGB"])
    assert decode_image(_encode(photo, "PNG"), limits).size == (100, 100)
    with pytest.raises(InputError, match=r"100x100 RGB WEBP: decoding needs 170000 bytes, over the 90000 byte limit"):
        decode_image(_encode(photo, "WEBP", lossless=True), limits)
    roomy = DecodeLimits(max_decode_bytes=100 * 100 * (MODE_BYTES_PER_PIXEL["RGB"] + FORMAT_BYTES_PER_PIXEL["WEBP"]))
    assert np.array_equal(np.asarray(decode_image(_encode(photo, "WEBP", lossless=True), roomy)), np.asarray(photo))


@pytest.mark.parametrize("mode, options", [("RGB", {}), ("RGB", {"lossless": True}), ("RGBA", {}), ("RGBA", {"lossless": True}),
                                           ("LA", {"lossless": True}), ("RGB", {"lossless": True, "animated": True}),
                                           ("RGBA", {"animated": True})])
def test_a_webps_canvas_is_read_from_its_header_as_pil_opens_it(mode: str, options: dict) -> None:
    """Lossy (VP8), lossless (VP8L) and extended (VP8X: alpha, animation) WebPs: the header's size
    and mode are those PIL reports once it has opened the file."""
    frames = [Image.effect_noise((37, 21), 50 + 20 * i).convert(mode) for i in range(2)]
    extra = {"save_all": True, "append_images": frames[1:]} if options.pop("animated", False) else {}
    data = _encode(frames[0], "WEBP", **options, **extra)
    opened = Image.open(io.BytesIO(data))
    assert webp_canvas(data) == (*opened.size, opened.mode)
    assert webp_canvas(NOISY_PNG) is None


_ADDRESS_SPACE_OF_DECODE = """
import resource, sys
from pathlib import Path
from signals.decode import InputError, decode_image
def vm(key):
    return int(Path("/proc/self/status").read_text().split(key + ":")[1].split()[0]) * 1024
decode_image(Path(sys.argv[2]).read_bytes())  # libwebp loaded
limit = vm("VmSize") + 2**30
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))  # as spark.executor.pyspark.memory sets on a worker
try:
    decode_image(Path(sys.argv[1]).read_bytes())
except InputError as exc:
    print(exc)
print(vm("VmPeak") - vm("VmSize"))
"""


def test_a_webp_canvas_over_the_limits_is_refused_before_libwebp_allocates_it(tmp_path) -> None:
    """A 148-byte WebP whose VP8X header claims 16384x10000 over 1x1 frames: PIL's opening had
    libwebp allocate its two RGBA canvases (1.25 GB of address space) before our limits saw the
    size, and under an address-space limit of a GiB more than the worker held that failed as
    "image is corrupt or truncated: could not create decoder object"."""
    (tmp_path / "hostile").write_bytes(webp_claiming(16_384, 10_000))
    (tmp_path / "small").write_bytes(_encode(_noise_rgb(), "WEBP", lossless=True))
    assert len((tmp_path / "hostile").read_bytes()) == 148
    run = subprocess.run([sys.executable, "-c", _ADDRESS_SPACE_OF_DECODE, str(tmp_path / "hostile"), str(tmp_path / "small")],
                         capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    reason, peak_over_size = run.stdout.strip().splitlines()
    assert reason == "image claims 16384x10000 pixels, over the 24000000 pixel limit"
    assert int(peak_over_size) < 2**26  # no canvas was ever mapped: 16384 * 10000 * 4 bytes is 625 MiB each


_PEAK_OF_DECODE = """
import sys
from pathlib import Path
from signals.decode import decode_image
def peak():
    return int(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0]) * 1024
data = Path(sys.argv[1]).read_bytes()
decode_image(data[:0] + Path(sys.argv[2]).read_bytes())  # the decoder's code and tables loaded
before = peak()
decode_image(data)
print(peak() - before)
"""


@pytest.mark.parametrize("mode", ["LA", "P"])
def test_the_largest_image_of_a_mode_with_alpha_decodes_within_the_budget(mode: str, tmp_path) -> None:
    """An image with alpha is converted to RGBA before it is put over white, beside the copy
    `exif_transpose` makes of its source: a grey+alpha PNG held 16 bytes a pixel (a 4000x4000
    one peaked at 245 MiB) where its mode was charged 12, a transparent palette one 10 where it was
    charged 9. The largest each mode is allowed is decoded in a fresh process, whose peak is measured."""
    limits = DecodeLimits()
    side = int((limits.max_decode_bytes // MODE_BYTES_PER_PIXEL[mode]) ** 0.5)
    source = Image.new(mode, (side, side))
    (tmp_path / "big").write_bytes(_encode(source, "PNG", compress_level=1, **({"transparency": 0} if mode == "P" else {})))
    (tmp_path / "small").write_bytes(_encode(Image.new(mode, (8, 8)), "PNG", **({"transparency": 0} if mode == "P" else {})))
    assert Image.open(tmp_path / "big").mode == mode
    run = subprocess.run([sys.executable, "-c", _PEAK_OF_DECODE, str(tmp_path / "big"), str(tmp_path / "small")],
                         capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert int(run.stdout) <= limits.max_decode_bytes + 2**20  # and a decoder's buffers: 57 KB for the palette PNG


def _with_text_chunks(data: bytes, count: int, size: int) -> bytes:
    """A PNG with `count` zTXt chunks before its IEND, each `size` bytes of one letter once decompressed."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    end = data.index(b"IEND") - 4
    return data[:end] + b"".join(chunk(b"zTXt", b"k%d\x00\x00" % i + zlib.compress(b"a" * size, 9)) for i in range(count)) + data[end:]


def test_a_pngs_text_chunks_are_bounded_far_below_the_pixels_budget() -> None:
    """PIL decompresses a PNG's text chunks into its info, 64 MB of them by default: 64 chunks of a
    megabyte of one letter, a 64 KB file, held 61 MiB on top of the pixels' budget."""
    small = png(8, 8)
    bomb = _with_text_chunks(small, 64, 1_000_000)
    assert len(bomb) < 100_000
    with pytest.raises(InputError, match="Too much memory used in text chunks"):
        decode_image(bomb)
    assert decode_image(_with_text_chunks(small, 3, 1_000_000)).size == (8, 8)  # megabytes of text: still a picture
