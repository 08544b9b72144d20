"""Videos decoded in the worker's child process: the same frames and reasons as decoding in the
worker, and what a hostile container does while FFmpeg opens it bounded by the child's limits."""
from __future__ import annotations

import io
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest

from sample_corpus.videos import bad_videos, encode_video
from signals.contracts import is_retried_error
from signals.decode import InputError
from signals.video.decode import VideoLimits, sample_frames
from signals.video.decoder_process import DECODER, DecoderNotStarted

ROOT = Path(__file__).resolve().parents[2]


def _ramp(frames: int = 24, size: tuple[int, int] = (64, 48)) -> list[np.ndarray]:
    return [np.full((size[1], size[0], 3), i * 8 % 256, np.uint8) for i in range(frames)]


@pytest.fixture(scope="module")
def small_video() -> bytes:
    return encode_video(_ramp(), 24)


def _decoder_pids() -> set[int]:
    """This process's decoding children."""
    pids = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == os.getpid() \
                    and b"decoder_process" in (entry / "cmdline").read_bytes():
                pids.add(int(entry.name))
        except (OSError, IndexError):  # a process that ended while being looked at
            continue
    return pids


def _decoded(data: bytes, limits: VideoLimits = VideoLimits()) -> list[tuple[float, bytes]]:
    return [(f.time_s, f.pixels.tobytes()) for f in DECODER.frames(data, limits, 5.0, 32)]


def test_the_child_gives_the_frames_decoding_here_gives(small_video: bytes) -> None:
    here = [(f.time_s, f.pixels.tobytes()) for f in sample_frames(small_video, VideoLimits(), 5.0, 32)]
    assert len(here) == 5 and _decoded(small_video) == here


@pytest.mark.parametrize("video", bad_videos(), ids=lambda v: v.kind)
def test_a_bad_video_has_the_reason_it_has_here(video) -> None:
    with pytest.raises(InputError) as here:
        list(sample_frames(video.data, VideoLimits(), 5.0, 32))
    with pytest.raises(InputError) as in_child:
        _decoded(video.data)
    assert str(in_child.value) == str(here.value)


def test_the_child_is_kept_between_videos_and_replaced_after_a_failure(small_video: bytes) -> None:
    _decoded(small_video)
    (kept,) = _decoder_pids()
    _decoded(small_video)
    assert _decoder_pids() == {kept}
    with pytest.raises(InputError, match="video is empty"):  # refused before the child sees it: the child stays
        _decoded(b"")
    assert _decoder_pids() == {kept}
    with pytest.raises(InputError, match="not a container"):
        _decoded(b"\0" * 64)
    assert _decoder_pids() == set()  # the child ended with the video it failed on
    assert len(_decoded(small_video)) == 5 and len(_decoder_pids()) == 1


def test_a_child_killed_mid_video_is_that_videos_error(small_video: bytes) -> None:
    frames = DECODER.frames(encode_video(_ramp(240), 24), VideoLimits(), 5.0, 32)
    next(frames)
    for pid in _decoder_pids():
        os.kill(pid, signal.SIGKILL)
    with pytest.raises(InputError, match=r"video decoding crashed \(Killed\)"):
        list(frames)
    assert len(_decoded(small_video)) == 5


def test_a_stopped_child_is_killed_after_the_wait_limit_a_retried_error(small_video: bytes) -> None:
    """A child stopped mid-video uses no CPU, so no CPU limit ends it: the worker waited on it for
    good. Now it is killed once the worker has waited `max_wait_s` on it, and the video's error is
    retried (the stop was the machine's doing); the next video gets a fresh child."""
    frames = DECODER.frames(encode_video(_ramp(240), 24), replace(VideoLimits(), max_wait_s=2.0), 5.0, 32)
    next(frames)
    (stopped,) = _decoder_pids()
    os.kill(stopped, signal.SIGSTOP)
    started = time.monotonic()
    with pytest.raises(InputError, match=r"^transient: video decoding kept the worker waiting over 2 s, over the limit") as error:
        list(frames)
    assert 1.0 < time.monotonic() - started < 30 and is_retried_error(str(error.value))
    assert stopped not in _decoder_pids() and not Path(f"/proc/{stopped}").exists()  # killed and reaped
    assert len(_decoded(small_video)) == 5


def test_a_child_stopped_between_videos_does_not_hold_the_next_ones_bytes(small_video: bytes) -> None:
    """Bytes beyond the pipe's buffer (64 KiB) wait on the child to read them: stopped while idle,
    it held the worker in that write; the same limit ends it."""
    _decoded(small_video)
    (stopped,) = _decoder_pids()
    os.kill(stopped, signal.SIGSTOP)
    with pytest.raises(InputError, match=r"^transient: video decoding kept the worker waiting over 1 s"):
        _decoded(small_video + bytes(4 * 2**20), replace(VideoLimits(), max_wait_s=1.0))
    assert not Path(f"/proc/{stopped}").exists() and len(_decoded(small_video)) == 5


def test_the_wait_limit_counts_only_the_wait_on_the_child(small_video: bytes) -> None:
    """The worker's own time between frames (its signals on a chunk of keyframes) is not the
    child's: a worker slower than the limit between every two frames gets every frame."""
    here = [(f.time_s, f.pixels.tobytes()) for f in sample_frames(small_video, VideoLimits(), 5.0, 32)]
    received = []
    for frame in DECODER.frames(small_video, replace(VideoLimits(), max_wait_s=0.5), 5.0, 32):
        received.append((frame.time_s, frame.pixels.tobytes()))
        time.sleep(0.6)
    assert received == here


def test_a_video_left_unfinished_stops_its_child(small_video: bytes) -> None:
    DECODER.close()
    frames = DECODER.frames(encode_video(_ramp(240), 24), VideoLimits(), 5.0, 32)
    next(frames)
    assert len(_decoder_pids()) == 1
    frames.close()
    assert _decoder_pids() == set()


def test_a_child_that_cannot_start_fails_the_worker_not_the_video(small_video: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    DECODER.close()
    monkeypatch.setattr(sys, "executable", "/bin/false")
    with pytest.raises(RuntimeError, match="video decoder process did not start"):
        _decoded(small_video)


@pytest.mark.timeout(60)
def test_a_child_stopped_before_it_is_ready_fails_the_worker_after_the_start_limit(small_video: bytes, tmp_path: Path,
                                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A child stopped before it says it is ready uses no CPU: the worker waited on its first byte
    for good, then (a review of 2026-12-05) for the video's `max_wait_s`, an hour by default. Now
    that wait is `max_start_s` (a start takes under a second); the child is killed and, no video
    having reached it, the worker is the broken one: DecoderNotStarted, as for a child that cannot start."""
    DECODER.close()
    stops = tmp_path / "python"
    stops.write_text("#!/bin/sh\nkill -STOP $$\n")
    stops.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(stops))
    started = time.monotonic()
    with pytest.raises(DecoderNotStarted, match=r"^the video decoder process did not start: not ready within 1 s \(stopped or starved of CPU, and killed\)$"):
        _decoded(small_video, replace(VideoLimits(), max_wait_s=5.0, max_start_s=1.0))
    assert 1.0 < time.monotonic() - started < 5.0 and _decoder_pids() == set()  # killed and reaped, the video's wait not spent


def _with_hidden_stream(side: int) -> bytes:
    """A small H.264 video with a second video stream beside it: one PNG frame of side x side 16-bit RGB."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mov") as out:
        video = out.add_stream("libx264", rate=24)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        hidden = out.add_stream("png", rate=1)
        hidden.width, hidden.height, hidden.pix_fmt = side, side, "rgb48be"
        still = av.VideoFrame.from_ndarray(np.zeros((side, side, 3), np.uint16), format="rgb48be")
        still.pts = 0
        for stream, frames in ((hidden, [still]), (video, [av.VideoFrame.from_ndarray(a, format="rgb24") for a in _ramp()])):
            for pts, frame in enumerate(frames):
                frame.pts = pts
                out.mux(stream.encode(frame))
            out.mux(stream.encode())
    return buffer.getvalue()


def _peak_kib(pid: int) -> int:
    return int(next(line.split()[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmHWM")))


def test_a_stream_of_a_codec_not_allowed_is_never_decoded(small_video: bytes) -> None:
    """FFmpeg decodes a first frame of every stream while it opens a container: here a PNG frame of
    96 MiB beside the H.264 video; only the allowed decoders may run, so the child never holds it."""
    data = _with_hidden_stream(4000)
    assert len(data) < 200_000
    _decoded(small_video)
    (child,) = _decoder_pids()
    before = _peak_kib(child)
    assert len(_decoded(data)) == 5
    assert _decoder_pids() == {child} and _peak_kib(child) - before < 32 * 1024


def test_an_index_claiming_millions_of_samples_stays_within_the_childs_memory(tmp_path: Path) -> None:
    """A 2 KB MP4 whose index claims 85 million samples took 1.1 GB to open in the worker; now its
    claim is refused as before and the worker stays small (the child's limit is the kernel's)."""
    data = bytearray(encode_video(_ramp(), 24))
    stts, stsz = data.find(b"stts"), data.find(b"stsz")
    data[stts + 12:stts + 16] = struct.pack(">I", 85_000_000)
    data[stsz + 8:stsz + 16] = struct.pack(">II", 1, 85_000_000)
    path = tmp_path / "index.mp4"
    path.write_bytes(data)
    script = textwrap.dedent(f"""
        from dataclasses import replace
        from signals.decode import InputError
        from signals.video.decode import VideoLimits
        from signals.video.decoder_process import DECODER, DecoderNotStarted
        try:
            list(DECODER.frames(open({str(path)!r}, "rb").read(), replace(VideoLimits(), max_memory_bytes=256 * 2**20), 5.0, 32))
        except InputError as exc:
            print(exc)
        print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    reason, peak_kib = done.stdout.strip().splitlines()
    assert reason == "video claims 85000000 frames, over the 100000 frame limit"
    assert int(peak_kib) < 400 * 1024


def _tagged(tags: int) -> bytes:
    """A small Matroska video with `tags` metadata tags: FFmpeg's time to open it grows as their square."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="matroska") as out:
        for i in range(tags):
            out.metadata[f"t{i}"] = "v"
        video = out.add_stream("libx264", rate=24)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        for pts, array in enumerate(_ramp()):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = pts
            out.mux(video.encode(frame))
        out.mux(video.encode())
    return buffer.getvalue()


def test_opening_is_held_to_its_cpu_limit() -> None:
    """RLIMIT_CPU counts whole seconds, so a 0.5 s limit stops the child up to 1.5 s after it starts
    opening: the video's tags make its opening take about twice that (with fewer, a clean clone's
    child once opened it within the rounded-up limit)."""
    with pytest.raises(InputError, match=r"video takes over 0\.5 CPU-seconds to open, over the limit"):
        _decoded(_tagged(28_000), replace(VideoLimits(), max_open_cpu_s=0.5))
