"""Videos decoded in a child process, under limits on its memory and CPU time.

What FFmpeg does while it opens a container happens before any check of ours can run, and a few
kilobytes can make it take gigabytes (an MP4 index claiming 85 million samples) or minutes (a
Matroska file of 160,000 tags). So a worker never opens a video itself: it hands the bytes to a
child process of its own (started on first use, kept for the next video), which limits its address
space and CPU time (`VideoLimits.max_memory_bytes`, `max_open_cpu_s`, `max_decode_cpu_s`) before it
opens the video, and sends back the sampled frames one at a time. A video that breaks a limit or
kills the child is that video's InputError, and the next video gets a fresh child. What the child
sends is read as raw pixels and checked against the limits: nothing from it is unpickled or run.
The worker waits on the child at most `max_wait_s` in all for a video: a child that stops without
using CPU (stopped, in a kernel wait) breaks no CPU limit, so it is killed then, a retried error;
a new child not ready within `max_start_s` is killed too, and as no video reached it, DecoderNotStarted.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import resource
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO

import numpy as np

from signals.contracts import TRANSIENT_PREFIX
from signals.decode import InputError, check_bytes
from signals.video.decode import SampledFrame, VideoLimits, check_header, opened, sampled_frames

# One byte says what follows: the child is ready; the video's header passed; a frame; an error; the end.
_READY, _OPENED, _FRAME, _ERROR, _DONE = b"R", b"O", b"F", b"E", b"D"
_FRAME_HEAD = struct.Struct("<dII")  # time_s, height, width; then height x width x 3 bytes of RGB
_LENGTH = struct.Struct("<Q")
MESSAGE_MAX = 4096  # bytes of an error message
_CHILD_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")  # numpy's pools: one thread each
_EXIT_WAIT_S = 10.0


class DecoderNotStarted(RuntimeError):
    """The decoding child could not start: the worker is broken, not the video, so the task fails
    (and Spark retries it) rather than any video getting an error row for it."""


class _Stalled(Exception):
    """The child kept the worker waiting past the video's `max_wait_s`."""


class _Waits:
    """One video's waits on the child's pipes, `limit_s` seconds of them in all (the worker's own
    time between them is not counted): _Stalled once they are spent."""

    def __init__(self, limit_s: float) -> None:
        self.limit_s = self.left = limit_s

    def until_ready(self, pipe: IO[bytes], writing: bool = False) -> None:
        """Return when the pipe can be read (or written) without blocking."""
        started = time.monotonic()
        ready = select.select([] if writing else [pipe], [pipe] if writing else [], [], max(self.left, 0.0))
        self.left -= time.monotonic() - started
        if not any(ready):
            raise _Stalled


class VideoDecoder:
    """A worker's decoding child, kept between videos and replaced after any video it fails on; a
    video being decoded owns it, so a second caller at the same time starts a child of its own."""

    def __init__(self) -> None:
        self._idle: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def frames(self, data: bytes | None, limits: VideoLimits, sample_fps: float, short_side: int) -> Iterator[SampledFrame]:
        """`signals.video.decode.sample_frames`, decoded in the child: InputError (raised while
        iterating) also for a video that breaks the child's memory or CPU limits or kills it, and
        a retried one when the child keeps this worker waiting past `max_wait_s`; DecoderNotStarted
        when a new child cannot start or is not ready within `max_start_s`."""
        check_bytes(data, "video", limits.max_bytes)
        child, finished = self._take(_Waits(limits.max_start_s)), False
        waits = _Waits(limits.max_wait_s)
        try:
            _send(child, bytes(data), limits, sample_fps, short_side, waits)
            yield from _received(child, limits, waits)
            finished = True
        except _Stalled:  # a retried error: a process that uses no CPU is the machine's doing, not the video's
            child.kill()
            raise InputError(f"{TRANSIENT_PREFIX}video decoding kept the worker waiting over {limits.max_wait_s:g} s, over the limit "
                             "(its process stopped or starved of CPU, and killed)") from None
        finally:
            if finished:  # kept for the next video; a child another caller left idle meanwhile is stopped instead
                with self._lock:
                    child, self._idle = self._idle, child
            if child is not None:
                _stop(child)

    def close(self) -> None:
        """Stop the idle child (it also ends by itself when this process does)."""
        with self._lock:
            child, self._idle = self._idle, None
        if child is not None:
            _stop(child)

    def _take(self, waits: _Waits) -> subprocess.Popen[bytes]:
        with self._lock:
            child, self._idle = self._idle, None
        if child is not None and child.poll() is None:
            return child
        return _start(waits)


def _child_env() -> dict[str, str]:
    """This process's environment with its import path (the Spark worker's includes the job's
    shipped files), and numpy's thread pools at one thread, as the child has one core's work."""
    path = os.pathsep.join(entry or os.getcwd() for entry in sys.path)
    return {**os.environ, "PYTHONPATH": path, **dict.fromkeys(_CHILD_THREADS, "1")}


def _start(waits: _Waits) -> subprocess.Popen[bytes]:
    """A new child, once it has imported what it needs and said so within `waits` (the start's own,
    not the video's: a stopped start held the task for the video's hour); DecoderNotStarted if it cannot."""
    try:
        # unbuffered, so that what select says is ready is what a read or write of the pipe finds
        child = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=_child_env(), bufsize=0)
    except OSError as exc:  # no process to be had (EAGAIN, ENOMEM) or no interpreter
        raise DecoderNotStarted(f"the video decoder process did not start: {exc}") from exc
    try:
        waits.until_ready(child.stdout)
    except _Stalled:  # stopped or starved before any video reached it: the worker is the broken one, not the video
        child.kill()
        _stop(child)
        raise DecoderNotStarted(f"the video decoder process did not start: not ready within {waits.limit_s:g} s "
                                "(stopped or starved of CPU, and killed)") from None
    if child.stdout.read(1) != _READY:
        _stop(child)
        raise DecoderNotStarted(f"the video decoder process did not start (exit status {child.returncode}; its error is in this worker's log)")
    os.set_blocking(child.stdin.fileno(), False)  # a video's bytes are written as the child takes them, within its waits
    return child


def _stop(child: subprocess.Popen[bytes]) -> None:
    """End the child: asked by closing its input, killed if it does not end soon."""
    for stream in (child.stdin, child.stdout):
        try:
            stream.close()
        except OSError:  # a pipe the child already closed
            pass
    try:
        child.wait(timeout=_EXIT_WAIT_S)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _send(child: subprocess.Popen[bytes], data: bytes, limits: VideoLimits, sample_fps: float, short_side: int, waits: _Waits) -> None:
    """One video's request: its settings as JSON, then its bytes, each after its length."""
    settings = json.dumps({"limits": dataclasses.asdict(limits), "sample_fps": sample_fps, "short_side": short_side}).encode()
    try:
        for part in (_LENGTH.pack(len(settings)) + settings, _LENGTH.pack(len(data)), data):
            left = memoryview(part)
            while left:
                waits.until_ready(child.stdin, writing=True)
                left = left[child.stdin.write(left) or 0:]  # None: the pipe filled up after all
    except BrokenPipeError:  # the child died; what it died of is read from its exit
        pass


def _received(child: subprocess.Popen[bytes], limits: VideoLimits, waits: _Waits) -> Iterator[SampledFrame]:
    """The frames the child sends for one video, until it says the video is done; InputError for
    an error it reports, for its death, and for anything it sends outside the limits."""
    opened_ok = False

    def read(size: int) -> bytes:
        """`size` bytes from the child, fewer only where its pipe ends."""
        data = bytearray()
        while len(data) < size:
            waits.until_ready(child.stdout)
            if not (part := child.stdout.read(size - len(data))):
                break
            data += part
        return bytes(data)

    try:
        while (kind := read(1)) != _DONE:
            if kind == _OPENED:
                opened_ok = True
            elif kind == _FRAME:
                time_s, height, width = _FRAME_HEAD.unpack(_exactly(read, _FRAME_HEAD.size))
                if not (math.isfinite(time_s) and height >= 1 and width >= 1 and height * width <= limits.max_pixels):
                    raise InputError(f"video decoder sent a frame of {width}x{height} pixels at {time_s} s, outside the limits")
                yield SampledFrame(time_s, np.frombuffer(_exactly(read, height * width * 3), np.uint8).reshape(height, width, 3))
            elif kind == _ERROR:
                (length,) = _LENGTH.unpack(_exactly(read, _LENGTH.size))
                raise InputError(_exactly(read, min(length, MESSAGE_MAX)).decode("utf-8", "replace"))
            else:
                raise EOFError
    except EOFError:
        raise InputError(_death(child, opened_ok, limits)) from None


def _exactly(read: IO[bytes], size: int) -> bytes:
    data = read(size)
    if len(data) != size:
        raise EOFError
    return data


def _death(child: subprocess.Popen[bytes], opened_ok: bool, limits: VideoLimits) -> str:
    """Why the child stopped sending: the error row's reason."""
    _stop(child)
    code = child.returncode
    if code == -signal.SIGXCPU:
        if opened_ok:
            return f"video takes over {limits.max_decode_cpu_s:g} CPU-seconds to decode, over the limit"
        return f"video takes over {limits.max_open_cpu_s:g} CPU-seconds to open, over the limit"
    if code < 0:
        return f"video decoding crashed ({signal.strsignal(-code) or f'signal {-code}'})"
    return f"video decoding ended with exit status {code}"


# The child's side.

def serve(requests: IO[bytes], replies: IO[bytes]) -> None:
    """Decode one video per request until the requests end or a video fails (then a fresh child
    takes the next one: nothing a failed decode left behind is kept)."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a limit's signal must not write a core file
    replies.write(_READY)
    replies.flush()
    while (request := _request(requests)) is not None:
        if not _decode(*request, replies):
            return


def _request(requests: IO[bytes]) -> tuple[bytes, VideoLimits, float, int] | None:
    parts = []
    for _ in range(2):
        head = requests.read(_LENGTH.size)
        if len(head) != _LENGTH.size:
            return None
        parts.append(requests.read(_LENGTH.unpack(head)[0]))
    settings = json.loads(parts[0])
    limits = VideoLimits(**{name: tuple(value) if isinstance(value, list) else value for name, value in settings["limits"].items()})
    return parts[1], limits, settings["sample_fps"], settings["short_side"]


def _decode(data: bytes, limits: VideoLimits, sample_fps: float, short_side: int, replies: IO[bytes]) -> bool:
    """One video's frames written to `replies` under its limits; False after an error."""
    start_cpu = time.process_time()
    try:
        _limit(resource.RLIMIT_AS, _address_space() + limits.max_memory_bytes)
        _limit(resource.RLIMIT_CPU, start_cpu + limits.max_open_cpu_s)
        with opened(data, limits) as container:
            header = check_header(container, limits)
            replies.write(_OPENED)
            _limit(resource.RLIMIT_CPU, start_cpu + limits.max_decode_cpu_s)
            for frame in sampled_frames(container, header, limits, sample_fps, short_side):
                height, width = frame.pixels.shape[:2]
                replies.write(_FRAME + _FRAME_HEAD.pack(frame.time_s, height, width) + frame.pixels.tobytes())
        replies.write(_DONE)
        replies.flush()
        return True
    except BrokenPipeError:  # the worker has gone
        return False
    except Exception as exc:  # noqa: BLE001 - whatever a hostile video makes FFmpeg or PyAV raise is this video's error
        message = _reason(exc, limits).encode()[:MESSAGE_MAX]
        replies.write(_ERROR + _LENGTH.pack(len(message)) + message)
        replies.flush()
        return False
    finally:
        for kind in (resource.RLIMIT_AS, resource.RLIMIT_CPU):
            _limit(kind, math.inf)


def _reason(exc: Exception, limits: VideoLimits) -> str:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, MemoryError):
            return f"video needs over {limits.max_memory_bytes / 2**20:g} MiB to decode, over the memory limit"
        cause = cause.__cause__
    if isinstance(exc, InputError):
        return str(exc)
    return f"video decoding failed: {type(exc).__name__}: {exc}"


def _address_space() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _limit(kind: int, value: float) -> None:
    """The soft limit of `kind` at `value` (rounded up), never above the hard limit."""
    hard = resource.getrlimit(kind)[1]
    soft = resource.RLIM_INFINITY if math.isinf(value) else math.ceil(value)
    if hard != resource.RLIM_INFINITY and (soft == resource.RLIM_INFINITY or soft > hard):
        soft = hard
    resource.setrlimit(kind, (soft, hard))


DECODER = VideoDecoder()  # this process's: one per Spark Python worker


if __name__ == "__main__":
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed by a library goes where errors go, never into the replies
    serve(sys.stdin.buffer, replies)
