"""Video through the job's video pass on one core: throughput, decoding's share, peak memory.

    python -m benchmarks.video [--long-s 600] [--out benchmarks/results/video.json]

A 480p (854x480, 30 fps, H.264) video of pans over the sample photos with a cut every 4 s is
generated here, 10 s, 60 s, 180 s and `--long-s` long, and each is run in a fresh Python process (so each
peak RSS, the child's own VmHWM, is its own; the long video first, unmeasured, warms its models and
its memory) through what a video pass task does for it
(jobs/videos.py): `udfs.rows.video_output_rows` for every image signal the local profile enables
(OCR off), one decode for all of them, its rows written by `lake.file_writer.make_tables_writer`
as parquet files of `keyframes`, `embeddings` and `labels`. Reported per video: seconds of video
per CPU-second, the share of that CPU a decode-only pass takes (the frames the pass decodes:
reference frames only at the default sampling, signals.video.decode.sampling_stream), the share of a
keyframe-only pass (decode, sampling, shots, keyframe choice: no signal), keyframes, and peak RSS
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
import pyarrow as pa

from benchmarks.hostile import _peak_rss_bytes
from benchmarks.memory import restart_peak_rss
from benchmarks.report import TARGETS, write_json

SIZE = (854, 480)
FPS = 30
SHOT_S = 4.0
PHOTOS = ("astronaut", "coffee", "rocket", "chelsea")
FULL_BATCHES_S = 180.0  # 45 keyframes: every model batch of the local image signals full
FLAT_SLACK_BYTES = 64 * 2**20  # allocator noise between two runs of the same batches


def make_video(seconds: float, path: Path) -> None:
    """The benchmark video at `path`: a pan over each photo in turn, a cut every SHOT_S seconds."""
    from PIL import Image

    from sample_corpus.photos import base_photo
    from sample_corpus.videos import encode_video

    bigs = [np.asarray(base_photo(p).resize((int(SIZE[0] * 1.5), int(SIZE[1] * 1.5)), Image.Resampling.BILINEAR)) for p in PHOTOS]

    def frames() -> Any:
        for k in range(round(seconds * FPS)):
            shot, within = divmod(k, round(SHOT_S * FPS))
            big = bigs[shot % len(bigs)]
            x = within * (big.shape[1] - SIZE[0]) // round(SHOT_S * FPS)
            yield np.ascontiguousarray(big[: SIZE[1], x : x + SIZE[0]])

    path.write_bytes(encode_video(frames(), FPS))  # x264 as the sample corpus encodes: with B-frames, like most H.264


def run_child(path: Path, seconds: float, warm: Path) -> dict[str, Any]:
    """In this (fresh) process: the video at `warm`, unmeasured, then the one at `path`, through
    every image signal, as a video pass task would."""
    import av
    import torch

    from conf.settings import load_settings
    from lake.file_writer import FILE_METADATA_SCHEMA, make_tables_writer
    from signals.base import ModelRef, SignalConfig
    from signals.catalog import build_signal
    from signals.contracts import EMBEDDINGS, KEYFRAMES, LABELS
    from signals.table_rows import RowStamp
    from signals.video.decode import check_header, sampling_stream
    from signals.video.keyframes import video_keyframes
    from udfs.rows import video_output_rows

    torch.set_num_threads(1)
    settings = load_settings("local")
    signals = []
    for name, s in settings.enabled_signals.items():
        signal = build_signal(s.kind, SignalConfig(name, ModelRef(s.model.name, "bench"), s.batch_size, "cpu", s.params, decode=settings.decode.limits))
        if signal.input_kind == "image":
            signals.append(signal.load())
    stamped = [(signal, RowStamp.of(signal, "bench", datetime.now(UTC))) for signal in signals]

    def video_pass(data: bytes, out: str) -> list[dict[str, Any]]:
        """The video through the video pass's task function; the metadata of the files it wrote."""
        batch = pa.RecordBatch.from_pylist([{"content_id": "bench", "ds": "2026-12-01", "input_hash": "h", "video": data}])
        tables = {c.name: (f"{out}/{c.name}", c) for c in (KEYFRAMES, EMBEDDINGS, LABELS)}
        write = make_tables_writer(tables, "part-bench", lambda: "bench", video_output_rows(stamped, 1, settings.video.reading))
        return pa.Table.from_batches(list(write(iter([batch]))), schema=FILE_METADATA_SCHEMA).to_pylist()

    def cpu_s() -> float:
        """This process's CPU-seconds and its children's: the video decoding child, kept between videos, counted live."""
        times = os.times()
        return times.user + times.system + times.children_user + times.children_system + _live_children_cpu_s()

    with tempfile.TemporaryDirectory(prefix="video-bench-") as out:
        video_pass(warm.read_bytes(), f"{out}/warm")
        baseline = restart_peak_rss()  # what the warmed-up process holds; its peak counts from here
        data = path.read_bytes()
        start = cpu_s()
        files = video_pass(data, f"{out}/run")
        cpu = cpu_s() - start
    keyframes = sum(f["num_records"] for f in files if f["table"] == KEYFRAMES.name and '"image_embedding"' in f["partition_values"])
    start = time.process_time()
    with av.open(io.BytesIO(data)) as container:  # decoding alone, as the pass decodes: the frames sampling needs
        stream = sampling_stream(container, check_header(container, settings.video.limits), settings.video.sample_fps)
        frames = sum(1 for _ in container.decode(stream))
    decode = time.process_time() - start
    start = cpu_s()
    sampled = sum(1 for _ in video_keyframes(data, settings.video.limits, settings.video.sampling))
    keyframe_pass = cpu_s() - start
    return {
        "video_s": seconds, "frames_decoded": frames, "signals": [s.signal for s in signals], "decodes": 1, "keyframes": keyframes,
        "cpu_s": round(cpu, 3), "video_s_per_cpu_s": round(seconds / cpu, 2), "decode_share": round(decode / cpu, 3),
        "keyframe_pass_share": round(keyframe_pass / cpu, 3), "keyframe_pass_keyframes": sampled,
        "baseline_rss_bytes": baseline, "peak_rss_bytes": _peak_rss_bytes(), "peak_over_baseline_bytes": _peak_rss_bytes() - baseline,
    }


def _live_children_cpu_s() -> float:
    """CPU-seconds of this process's children that are still running (from /proc: utime and stime)."""
    total, tick = 0, os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # a process that ended while being looked at
            continue
        if int(fields[1]) == os.getpid():
            total += int(fields[11]) + int(fields[12])
    return total / tick


def run_video(seconds: float, warm: Path, timeout_s: float = 1800.0) -> dict[str, Any]:
    """One video length: generated here, measured in a fresh process after the `warm` video."""
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory(prefix="video-bench-") as folder:
        path = Path(folder, "video.mp4")
        make_video(seconds, path)
        done = subprocess.run([sys.executable, "-m", "benchmarks.video", "--child", str(path), "--seconds", str(seconds), "--warm", str(warm)],
                              capture_output=True, text=True, cwd=root, env=env, timeout=timeout_s, check=False)
    if done.returncode != 0:
        return {"video_s": seconds, "crashed": True, "returncode": done.returncode, "stderr": done.stderr[-2000:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(long_s: float = 600.0) -> dict[str, Any]:
    """Videos of 10 s, 60 s, FULL_BATCHES_S and `long_s`, and whether the peak stayed flat from
    FULL_BATCHES_S to the long one.

    A video whose keyframes do not fill the largest model batch (32: 128 s of this video, a
    keyframe per 4 s shot) peaks below the batches every longer video fills (the image path's own
    peak), so flatness is judged from FULL_BATCHES_S on, within FLAT_SLACK_BYTES.

    Each child first runs the long video, unmeasured: a worker's memory climbs over its first few
    full model batches (about four: 8.5 minutes of this video) to where it then stays, so only a
    worker that has seen them shows whether a video's length costs memory (benchmarks/README.md,
    Video)."""
    with tempfile.TemporaryDirectory(prefix="video-bench-") as folder:
        warm = Path(folder, "warm.mp4")
        make_video(long_s, warm)
        runs = {f"{seconds:g}s": run_video(seconds, warm) for seconds in (10.0, 60.0, FULL_BATCHES_S, long_s)}
    full, long = runs[f"{FULL_BATCHES_S:g}s"], runs[f"{long_s:g}s"]
    flat = None
    if not full.get("crashed") and not long.get("crashed"):
        flat = long["peak_over_baseline_bytes"] <= full["peak_over_baseline_bytes"] + FLAT_SLACK_BYTES
    fast = all(not r.get("crashed") and r["video_s_per_cpu_s"] >= TARGETS["video_s_per_cpu_s"] for r in runs.values())
    return {"videos": runs, "memory_flat": flat,
            "targets_met": {f"{TARGETS['video_s_per_cpu_s']:g} s of video per CPU-second at every length": fast, "memory flat": bool(flat)}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.video", description=__doc__.split("\n")[0])
    p.add_argument("--long-s", type=float, default=600.0, help="the long video's seconds (default 600)")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON report here")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--warm", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(Path(args.child), args.seconds, args.warm)))
        return 0
    report = run(args.long_s)
    print(json.dumps(report, indent=2))
    if args.out:
        write_json(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
