"""Seeded sample videos made from the sample photos, with their truth, and bad video inputs.

Good videos are small (240 lines, a few seconds) and made with PyAV: pans and zooms over one
photo, cuts between photos at known times (the truth of shot boundaries), a text overlay during
a known interval, a blurred interval, a still photo, and re-encodings of one cut video (another
codec, resolution and frame rate: the same video, one duplicate group). In a corpus, a still
video of one pin's picture joins them: a pin and its video version, one duplicate group. The
still photo is the whole photo while pins are windows of their photos: not a copy of any pin. Bad inputs cover what a
video upload can be: truncated, corrupt, zero bytes, audio only, a header claiming 100000x100000
over undecodable data, a header claiming ten hours, a codec outside the allowlist, a photo
renamed as a video. Everything random comes from `numpy.random.default_rng(seed)`.
"""
from __future__ import annotations

import io
import struct
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from sample_corpus.photos import SKIMAGE_PHOTOS, base_photo
from signals.contracts import CORPUS, UTC_MICROS

FPS = 24
SIZE = (320, 240)  # width, height
PHOTOS = tuple(base_id for base_id, _ in SKIMAGE_PHOTOS)  # scikit-image's: scikit-learn's cost seconds to import
TEN_HOURS_MS = 10 * 3600 * 1000.0
BITEXACT = {"fflags": "+bitexact"}  # a muxer's random ids and version tags left out: one seed, one file
X264_OPTIONS = {"preset": "veryfast", "crf": "23", "mbtree": "0"}  # x264's macroblock tree gives other bytes from run to run


@dataclass(frozen=True)
class SampleVideo:
    """One sample video and its truth: the photos it shows, its cuts (seconds, the start of every
    shot but the first), the intervals of its text overlay and blur, its duplicate group (the
    content id of the item it copies: another video, or the pin it is the video version of), and
    whether it is a bad input (it must become an error row)."""

    content_id: str
    kind: str
    data: bytes
    photos: tuple[str, ...] = ()
    cuts: tuple[float, ...] = ()
    duration_s: float = 0.0
    overlay_s: tuple[float, float] | None = None
    blur_s: tuple[float, float] | None = None
    dup_group: str = ""
    bad: bool = False
    detail: dict[str, object] = field(default_factory=dict)


def encode_video(frames: Iterable[np.ndarray], fps: int = FPS, codec: str = "libx264", container: str = "mp4",
                 options: dict[str, str] | None = None, container_options: dict[str, str] | None = None, rotation: int = 0,
                 sample_aspect: Fraction | None = None, start_s: float = 0.0) -> bytes:
    """RGB frames (height x width x 3, uint8, even sides) encoded as a video file's bytes; `options`
    are the codec's (for libx264, over X264_OPTIONS); `rotation` (degrees counterclockwise) goes in
    the display matrix, as a phone says how its sideways-stored frames are shown; `sample_aspect`
    is the pixels' width over their height (an anamorphic video's); `start_s` is the first frame's
    time (a clip cut from a stream keeps the stream's timestamps)."""
    with tempfile.NamedTemporaryFile(suffix=f".{container}") as file:  # a file: faststart rewrites it
        with av.open(file.name, "w", format=container, options={**BITEXACT, **(container_options or {})}) as output:
            stream = None
            for index, pixels in enumerate(frames):
                if stream is None:
                    stream = output.add_stream(codec, rate=fps, options={**(X264_OPTIONS if codec == "libx264" else {}), **(options or {})})
                    stream.height, stream.width = pixels.shape[:2]
                    stream.pix_fmt = "yuv420p"
                    if rotation:
                        stream.set_display_rotation(rotation)
                    if sample_aspect:
                        stream.codec_context.sample_aspect_ratio = sample_aspect
                frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                if start_s:
                    frame.pts = round(start_s * fps) + index
                for packet in stream.encode(frame):
                    output.mux(packet)
            if stream is not None:
                for packet in stream.encode():
                    output.mux(packet)
        return Path(file.name).read_bytes()


def _cover(photo: Image.Image, size: tuple[int, int], margin: float) -> Image.Image:
    """The photo scaled so that a `size` window fits in it with `margin` (a fraction) to move."""
    scale = (1 + margin) * max(size[0] / photo.width, size[1] / photo.height)
    return photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.Resampling.BILINEAR)


def pan(photo: Image.Image, seconds: float, rng: np.random.Generator, fps: int = FPS, size: tuple[int, int] = SIZE) -> Iterator[Image.Image]:
    """A window of `size` moving across the photo in a random direction."""
    big = _cover(photo, size, 0.3)
    room = np.array([big.width - size[0], big.height - size[1]], dtype=np.float64)
    start, end = rng.uniform(0, 1, 2) * room, rng.uniform(0, 1, 2) * room
    n = round(seconds * fps)
    for k in range(n):
        x, y = start + (end - start) * k / max(1, n - 1)
        yield big.crop((round(x), round(y), round(x) + size[0], round(y) + size[1]))


def zoom(photo: Image.Image, seconds: float, rng: np.random.Generator, fps: int = FPS, size: tuple[int, int] = SIZE) -> Iterator[Image.Image]:
    """A window shrinking towards a random point of the photo (a zoom in), resized to `size`."""
    big = _cover(photo, size, 0.0)
    centre = np.array([big.width, big.height]) * rng.uniform(0.4, 0.6, 2)
    n = round(seconds * fps)
    for k in range(n):
        scale = 1.0 - 0.4 * k / max(1, n - 1)
        half = np.array(size) * scale / 2
        x0, y0 = np.clip(centre - half, 0, np.array([big.width, big.height]) - 2 * half)
        yield big.crop((round(x0), round(y0), round(x0 + 2 * half[0]), round(y0 + 2 * half[1]))).resize(size, Image.Resampling.BILINEAR)


def still(photo: Image.Image, seconds: float, fps: int = FPS, short_side: int = SIZE[1]) -> Iterator[Image.Image]:
    """The whole photo, unmoving, its short side `short_side` (both sides even)."""
    scale = short_side / min(photo.size)
    frame = photo.resize((2 * round(photo.width * scale / 2), 2 * round(photo.height * scale / 2)), Image.Resampling.LANCZOS)
    for _ in range(round(seconds * fps)):
        yield frame


def _arrays(images: Iterable[Image.Image]) -> Iterator[np.ndarray]:
    for image in images:
        yield np.asarray(image.convert("RGB"))


def _with_text(images: Iterable[Image.Image], interval: tuple[float, float], text: str, fps: int = FPS) -> Iterator[Image.Image]:
    font = ImageFont.load_default(size=SIZE[1] // 6)
    for k, image in enumerate(images):
        if interval[0] <= k / fps < interval[1]:
            image = image.copy()
            ImageDraw.Draw(image).text((image.width / 2, image.height / 2), text, font=font, fill=(255, 230, 0),
                                       anchor="mm", stroke_width=2, stroke_fill=(0, 0, 0))
        yield image


def _blurred(images: Iterable[Image.Image], interval: tuple[float, float], fps: int = FPS) -> Iterator[Image.Image]:
    for k, image in enumerate(images):
        yield image.filter(ImageFilter.GaussianBlur(4)) if interval[0] <= k / fps < interval[1] else image


def _cut_video(rng: np.random.Generator, photos: tuple[str, ...]) -> tuple[list[Image.Image] | Iterator[Image.Image], tuple[float, ...], float]:
    """Shots of 1.5-3 s, one per photo, each a pan or a zoom; the cuts fall on frame starts."""
    lengths = [round(rng.uniform(1.5, 3.0) * FPS) / FPS for _ in photos]
    cuts = tuple(float(t) for t in np.cumsum(lengths)[:-1])

    def frames() -> Iterator[Image.Image]:
        for base_id, seconds in zip(photos, lengths):
            move: Callable[..., Iterator[Image.Image]] = pan if rng.uniform() < 0.5 else zoom
            yield from move(base_photo(base_id), seconds, rng)

    return frames(), cuts, float(sum(lengths))


def reencode(data: bytes, codec: str, container: str, fps: int, height: int, options: dict[str, str] | None = None) -> bytes:
    """The video decoded and encoded again: another codec, frame rate (frames dropped or repeated
    by time) and height (the width follows, even)."""
    with av.open(io.BytesIO(data)) as source:
        stream = source.streams.video[0]
        frames = [(float(f.time), f.to_image()) for f in source.decode(stream)]
    duration = frames[-1][0] + 1 / float(stream.average_rate)
    width = 2 * round(frames[0][1].width * height / frames[0][1].height / 2)
    times = [f[0] for f in frames]

    def resampled() -> Iterator[np.ndarray]:
        for k in range(round(duration * fps)):
            index = max(0, int(np.searchsorted(times, k / fps, side="right")) - 1)
            yield np.asarray(frames[index][1].resize((width, height), Image.Resampling.BILINEAR))

    return encode_video(resampled(), fps, codec, container, options)


def good_videos(seed: int = 7) -> list[SampleVideo]:
    """The good sample videos with their truth (shots, overlays, blur, duplicate groups)."""
    rng = np.random.default_rng(seed)
    picks = [PHOTOS[i] for i in rng.permutation(len(PHOTOS))]
    videos: list[SampleVideo] = []
    for k in range(4):
        photos = tuple(picks[(3 * k + j) % len(picks)] for j in range(3))
        frames, cuts, duration = _cut_video(rng, photos)
        cid = f"video-cuts-{k}"
        videos.append(SampleVideo(cid, "cuts", encode_video(_arrays(frames)), photos, cuts, duration, dup_group=cid))
    for k, move in enumerate((pan, zoom)):
        base_id = picks[(12 + k) % len(picks)]
        cid = f"video-{move.__name__}-{k}"
        videos.append(SampleVideo(cid, move.__name__, encode_video(_arrays(move(base_photo(base_id), 4.0, rng))), (base_id,), (), 4.0, dup_group=cid))
    base_id = picks[14 % len(picks)]
    overlay = (1.0, 2.5)
    data = encode_video(_arrays(_with_text(pan(base_photo(base_id), 4.0, rng), overlay, "SALE 50% OFF")))
    videos.append(SampleVideo("video-text-overlay", "text_overlay", data, (base_id,), (), 4.0, overlay_s=overlay, dup_group="video-text-overlay"))
    base_id = picks[15 % len(picks)]
    blur = (1.5, 3.0)
    data = encode_video(_arrays(_blurred(zoom(base_photo(base_id), 4.0, rng), blur)))
    videos.append(SampleVideo("video-blur", "blur", data, (base_id,), (), 4.0, blur_s=blur, dup_group="video-blur"))
    base_id = picks[16 % len(picks)]
    videos.append(SampleVideo("video-still", "still", encode_video(_arrays(still(base_photo(base_id), 3.0))), (base_id,), (), 3.0, dup_group="video-still"))
    source = videos[0]
    for cid, codec, container, fps, height in (("video-cuts-0-vp9", "libvpx-vp9", "webm", 15, 180), ("video-cuts-0-mpeg4", "mpeg4", "mp4", 30, 240)):
        options = {"deadline": "realtime", "cpu-used": "8"} if codec == "libvpx-vp9" else {"qscale": "4"}
        data = reencode(source.data, codec, container, fps, height, options)
        videos.append(SampleVideo(cid, "reencode", data, source.photos, source.cuts, source.duration_s, dup_group=source.content_id,
                                  detail={"codec": codec, "fps": fps, "height": height}))
    return videos


def _patched_mkv_duration(data: bytes, milliseconds: float) -> bytes:
    """A Matroska file with its segment's Duration element (a float of milliseconds) rewritten."""
    at = data.find(b"\x44\x89")
    width = data[at + 2] & 0x0F
    value = struct.pack(">f" if width == 4 else ">d", milliseconds)
    return data[: at + 3] + value + data[at + 3 + width :]


def _claimed_size_over_junk(data: bytes, claimed: int, rng: np.random.Generator) -> bytes:
    """A WebM whose header claims `claimed` x `claimed` pixels, its packets replaced by noise."""
    buffer = io.BytesIO()
    with av.open(io.BytesIO(data)) as source, av.open(buffer, "w", format="webm", options=BITEXACT) as output:
        stream = output.add_stream_from_template(source.streams.video[0])
        stream.codec_context.width = stream.codec_context.height = claimed
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is None:
                continue
            junk = av.Packet(rng.integers(0, 256, packet.size, dtype=np.uint8).tobytes())
            junk.pts, junk.dts, junk.time_base, junk.is_keyframe = packet.pts, packet.dts, packet.time_base, packet.is_keyframe
            junk.stream = stream
            output.mux(junk)
    return buffer.getvalue()


def _audio_only(seconds: float = 2.0, rate: int = 44100) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as output:
        stream = output.add_stream("aac", rate=rate)
        t = np.arange(round(seconds * rate)) / rate
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for start in range(0, tone.size, 1024):
            frame = av.AudioFrame.from_ndarray(tone[None, start : start + 1024], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = rate, start
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return buffer.getvalue()


def bad_videos(seed: int = 7) -> list[SampleVideo]:
    """Bad video inputs, each of which must become an error row with its reason."""
    rng = np.random.default_rng(seed + 1)
    photo = base_photo(PHOTOS[0])
    short = list(_arrays(pan(photo, 2.0, rng)))
    faststart = encode_video(short, container_options={"movflags": "faststart"})  # the index first, as streamed uploads have it
    corrupt = faststart[:64] + rng.integers(0, 256, len(faststart) - 64, dtype=np.uint8).tobytes()
    jpeg = io.BytesIO()
    photo.resize((320, 240)).save(jpeg, "JPEG", quality=85)
    vp9 = encode_video(short[:12], codec="libvpx-vp9", container="webm", options={"deadline": "realtime", "cpu-used": "8"})
    items = (
        ("truncated", faststart[: len(faststart) // 2]),
        ("corrupt", corrupt),
        ("empty", b""),
        ("audio_only", _audio_only()),
        ("huge_header", _claimed_size_over_junk(vp9, 100_000, rng)),
        ("ten_hours", _patched_mkv_duration(encode_video(short, container="matroska"), TEN_HOURS_MS)),
        ("unsupported_codec", encode_video(short, codec="mpeg2video", container="matroska")),
        ("image_renamed", jpeg.getvalue()),
    )
    return [SampleVideo(f"video-bad-{kind}", kind, data, dup_group=f"video-bad-{kind}", bad=True) for kind, data in items]


VIDEO_CORPUS_SCHEMA = CORPUS.schema.append(pa.field("video", pa.binary()))  # the corpus contract and a video column
VIDEO_TRUTH_TABLE = "video_truth"
VIDEO_TRUTH_SCHEMA = pa.schema([
    pa.field("content_id", pa.string(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),
    pa.field("photos", pa.list_(pa.string())),
    pa.field("cuts", pa.list_(pa.float64())),  # shot boundaries, seconds
    pa.field("duration_s", pa.float64()),
    pa.field("overlay_s", pa.list_(pa.float64())),  # [start, end) of the text overlay, or null
    pa.field("blur_s", pa.list_(pa.float64())),
    pa.field("dup_group", pa.string(), nullable=False),
    pa.field("bad", pa.bool_(), nullable=False),
])


def pin_video(corpus: pa.Table, index: int = 0) -> SampleVideo:
    """The video version of a pin: a still video of the corpus item's own picture (the first item,
    always an original), in that pin's duplicate group; `photos` names the pin."""
    pin = corpus["content_id"][index].as_py()
    picture = Image.open(io.BytesIO(corpus["image"][index].as_py())).convert("RGB")
    return SampleVideo(f"video-of-{pin}", "pin_still", encode_video(_arrays(still(picture, 3.0))), (pin,), (), 3.0, dup_group=pin)


def with_videos(corpus: pa.Table, seed: int) -> tuple[pa.Table, pa.Table]:
    """The corpus with a `video` column (null for its items) and the sample videos as extra items
    on its days (image null, a title and description of their own), and the videos' truth."""
    videos = good_videos(seed) + [pin_video(corpus)] + bad_videos(seed)
    rng = np.random.default_rng(seed + 2)
    picked = rng.integers(0, corpus.num_rows, len(videos))
    created = [corpus["created_at"][int(i)].as_py() for i in picked]
    extra = pa.table({
        "content_id": [v.content_id for v in videos],
        "image": pa.nulls(len(videos), pa.binary()),
        "title": [f"A {v.kind.replace('_', ' ')} video" for v in videos],
        "description": [f"Sample video ({v.kind}) made from {', '.join(v.photos) or 'nothing'}" for v in videos],
        "created_at": pa.array(created, UTC_MICROS),
        "updated_at": pa.array(created, UTC_MICROS),
        "ds": [corpus["ds"][int(i)].as_py() for i in picked],
        "video": [v.data for v in videos],
    }, schema=VIDEO_CORPUS_SCHEMA)
    widened = corpus.append_column(pa.field("video", pa.binary()), pa.nulls(corpus.num_rows, pa.binary()))
    truth = pa.table({
        "content_id": [v.content_id for v in videos],
        "kind": [v.kind for v in videos],
        "photos": [list(v.photos) for v in videos],
        "cuts": [list(v.cuts) for v in videos],
        "duration_s": [v.duration_s for v in videos],
        "overlay_s": [list(v.overlay_s) if v.overlay_s else None for v in videos],
        "blur_s": [list(v.blur_s) if v.blur_s else None for v in videos],
        "dup_group": [v.dup_group for v in videos],
        "bad": [v.bad for v in videos],
    }, schema=VIDEO_TRUTH_SCHEMA)
    return pa.concat_tables([widened, extra]), truth
