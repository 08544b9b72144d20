"""Video decoding with safe limits: the header checked before any frame, frames sampled as they come.

Video bytes come from users like images do (signals/decode.py), with more ways to hurt: a header
that claims ten hours or 100000x100000 pixels, a codec nobody meant to run, a file cut short, an
audio track with no picture, a photo renamed `.mp4`. Every check the container's header allows is
made before a frame is decoded, the same limits are enforced again on the frames as they are
decoded (a header can lie), and each refusal is an `InputError` whose message is the error row's
reason. Frames are decoded one at a time and only the sampled ones are converted, downscaled by
FFmpeg's scaler while decoding, so a worker never holds more than one decoded frame of the video.
"""
from __future__ import annotations

import contextlib
import functools
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from signals.decode import InputError, check_bytes

# FFmpeg names a demuxer by every name it answers to ("mov,mp4,m4a,3gp,3g2,mj2"); an allowed
# container is one whose demuxer answers to one of the allowed names.
KNOWN_CONTAINERS = ("mov", "mp4", "matroska", "webm", "avi")
KNOWN_CODECS = ("h264", "hevc", "vp8", "vp9", "av1", "mpeg4")
TRUNCATION_SLACK_S = 1.0  # frames may end this much (or 10%) before the header's duration
# Sampling at most every SKIP_NONREF_RATIO-th frame never needs the frames no other frame is
# predicted from (most B-frames): the decoder skips them, about half of an H.264 stream's work.
SKIP_NONREF_RATIO = 2
# A sample's long side is at most this many times `short_side` (1152 at 288): wider than any real
# frame (32:9 is 3.6), so only a thin one is made thinner, and a sample is at most
# 4 x short_side^2 pixels whatever the video's shape (a 287x28900 frame was 24 MiB a sample).
MAX_SAMPLE_ASPECT = 4


@dataclass(frozen=True)
class VideoLimits:
    """Bounds on a video, checked from its header before any frame is decoded and again on the
    decoded frames: only `containers` and `codecs` are opened at all; and the memory and CPU time
    the process that decodes it may take."""

    max_bytes: int = 256 * 1024 * 1024
    max_duration_s: float = 1200.0
    max_frames: int = 100_000
    max_pixels: int = 3840 * 2160
    min_side: int = 16
    containers: tuple[str, ...] = ("mov", "mp4", "matroska", "webm")
    codecs: tuple[str, ...] = ("h264", "hevc", "vp8", "vp9", "av1", "mpeg4")
    # what decoding one video may take in its own process (signals.video.decoder_process), which
    # also bounds what FFmpeg does while opening a container, before any check above can run
    max_memory_bytes: int = 1024 * 1024 * 1024  # address space beyond the video's bytes
    max_open_cpu_s: float = 10.0  # opening the container and checking its header
    max_decode_cpu_s: float = 1800.0  # the whole video, opening included
    # and what the worker may wait on that process for the whole video (handing it the bytes,
    # reading its frames; not the worker's own time between frames): twice the CPU limit, so a
    # decode it stops is one starved of CPU or not running at all (stopped, in a kernel wait)
    max_wait_s: float = 3600.0
    # and what it may wait for a new process to be ready (its imports: under a second), apart from
    # the video's waits: one that is not ready by then is stopped or starved, and fails the task
    max_start_s: float = 120.0

    def __post_init__(self) -> None:
        for kind, names, known in (("containers", self.containers, KNOWN_CONTAINERS), ("codecs", self.codecs, KNOWN_CODECS)):
            unknown = sorted(set(names) - set(known))
            if unknown:
                raise ValueError(f"video {kind} {unknown} are not supported; choose from {', '.join(known)}")


@dataclass(frozen=True)
class VideoHeader:
    """What the container says about the video stream it is read from, once the limits have accepted it."""

    container: str
    codec: str
    width: int
    height: int
    duration_s: float | None
    frame_rate: float | None
    frames: int | None
    start_s: float  # the first timestamp the header says: the duration counts from it
    stream_index: int  # the container's stream that is read: its first video stream of an allowed codec


@dataclass(frozen=True)
class SampledFrame:
    """One sampled frame: its presentation time and its RGB pixels, downscaled."""

    time_s: float
    pixels: np.ndarray  # height x width x 3, uint8


DEMUXERS = {"mov": "mov", "mp4": "mov", "matroska": "matroska", "webm": "matroska", "avi": "avi"}  # container -> FFmpeg's demuxer


def demuxer_of(data: bytes, limits: VideoLimits) -> str:
    """The FFmpeg demuxer of an allowed container these bytes start like, or InputError: FFmpeg is
    then told which one to use and never probes the bytes with the others (its concat demuxer
    would open the files a script names, relative to the worker's folder)."""
    if data[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        found = ("mov", "mp4")
    elif data[:4] == b"\x1a\x45\xdf\xa3":
        found = ("matroska", "webm")
    elif data[:4] == b"RIFF" and data[8:12] == b"AVI ":
        found = ("avi",)
    else:
        raise InputError(f"video is not a container it may be (allowed: {', '.join(limits.containers)})")
    allowed = [name for name in found if name in limits.containers]
    if not allowed:
        raise InputError(f"container {found[0]} not allowed (allowed: {', '.join(limits.containers)})")
    return DEMUXERS[allowed[0]]


# AV_CODEC_CAP_HARDWARE and AV_CODEC_CAP_HYBRID: decoders that hand the bytes to a device
_DEVICE_DECODER = (1 << 18) | (1 << 19)


@functools.cache
def decoder_names(codecs: tuple[str, ...]) -> str:
    """FFmpeg's software decoders of `codecs` (libdav1d and av1 for av1, say), as its
    `codec_whitelist` option: FFmpeg opens no other decoder, not even while it probes the streams
    on opening, where it otherwise decodes a first frame of every stream, allowed or not."""
    ids = {av.Codec(name, "r").id for name in codecs}
    names = set()
    for name in av.codecs_available:
        try:
            codec = av.Codec(name, "r")
        except (ValueError, av.FFmpegError):  # an encoder's name
            continue
        if codec.id in ids and not codec.capabilities & _DEVICE_DECODER:
            names.add(codec.name)
    return ",".join(sorted(names))


def _open(data: bytes, limits: VideoLimits) -> av.container.InputContainer:
    options = {"codec_whitelist": decoder_names(limits.codecs), "threads": "1", "max_pixels": str(limits.max_pixels)}
    try:
        return av.open(io.BytesIO(data), mode="r", format=demuxer_of(data, limits), options=options)
    except av.FFmpegError as exc:
        raise InputError(f"video is corrupt or not a video: {exc}") from exc


def _timing(container: av.container.InputContainer, stream: av.VideoStream) -> tuple[float, float | None]:
    """(start, duration) of the video from the header: the video stream's first timestamp and
    duration, else the container's (its duration None when neither says), so that the duration
    is the video's own length, counted from the start (a clip cut from a stream keeps the
    stream's timestamps). FFmpeg reads a Matroska segment's Duration as it stands, which its own
    muxer writes as the end time (a 4 s clip from 5000 s claims 5004 s): there it is counted from
    the container's start when it ends after it (a muxer that writes the length is then read as
    shorter, and the limits on the frames hold it)."""
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float((stream.start_time or 0) * stream.time_base), float(stream.duration * stream.time_base)
    start = container.start_time / av.time_base if container.start_time is not None else 0.0
    if container.duration is None or container.duration <= 0:
        return start, None
    duration = container.duration / av.time_base
    return start, duration - start if "matroska" in container.format.name.split(",") and 0 < start < duration else duration


def check_header(container: av.container.InputContainer, limits: VideoLimits) -> VideoHeader:
    """The container's video header if it is within `limits`, else InputError saying why not."""
    names = container.format.name.split(",")
    if not set(names) & set(limits.containers):
        raise InputError(f"container {container.format.name} not allowed (allowed: {', '.join(limits.containers)})")
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["nothing"]
        raise InputError(f"video has no video stream (it holds {', '.join(kinds)})")
    # the codec, not its decoder's name (libdav1d decodes av1); the first video stream of an allowed
    # one is read (a cover picture or a stream of another codec may come before it)
    codecs = {s.index: s.codec_context.codec.canonical_name for s in container.streams.video}
    allowed = [index for index, codec in codecs.items() if codec in limits.codecs]
    if not allowed:
        raise InputError(f"codec {', '.join(dict.fromkeys(codecs.values()))} not allowed (allowed: {', '.join(limits.codecs)})")
    stream = container.streams[allowed[0]]
    codec = codecs[stream.index]
    width, height = stream.codec_context.width, stream.codec_context.height
    if width == 0 or height == 0:  # FFmpeg trusts the frames over the container and could decode none
        raise InputError("video has no decodable frame size (its first frames are not valid)")
    check_frame_size(width, height, limits)
    start, duration = _timing(container, stream)
    if duration is not None and duration > limits.max_duration_s:
        raise InputError(f"video claims {duration:.1f} s, over the {limits.max_duration_s:g} s limit")
    rate = float(stream.average_rate) if stream.average_rate else None
    frames = stream.frames or (math.ceil(duration * rate) if duration and rate else None)
    if frames is not None and frames > limits.max_frames:
        raise InputError(f"video claims {frames} frames, over the {limits.max_frames} frame limit")
    return VideoHeader(container.format.name, codec, width, height, duration, rate, frames, start, stream.index)


def check_frame_size(width: int, height: int, limits: VideoLimits) -> None:
    """Raise InputError when a frame of this size is outside `limits`."""
    if width * height > limits.max_pixels:
        raise InputError(f"video claims {width}x{height} pixels, over the {limits.max_pixels} pixel limit")
    if min(width, height) < limits.min_side:
        raise InputError(f"video is {width}x{height}, under the minimum side {limits.min_side}")


def probe_video(data: bytes | None, limits: VideoLimits = VideoLimits()) -> VideoHeader:
    """The video's header within `limits`, decoding no frame; InputError saying why not."""
    with opened(data, limits) as container:
        return check_header(container, limits)


@contextlib.contextmanager
def opened(data: bytes | None, limits: VideoLimits) -> Iterator[av.container.InputContainer]:
    """The bytes opened as a container once the byte checks pass, closed on leaving."""
    check_bytes(data, "video", limits.max_bytes)
    container = _open(bytes(data), limits)
    try:
        yield container
    finally:
        container.close()


def displayed_size(width: int, height: int, sample_aspect: Fraction | None) -> tuple[int, int]:
    """(width, height) as a player shows a frame whose pixels are `sample_aspect` times as wide as
    high (its sample aspect ratio: an anamorphic 1440x1080 frame at 4:3 is shown 1920x1080), so
    that a sample is not squeezed; the frame's own size when the ratio is unknown (no side under 1)."""
    return (max(1, round(width * sample_aspect)) if sample_aspect else width), height


def scaled_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the short side at most `short_side` and the long side at most
    MAX_SAMPLE_ASPECT times it, the aspect kept (but no side under 1); never enlarged."""
    scale = min(1.0, short_side / min(width, height), MAX_SAMPLE_ASPECT * short_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def upright(pixels: np.ndarray, rotation: int) -> np.ndarray:
    """The frame turned as its display matrix says a player shows it (`rotation` degrees
    counterclockwise, to the nearest quarter turn), as an EXIF-rotated photo is turned upright:
    a phone stores a portrait video sideways and says so there. A matrix with no rotation in it
    (all zeros: PyAV reads its angle, NaN, as -2^31, outside the -180..180 it promises) turns nothing."""
    if not -180 <= rotation <= 180:
        return pixels
    turns = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(pixels, turns)) if turns else pixels


def sampling_stream(container: av.container.InputContainer, header: VideoHeader, sample_fps: float) -> av.VideoStream:
    """The header's video stream set up to be sampled at `sample_fps`: one decoder thread (Spark
    already runs a task per core), and the frames no other frame refers to skipped when sampling
    takes at most every SKIP_NONREF_RATIO-th frame."""
    stream = container.streams[header.stream_index]
    stream.thread_count = 1
    if header.frame_rate and sample_fps * SKIP_NONREF_RATIO <= header.frame_rate:
        stream.codec_context.skip_frame = "NONREF"
    return stream


def sample_frames(data: bytes | None, limits: VideoLimits, sample_fps: float, short_side: int) -> Iterator[SampledFrame]:
    """Frames at about `sample_fps` (the first frame at or after each sampling time), RGB with the
    short side at most `short_side` (the long side at most MAX_SAMPLE_ASPECT times it), at the
    shape a player shows (pixel aspect ratio applied, upright), one at a time (frames that are not references skipped when
    sampling is sparse enough not to need them); InputError (raised while iterating) for a video
    outside `limits`, corrupt, cut short or without frames. The header is checked first."""
    with opened(data, limits) as container:
        yield from sampled_frames(container, check_header(container, limits), limits, sample_fps, short_side)


def sampled_frames(container: av.container.InputContainer, header: VideoHeader, limits: VideoLimits, sample_fps: float,
                   short_side: int) -> Iterator[SampledFrame]:
    """`sample_frames` of a container already opened and its header already checked."""
    stream = sampling_stream(container, header, sample_fps)
    step, sample_aspect = 1.0 / sample_fps, stream.sample_aspect_ratio
    next_time, count, last_time, first_time = None, 0, None, None
    try:
        for frame in container.decode(stream):
            count += 1
            time_s = float(frame.time) if frame.time is not None else (count - 1) / (header.frame_rate or 25.0)
            first_time = time_s if first_time is None else min(first_time, time_s)
            last_time = time_s if last_time is None else max(last_time, time_s)
            _check_decoded(frame, first_time, last_time, count, limits)
            if next_time is not None and time_s < next_time:
                continue
            width, height = scaled_size(*displayed_size(frame.width, frame.height, sample_aspect), short_side)
            pixels = frame.to_ndarray(width=width, height=height, format="rgb24", interpolation="BILINEAR")
            yield SampledFrame(time_s, upright(pixels, frame.rotation))
            next_time = time_s + step if next_time is None else next_time + step * max(1, math.floor((time_s - next_time) / step) + 1)
    except av.FFmpegError as exc:
        raise InputError(f"video is corrupt or truncated: {exc}") from exc
    if count == 0:
        raise InputError("video has no frames")
    _check_complete(header, last_time)


def _check_decoded(frame: av.VideoFrame, first_time: float, last_time: float, count: int, limits: VideoLimits) -> None:
    """The header's limits held against a decoded frame (a header can lie): the earliest and the
    latest frame so far at most `max_duration_s` apart, whatever time they start at (timestamps
    shifted far below 0 ran hours past the limit; a clip cut from a stream starts far above it)."""
    check_frame_size(frame.width, frame.height, limits)
    if count > limits.max_frames:
        raise InputError(f"video has more than {limits.max_frames} frames, over the frame limit")
    if last_time - first_time > limits.max_duration_s:
        raise InputError(f"video runs longer than {limits.max_duration_s:g} s, over the duration limit")


def _check_complete(header: VideoHeader, last_time: float | None) -> None:
    """InputError when the frames stop well before the duration the header claims (a cut file)."""
    if header.duration_s is None or last_time is None:
        return
    end = last_time + (1.0 / header.frame_rate if header.frame_rate else 0.0) - header.start_s
    if header.duration_s - end > max(TRUNCATION_SLACK_S, 0.1 * header.duration_s):
        raise InputError(f"video is truncated: its frames end at {end:.2f} s of the {header.duration_s:.2f} s its header claims")
