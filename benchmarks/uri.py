"""Images by URI against the same images inline (issue #18): throughput and worker memory.

What the image embedding gains or loses when the corpus names its images by URI instead of holding
their bytes, and whether its Python workers' memory stays flat in the number of items.

    python -m benchmarks.uri [--items 192] [--scale 4] [--repeat 3] [--set key.path=value ...]
                             [--out benchmarks/results/uri.json]

One generated corpus, three ways, the same items: images inline as bytes (with the `fetch:`
allowlist empty, as a corpus of bytes runs), by URI on the loopback HTTP image server, by URI in
moto's S3 server (benchmarks/servers.py, both serving from this process). Each way is
jobs.backfill.run_backfill with only the image embedding enabled, in one Spark session that ran
a small job of every way first (excluded); the ways alternate over `--repeat` rounds, their order
rotating each round, and the fastest round of each way is compared; beside items/s, the CPU per
item of the whole benchmark and of this process alone (where the servers run). Then the ways by URI on the
corpus with a large photo in every LARGE_EVERY items, at N and at `--scale` x N items, each size
in a fresh session: the peak Python-worker RSS at both. `make bench` runs it in a process of its
own (moto's credentials go into its environment) and stores the report under "uri".
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from functools import cached_property
from pathlib import Path
from typing import Any

from benchmarks import arms
from benchmarks.bench import WARM_ITEMS, Bench, machine, with_cpu
from benchmarks.corpus import LARGE_IMAGE, by_uri, copy_lakehouse, large_jpeg, with_large_images, write_corpus_table
from benchmarks.report import URI_WAYS, summarise_uri, uri_line, write_json
from benchmarks.servers import ImageServer, S3Server
from signals.contracts import CORPUS

SIGNAL = "image_embedding"
WAYS = ("inline", *URI_WAYS)
BUCKET = "bench-images"
LARGE_EVERY = 32  # one item in this many holds a large photo, in the corpora of the memory check
LARGE_VARIANTS = 2  # distinct large photos, taken in turn
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "uri.json"


class UriBench:
    """The corpora of each way (their images on the way's server), their settings and their
    arms, in the work folder of one `Bench`."""

    def __init__(self, bench: Bench, http: ImageServer, s3: S3Server) -> None:
        self.bench, self.http, self.s3 = bench, http, s3
        self.fetch = [f"fetch.http_hosts=['{http.netloc}']", "fetch.allowed_networks=['127.0.0.0/8']",
                      f"fetch.s3_prefixes=['{BUCKET}']", f"fetch.s3_endpoint_url={s3.endpoint_url}", "fetch.s3_region=us-east-1"]
        self.bases = {"http": http.url("img"), "s3": f"s3://{BUCKET}"}
        self.corpora: dict[tuple[int, str, bool], Path] = {}

    @cached_property
    def large_images(self) -> list[bytes]:
        """The large photos of the memory check's corpora, made once: each takes a second."""
        return [large_jpeg(self.bench.args.seed + i) for i in range(LARGE_VARIANTS)]

    def corpus(self, n: int, way: str, large: bool = False) -> Path:
        """A lakehouse holding the generated corpus of `n` items the `way` (read only): with a
        large photo in every LARGE_EVERY items where `large`, its images on the way's server."""
        key = (n, way, large)
        if key not in self.corpora:
            from deltalake import DeltaTable

            table = DeltaTable(str(self.bench.corpus(n) / CORPUS.name)).to_pyarrow_table()
            tag = f"{n}-large" if large else str(n)
            if large:
                table = with_large_images(table, LARGE_EVERY, self.large_images)
            if way != "inline":
                table, objects = by_uri(table, self.bases[way], tag)
                self.serve(way, objects)
            self.corpora[key] = self.bench.work / "corpora" / f"{tag}-{way}"
            write_corpus_table(self.corpora[key], table)
        return self.corpora[key]

    def serve(self, way: str, objects: dict[str, bytes]) -> None:
        """Put `objects` (key -> bytes) where the way's URIs point."""
        if way == "http":
            self.http.images.update(objects)
        else:
            self.s3.put(BUCKET, objects)

    def settings(self, lakehouse: Path, way: str) -> Any:
        """The benchmark's settings for `way`: the allowlist names both servers for the ways by URI."""
        return self.bench.settings(lakehouse, SIGNAL, self.fetch if way != "inline" else ())

    def arm(self, spark: Any, n: int, way: str, name: str, large: bool = False, poll: bool = False) -> arms.ArmResult:
        """One backfill of the way's corpus of `n` items, in a lakehouse of its own (`name`)."""
        settings = self.settings(copy_lakehouse(self.corpus(n, way, large), self.bench.work / "runs" / name), way)
        return with_cpu(lambda: arms.ours_arm(spark, settings, self.bench.profile_dir, n, poll=poll))

    def warm_up(self, spark: Any, ways: tuple[str, ...], label: str) -> None:
        """A small job of each way (workers started, model loaded, fetcher and S3 client made): excluded."""
        start = time.perf_counter()
        for way in ways:
            self.arm(spark, WARM_ITEMS, way, f"warm-{label}-{way}")
        self.bench.log(f"warm-up {label} ({', '.join(ways)}): {time.perf_counter() - start:.1f}s (excluded)")

    def throughput(self, n: int, repeat: int) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
        """Every way at `n` items, `repeat` rounds in one session, the order rotating each round;
        with how far the first round's vectors by URI are from the inline ones."""
        from lake import delta_io

        rounds: dict[str, list[dict[str, Any]]] = {way: [] for way in WAYS}
        spark = self.bench.session(self.settings(self.corpus(n, "inline"), "inline"))
        try:
            self.warm_up(spark, WAYS, "rounds")
            for r in range(repeat):
                for way in WAYS[r % len(WAYS):] + WAYS[: r % len(WAYS)]:
                    rounds[way].append(self.arm(spark, n, way, f"{way}-{r}").as_dict())
                self.bench.log(f"round {r + 1}/{repeat}: " + ", ".join(f"{way} {rounds[way][-1]['items_per_s']:.1f}/s" for way in WAYS))
        finally:
            spark.stop()
        vectors = {way: delta_io.read_arrow(str(self.bench.work / "runs" / f"{way}-0" / "embeddings")).select(["content_id", "vector"])
                   for way in WAYS}
        return rounds, {f"{way}_vs_inline": arms.compare_vectors(vectors["inline"], vectors[way]) for way in URI_WAYS}

    def memory(self, n: int, scale: int) -> dict[int, dict[str, dict[str, Any]]]:
        """The ways by URI on the corpus with large photos at `n` and `scale` x `n` items, each size
        in a fresh session after its warm-up, the Python workers' RSS polled."""
        out: dict[int, dict[str, dict[str, Any]]] = {}
        for size in (n, n * scale):
            spark = self.bench.session(self.settings(self.bench.work / "unused", "inline"))
            try:
                self.warm_up(spark, URI_WAYS, f"memory-{size}")
                out[size] = {way: self.arm(spark, size, way, f"memory-{size}-{way}", large=True, poll=True).as_dict() for way in URI_WAYS}
            finally:
                spark.stop()
            self.bench.log(f"memory at {size} items: " + ", ".join(f"{way} peak worker {a['worker_rss']['peak_worker_mb']:.0f} MB, "
                                                                   f"{a['items_per_s']:.1f}/s" for way, a in out[size].items()))
        return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The options; `Bench` reads seed, overrides and workdir from them as from its own."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.uri", description=__doc__.split("\n")[0])
    p.add_argument("--items", type=int, default=192, help="corpus size N (default 192)")
    p.add_argument("--scale", type=int, default=4, help="the larger corpus of the memory check is scale x N (default 4)")
    p.add_argument("--repeat", type=int, default=3, help="rounds of the three ways; the fastest of each is compared (default 3)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="configuration override for every way, e.g. fetch.pool_size=4")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--workdir", type=Path, default=None, help="where corpora and outputs go (default: a temp folder, removed after)")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The three ways' rounds and the memory check, summarised (benchmarks.report.summarise_uri)."""
    os.environ.update(S3Server.CREDENTIALS)  # moto's, for the workers' AWS SDK too: set before Spark starts them
    started, t0 = dt.datetime.now(dt.UTC), time.perf_counter()
    bench = Bench(args)
    try:
        with ImageServer({}) as http, S3Server() as s3:
            uri = UriBench(bench, http, s3)
            rounds, checks = uri.throughput(args.items, args.repeat)
            memory = uri.memory(args.items, args.scale)
            signal = Bench.signal(uri.settings(bench.work / "unused", "http"), SIGNAL)
            settings = {"overrides": args.overrides, "fetch_by_uri": uri.fetch, "inline": "the fetch allowlist empty",
                        "batch_size": signal.batch_size, "prepare_threads_by_uri": signal.prepare_threads,
                        "large_photos": {"every": LARGE_EVERY, "pixels": list(LARGE_IMAGE), "mb": [round(len(b) / 2**20, 1) for b in uri.large_images]}}
    finally:
        bench.close()
    return {**summarise_uri(rounds, memory), "checks": checks, "items": args.items, "scale": args.scale, "repeat": args.repeat,
            "settings": settings, "machine": machine(), "started_at": started.isoformat(timespec="seconds"),
            "duration_s": round(time.perf_counter() - t0, 1)}


def main(argv: list[str] | None = None) -> int:
    """Run, write the JSON report to --out and print its line."""
    args = parse_args(argv)
    report = run(args)
    write_json(args.out, report)
    print(uri_line(report))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
