"""The signal path on a GPU, without Spark: open_clip ViT-B-32 image embeddings from JPEG bytes.

    python -m benchmarks.gpu [--items 4096] [--repeat 3] [--batch 512] [--prepare-threads 8] [--corpus c.arrow] [--workers 1,2,4] [--out gpu.json]

What a Spark task on a GPU executor runs, minus Spark: Arrow record batches of the generated
corpus (sample_corpus.generate: real photos up to 512 px, ~93% JPEG, and every kind of bad input)
converted to pandas frames, through signals.runner.run_signal with the production
OpenClipImageEmbedder (random weights: pretrained=None; speed does not depend on them):
- ceiling: the model's forward alone on a batch already on the device (fp16 autocast, channels-last);
- cpu_decode: rows decoded and preprocessed with PIL on `--prepare-threads` CPU threads, batches
  stacked, pinned and copied without blocking on the prefetch thread;
- gpu_decode: `params.gpu_decode: true`: header check on the CPU, nvJPEG decode, resize, crop and
  normalise on the GPU, on the prefetch thread while the model runs the previous batch.
The two paths' rows are compared (same statuses and errors, vectors' cosine) on the first items.
- workers (`--workers 1,2,4`): gpu_decode in N processes at once, each on its Nth of the corpus,
  sharing the one device, as Spark runs N tasks of `resources.gpus: 1/N` on one GPU: the threads
  of one Python process share one interpreter lock, which sets one worker's pace.
Needs torch, torchvision, pillow, numpy, pandas, pyarrow, open_clip_torch; runs on the CPU too
(slowly: use small --items to try it).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from benchmarks.report import write_json


def photo_corpus(n: int, seed: int = 7) -> pa.Table:
    """Fallback corpus: random crops and rescales of scikit-image's photos as JPEG q90, <= 512 px."""
    import io

    import skimage.data
    from PIL import Image

    names = ["astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "moon", "hubble_deep_field", "retina", "brick"]
    photos = [Image.fromarray(getattr(skimage.data, name)()).convert("RGB") for name in names]
    rng = np.random.default_rng(seed)
    images = []
    for i in range(n):
        photo = photos[i % len(photos)]
        w, h = photo.size
        cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        image = photo.crop((left, top, left + cw, top + ch))
        image.thumbnail((512, 512))
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=90)
        images.append(buf.getvalue())
    return pa.table({"content_id": [f"pin-{i:06d}" for i in range(n)], "image": pa.array(images, pa.binary())})


def load_corpus(path: Path | None, items: int) -> tuple[pa.Table, str]:
    """The corpus and what made it: read from `path` if it holds `items` rows (generating 4096
    items takes most of a minute on a GPU machine's CPU), else generated (and written to `path`)."""
    if path is not None and path.exists():
        with pa.memory_map(str(path)) as source:
            table = pa.ipc.open_file(source).read_all()
        if table.num_rows == items:
            made_by = (table.schema.metadata or {}).get(b"generator", b"unknown generator").decode()
            return table, f"{made_by} (read from {path})"
    try:
        from sample_corpus.generate import generate_corpus

        corpus, generator = generate_corpus(n_items=items)[0], "sample_corpus.generate.generate_corpus"
    except Exception as exc:  # noqa: BLE001 - a machine whose pillow/skimage lacks something the generator uses
        print(f"generate_corpus failed ({type(exc).__name__}: {exc}); using plain JPEGs of skimage photos", flush=True)
        corpus, generator = photo_corpus(items), "benchmarks.gpu.photo_corpus (fallback)"
    table = corpus.select(["content_id", "image"]).replace_schema_metadata({"generator": generator})
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
    return table, generator


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu")
    p.add_argument("--items", type=int, default=4096, help="distinct corpus items generated")
    p.add_argument("--repeat", type=int, default=3, help="passes over the corpus per timed run")
    p.add_argument("--cpu-repeat", type=int, default=None, help="passes for cpu_decode (default: --repeat); it is slow")
    p.add_argument("--batch", type=int, default=512, help="gpu_batch_size (model batch on the GPU)")
    p.add_argument("--arrow-rows", type=int, default=512, help="rows per Arrow batch handed to the runner")
    p.add_argument("--prepare-threads", type=int, default=max(1, (os.cpu_count() or 2) - 4))
    p.add_argument("--gpu-prepare-threads", type=int, default=4, help="prepare threads with gpu_decode (header checks only)")
    p.add_argument("--arch", default="ViT-B-32")
    p.add_argument("--compare-items", type=int, default=1024)
    p.add_argument("--modes", default="cpu_decode,gpu_decode")
    p.add_argument("--force-device-decode", action="store_true", help="gpu_decode: force (the device path on a CPU, to try it)")
    p.add_argument("--corpus", type=Path, default=None,
                   help="Arrow file of the corpus: read if it exists (and holds --items rows), else generated and written there")
    p.add_argument("--workers", default="", help="processes sharing the device for the workers step, e.g. 1,2,4 (empty: no such step)")
    p.add_argument("--share", default=None, help=argparse.SUPPRESS)  # I/N: run as worker I of N (the workers step starts them)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "gpu.json")
    return p.parse_args(argv)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_signal(arch: str, batch: int, mode: str, threads: int, force: bool = False) -> Any:
    from signals.base import ModelRef, SignalConfig
    from signals.embedders.openclip import OpenClipImageEmbedder

    params = {"arch": arch, "pretrained": None, "gpu_batch_size": batch, "prepare_threads": threads,
              "gpu_decode": ("force" if force else True) if mode == "gpu_decode" else False}
    return OpenClipImageEmbedder(SignalConfig("clip_image_embedding", ModelRef(f"open_clip-{arch}", "random"), 64, "auto", params)).load()


def frames(table: pa.Table, rows: int, repeat: int):
    for _ in range(repeat):
        for batch in table.to_batches(max_chunksize=rows):
            yield batch.to_pandas()


def ceiling(signal: Any, batch: int, seconds: float = 3.0) -> dict[str, Any]:
    """The model alone: forward of a device-resident batch, as the runner calls it."""
    device = signal.device
    x = torch.randn(batch, 3, 224, 224, device=device)
    inputs = list(x.unbind(0))
    signal.embed(inputs)
    sync(device)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or n == 0:
        signal.embed(inputs)
        n += batch
    sync(device)
    wall = time.perf_counter() - start
    return {"images": n, "wall_s": round(wall, 3), "images_per_s": round(n / wall, 1)}


def timed_run(signal: Any, table: pa.Table, rows: int, repeat: int) -> dict[str, Any]:
    from signals.profiling import PROFILE_DIR_ENV, stage_times
    from signals.runner import run_signal

    list(run_signal(signal, frames(table.slice(0, 2 * signal.batch_size), rows, 1)))  # warm-up: kernels, nvJPEG, pools
    sync(signal.device)
    before = stage_times.snapshot()
    statuses: dict[str, int] = {}
    n, start = 0, time.perf_counter()
    for out in run_signal(signal, frames(table, rows, repeat)):
        n += len(out)
        for status, count in out["status"].value_counts().items():
            statuses[status] = statuses.get(status, 0) + int(count)
    sync(signal.device)
    wall = time.perf_counter() - start
    after = stage_times.snapshot()
    busy = {k: round(v - before["seconds"].get(k, 0.0), 3) for k, v in after["seconds"].items()} if os.environ.get(PROFILE_DIR_ENV) else {}
    return {"images": n, "wall_s": round(wall, 3), "images_per_s": round(n / wall, 1), "statuses": statuses,
            "stage_busy_s": busy, "batch_size": signal.batch_size, "prepare_threads": signal.prepare_threads,
            "decodes_on_device": signal.decodes_on_device}


def worker_share(args: argparse.Namespace) -> int:
    """One worker of the workers step: its share of the corpus, loaded and warmed up, then timed
    from the parent's go (a line on stdin, once every worker is ready) to its last row."""
    from signals.runner import run_signal

    index, count = (int(x) for x in args.share.split("/"))
    table, _ = load_corpus(args.corpus, args.items)
    start, stop = index * table.num_rows // count, (index + 1) * table.num_rows // count
    share = table.slice(start, stop - start)
    signal = make_signal(args.arch, args.batch, "gpu_decode", args.gpu_prepare_threads, args.force_device_decode)
    list(run_signal(signal, frames(share.slice(0, 2 * signal.batch_size), args.arrow_rows, 1)))
    sync(signal.device)
    print("ready", flush=True)
    sys.stdin.readline()
    began, images = time.time(), 0
    for out in run_signal(signal, frames(share, args.arrow_rows, args.repeat)):
        images += len(out)
    sync(signal.device)
    print(json.dumps({"images": images, "start": began, "end": time.time()}), flush=True)
    return 0


def shared_device(args: argparse.Namespace) -> dict[str, Any]:
    """Aggregate images/s of N workers sharing the device, for each N of `--workers`: all start
    together, and the wall runs from the first start to the last row."""
    out: dict[str, Any] = {}
    for count in [int(n) for n in args.workers.split(",") if n]:
        command = [sys.executable, "-m", "benchmarks.gpu", "--corpus", str(args.corpus), "--items", str(args.items), "--repeat", str(args.repeat),
                   "--batch", str(args.batch), "--arrow-rows", str(args.arrow_rows), "--gpu-prepare-threads", str(args.gpu_prepare_threads),
                   "--arch", args.arch, *(["--force-device-decode"] if args.force_device_decode else [])]
        workers = [subprocess.Popen([*command, "--share", f"{i}/{count}"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                   for i in range(count)]
        for worker in workers:
            while (line := worker.stdout.readline()) and line.strip() != "ready":  # type: ignore[union-attr]
                pass
        for worker in workers:
            worker.stdin.write("go\n")  # type: ignore[union-attr]
            worker.stdin.flush()  # type: ignore[union-attr]
        runs = [json.loads(worker.communicate(timeout=1800)[0].strip().splitlines()[-1]) for worker in workers]
        wall = max(r["end"] for r in runs) - min(r["start"] for r in runs)
        images = sum(r["images"] for r in runs)
        out[str(count)] = {"images": images, "wall_s": round(wall, 3), "images_per_s": round(images / wall, 1),
                           "prepare_threads_each": args.gpu_prepare_threads}
    return out


def compare(a: Any, b: Any, table: pa.Table, rows: int) -> dict[str, Any]:
    from signals.runner import run_signal

    ra = pd.concat(list(run_signal(a, frames(table, rows, 1))), ignore_index=True)
    rb = pd.concat(list(run_signal(b, frames(table, rows, 1))), ignore_index=True)
    cos = [float(np.dot(x, y)) for x, y in zip(ra["vector"], rb["vector"]) if x is not None and y is not None]
    return {"items": len(ra), "same_status": bool((ra["status"] == rb["status"]).all()),
            "same_errors": bool((ra["error"].fillna("") == rb["error"].fillna("")).all()),
            "cosine_min": round(min(cos), 5) if cos else None, "cosine_mean": round(float(np.mean(cos)), 6) if cos else None,
            "cosine_p01": round(float(np.percentile(cos, 1)), 5) if cos else None}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("CONTENT_SIGNALS_PROFILE_DIR", str(Path(args.out).parent / ".stage-times"))
    Path(os.environ["CONTENT_SIGNALS_PROFILE_DIR"]).mkdir(parents=True, exist_ok=True)
    from signals.device import configure_threads

    configure_threads(1)  # torch's CPU ops run on the prepare threads: one intra-op thread each
    if args.share:
        return worker_share(args)
    if args.workers and args.corpus is None:  # the workers read the corpus from a file, kept beside the results for reruns
        args.corpus = Path(args.out).parent / ".gpu-corpus.arrow"
    t0 = time.perf_counter()
    table, generator = load_corpus(args.corpus, args.items)
    images = table["image"].to_pylist()
    jpegs = sum(1 for b in images if b is not None and b[:3] == b"\xff\xd8\xff")
    report: dict[str, Any] = {
        "machine": {"gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "cpu_cores": os.cpu_count(),
                    "torch": torch.__version__, "python": platform.python_version()},
        "corpus": {"generator": generator, "items": table.num_rows, "passes": args.repeat, "jpeg_share": round(jpegs / len(images), 3),
                   "mean_kb": round(float(np.mean([len(b) for b in images if b])) / 1024, 1), "max_side_px": 512,
                   "generated_s": round(time.perf_counter() - t0, 1)},
        "settings": {"arch": args.arch, "weights": "random (pretrained=None)", "gpu_batch_size": args.batch,
                     "arrow_rows": args.arrow_rows, "prefetch": 2, "mixed_precision": "fp16 autocast", "channels_last": True},
    }
    print(json.dumps(report), flush=True)
    signals = {}
    for mode in [m for m in args.modes.split(",") if m]:
        threads = args.gpu_prepare_threads if mode == "gpu_decode" else args.prepare_threads
        signals[mode] = make_signal(args.arch, args.batch, mode, threads, args.force_device_decode)
    first = next(iter(signals.values()))
    steps = [("ceiling_forward_only", lambda: ceiling(first, args.batch))]
    passes = {mode: (args.cpu_repeat or args.repeat) if mode == "cpu_decode" else args.repeat for mode in signals}
    steps += [(mode, lambda signal=signal, mode=mode: timed_run(signal, table, args.arrow_rows, passes[mode])) for mode, signal in signals.items()]
    if args.workers:
        steps.append(("workers", lambda: shared_device(args)))
    if {"cpu_decode", "gpu_decode"} <= signals.keys():
        steps.append(("gpu_vs_cpu_decode", lambda: compare(signals["cpu_decode"], signals["gpu_decode"],
                                                           table.slice(0, args.compare_items), args.arrow_rows)))
    failed = False
    for name, step in steps:
        try:
            report[name] = step()
        except Exception as exc:  # noqa: BLE001 - record it and measure the rest
            import traceback

            failed = True
            report[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}
        print(name, json.dumps(report[name]), flush=True)
        write_json(args.out, report)  # after every step: a run cut short still leaves what it measured
    if torch.cuda.is_available():
        report["machine"]["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    write_json(args.out, report)
    print(f"written to {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
