"""Video decoding limits, every bad video input, shot truth, keyframes and pooled embeddings, on
small videos generated here (PyAV) from the sample photos."""
from __future__ import annotations

import io
import subprocess
import sys
from dataclasses import replace
from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image, ImageFilter

from sample_corpus.photos import base_photo
from sample_corpus.videos import _patched_mkv_duration, bad_videos, encode_video, pan, still
from signals.decode import InputError
from signals.embedders.efficientnet import EfficientNetImageEmbedder
from signals.video.decode import VideoLimits, probe_video, sample_frames
from signals.video.keyframes import MAX_CANDIDATES, VideoSampling, _Span, sharpness, video_keyframes
from signals.video.pooling import max_with_time, pooled_embedding
from signals.video.shots import ShotDetector, histogram_distance, hsv_histogram
from tests.unit.labels_helpers import config

FPS = 12
SIZE = (160, 120)


def _frames(images: list[Image.Image]) -> list[np.ndarray]:
    return [np.asarray(i.convert("RGB")) for i in images]


@pytest.fixture(scope="module")
def small_video() -> bytes:
    """Two seconds of a pan over one photo, 160x120 at 12 fps, H.264 in MP4."""
    return encode_video(_frames(list(pan(base_photo("chelsea"), 2.0, np.random.default_rng(0), FPS, SIZE))), FPS)


@pytest.fixture(scope="module")
def cut_video() -> tuple[bytes, list[float]]:
    """Three shots (pans over three photos) with cuts at known times."""
    rng = np.random.default_rng(1)
    lengths = [1.5, 2.25, 1.75]
    images: list[Image.Image] = []
    for base_id, seconds in zip(("astronaut", "coffee", "rocket"), lengths):
        images += list(pan(base_photo(base_id), seconds, rng, FPS, SIZE))
    return encode_video(_frames(images), FPS), list(np.cumsum(lengths)[:-1])


# ---------------------------------------------------------------------------------------------
# Limits, checked from the header before any frame is decoded
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("limit", "reason"), [
    ({"max_bytes": 1000}, "byte limit"),
    ({"containers": ("webm",)}, "container mov not allowed"),
    ({"codecs": ("vp9",)}, "codec h264 not allowed"),
    ({"max_duration_s": 1.0}, "over the 1 s limit"),
    ({"max_pixels": 160 * 120 - 1}, "160x120 pixels, over the 19199 pixel limit"),
    ({"min_side": 121}, "under the minimum side 121"),
    ({"max_frames": 10}, "24 frames, over the 10 frame limit"),
])
def test_each_limit_refuses_before_any_frame(small_video: bytes, limit: dict, reason: str) -> None:
    limits = replace(VideoLimits(), **limit)
    with pytest.raises(InputError, match=reason):
        probe_video(small_video, limits)
    frames = sample_frames(small_video, limits, 5.0, 64)
    with pytest.raises(InputError, match=reason):
        next(frames)  # refused before the first frame is handed out


def test_within_limits_the_header_is_read(small_video: bytes) -> None:
    header = probe_video(small_video)
    assert (header.codec, header.width, header.height, header.frames) == ("h264", 160, 120, 24)
    assert header.duration_s == pytest.approx(2.0, abs=0.1)


def test_a_header_that_understates_the_duration_is_caught_on_the_frames(small_video: bytes) -> None:
    """The limits hold on the decoded frames too: a header claiming 0.5 s passes a 1 s limit, and
    decoding stops with an error at the first frame past it."""
    mkv = _patched_mkv_duration(encode_video(_frames(list(pan(base_photo("chelsea"), 2.0, np.random.default_rng(0), FPS, SIZE))),
                                             FPS, container="matroska"), 500.0)
    limits = replace(VideoLimits(), max_duration_s=1.0)
    assert probe_video(mkv, limits).duration_s == pytest.approx(0.5)
    with pytest.raises(InputError, match="runs longer than 1 s"):
        list(sample_frames(mkv, limits, 5.0, 64))


@pytest.mark.parametrize(("first_s", "last_s"), [(-5000.0, -3799.0), (-1300.0, -0.2), (0.0, 1300.0), (5000.0, 6201.0)])
def test_the_frames_times_are_held_to_the_duration_limit_wherever_they_start(first_s: float, last_s: float) -> None:
    """Found in review: only frames past +limit were refused, so an MP4 whose composition offsets
    put every frame below 0 decoded 6,000 s of keyframes from 254 KB. The earliest and latest frame
    are held to the limit, wherever they start (a clip cut from a stream at 5000 s is not refused)."""
    from types import SimpleNamespace

    from signals.video.decode import _check_decoded

    frame = SimpleNamespace(width=160, height=120)
    with pytest.raises(InputError, match="runs longer than 1200 s"):
        _check_decoded(frame, first_s, last_s, 1, VideoLimits())
    _check_decoded(frame, -0.05, -0.05, 1, VideoLimits())  # a decoder's delay before 0 is no duration
    _check_decoded(frame, first_s, first_s + 1200.0, 1, VideoLimits())


def _direct_frames(data: bytes) -> dict[float, av.VideoFrame]:
    """Every frame of the video decoded by PyAV directly, by its time: the independent decode."""
    with av.open(io.BytesIO(data)) as container:
        return {float(f.time): f for f in container.decode(container.streams.video[0])}


def _tiny_video(seconds: float, **kwargs) -> bytes:
    """`seconds` of 64x64 frames of noise at 5 fps (frames, not the header, are most of the bytes)."""
    rng = np.random.default_rng(0)
    return encode_video([rng.integers(0, 256, (64, 64, 3), np.uint8) for _ in range(round(5 * seconds))], 5, **kwargs)


def _assert_direct_frames(data: bytes, frames: list) -> None:
    """Frames sampled in time order, each with the pixels of PyAV's own decode at its time."""
    direct = _direct_frames(data)
    assert [f.time_s for f in frames] == sorted({f.time_s for f in frames} & set(direct))
    for f in frames:
        height, width = f.pixels.shape[:2]
        assert np.array_equal(f.pixels, direct[f.time_s].to_ndarray(format="rgb24", width=width, height=height, interpolation="BILINEAR"))


@pytest.mark.parametrize(("container", "start_s"), [("matroska", 5000.0), ("mp4", 1300.0)])
def test_a_clip_cut_from_a_stream_is_held_to_its_own_length(container: str, start_s: float) -> None:
    """Found in review: the duration limit counted from 0, so a 4 s clip whose timestamps start
    where the stream it was cut from was (FFmpeg keeps them) was refused: "video claims 5004.0 s"
    (Matroska, whose Duration FFmpeg writes as the end time), "video runs past 1200 s" (MP4). The
    limit is on the video's own length; a clip longer than it is still refused from its header,
    and one cut short is still truncated."""
    options = {"container_options": {"movflags": "faststart"}} if container == "mp4" else {}
    data = _tiny_video(4.0, container=container, start_s=start_s, **options)
    assert probe_video(data).duration_s == pytest.approx(4.0)
    frames = list(sample_frames(data, VideoLimits(), 2.0, 64))
    assert frames[0].time_s == start_s and len(frames) == 8
    _assert_direct_frames(data, frames)
    limits = replace(VideoLimits(), max_duration_s=3.0)
    with pytest.raises(InputError, match="video claims 4.0 s, over the 3 s limit"):
        probe_video(data, limits)
    with pytest.raises(InputError, match="video claims 4.0 s"):
        next(sample_frames(data, limits, 5.0, 64))  # refused before the first frame is handed out
    with pytest.raises(InputError, match="truncated"):
        list(sample_frames(data[: len(data) // 2], VideoLimits(), 5.0, 64))


def test_an_av1_video_is_decoded_as_the_codec_allowlist_says() -> None:
    """Found in review: the codec was checked by its decoder's name, and FFmpeg decodes AV1 with
    libdav1d, so every AV1 video was "codec libdav1d not allowed (allowed: ..., av1, ...)"."""
    images = [np.full((64, 96, 3), 20 * k, np.uint8) for k in range(10)]
    data = encode_video(images, 5, codec="libsvtav1", container="matroska")
    assert probe_video(data).codec == "av1"
    direct = _direct_frames(data)
    keyframes = list(video_keyframes(data))
    assert keyframes
    for k in keyframes:
        assert np.array_equal(k.pixels, direct[k.time_s].to_ndarray(format="rgb24", width=96, height=64, interpolation="BILINEAR"))
    with pytest.raises(InputError, match="codec av1 not allowed"):
        probe_video(data, replace(VideoLimits(), codecs=("h264",)))


@pytest.mark.parametrize("container", ["matroska", "mp4"])
def test_a_video_stream_starting_after_its_audio_is_not_truncated(container: str) -> None:
    """Video from 3 s to 5 s beside audio from 0 s: a Matroska Duration (the end, 5.1 s) counts
    from the container's start, not the video stream's (2 s of 5.1 s would be "truncated")."""
    buffer, rng = io.BytesIO(), np.random.default_rng(0)
    with av.open(buffer, "w", format=container) as output:
        video, audio = output.add_stream("libx264", rate=5), output.add_stream("aac", rate=8000)
        video.width = video.height = 64
        for k in range(40):
            samples = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            samples.sample_rate, samples.pts = 8000, 1024 * k
            output.mux(audio.encode(samples))
        output.mux(audio.encode())
        for k in range(10):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (64, 64, 3), np.uint8), format="rgb24")
            frame.pts = 15 + k
            output.mux(video.encode(frame))
        output.mux(video.encode())
    frames = list(sample_frames(buffer.getvalue(), VideoLimits(), 2.0, 64))
    assert frames[0].time_s == 3.0 and len(frames) == 4
    _assert_direct_frames(buffer.getvalue(), frames)


def _two_streams(codecs: tuple[str, str], shades: tuple[int, int], container: str) -> bytes:
    """A video of two video streams, 64x64 at 5 fps for 2 s, each of `codecs` showing its own shade."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as output:
        streams = [output.add_stream(codec, rate=5) for codec in codecs]
        for stream in streams:
            stream.width = stream.height = 64
            stream.pix_fmt = "yuvj420p" if stream.codec_context.name == "mjpeg" else "yuv420p"
        for _ in range(10):
            for stream, shade in zip(streams, shades):
                output.mux(stream.encode(av.VideoFrame.from_ndarray(np.full((64, 64, 3), shade, np.uint8), format="rgb24")))
        for stream in streams:
            output.mux(stream.encode())
    return buffer.getvalue()


@pytest.mark.parametrize(("codecs", "container"), [(("mpeg2video", "libx264"), "matroska"), (("mjpeg", "libx264"), "mp4")])
def test_the_first_video_stream_of_an_allowed_codec_is_read(codecs: tuple[str, str], container: str) -> None:
    """Found in review: a first video stream of a codec not allowed refused the whole file ("codec
    mpeg2video not allowed") though a later one is allowed; the first allowed one is read."""
    data = _two_streams(codecs, (200, 50), container)
    assert probe_video(data).codec == "h264"
    frames = list(sample_frames(data, VideoLimits(), 2.0, 64))
    assert len(frames) == 4 and all(abs(int(f.pixels.mean()) - 50) <= 2 for f in frames)
    with av.open(io.BytesIO(data)) as direct:
        pixels = {float(f.time): f.to_ndarray(format="rgb24") for f in direct.decode(direct.streams.video[1])}
    assert all(np.array_equal(f.pixels, pixels[f.time_s]) for f in frames)
    with pytest.raises(InputError, match=f"codec {codecs[0]}, h264 not allowed"):
        probe_video(data, replace(VideoLimits(), codecs=("vp9",)))


def test_limits_refuse_unknown_containers_and_codecs() -> None:
    with pytest.raises(ValueError, match="not supported"):
        VideoLimits(codecs=("h264", "prores"))


# ---------------------------------------------------------------------------------------------
# Every bad input of the sample corpus is an error with its reason
# ---------------------------------------------------------------------------------------------

BAD_REASONS = {
    "truncated": "truncated",
    "corrupt": "no video stream|corrupt",
    "empty": r"empty \(0 bytes\)",
    "audio_only": r"no video stream \(it holds audio\)",
    "huge_header": "no decodable frame size|pixel limit",
    "ten_hours": "claims 36000.0 s, over the 1200 s limit",
    "unsupported_codec": "codec mpeg2video not allowed",
    "image_renamed": "video is not a container it may be",
}


def test_every_bad_video_is_an_error_with_its_reason() -> None:
    videos = bad_videos()
    assert sorted(v.kind for v in videos) == sorted(BAD_REASONS)
    for video in videos:
        with pytest.raises(InputError, match=BAD_REASONS[video.kind]):
            list(video_keyframes(video.data))


def test_one_seed_gives_the_same_video_files_in_every_process() -> None:
    """Each process its own heap: x264's macroblock tree and the Matroska muxer's random ids made
    other bytes from one run of make-corpus to the next."""
    digest = ("import hashlib; from sample_corpus.videos import bad_videos, good_videos; "
              "print(sorted((v.content_id, hashlib.sha256(v.data).hexdigest()) for v in good_videos() + bad_videos()))")
    runs = [subprocess.run([sys.executable, "-c", digest], capture_output=True, text=True, check=True).stdout for _ in range(2)]
    assert runs[0] == runs[1]


def test_null_and_non_bytes_are_errors() -> None:
    with pytest.raises(InputError, match="video is null"):
        probe_video(None)
    with pytest.raises(InputError, match="video is str, not bytes"):
        probe_video("video.mp4")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Sampling, shots, keyframes
# ---------------------------------------------------------------------------------------------

def test_frames_are_sampled_and_downscaled_while_decoding(small_video: bytes) -> None:
    frames = list(sample_frames(small_video, VideoLimits(), 4.0, 60))
    times = [f.time_s for f in frames]
    assert len(frames) == 8 and np.allclose(np.diff(times), 0.25, atol=1 / FPS)
    assert {f.pixels.shape for f in frames} == {(60, 80, 3)}


@pytest.mark.parametrize(("width", "height", "sample"), [
    (16, 65536, (1, 1152)),    # 1152 = MAX_SAMPLE_ASPECT x 288; 16 x 1152 / 65536 rounds to 0, kept at 1
    (4096, 32, (1152, 9)),     # 32 x 1152 / 4096 = 9
    (16, 1024, (16, 1024)),    # within both bounds: as it is
    (1080, 2340, (288, 624)),  # a phone's portrait video keeps its short side
])
def test_a_thin_videos_keyframes_are_bounded_by_their_long_side(width: int, height: int, sample: tuple[int, int]) -> None:
    """The short side alone left a thin video as it was: a 16x65536 VP9 frame reached the signals at
    3 MiB a keyframe, 7 times a 4K frame's (x264 refuses heights over 16384, VP9 does not)."""
    data = encode_video([np.full((height, width, 3), 40 * i, np.uint8) for i in range(3)], 5, codec="libvpx-vp9", container="webm",
                        options={"deadline": "realtime", "cpu-used": "8"})
    keyframes = list(video_keyframes(data))
    assert keyframes and {k.pixels.shape for k in keyframes} == {(sample[1], sample[0], 3)}


QUADRANT_COLOURS = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255))  # top left, top right, bottom left, bottom right


def _quadrants(height: int, width: int) -> np.ndarray:
    """A picture of four coloured quadrants: which way up and how wide it is shows."""
    pixels = np.zeros((height, width, 3), np.uint8)
    h, w = height // 2, width // 2
    pixels[:h, :w], pixels[:h, w:], pixels[h:, :w], pixels[h:, w:] = QUADRANT_COLOURS
    return pixels


def _assert_quadrants(pixels: np.ndarray, height: int, width: int) -> None:
    """The pixels are `_quadrants(height, width)`, compared in each quadrant's middle (the encoder blurs its edges)."""
    assert pixels.shape == (height, width, 3)
    h, w = height // 2, width // 2
    for (top, left), colour in zip(((0, 0), (0, w), (h, 0), (h, w)), QUADRANT_COLOURS):
        middle = pixels[top + h // 4: top + 3 * h // 4, left + w // 4: left + 3 * w // 4].astype(int)
        assert np.abs(middle - colour).mean() < 16, (top, left, middle.mean(axis=(0, 1)))


@pytest.mark.parametrize("rotation", [90, 180, -90])
def test_a_rotated_videos_keyframes_are_upright(rotation: int) -> None:
    """Found in review: a phone stores a portrait video sideways with a display matrix saying how to
    turn it, and the keyframes were the stored frames, sideways (EXIF-rotated photos are upright).
    The upright picture (160 high, 96 wide) is stored turned the other way."""
    stored = np.ascontiguousarray(np.rot90(_quadrants(160, 96), -rotation // 90))
    data = encode_video([stored] * 5, 5, rotation=rotation)
    assert {round(f.rotation) % 360 for f in _direct_frames(data).values()} == {rotation % 360}  # what PyAV reads back
    keyframes = list(video_keyframes(data))
    assert keyframes
    for k in keyframes:
        _assert_quadrants(k.pixels, 160, 96)


def test_a_display_matrix_of_no_rotation_turns_nothing() -> None:
    """Found in review (of the turn above): an all-zero matrix reads as a rotation of -2^31 degrees,
    which turned the keyframes a quarter turn though no player turns such a video."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as output:
        stream = output.add_stream("libx264", rate=5)
        stream.height, stream.width, stream.pix_fmt = 64, 96, "yuv420p"
        stream.set_display_matrix([0] * 9)
        for _ in range(5):
            for packet in stream.encode(av.VideoFrame.from_ndarray(_quadrants(64, 96), format="rgb24")):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    assert {f.rotation for f in _direct_frames(buffer.getvalue()).values()} == {-2**31}
    keyframes = list(video_keyframes(buffer.getvalue()))
    assert keyframes
    for k in keyframes:
        _assert_quadrants(k.pixels, 64, 96)


@pytest.mark.parametrize(("sample_aspect", "shown"), [(Fraction(2), (64, 192)), (Fraction(2, 3), (64, 64)), (Fraction(8, 9), (64, 85))])
def test_a_videos_keyframes_have_the_shape_it_is_shown_at(sample_aspect: Fraction, shown: tuple[int, int]) -> None:
    """Found in review: the pixel aspect ratio (anamorphic DVDs and camcorders: pixels wider or
    narrower than high) was ignored, so a 96x64 frame shown 192x64 was a keyframe squeezed to half
    its width. The sizes are those FFmpeg's stream says it is shown at (its display aspect ratio)."""
    data = encode_video([_quadrants(64, 96)] * 5, 5, sample_aspect=sample_aspect)
    with av.open(io.BytesIO(data)) as container:
        assert container.streams.video[0].display_aspect_ratio == Fraction(96, 64) * sample_aspect
    assert shown[1] / shown[0] == pytest.approx(float(Fraction(96, 64) * sample_aspect), abs=0.02)
    keyframes = list(video_keyframes(data))
    assert keyframes
    for k in keyframes:
        _assert_quadrants(k.pixels, *shown)


def _frame_times(data: bytes, skip: str | None = None) -> list[float]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        if skip:
            stream.codec_context.skip_frame = skip
        return [float(f.time) for f in container.decode(stream)]


def test_sparse_sampling_decodes_only_reference_frames(small_video: bytes) -> None:
    """At 4 of 12 frames a second the frames nothing is predicted from (x264's B-frames) are not
    decoded: every sampled frame is a reference frame, though sampling every frame would have
    taken some of the others. Sampling every frame decodes them all, and takes some of them."""
    every, references = _frame_times(small_video), _frame_times(small_video, "NONREF")
    from_every = {min(t for t in every if t >= k * 0.25) for k in range(8)}
    assert from_every - set(references)  # sampling without skipping would take a non-reference frame
    sparse = [f.time_s for f in sample_frames(small_video, VideoLimits(), 4.0, 60)]
    assert len(sparse) == 8 and set(sparse) <= set(references)
    dense = {f.time_s for f in sample_frames(small_video, VideoLimits(), float(FPS), 60)}
    assert dense - set(references)


def test_shot_boundaries_match_the_truth(cut_video: tuple[bytes, list[float]]) -> None:
    data, cuts = cut_video
    keyframes = list(video_keyframes(data, sampling=VideoSampling(keyframe_every_s=60)))
    starts = [k.start_s for k in keyframes]
    assert [k.shot_index for k in keyframes] == [0, 1, 2]
    assert starts[0] == 0.0
    assert np.allclose(starts[1:], cuts, atol=0.5), (starts, cuts)
    for k in keyframes:  # each keyframe in the middle half of its shot
        assert k.start_s + 0.25 * (k.end_s - k.start_s) - 1e-6 <= k.time_s <= k.start_s + 0.75 * (k.end_s - k.start_s) + 1e-6


def test_a_long_shot_has_a_keyframe_per_part(small_video: bytes) -> None:
    keyframes = list(video_keyframes(small_video, sampling=VideoSampling(keyframe_every_s=0.75)))
    assert [k.shot_index for k in keyframes] == [0] * len(keyframes) and len(keyframes) == 3
    assert all(a.end_s == b.start_s for a, b in zip(keyframes, keyframes[1:]))


def test_the_keyframe_is_the_sharpest_middle_frame() -> None:
    """A still photo blurred everywhere but in 1.0-1.5 s of 3 s: the keyframe comes from there."""
    photo = base_photo("coffee").resize(SIZE)
    images = [photo if 1.0 <= k / FPS < 1.5 else photo.filter(ImageFilter.GaussianBlur(3)) for k in range(3 * FPS)]
    keyframes = list(video_keyframes(encode_video(_frames(images), FPS)))
    assert len(keyframes) == 1 and 1.0 <= keyframes[0].time_s < 1.5


def test_laplacian_variance_ranks_blur() -> None:
    pixels = np.asarray(base_photo("camera").convert("RGB").resize(SIZE))
    blurred = np.asarray(Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(2)))
    assert sharpness(pixels) > 2 * sharpness(blurred) > 0


def test_candidates_stay_few_and_evenly_spread() -> None:
    span = _Span(0, 0.0)
    for k in range(1000):
        span.offer(type("F", (), {"time_s": k / 10, "pixels": np.zeros((4, 4, 3), np.uint8)})())
    times = [c[0] for c in span.candidates]
    assert len(times) <= MAX_CANDIDATES and times[0] == 0.0 and max(times) > 80
    assert len(set(np.round(np.diff(times), 6))) == 1


def test_histograms_and_the_detector() -> None:
    red, blue = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)
    red[..., 0], blue[..., 2] = 255, 255
    assert histogram_distance(hsv_histogram(red, 1), hsv_histogram(blue, 1)) == pytest.approx(1.0)
    assert histogram_distance(hsv_histogram(red, 1), hsv_histogram(red, 1)) == 0.0
    flash = ShotDetector()
    assert [flash.is_cut(t, hsv_histogram(p, 1)) for t, p in ((0, red), (0.2, red), (0.4, blue))] == [False] * 3  # under min_shot_s
    cut = ShotDetector()
    assert [cut.is_cut(t, hsv_histogram(p, 1)) for t, p in ((0, red), (0.6, red), (1.0, blue), (1.2, red))] == [False, False, True, False]


# ---------------------------------------------------------------------------------------------
# Pooled values
# ---------------------------------------------------------------------------------------------

def test_pooled_embedding_is_the_duration_weighted_mean() -> None:
    rng = np.random.default_rng(0)
    vectors = [v / np.linalg.norm(v) for v in rng.normal(size=(3, 16))]
    durations = [1.0, 3.0, 0.5]
    expected = sum(d * v for d, v in zip(durations, vectors))
    expected = expected / np.linalg.norm(expected)
    assert np.allclose(pooled_embedding(vectors, durations), expected, atol=1e-6)
    with pytest.raises(ValueError, match="do not weight"):
        pooled_embedding(vectors, [1.0, 2.0])


def test_max_with_time() -> None:
    assert max_with_time([0.1, 0.9, 0.9, 0.3], [0.0, 2.5, 4.0, 6.0]) == (0.9, 2.5)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_a_still_photo_videos_pooled_embedding_is_the_photos() -> None:
    """Cosine >= 0.95 between the pooled embedding of a video of a still photo and the photo's own
    embedding, with the default image embedder."""
    photo = base_photo("astronaut")
    data = encode_video(_frames(list(still(photo, 2.0, FPS, 240))), FPS)
    embedder = EfficientNetImageEmbedder(config("image_embedding")).load()
    keyframes = list(video_keyframes(data))
    vectors = embedder.compute([embedder.prepare({"image": _png(k.image), "image_uri": None}) for k in keyframes])
    pooled = pooled_embedding([np.asarray(v) for v in vectors], [k.end_s - k.start_s for k in keyframes])
    own = np.asarray(embedder.compute([embedder.prepare({"image": _png(photo), "image_uri": None})])[0])
    assert float(pooled @ own) >= 0.95


def test_ffmpeg_is_told_the_demuxer_and_never_probes_a_script(tmp_path, monkeypatch) -> None:
    """An ffconcat script as a corpus video made FFmpeg open the file it names (relative to the
    worker's folder) before the container was checked, and the error row told whether it existed."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "here.mp4").write_bytes(b"\0" * 64)
    reasons = set()
    for name in ("here.mp4", "not_here.mp4"):
        with pytest.raises(InputError) as refused:
            probe_video(f"ffconcat version 1.0\nfile '{name}'\n".encode())
        reasons.add(str(refused.value))
    assert reasons == {"video is not a container it may be (allowed: mov, mp4, matroska, webm)"}
