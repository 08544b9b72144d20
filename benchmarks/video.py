"""Video through the job's per-video path on one core: throughput, decoding's share, peak memory.

    python -m benchmarks.video [--long-s 600] [--out benchmarks/results/video.json]

A 480p (854x480, 30 fps, H.264) video of pans over the sample photos with a cut every 4 s is
generated here, 10 s, 60 s and `--long-s` long, and each is run in a fresh Python process (so each
peak RSS, the child's own VmHWM, is its own) through what a Spark task does for it: for each image
signal the local profile enables (OCR off), `signals.video.rows.video_signal_rows` twice (the
keyframes table's action and the signal table's action each decode the video and compute its
keyframes: jobs/videos.py), and the rows written as parquet. Reported per video: seconds of video
per CPU-second of the whole (and of one pass, what a compute-once engine would spend), the share of
CPU spent decoding (a decode-only pass of every frame, times the passes), keyframes, and peak RSS
over the baseline of the loaded models. `make bench` runs it and stores the report under "video".
"""
from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.hostile import _peak_rss_bytes
from benchmarks.report import write_json

SIZE = (854, 480)
FPS = 30
SHOT_S = 4.0
PHOTOS = ("astronaut", "coffee", "rocket", "chelsea")
FLAT_SLACK_BYTES = 64 * 2**20  # allocator noise between two runs of the same batches


def make_video(seconds: float, path: Path) -> None:
    """The benchmark video at `path`: a pan over each photo in turn, a cut every SHOT_S seconds."""
    from PIL import Image

    from sample_corpus.generate import _photo
    from sample_corpus.videos import X264_OPTIONS, encode_video

    bigs = [np.asarray(_photo(p).resize((int(SIZE[0] * 1.5), int(SIZE[1] * 1.5)), Image.Resampling.BILINEAR)) for p in PHOTOS]

    def frames() -> Any:
        for k in range(round(seconds * FPS)):
            shot, within = divmod(k, round(SHOT_S * FPS))
            big = bigs[shot % len(bigs)]
            x = within * (big.shape[1] - SIZE[0]) // round(SHOT_S * FPS)
            yield np.ascontiguousarray(big[: SIZE[1], x : x + SIZE[0]])

    path.write_bytes(encode_video(frames(), FPS, options={**X264_OPTIONS, "preset": "ultrafast"}))


def run_child(path: Path, seconds: float) -> dict[str, Any]:
    """In this (fresh) process: the video at `path` through every image signal, as a task would."""
    import av
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from conf.settings import load_settings
    from signals.base import ModelRef, SignalConfig
    from signals.catalog import build_signal
    from signals.table_rows import RowStamp
    from signals.video.rows import video_signal_rows

    torch.set_num_threads(1)
    settings = load_settings("local")
    signals = []
    for name, s in settings.enabled_signals.items():
        signal = build_signal(s.kind, SignalConfig(name, ModelRef(s.model.name, "bench"), s.batch_size, "cpu", s.params, decode=settings.decode.limits))
        if signal.input_kind == "image":
            signals.append(signal.load())
    baseline = _peak_rss_bytes()
    item = {"content_id": "bench", "ds": "2026-12-01", "input_hash": "h", "video": path.read_bytes()}
    passes = 2  # the keyframes table's action and the signal table's action (jobs/videos.py)
    keyframes = 0
    start = time.process_time()
    with tempfile.TemporaryDirectory(prefix="video-bench-") as out:
        for signal in signals:
            stamp = RowStamp.of(signal, "bench", datetime.now(UTC))
            for p in range(passes):
                keyframe_batch, item_batch = video_signal_rows(signal, stamp, item, settings.video.reading)
                pq.write_table(pa.Table.from_batches([keyframe_batch]), f"{out}/{signal.signal}-{p}-k.parquet")
                pq.write_table(pa.Table.from_batches([item_batch]), f"{out}/{signal.signal}-{p}-v.parquet")
                keyframes = keyframe_batch.num_rows if signal.signal == "image_embedding" else keyframes
    cpu = time.process_time() - start
    decode_start = time.process_time()
    with av.open(io.BytesIO(item["video"])) as container:
        stream = container.streams.video[0]
        stream.thread_count = 1
        frames = sum(1 for _ in container.decode(stream))
    decode = (time.process_time() - decode_start) * passes * len(signals)
    return {
        "video_s": seconds, "frames": frames, "signals": [s.signal for s in signals], "passes_per_signal": passes, "keyframes": keyframes,
        "cpu_s": round(cpu, 2), "video_s_per_cpu_s": round(seconds / cpu, 2), "video_s_per_cpu_s_one_pass": round(seconds * passes / cpu, 2),
        "decode_share": round(decode / cpu, 3), "baseline_rss_bytes": baseline, "peak_rss_bytes": _peak_rss_bytes(),
        "peak_over_baseline_bytes": _peak_rss_bytes() - baseline,
    }


def run_video(seconds: float, timeout_s: float = 1800.0) -> dict[str, Any]:
    """One video length: generated here, measured in a fresh process."""
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory(prefix="video-bench-") as folder:
        path = Path(folder, "video.mp4")
        make_video(seconds, path)
        done = subprocess.run([sys.executable, "-m", "benchmarks.video", "--child", str(path), "--seconds", str(seconds)],
                              capture_output=True, text=True, cwd=root, env=env, timeout=timeout_s, check=False)
    if done.returncode != 0:
        return {"video_s": seconds, "crashed": True, "returncode": done.returncode, "stderr": done.stderr[-2000:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(long_s: float = 600.0) -> dict[str, Any]:
    """Videos of 10 s, 60 s and `long_s`, and whether the peak stayed flat from 60 s to the long one.

    A 10 s video has fewer keyframes than a model batch, so its peak is below the batches every
    longer video fills (the image path's own peak): flatness is judged from 60 s on, within
    FLAT_SLACK_BYTES."""
    runs = {f"{seconds:g}s": run_video(seconds) for seconds in (10.0, 60.0, long_s)}
    middle, long = runs["60s"], runs[f"{long_s:g}s"]
    flat = None
    if not middle.get("crashed") and not long.get("crashed"):
        flat = long["peak_over_baseline_bytes"] <= middle["peak_over_baseline_bytes"] + FLAT_SLACK_BYTES
    return {"videos": runs, "memory_flat": flat}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.video", description=__doc__.split("\n")[0])
    p.add_argument("--long-s", type=float, default=600.0, help="the long video's seconds (default 600)")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON report here")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(Path(args.child), args.seconds)))
        return 0
    report = run(args.long_s)
    print(json.dumps(report, indent=2))
    if args.out:
        write_json(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
