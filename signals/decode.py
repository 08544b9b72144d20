"""Image decoding with safe limits.

Corpus bytes come from users: corrupt, truncated, empty, not images at all, headers that claim
billions of pixels, formats that run other programs (EPS starts Ghostscript), containers whose
header lies about what they hold (an ICO that declares 16x16 and holds a 9000x9000 PNG), thin
strips that the model's resize blows up to gigabytes. Decoding must turn each of these into an
`InputError` with a reason (which becomes an error row) and never hang, exhaust memory or kill
the worker: every check that can be made from the header is made before any pixel is decoded,
and any exception of the decoding itself (PIL's EXIF parser raises struct.error and TypeError on
malformed tags) becomes an InputError too.
"""
from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps, JpegImagePlugin, PngImagePlugin

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never a half-grey image
# A PNG's text chunks are decompressed into its info, up to 64 MB by PIL's default, on top of the
# pixels' budget: 64 zTXt chunks of a megabyte of one letter (a 64 KB file) held 61 MiB. Photos'
# text (XMP, comments) is kilobytes; more than this is an error row.
PngImagePlugin.MAX_TEXT_MEMORY = 4 * 1024 * 1024

# Formats whose header states the size that decoding produces (the first frame of a GIF, WebP or
# TIFF): the only ones the limits can be checked for before decoding. ICO, ICNS, PSD, EPS, ... are
# not among them: their header size is not what is decoded, or decoding runs another program.
DECODABLE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")

# Peak bytes per pixel that `decode_image` holds for an image of each mode PIL opens: PIL's own
# storage (1 byte a pixel for one 8-bit band, 2 for 16-bit, 4 for everything else), plus the
# conversion to RGB (4 bytes a pixel), plus a second copy of the source from `exif_transpose`
# (rotated, or copied as it is where no rotation is asked for).
MODE_BYTES_PER_PIXEL = {
    "1": 9, "L": 9,  # 1 + 4 (RGB) + 4 (rotated RGB)
    "P": 10,  # with transparency it goes through RGBA: 1 + 1 (rotated) + 4 (RGBA) + 4 (RGB)
    "I;16": 11, "I;16B": 11, "I;16L": 11, "I;16N": 11,  # 2 + 2 (array) + 1 (8-bit) + 4 (RGB) + 2 (rotated source)
    "RGB": 9, "YCbCr": 9,  # 4 + 4 (rotated) + the JPEG decoder's buffers
    "RGBA": 12, "CMYK": 12, "LAB": 12, "HSV": 12,  # 4 + 4 (rotated) + 4 (RGB)
    "LA": 16, "PA": 16,  # 4 + 4 (rotated) + 4 (RGBA) + 4 (RGB)
    "I": 17, "F": 17,  # 4 + 4 (array) + 1 + 4 (RGB) + 4 (rotated source)
}
_UNKNOWN_MODE_BYTES = 17
# Bytes per pixel a format's decoder holds on top of its mode's: libwebp decodes into an RGBA
# canvas of its own, which Pillow copies out as bytes before filling its image (a 4600x4600 RGB
# WebP peaked at 324 MiB, 16 bytes a pixel, where its mode is charged 9).
FORMAT_BYTES_PER_PIXEL = {"WEBP": 8}
DRAFT_OVERSAMPLING = 4  # a drafted JPEG keeps at least this many pixels per pixel of the model's resize
# JPEG frame (SOFn) markers, DHT, JPG and DAC excepted; a lossless frame cannot be decoded at a reduced scale
JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
LOSSLESS_JPEG_FRAMES = frozenset({0xC3, 0xC7, 0xCB, 0xCF})
MAX_JPEG_SCANS = 100  # libjpeg writes 10 scans for a progressive colour JPEG, mozjpeg about a dozen
# Markers PIL's JPEG parser steps through before the first scan, in Python, keeping every APPn
# segment: a photo has a few dozen (an ICC profile at most 255 APP2 segments, 32 MiB at most 512
# full ones), 8 million empty APP5 segments (a 30 MiB file) took 24 s and about 1 GB.
MAX_JPEG_MARKERS = 1000
# Chunks of a PNG, which PIL reads one at a time in Python (keeping private ones): a PNG's pixels
# come in IDAT chunks of 8-64 KB (4,096 of 8 KB in 32 MiB); 2.7 million empty private chunks (a
# 30 MiB file) took 13 s.
MAX_PNG_CHUNKS = 100_000
# Steps of PIL's GIF parser before the first image, in Python: an extension's sub-blocks (up to 255
# bytes each; a comment's it keeps, a bytes object each) and stray bytes. A GIF's comments and XMP
# take a few hundred; 15 million one-byte comment sub-blocks (a 28 MiB file) took 3 s and 1.4 GB.
MAX_GIF_BLOCKS = 100_000
# Entropy-coded bytes (no 0xFF) put before a JPEG's EOI to tell whether its last scan reads past its own data
SCAN_FILLER = bytes(range(1, 255))
_JPEG_MARKERS_WITHOUT_LENGTH = frozenset({0xC8, *range(0xD0, 0xDA), *range(0xF0, 0xFE)})  # PIL reads no length after these


class InputError(ValueError):
    """A row's input cannot be used; the message is the reason recorded on its error row."""


@dataclass(frozen=True)
class DecodeLimits:
    """Bounds on an image, checked from its header before any pixel is decoded.

    Budget the defaults guarantee, per image, on one core: decoding and the model's preprocessing
    hold at most about `max_decode_bytes` (192 MiB) beyond the worker's baseline whatever the mode,
    because each mode is charged its peak bytes per pixel (MODE_BYTES_PER_PIXEL, and a WebP its
    decoder's canvas: FORMAT_BYTES_PER_PIXEL): an 8-bit RGB JPEG may have 22M pixels (5760x3840),
    a 16-bit grey PNG 18M, an RGBA PNG 16M, an RGB WebP 11.8M, never 8000x8000;
    and they take under 2 s (the worst image of each hostile class and the largest images
    allowed are measured by `make bench`, benchmarks/hostile.py). No side may be more than
    `max_aspect` times the other, and a model's resize of the short side to N (N x N*aspect
    pixels) may give at most `max_resized_pixels`: a 2x40000 strip resized to 224 would be
    224x4480000 (3 GB). Only `formats` are opened at all. A consumer's own working copy of the
    decoded image comes on top (the quality labeler's float luminance: 6 bytes a pixel).
    """

    max_bytes: int = 32 * 1024 * 1024
    max_pixels: int = 24_000_000
    max_decode_bytes: int = 192 * 1024 * 1024
    max_aspect: float = 20.0
    max_resized_pixels: int = 4 * 1024 * 1024
    min_side: int = 1
    formats: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "BMP")

    def __post_init__(self) -> None:
        formats = tuple(f.upper() for f in self.formats)
        unknown = sorted(set(formats) - set(DECODABLE_FORMATS))
        if unknown:
            raise ValueError(f"decode formats {unknown} cannot be limited before decoding; choose from {', '.join(DECODABLE_FORMATS)}")
        if self.max_aspect < 1:
            raise ValueError(f"max_aspect must be at least 1, not {self.max_aspect}")
        object.__setattr__(self, "formats", formats)


def check_size(width: int, height: int, mode: str, limits: DecodeLimits, image_format: str | None = None) -> None:
    """Raise InputError when an image of this header size and mode (and format, whose decoder
    may hold more: FORMAT_BYTES_PER_PIXEL) is outside `limits`."""
    if width * height > limits.max_pixels:
        raise InputError(f"image claims {width}x{height} pixels, over the {limits.max_pixels} pixel limit")
    if min(width, height) < limits.min_side:
        raise InputError(f"image is {width}x{height}, under the minimum side {limits.min_side}")
    if max(width, height) > limits.max_aspect * min(width, height):
        raise InputError(f"image is {width}x{height}, an aspect ratio over the {limits.max_aspect:g}:1 limit")
    cost = width * height * (MODE_BYTES_PER_PIXEL.get(mode, _UNKNOWN_MODE_BYTES) + FORMAT_BYTES_PER_PIXEL.get(image_format or "", 0))
    if cost > limits.max_decode_bytes:
        what = f"{mode} {image_format}" if image_format in FORMAT_BYTES_PER_PIXEL else mode
        raise InputError(f"image is {width}x{height} {what}: decoding needs {cost} bytes, over the {limits.max_decode_bytes} byte limit")


def check_resized(width: int, height: int, short_side: int | None, limits: DecodeLimits) -> None:
    """Raise InputError when resizing the short side to `short_side` (a model's preprocessing)
    would make an image of more than `limits.max_resized_pixels`."""
    if short_side is None:
        return
    long_side = math.ceil(short_side * max(width, height) / min(width, height))
    if short_side * long_side > limits.max_resized_pixels:
        raise InputError(f"image is {width}x{height}: resized to a short side of {short_side} it would be "
                         f"{short_side}x{long_side}, over the {limits.max_resized_pixels} pixel limit")


def image_format(prefix: bytes) -> str | None:
    """The format PIL would read these first bytes as (by the formats' signatures), opening nothing."""
    Image.init()
    for name in Image.ID:
        accept = Image.OPEN[name][1]
        try:
            if accept is not None and accept(prefix):
                return name
        except Exception:  # noqa: BLE001 - a signature check that fails is no match
            continue
    return None


def webp_canvas(data: bytes) -> tuple[int, int, str] | None:
    """A WebP's canvas width, height and the mode PIL opens it in, read from its first chunk (VP8X,
    VP8L or VP8), or None where `data` is not such a WebP: libwebp allocates two RGBA canvases of
    that size when PIL opens the file, before PIL's size is there to check (a 148-byte WebP whose
    VP8X header claims 16384x10000 took 1.25 GB of address space, or failed as corrupt under an
    address-space limit)."""
    if len(data) < 30 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    chunk = data[12:16]
    if chunk == b"VP8X":  # flags (0x10: alpha), 3 reserved bytes, then width - 1 and height - 1 in 24 bits each
        mode = "RGBA" if data[20] & 0x10 else "RGB"
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1, mode
    if chunk == b"VP8L" and data[20] == 0x2F:  # signature, then width - 1 and height - 1 in 14 bits each, then alpha
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, "RGBA" if bits >> 28 & 1 else "RGB"
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":  # a key frame's start code, then 14-bit width and height
        return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF, "RGB"
    return None


def _open(data: bytes, limits: DecodeLimits) -> ImageFile.ImageFile:
    """The image opened (header only) by one of the allowed formats, or InputError saying why not."""
    try:
        return Image.open(io.BytesIO(data), formats=list(limits.formats))
    except Image.UnidentifiedImageError:
        found = image_format(data[:16])
        if found is not None and found not in limits.formats:
            raise InputError(f"format {found} not allowed (allowed: {', '.join(limits.formats)})") from None
        raise InputError("not a recognised image format") from None


def _check_before_open(data: bytes, limits: DecodeLimits) -> None:
    """InputError for what PIL's opening alone would spend over the limits on: a WebP's canvases
    (libwebp allocates them then), a JPEG's markers, a PNG's chunks and a GIF's blocks (PIL parses
    each in Python)."""
    canvas = webp_canvas(data) if "WEBP" in limits.formats else None
    if canvas is not None:
        check_size(*canvas, limits, "WEBP")
    if "JPEG" in limits.formats and data[:3] == b"\xff\xd8\xff":
        check_jpeg_markers(data)
    if "PNG" in limits.formats and data[:8] == b"\x89PNG\r\n\x1a\n":
        check_png_chunks(data)
    if "GIF" in limits.formats and data[:6] in (b"GIF87a", b"GIF89a"):
        check_gif_blocks(data)


def check_bytes(data: object, what: str, max_bytes: int) -> None:
    """InputError unless `data` is bytes, not empty, and at most `max_bytes` long: the checks every
    decoder (image, video) makes before opening anything; `what` names the input in the reason."""
    if data is None:
        raise InputError(f"{what} is null")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InputError(f"{what} is {type(data).__name__}, not bytes")
    if len(data) == 0:
        raise InputError(f"{what} is empty (0 bytes)")
    if len(data) > max_bytes:
        raise InputError(f"{what} is {len(data)} bytes, over the {max_bytes} byte limit")


def decode_image(data: bytes | None, limits: DecodeLimits = DecodeLimits(), resize_short_side: int | None = None) -> Image.Image:
    """Decode bytes into an RGB PIL image, or raise InputError saying why not.

    `resize_short_side`: the size the caller's preprocessing resizes the short side to, whose
    result must stay within `limits.max_resized_pixels`; a large JPEG is then decoded at a
    reduced scale (`_draft`) and charged for the pixels it is decoded to."""
    check_bytes(data, "image", limits.max_bytes)
    try:  # PIL's DecompressionBombWarning stays a warning: `check_size` refuses what our limits do not allow
        data = bytes(data)
        _check_before_open(data, limits)
        image = _open(data, limits)
        check_resized(*image.size, resize_short_side, limits)
        if is_jpeg(image):
            check_jpeg(data, image, limits)
        _draft(image, data, resize_short_side)
        width, height = image.size
        check_size(width, height, image.mode, limits, image.format)
        image.load()
        if image.size != (width, height):
            raise InputError(f"image decoded to {image.width}x{image.height}, not the {width}x{height} its header claims")
        if is_jpeg(image):
            check_jpeg_scan_data(data, image)
        return to_rgb(ImageOps.exif_transpose(image))
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # the warning too, where a caller made it an error
        raise InputError(f"image too large: {exc}") from exc
    except (OSError, SyntaxError, EOFError) as exc:
        raise InputError(f"image is corrupt or truncated: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - whatever PIL raises on hostile bytes is this row's error
        raise InputError(f"image is corrupt: {type(exc).__name__}: {exc}") from exc


def is_jpeg(image: Image.Image) -> bool:
    """Whether PIL opened a JPEG: its format is "MPO" where an APP2 segment says multi-picture,
    and that JPEG's scans cost the same."""
    return isinstance(image, JpegImagePlugin.JpegImageFile)


def _jpeg_segments(data: bytes) -> Iterator[tuple[int, int]]:
    """(marker, offset of its 0xFF) of a JPEG's segments from SOI, up to and including its first
    scan (SOS), stopping at anything unexpected; a thumbnail inside a segment is skipped with it."""
    at = 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        if marker == 0xFF:  # a fill byte before the marker
            at += 1
            continue
        if 0xD0 <= marker <= 0xD9 or marker in (0x00, 0x01):  # a marker with no segment
            return
        yield marker, at
        if marker == 0xDA:
            return
        at += 2 + int.from_bytes(data[at + 2 : at + 4], "big")


def check_jpeg_markers(data: bytes) -> None:
    """Raise InputError for a JPEG of more than MAX_JPEG_MARKERS markers before its first scan, as
    PIL's parser walks them: unlike `_jpeg_segments` it skips stray bytes, and steps through fill
    bytes (0xFF) and stuffed zeros (0xFF00) one at a time; at most MAX_JPEG_MARKERS + 1 are walked."""
    at, markers = 2, 0
    while at + 1 < len(data):
        if data[at] != 0xFF:  # stray bytes, which PIL skips cheaply
            at = data.find(b"\xff", at)
            if at < 0:
                return
            continue
        marker = data[at + 1]
        markers += 1
        if markers > MAX_JPEG_MARKERS:
            raise InputError(f"JPEG has over {MAX_JPEG_MARKERS} markers before its first scan, over the limit")
        if marker == 0xDA or 0x00 < marker < 0xC0:  # the first scan, or what PIL stops at as no marker
            return
        if marker == 0xFF:  # a fill byte: the next 0xFF starts the marker
            at += 1
        elif marker == 0x00 or marker in _JPEG_MARKERS_WITHOUT_LENGTH:
            at += 2
        else:
            at += 2 + int.from_bytes(data[at + 2 : at + 4], "big")


def check_png_chunks(data: bytes) -> None:
    """Raise InputError for a PNG of more than MAX_PNG_CHUNKS chunks up to its IEND, each of which PIL
    reads in Python, before its first IDAT, between IDATs or after them; at most MAX_PNG_CHUNKS + 1 are walked."""
    at, chunks = 8, 0
    while at + 8 <= len(data):
        chunks += 1
        if chunks > MAX_PNG_CHUNKS:
            raise InputError(f"PNG has over {MAX_PNG_CHUNKS} chunks, over the limit")
        if data[at + 4 : at + 8] == b"IEND":
            return
        at += 12 + int.from_bytes(data[at : at + 4], "big")  # length, type, data, CRC


def check_gif_blocks(data: bytes) -> None:
    """Raise InputError for a GIF of more than MAX_GIF_BLOCKS extension sub-blocks and stray bytes
    before its first image, as PIL's parser steps through them; at most MAX_GIF_BLOCKS + 1 are walked."""
    flags = data[10] if len(data) > 10 else 0
    at = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # the header, the screen, the global palette
    steps, in_extension = 0, False
    while at < len(data) and (in_extension or data[at] not in b",;"):  # up to the first image, or the end
        steps += 1
        if steps > MAX_GIF_BLOCKS:
            raise InputError(f"GIF has over {MAX_GIF_BLOCKS} blocks before its first image, over the limit")
        if in_extension:  # a sub-block: its length, then that many bytes; an empty one ends the extension
            in_extension = data[at] != 0
            at += 1 + data[at]
        elif data[at] == 0x21:  # an extension: its label, then its sub-blocks
            in_extension, at = True, at + 2
        else:  # a stray byte, which PIL skips
            at += 1


def jpeg_frame(data: bytes) -> int | None:
    """A JPEG's frame marker (0xC0 baseline, 0xC2 progressive, 0xC3 lossless, ...: the SOFn byte),
    by walking its segments from SOI, or None where they lead to none before a scan or anything
    unexpected; PIL's header parser does not say which frame it read."""
    for marker, _ in _jpeg_segments(data):
        if marker in JPEG_FRAMES:
            return marker
        if marker == 0xDA:
            return None
    return None


def first_scan_components(data: bytes) -> int | None:
    """How many components a JPEG's first scan holds (its SOS's Ns), or None where its segments
    lead to no scan: libjpeg buffers the whole image's coefficients when it holds fewer than the
    frame (a sequential JPEG of one scan per component)."""
    for marker, at in _jpeg_segments(data):
        if marker == 0xDA and at + 4 < len(data):
            return data[at + 4]
    return None


def check_jpeg(data: bytes, image: ImageFile.ImageFile, limits: DecodeLimits) -> None:
    """Raise InputError for a JPEG whose decoding would cost what its header does not show: more
    than MAX_JPEG_SCANS scans (each walks every block of the whole image, so a few bytes a scan
    buy seconds each: 10,000 empty scans took 49 s), or coefficients for every pixel of its full
    size (2 bytes a component), which a draft's smaller output does not save: libjpeg holds them
    for a progressive JPEG and for a sequential one whose first scan holds fewer components than
    its frame (a 2 MB 13000x13000 JPEG of one scan per component, drafted to 1625x1625, held 1 GB),
    so a JPEG whose first scan its segments do not lead to is charged them too."""
    scans = data.count(b"\xff\xda")  # SOS markers: entropy-coded data stuffs every 0xff, so each is a scan (or a thumbnail's)
    if scans > MAX_JPEG_SCANS:
        raise InputError(f"JPEG has {scans} scans, over the {MAX_JPEG_SCANS} scan limit")
    first_scan = first_scan_components(data)
    if image.info.get("progressive") or image.info.get("progression"):
        kind = "progressive JPEG"
    elif first_scan is None:  # libjpeg skips bytes between segments that our walk stops at: it may be either
        kind = "JPEG whose first scan is not found"
    elif first_scan < image.layers:
        kind = "JPEG of non-interleaved scans"
    else:
        return
    width, height = image.size
    cost = 2 * len(image.getbands()) * width * height
    if cost > limits.max_decode_bytes:
        raise InputError(f"{kind} {width}x{height} {image.mode}: its coefficients need {cost} bytes, "
                         f"over the {limits.max_decode_bytes} byte limit")


def check_jpeg_scan_data(data: bytes, image: Image.Image) -> None:
    """Raise InputError for a decoded JPEG whose last scan's entropy-coded data ends before the image
    does, its EOI kept (a file cut short and "repaired", or a header claiming more than its scan
    holds): libjpeg decodes the missing blocks as zero coefficients, mid-grey, with a warning PIL does
    not pass on. An image whose bottom-right pixel is mid-grey is decoded twice more at 1/8 scale (its
    DC coefficients only), as it is and with bytes before its EOI (SCAN_FILLER), which a complete
    scan never reads: the two differ only where the decoder ran out of data and read them."""
    corner = image.getpixel((image.width - 1, image.height - 1))
    if any(abs(band - 128) > 4 for band in (corner if isinstance(corner, tuple) else (corner,))):  # mid-grey, or near it where libjpeg smooths
        return
    first_scan = next((at for marker, at in _jpeg_segments(data) if marker == 0xDA), None)
    end = data.find(b"\xff\xd9", first_scan) if first_scan is not None else -1
    if end < 0 or jpeg_frame(data) in LOSSLESS_JPEG_FRAMES:  # a lossless JPEG predicts its missing samples, at full scale only
        return
    if _dc_only(data) != _dc_only(data[:end] + SCAN_FILLER + data[end:]):
        raise InputError("image is corrupt or truncated: its JPEG scan data ends before the image does")


def _dc_only(data: bytes) -> bytes:
    """A JPEG's pixels decoded at 1/8 scale, where each block is its DC coefficient alone."""
    image = Image.open(io.BytesIO(data), formats=["JPEG"])
    image.draft(image.mode, (math.ceil(image.width / 8), math.ceil(image.height / 8)))
    return image.tobytes()


def _draft(image: ImageFile.ImageFile, data: bytes, resize_short_side: int | None) -> None:
    """Have a JPEG decoded at the smallest DCT scale (1/2, 1/4, 1/8) that keeps its short side at
    least four times what the model resizes it to: a 24-megapixel photo then costs what a
    1.5-megapixel one does, in memory and time, and the resize still has enough pixels that its
    antialiased result barely differs from the full decode's (DRAFT_OVERSAMPLING)."""
    if not is_jpeg(image) or resize_short_side is None:
        return
    width, height = image.size
    scale = DRAFT_OVERSAMPLING * resize_short_side / min(width, height)
    if scale < 0.5 and jpeg_frame(data) not in LOSSLESS_JPEG_FRAMES:  # libjpeg cannot scale a lossless JPEG: decoded (and charged) whole
        image.draft(image.mode, (math.ceil(width * scale), math.ceil(height * scale)))


def _scale_16_bit(image: Image.Image) -> Image.Image:
    """A 16-bit (or 32-bit integer) grey image as 8-bit grey: 0..65535 onto 0..255, rounded."""
    values = np.asarray(image)
    out = np.empty(values.shape, dtype=np.uint8)
    rows = max(1, (1 << 20) // max(1, values.shape[1]))  # about a million pixels a step: no full-size temporaries
    for top in range(0, values.shape[0], rows):
        block = np.clip(values[top : top + rows].astype(np.int64), 0, 65535)
        out[top : top + rows] = (block + 128) // 257  # round(v / 257): v / 257 is never exactly halfway
    return Image.fromarray(out, mode="L")


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB: alpha over white, 16-bit scaled (not clipped) to 8 bits."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        return _scale_16_bit(image).convert("RGB")
    if image.mode == "F":
        return Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8), mode="L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba)  # alpha over white, without a second RGBA copy
        return white
    return image.convert("RGB")
