"""Hostile images through the real image signal: what each class of attack costs a worker.

    python -m benchmarks.hostile [--classes thin_png,eps] [--out benchmarks/results/hostile.json]

Each class of hostile image (thin strips, an ICO that lies about its size, 16-bit and RGBA
8000x8000 PNGs, decompression bombs, malformed EXIF, EPS, truncated files, headers claiming
huge sizes) is generated here, in memory and small, then given to EfficientNet-Lite0's
`prepare` (decode within the default `DecodeLimits`, then the model's transform) in a fresh
Python process per class, so each class's peak RSS (the child's VmHWM, read by the child
itself) is its own. Per class: the peak RSS, the seconds of the slowest image, and what each
image became: `error` (an InputError: an error row with its reason), `value` (a model input), or `escaped`
(any other exception: a defect, though the runner still makes it an error row). The summary
says whether any class went over the per-task budget (`TASK_BUDGET_BYTES`, `IMAGE_BUDGET_S`).
`make bench` runs it and stores the report under "hostile".
"""
from __future__ import annotations

import argparse
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks.report import write_json

TASK_BUDGET_BYTES = int(1.2 * 1024**3)  # what one Spark task's Python worker may hold (README, Worker memory)
IMAGE_BUDGET_S = 5.0  # one image's prepare, on one core


def png_chunk(kind: bytes, body: bytes = b"") -> bytes:
    """A PNG chunk: its length, type, data and CRC."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png(width: int, height: int, color_type: int = 0, depth: int = 8, rows: Callable[[int], bytes] | None = None) -> bytes:
    """A valid PNG of width x height (grey = 0, RGB = 2, RGBA = 6), compressed row by row so that
    a gigapixel image never exists in memory here: rows(y) gives row y's bytes (default zeros)."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
    row_bytes = width * channels * depth // 8
    zero_row = b"\x00" + bytes(row_bytes)
    compressor = zlib.compressobj(9)
    idat = [compressor.compress(zero_row if rows is None else b"\x00" + rows(y)) for y in range(height)]
    idat.append(compressor.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", b"".join(idat)) + png_chunk(b"IEND", b"")


def _noisy_rows(width: int, bytes_per_pixel: int) -> Callable[[int], bytes]:
    """Rows of a few distinct patterns: real pixel data that still compresses to kilobytes."""
    patterns = [os.urandom(64) * (width * bytes_per_pixel // 64 + 1) for _ in range(4)]
    return lambda y: patterns[y % 4][: width * bytes_per_pixel]


def _with_ihdr_size(data: bytes, width: int, height: int) -> bytes:
    ihdr = struct.pack(">II", width, height) + data[24:29]
    return data[:8] + png_chunk(b"IHDR", ihdr) + data[33:]


def _pil(image: Any, fmt: str, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def lying_ico(inner: bytes, declared: int = 16) -> bytes:
    """An ICO whose directory declares declared x declared and holds `inner` (a PNG)."""
    header = struct.pack("<HHH", 0, 1, 1)
    entry = struct.pack("<BBBBHHII", declared % 256, declared % 256, 0, 0, 1, 32, len(inner), 6 + 16)
    return header + entry + inner


def malformed_exif_jpeg(tag: int, type_: int) -> bytes:
    """A JPEG rotated by EXIF (orientation 6) with one more tag of a type its value cannot have
    (PIL's exif_transpose raises struct.error or TypeError writing it back)."""
    from PIL import Image

    entries = [(0x0112, 3, 1, struct.pack("<HH", 6, 0)), (tag, type_, 1, b"\xff\xff\xff\xff")]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHI", t, ty, c) + v for t, ty, c, v in entries) + bytes(4)
    payload = b"Exif\x00\x00" + b"II*\x00\x08\x00\x00\x00" + ifd
    jpeg = _pil(Image.new("RGB", (32, 16), (200, 10, 10)), "JPEG")
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def _rotated_jpeg(side: int) -> bytes:
    """A side x side noise JPEG with EXIF orientation 6 (decoding transposes it: a second copy)."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6
    return _pil(Image.effect_noise((side, side), 40).convert("RGB"), "JPEG", quality=80, exif=exif.tobytes())


def _jpeg_claiming(width: int, height: int) -> bytes:
    from PIL import Image

    data = bytearray(_pil(Image.new("RGB", (16, 16), (10, 120, 200)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _gif_claiming(width: int, height: int) -> bytes:
    from PIL import Image

    data = bytearray(_pil(Image.new("P", (16, 16), 1), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def _gif_commented(sub_blocks: int) -> bytes:
    """A 16x16 GIF whose image follows a comment of `sub_blocks` one-byte sub-blocks."""
    from PIL import Image

    data = _pil(Image.new("P", (16, 16), 1), "GIF")
    image = 13 + (3 << ((data[10] & 7) + 1))  # after the header, the screen and the global palette
    return data[:image] + b"\x21\xfe" + b"\x01a" * sub_blocks + b"\x00" + data[image:]


def _bmp_claiming(width: int, height: int) -> bytes:
    from PIL import Image

    data = bytearray(_pil(Image.new("RGB", (16, 16), (1, 2, 3)), "BMP"))
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def webp_claiming(width: int, height: int) -> bytes:
    """An animated lossless WebP of two 1x1 frames whose VP8X header claims a width x height canvas
    (148 bytes): libwebp allocates two RGBA canvases of that size when the file is opened."""
    from PIL import Image

    frames = [Image.new("RGB", (1, 1), (1, 2, 3)), Image.new("RGB", (1, 1), (3, 2, 1))]
    data = bytearray(_pil(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True))
    data[24:30] = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return bytes(data)


def _segment(marker: int, payload: bytes) -> bytes:
    return b"\xff" + bytes([marker]) + struct.pack(">H", len(payload) + 2) + payload


def progressive_jpeg(side: int, components: int = 1, scans: int = 1) -> bytes:
    """A valid flat progressive (SOF2) JPEG of side x side pixels: one DC scan at a bit per block,
    then `scans - 1` scans holding no data at all (about 10 bytes each, each a pass over the image)."""
    blocks = ((side + 7) // 8) ** 2 * components
    head = b"\xff\xd8" + _segment(0xDB, b"\x00" + b"\x01" * 64)
    if components == 4:
        head += _segment(0xEE, b"Adobe\x00\x64\x00\x00\x00\x00\x00")  # Adobe, transform 0: CMYK
    frame = struct.pack(">BHHB", 8, side, side, components) + b"".join(bytes([i + 1, 0x11, 0]) for i in range(components))
    head += _segment(0xC2, frame) + _segment(0xC4, b"\x00" + bytes([1] + [0] * 15) + b"\x00")
    scan = _segment(0xDA, bytes([components]) + b"".join(bytes([i + 1, 0]) for i in range(components)) + b"\x00\x00\x00")
    return head + scan + b"\x00" * ((blocks + 7) // 8) + scan * (scans - 1) + b"\xff\xd9"


def sequential_jpeg(side: int, components: int = 3, interleaved: bool = False) -> bytes:
    """A valid flat sequential (SOF0) JPEG of side x side pixels, two bits a block: one scan of
    every component, or (`interleaved` False) one scan per component, for which libjpeg holds the
    whole image's coefficients, as for a progressive one, even when drafted to a smaller size."""
    blocks = ((side + 7) // 8) ** 2
    frame = struct.pack(">BHHB", 8, side, side, components) + b"".join(bytes([i + 1, 0x11, 0]) for i in range(components))
    one_code = bytes([1] + [0] * 15) + b"\x00"  # a single code of one bit: DC difference 0, then end of block
    head = b"\xff\xd8" + _segment(0xDB, b"\x00" + b"\x01" * 64) + _segment(0xC0, frame) + _segment(0xC4, b"\x00" + one_code + b"\x10" + one_code)

    def scan(ids: list[int]) -> bytes:
        return _segment(0xDA, bytes([len(ids)]) + b"".join(bytes([i, 0]) for i in ids) + b"\x00\x3f\x00") + b"\x00" * ((blocks * len(ids) * 2 + 7) // 8)

    ids = list(range(1, components + 1))
    return head + (scan(ids) if interleaved else b"".join(scan([i]) for i in ids)) + b"\xff\xd9"


def lossless_jpeg(side: int, components: int = 3) -> bytes:
    """A valid flat lossless (SOF3, predictor 1) JPEG of side x side pixels: every difference 0,
    a bit a sample. libjpeg decodes it only at full scale."""
    frame = struct.pack(">BHHB", 8, side, side, components) + b"".join(bytes([i + 1, 0x11, 0]) for i in range(components))
    table = _segment(0xC4, b"\x00" + bytes([1] + [0] * 15) + b"\x00")
    scan = _segment(0xDA, bytes([components]) + b"".join(bytes([i + 1, 0]) for i in range(components)) + b"\x01\x00\x00")
    return b"\xff\xd8" + _segment(0xC3, frame) + table + scan + b"\x00" * ((side * side * components + 7) // 8) + b"\xff\xd9"


def multi_picture(jpeg: bytes) -> bytes:
    """`jpeg` with a multi-picture APP2 segment (PIL's, of two tiny frames) after its SOI: PIL then
    opens it as an MPO, whose first picture is that JPEG."""
    from PIL import Image

    frame = Image.new("RGB", (8, 8))
    mpo = _pil(frame, "MPO", save_all=True, append_images=[frame])
    start = mpo.index(b"\xff\xe2")
    return jpeg[:2] + mpo[start : start + 2 + struct.unpack(">H", mpo[start + 2 : start + 4])[0]] + jpeg[2:]


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\n%%EndComments\nnewpath 0 0 moveto 100 100 lineto stroke\nshowpage\n%%EOF\n"


def _thin_png() -> Iterator[tuple[str, bytes]]:
    yield "png 2x40000", png(2, 40_000, rows=lambda y: b"\xff\x00" if y % 2 else b"\x00\xff")
    yield "png 1x60000", png(1, 60_000, rows=lambda y: b"\xff" if y % 2 else b"\x00")
    yield "png 40000x2", png(40_000, 2, rows=_noisy_rows(40_000, 1))


def _lying_ico() -> Iterator[tuple[str, bytes]]:
    yield "ico 16x16 holding png 9000x9000", lying_ico(png(9_000, 9_000, color_type=2, rows=_noisy_rows(9_000, 3)))


def _deep_png() -> Iterator[tuple[str, bytes]]:
    yield "png 16-bit grey 8000x8000", png(8_000, 8_000, 0, 16, _noisy_rows(8_000, 2))
    yield "png 16-bit RGB 8000x8000", png(8_000, 8_000, 2, 16, _noisy_rows(8_000, 6))
    yield "png RGBA 8000x8000", png(8_000, 8_000, 6, 8, _noisy_rows(8_000, 4))
    yield "png 16-bit RGBA 8000x8000", png(8_000, 8_000, 6, 16, _noisy_rows(8_000, 8))


def _largest_allowed() -> Iterator[tuple[str, bytes]]:
    """Images just inside the default limits: what a worker must be able to afford."""
    from PIL import Image

    from signals.decode import FORMAT_BYTES_PER_PIXEL, MODE_BYTES_PER_PIXEL, DecodeLimits

    limits = DecodeLimits()
    for label, color_type, depth, mode, channels in (("RGB", 2, 8, "RGB", 3), ("RGBA", 6, 8, "RGBA", 4), ("grey+alpha", 4, 8, "LA", 2),
                                                     ("16-bit grey", 0, 16, "I;16", 2)):
        pixels = min(limits.max_pixels, limits.max_decode_bytes // MODE_BYTES_PER_PIXEL[mode])
        side = int(pixels**0.5)
        yield f"png {label} {side}x{side}", png(side, side, color_type, depth, _noisy_rows(side, channels))
    side = int(min(limits.max_pixels, limits.max_decode_bytes // MODE_BYTES_PER_PIXEL["L"]) ** 0.5)
    yield f"png grey {side}x{side} (P/L modes)", png(side, side, 0, 8, _noisy_rows(side, 1))
    side = int(min(limits.max_pixels, limits.max_decode_bytes // MODE_BYTES_PER_PIXEL["RGB"]) ** 0.5)
    yield f"jpeg RGB {side}x{side} rotated by EXIF", _rotated_jpeg(side)
    side = int(min(limits.max_pixels, limits.max_decode_bytes // (MODE_BYTES_PER_PIXEL["RGB"] + FORMAT_BYTES_PER_PIXEL["WEBP"])) ** 0.5)
    yield f"webp RGB {side}x{side}", _pil(Image.effect_noise((side, side), 60).convert("RGB"), "WEBP", quality=90)
    short = 200
    yield f"png {short}x{int(short * limits.max_aspect)} (the widest aspect)", png(int(short * limits.max_aspect), short, 2, 8, _noisy_rows(int(short * limits.max_aspect), 3))


def _bombs() -> Iterator[tuple[str, bytes]]:
    yield "png 20000x20000 zeros", png(20_000, 20_000)
    yield "png 12000x12000 RGB zeros", png(12_000, 12_000, color_type=2)
    small = png(8, 8)
    yield "png 8x8 after 2.7 million empty private chunks (30 MiB, each read by PIL)", small[:33] + png_chunk(b"prVt") * 2_700_000 + small[33:]
    yield "gif 16x16 after a comment of 15 million one-byte sub-blocks (28 MiB, each kept by PIL)", _gif_commented(15_000_000)


def _malformed_exif() -> Iterator[tuple[str, bytes]]:
    yield "jpeg exif ImageWidth as ASCII (struct.error)", malformed_exif_jpeg(0x0100, 2)
    yield "jpeg exif XResolution as BYTE (TypeError)", malformed_exif_jpeg(0x011A, 1)


def _progressive() -> Iterator[tuple[str, bytes]]:
    yield "progressive jpeg 4600x4600 grey, 10000 empty scans", progressive_jpeg(4600, 1, 10_000)
    yield "progressive jpeg 9459x9459 CMYK (drafted, but coefficients for every pixel)", progressive_jpeg(9459, 4)
    yield "progressive jpeg 2000x2000 grey, 10000 empty scans, opened as a multi-picture file", multi_picture(progressive_jpeg(2000, 1, 10_000))
    yield "sequential jpeg 13000x13000 RGB, a scan per component (drafted, but coefficients for every pixel)", sequential_jpeg(13_000)
    small = _jpeg_claiming(16, 16)
    yield "jpeg 16x16 after 8 million empty APP5 segments (30 MiB, each parsed by PIL)", small[:2] + b"\xff\xe5\x00\x02" * 8_000_000 + small[2:]


def _eps() -> Iterator[tuple[str, bytes]]:
    yield "eps", EPS


def _truncated() -> Iterator[tuple[str, bytes]]:
    from PIL import Image

    photo = Image.effect_noise((640, 480), 60).convert("RGB")
    jpeg, png_data = _pil(photo, "JPEG", quality=90), _pil(photo, "PNG")
    yield "jpeg half", jpeg[: len(jpeg) // 2]
    yield "png half", png_data[: len(png_data) // 2]
    yield "png header only", png_data[:33]


def _huge_header() -> Iterator[tuple[str, bytes]]:
    from PIL import Image

    small = _pil(Image.new("L", (8, 8), 5), "PNG")
    yield "png claiming 100000x100000", _with_ihdr_size(small, 100_000, 100_000)
    yield "png claiming 2^31-1 square", _with_ihdr_size(small, 2**31 - 1, 2**31 - 1)
    yield "jpeg claiming 65500x65500", _jpeg_claiming(65_500, 65_500)
    yield "gif claiming 65535x65535", _gif_claiming(65_535, 65_535)
    yield "bmp claiming 100000x100000", _bmp_claiming(100_000, 100_000)
    yield "webp canvas claiming 16384x10000 over 1x1 frames", webp_claiming(16_384, 10_000)


CLASSES: dict[str, Callable[[], Iterator[tuple[str, bytes]]]] = {
    "thin_png": _thin_png,
    "lying_ico": _lying_ico,
    "deep_png_8000": _deep_png,
    "largest_allowed": _largest_allowed,
    "decompression_bomb": _bombs,
    "malformed_exif": _malformed_exif,
    "progressive_jpeg": _progressive,
    "eps": _eps,
    "truncated": _truncated,
    "huge_header": _huge_header,
}


def _peak_rss_bytes() -> int:
    """This process's high-water RSS since its exec: VmHWM, not ru_maxrss, which Linux carries over
    from the parent's memory when the child was spawned (a large pytest process made every class
    look 2.6 GB)."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) * 1024  # kilobytes


def run_child(folder: Path) -> dict[str, Any]:
    """In this (fresh) process: the images in `folder` (one file each) through EfficientNet-Lite0's
    prepare, each read from its file just before, so the baseline is the loaded model alone."""
    import torch

    from signals.base import ModelRef, SignalConfig
    from signals.decode import InputError
    from signals.embedders.efficientnet import EfficientNetImageEmbedder

    torch.set_num_threads(1)
    signal = EfficientNetImageEmbedder(SignalConfig("image_embedding", ModelRef("efficientnet-lite0", "hostile"), 8, "cpu")).load()
    labels = json.loads((folder / "labels.json").read_text())
    baseline = _peak_rss_bytes()
    results = []
    for index, label in enumerate(labels):
        data = (folder / str(index)).read_bytes()
        start = time.perf_counter()
        try:
            signal.prepare({"image": data})
            outcome, reason = "value", None
        except InputError as exc:
            outcome, reason = "error", str(exc)
        except Exception as exc:  # noqa: BLE001 - recorded: an exception other than InputError is a defect
            outcome, reason = "escaped", f"{type(exc).__name__}: {exc}"
        results.append({"image": label, "bytes": len(data), "outcome": outcome, "reason": reason,
                        "seconds": round(time.perf_counter() - start, 3), "peak_rss_bytes_after": _peak_rss_bytes()})
    return {"baseline_rss_bytes": baseline, "peak_rss_bytes": _peak_rss_bytes(), "images": results}


def run_class(name: str, timeout_s: float = 300.0) -> dict[str, Any]:
    """One class in a fresh Python process: its outcomes, peak RSS and slowest image."""
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory(prefix="hostile-") as folder, tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        labels = []
        for index, (label, data) in enumerate(CLASSES[name]()):
            Path(folder, str(index)).write_bytes(data)
            labels.append(label)
        Path(folder, "labels.json").write_text(json.dumps(labels))
        start = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", "benchmarks.hostile", "--child", folder], stdout=out, stderr=err, cwd=root, env=env)
        try:
            child.wait(timeout_s)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    wall = time.perf_counter() - start
    if child.returncode != 0:
        return {"class": name, "crashed": True, "returncode": child.returncode, "seconds": round(wall, 1),
                "stderr": stderr[-2000:], "over_budget": True}
    report = json.loads(stdout.strip().splitlines()[-1])
    images, peak = report["images"], report["peak_rss_bytes"]
    worst = max(images, key=lambda r: r["seconds"])
    return {
        "class": name,
        "crashed": False,
        "baseline_rss_bytes": report["baseline_rss_bytes"],
        "peak_rss_bytes": peak,
        "peak_over_baseline_bytes": peak - report["baseline_rss_bytes"],
        "worst_seconds": worst["seconds"],
        "worst_image": worst["image"],
        "outcomes": {o: sum(r["outcome"] == o for r in images) for o in ("value", "error", "escaped")},
        "images": images,
        "over_budget": peak > TASK_BUDGET_BYTES or worst["seconds"] > IMAGE_BUDGET_S,
    }


def run(classes: list[str] | None = None) -> dict[str, Any]:
    """Every class (or `classes`), each in its own process, and the summary against the budget."""
    results = [run_class(name) for name in classes or list(CLASSES)]
    return {
        "budget": {"task_rss_bytes": TASK_BUDGET_BYTES, "image_seconds": IMAGE_BUDGET_S},
        "classes": {r["class"]: r for r in results},
        "summary": {
            "over_budget": [r["class"] for r in results if r["over_budget"]],
            "escaped": [r["class"] for r in results if not r["crashed"] and r["outcomes"]["escaped"]],
            "crashed": [r["class"] for r in results if r["crashed"]],
            "within_budget": not any(r["over_budget"] for r in results),
        },
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.hostile", description=__doc__.split("\n")[0])
    p.add_argument("--classes", default=",".join(CLASSES), help=f"comma-separated, of: {', '.join(CLASSES)}")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON report here")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(Path(args.child))))
        return 0
    report = run(args.classes.split(","))
    for name, r in report["classes"].items():
        if r["crashed"]:
            print(f"{name:20s} CRASHED (exit {r['returncode']})")
        else:
            print(f"{name:20s} peak {r['peak_rss_bytes'] / 2**20:7.0f} MiB (+{r['peak_over_baseline_bytes'] / 2**20:.0f})  "
                  f"worst {r['worst_seconds']:6.2f}s  {r['outcomes']}")
    print(json.dumps(report["summary"]))
    if args.out:
        write_json(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
