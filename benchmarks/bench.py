"""`make bench`: throughput of the embedding signals, three ways, on one generated corpus.

    python -m benchmarks.bench [--items 960] [--text-items N] [--scale 4] [--refresh-items N]
                               [--set key.path=value ...] [--gpu auto|on|off] [--uri on|off] [--hostile on|off]
                               [--out benchmarks/results/latest.json]

For each signal (image_embedding, text_embedding), with only that signal enabled:
1. raw: decode, preprocess, forward in a plain loop, one process, torch threads = cores;
2. predict_batch_udf: Spark's own, the same model/batch size/threads per task, plain parquet out,
   in a Spark session of its own (Python workers that never ran our code);
3. ours: jobs.backfill.run_backfill end to end, Delta commit included;
then ours again on a corpus `--scale` times larger, in a fresh Spark session, for the peak
memory of the Python workers at both sizes. Then a full backfill (both embedding signals) of a
corpus of `--refresh-items` against jobs.refresh.run_refresh after adding 1% new items: the first
refresh after the backfill (it compares the whole corpus), then the next day's (only the files
added since: the daily run, which the target is checked on); then `content-signals monitor` of
that backfill, its dashboard page included, against its time ("monitor"); then that corpus with 30% repins, backfilled with
compute once and without ("compute_once"). Then the scale step: backfill, daily refresh and dedup
at 1x, 4x and 16x --scale-base items in one session (their corpora cut from --scale-photos' photos
too), items per second and dedup's compared pairs per item ("scale"). Where CUDA is available (or with
--gpu on), benchmarks.gpu runs next: open_clip ViT-B-32 from JPEG bytes on the GPU path. Then
benchmarks.uri: the image embedding on the same images inline, by URI on a loopback HTTP server and
on an S3-compatible one, and the workers' memory by URI at N and scale x N items ("uri"). Then
benchmarks.hostile: each class of hostile image through the image signal's prepare, one fresh
process per class, its peak memory and slowest image against the per-task budget ("hostile").
Then benchmarks.index: a 100k-vector synthetic embeddings table, the index `content-signals index`
builds of it against exact search, recall@10 and query cost measured in one run ("index").
Then benchmarks.serving: `content-signals serve` on loopback, p50/p99 latency and requests per
second at 1, 8 and 32 concurrent clients, micro-batching against one item per pass ("serving").
Then benchmarks.video: the video pass on videos of 10 s to 10 minutes, seconds of video per
CPU-second and memory ("video"). Last, benchmarks.year: a backfill and a year of daily refreshes
with `maintain` weekly and without, the log, the files and typical reads per day ("year"; its plot in benchmarks/results/year.png).

Every Spark session is warmed up first (Python workers started, model loaded in them, one small
job of the arm) and that time is excluded from all arms alike; the raw loop's model load and
first batch are excluded too. Results go to stdout (a table) and to --out as JSON.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

for _name, _value in {"PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1",
                      "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(_name, _value)


def _worker_env() -> dict[str, str]:
    """The environment the local profile gives Spark's Python workers (huge pages for torch's
    large blocks, say): the raw loop runs in this process and gets the same, before torch loads."""
    from conf.settings import load_settings

    return load_settings("local").spark.worker_env


for _name, _value in _worker_env().items():
    os.environ.setdefault(_name, _value)

from benchmarks import arms, hostile, stages  # noqa: E402
from benchmarks import index as index_bench  # noqa: E402
from benchmarks import serving as serving_bench  # noqa: E402
from benchmarks import video as video_bench  # noqa: E402
from benchmarks.corpus import add_new_items, copy_lakehouse, with_repins, write_corpus, write_corpus_table  # noqa: E402
from benchmarks.memory import CpuShare  # noqa: E402
from benchmarks.report import TARGETS, compute_once_line, format_table, index_line, scale_line, summarise, summarise_scale, write_json, year_line  # noqa: E402
from sample_corpus.photos import photo_pool  # noqa: E402
from signals.contracts import CORPUS, EMBEDDINGS  # noqa: E402

SIGNALS = ("image_embedding", "text_embedding")
WARM_ITEMS = 64
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "latest.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.split("\n")[0])
    p.add_argument("--items", type=int, default=960, help="corpus size N for the image signal (default 960: a few minutes "
                   "of model time, so that per-job fixed costs weigh what they would in a real job's first minutes)")
    p.add_argument("--text-items", type=int, default=None, help="corpus size N for the text signal (default: --items)")
    p.add_argument("--scale", type=int, default=4, help="the larger corpus for the memory check is scale x N (default 4)")
    p.add_argument("--refresh-items", type=int, default=None, help="corpus of the backfill-vs-refresh run (default: --items; 0 skips it)")
    p.add_argument("--signals", default=",".join(SIGNALS), help="comma-separated signals to measure")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="configuration override for every arm, e.g. spark.arrow_batch_rows=256")
    p.add_argument("--raw-threads", type=int, default=os.cpu_count() or 1, help="torch threads of the raw loop (default: cores)")
    p.add_argument("--repeat", type=int, default=2, help="rounds of the three arms at N; the fastest of each is reported (default 2)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--workdir", type=Path, default=None, help="where corpora and outputs go (default: a temp folder, removed after)")
    p.add_argument("--gpu", choices=("auto", "on", "off"), default="auto",
                   help="also run benchmarks.gpu (open_clip ViT-B-32 from JPEG bytes on the GPU path): auto = where CUDA is available")
    p.add_argument("--uri", choices=("on", "off"), default="on",
                   help="also run benchmarks.uri (the same images inline, by URI on loopback HTTP and on S3; worker memory by URI)")
    p.add_argument("--hostile", choices=("on", "off"), default="on", help="also run benchmarks.hostile (hostile images through prepare)")
    p.add_argument("--compute-once", choices=("on", "off"), default="on",
                   help="also a backfill of a corpus with 30%% repins, compute once vs every item (--refresh-items of them)")
    p.add_argument("--index", choices=("on", "off"), default="on",
                   help="also run benchmarks.index (the approximate index of 100k synthetic vectors against exact search)")
    p.add_argument("--serving", choices=("on", "off"), default="on",
                   help="also run benchmarks.serving (the online scorer under 1, 8 and 32 clients, micro-batching against one item per pass)")
    p.add_argument("--video", choices=("on", "off"), default="on",
                   help="also run benchmarks.video (480p videos of 10 s, 60 s, 3 min and 10 min through the image signals: throughput, decode share, peak memory)")
    p.add_argument("--year", choices=("on", "off"), default="on",
                   help="also run benchmarks.year (a backfill and --year-days daily refreshes, maintain weekly and without)")
    p.add_argument("--scale-levels", default="1,4,16",
                   help="also the backfill, refresh and dedup at these multiples of --scale-base items, in one session ('' skips it)")
    p.add_argument("--scale-base", type=int, default=480, help="the 1x corpus of the scale step (default 480: the demo's)")
    p.add_argument("--scale-photos", default=None, metavar="DIR",
                   help="the scale step's corpora are cut from this folder's photos too (make bench: Tux Paint's stamps), "
                        "so that 16x holds as many distinct pictures per item as 1x (benchmarks/README.md, Scale)")
    p.add_argument("--year-days", type=int, default=365, help="days of benchmarks.year (default 365)")
    return p.parse_args(argv)


def _corpus_name(n: int, photos: str | None) -> str:
    """The name of the generated corpus of n items (cut from the folder `photos`' photos too)."""
    return f"{n}-with-photos" if photos else str(n)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.keep = args.workdir is not None
        self.work = Path(args.workdir or tempfile.mkdtemp(prefix="content-signals-bench-")).resolve()
        self.work.mkdir(parents=True, exist_ok=True)
        self.profile_dir = self.work / "stage-times"
        stages.enable(self.profile_dir)  # before any Spark session: the workers inherit it
        self.corpora: dict[str, dict[str, Any]] = {}
        self.log_lines: list[str] = []

    def log(self, message: str) -> None:
        line = f"[bench {time.strftime('%H:%M:%S')}] {message}"
        self.log_lines.append(line)
        print(line, flush=True)

    # ----------------------------------------------------------------------------- inputs

    def corpus(self, n: int, photos: str | None = None) -> Path:
        """A lakehouse holding only the generated corpus of n items (shared, read only), cut from
        the folder `photos`' photos too."""
        name = _corpus_name(n, photos)
        lakehouse = self.work / "corpora" / name
        if name not in self.corpora:
            start = time.perf_counter()
            held = write_corpus(lakehouse, n, self.args.seed, photos)
            self.corpora[name] = {**held, "written_s": round(time.perf_counter() - start, 1)}
            self.log(f"corpus {name} written in {self.corpora[name]['written_s']:.1f}s: {held}")
        return lakehouse

    def settings(self, lakehouse: Path, only: str | None, extra: Sequence[str] = ()) -> Any:
        """The local profile at `lakehouse` with exactly `only` enabled (None: the embedding
        signals this benchmark measures), every other signal of the profile switched off; the
        `extra` overrides after the command line's."""
        from conf.settings import load_settings

        wanted = {only} if only else set(SIGNALS)
        names = _profile_signal_names()
        toggles = [f"signals.{s}.enabled={'true' if s in wanted else 'false'}" for s in names]
        # one model registry for every run, made by the first warm-up: each timed run resolves
        # its model version like a production run does, none pays for creating a registry
        toggles.append(f"registry.tracking_uri=sqlite:///{self.work}/registry/mlflow.db")
        return load_settings("local", [f"lakehouse={lakehouse}", *toggles, *self.args.overrides, *extra])

    def lakehouse(self, n: int, name: str, photos: str | None = None) -> Path:
        return copy_lakehouse(self.corpus(n, photos), self.work / "runs" / name)

    def session(self, settings: Any) -> Any:
        from jobs.session import build_session

        start = time.perf_counter()
        spark = build_session(settings.spark)
        self.log(f"spark session up in {time.perf_counter() - start:.1f}s ({settings.spark.master})")
        return spark

    def warm_up(self, spark: Any, name: str, signal_name: str | None, refresh: bool = False, dedup: bool = False) -> float:
        """One small backfill (starts the Python workers, loads the model in them) and, with
        `refresh`, two small refreshes after it (the first compares the whole corpus, the second
        only the day added since: each plan's queries compiled once), with `dedup` a dedup run:
        excluded from every arm's time."""
        from jobs.dedup import run_dedup
        from jobs.refresh import run_refresh

        start = time.perf_counter()
        settings = self.settings(self.lakehouse(WARM_ITEMS, f"warm-{name}"), signal_name)
        arms.ours_arm(spark, settings, self.profile_dir, WARM_ITEMS, poll=False)
        for _ in range(2 if refresh else 0):
            add_new_items(settings.table_root("corpus"), 0.01)
            run_refresh(spark, settings)
        if dedup:
            run_dedup(spark, settings)
        took = time.perf_counter() - start
        self.log(f"warm-up {name}: {took:.1f}s (excluded)")
        return took

    def warm_up_pbu(self, spark: Any, name: str, settings: Any, udf: Any) -> float:
        """One small run of the predict_batch_udf (its predict function is made once per worker)."""
        start = time.perf_counter()
        warm = self.settings(self.corpus(WARM_ITEMS), name)
        arms.pbu_arm(spark, self.signal(settings, name), udf, warm.table_root("corpus"), self.work / "runs" / f"warm-{name}-pbu",
                     self.profile_dir)
        took = time.perf_counter() - start
        self.log(f"warm-up {name} predict_batch_udf: {took:.1f}s (excluded)")
        return took

    @staticmethod
    def signal(settings: Any, name: str | None) -> Any:
        from rollout.models import build_signals

        return build_signals(settings)[name]

    # ----------------------------------------------------------------------------- arms

    def bench_signal(self, name: str, n: int) -> dict[str, Any]:
        """raw, predict_batch_udf and ours at N (`--repeat` rounds, fastest kept), then ours at
        scale x N in a fresh session for the peak worker memory."""
        import pyarrow.parquet as pq

        from lake import delta_io

        scale_n = n * self.args.scale
        settings = self.settings(self.corpus(n), name)
        corpus_root = settings.table_root("corpus")
        signal = self.signal(settings, name)
        out: dict[str, Any] = {"items": n, "batch_size": signal.batch_size}
        rounds: dict[str, list[arms.ArmResult]] = {"raw": [], "predict_batch_udf": [], "ours": []}
        spark = self.session(settings)
        try:
            # ours first after a warm-up of its own: the same position as the scaled run below, so
            # the two peak-memory figures compare like with like
            out["warm_up_s"] = round(self.warm_up(spark, f"{name}-1x", name), 2)
            load = os.getloadavg()[0]
            for r in range(self.args.repeat):
                raw_path = self.work / "runs" / f"{name}-raw-{r}.parquet"
                ours_settings = self.settings(self.lakehouse(n, f"{name}-1x-{r}"), name)
                for arm in (["ours", "raw"] if r % 2 == 0 else ["raw", "ours"]):
                    if arm == "ours":  # memory polled in round 1 only: its sampling costs CPU the other arms do not pay
                        rounds["ours"].append(with_cpu(lambda: arms.ours_arm(spark, ours_settings, self.profile_dir, n, poll=r == 0)))
                    else:
                        rounds["raw"].append(with_cpu(lambda: arms.raw_loop(signal, corpus_root, raw_path, self.args.raw_threads)))
                self.log(f"{name} round {r + 1}/{self.args.repeat}: ours {rounds['ours'][-1].items_per_s:.1f}/s, "
                         f"raw {rounds['raw'][-1].items_per_s:.1f}/s")
        finally:
            spark.stop()
        # predict_batch_udf in a session of its own: Python workers that never ran our code (which
        # changes the worker's heap settings for good), so it is measured as Spark ships it
        spark = self.session(settings)
        try:
            udf = arms.make_pbu_udf(self.signal(settings, name), settings.torch_threads)
            out["warm_up_s"] += round(self.warm_up_pbu(spark, name, settings, udf), 2)
            for r in range(self.args.repeat):
                pbu_dir = self.work / "runs" / f"{name}-pbu-{r}"
                rounds["predict_batch_udf"].append(
                    with_cpu(lambda: arms.pbu_arm(spark, signal, udf, corpus_root, pbu_dir, self.profile_dir)))
                self.log(f"{name} round {r + 1}/{self.args.repeat}: predict_batch_udf {rounds['predict_batch_udf'][-1].items_per_s:.1f}/s")
            out["load_avg_1m"] = {"before": round(load, 2), "after": round(os.getloadavg()[0], 2)}
        finally:
            spark.stop()
        best = {arm: max(results, key=lambda a: a.items_per_s) for arm, results in rounds.items()}
        for arm, results in rounds.items():
            best[arm].extra["rounds_items_per_s"] = [round(a.items_per_s, 2) for a in results]
        raw = pq.read_table(str(self.work / "runs" / f"{name}-raw-0.parquet"))
        ours_rows = delta_io.read_arrow(str(self.work / "runs" / f"{name}-1x-0" / "embeddings")).select(["content_id", "vector"])
        out["checks"] = {"ours_vs_raw": arms.compare_vectors(raw, ours_rows),
                         "pbu_vs_raw": arms.compare_vectors(raw, pq.read_table(str(self.work / "runs" / f"{name}-pbu-0")))}
        out["arms"] = {arm: a.as_dict() for arm, a in best.items()}
        # the 1x memory figure comes from round 1 (ours right after the warm-up of a fresh session, like the scaled run)
        out["arms"]["ours"]["worker_rss"] = rounds["ours"][0].extra.get("worker_rss")

        big_settings = self.settings(self.lakehouse(scale_n, f"{name}-{self.args.scale}x"), name)
        spark = self.session(big_settings)
        try:
            self.warm_up(spark, f"{name}-{self.args.scale}x", name)
            ours_big = with_cpu(lambda: arms.ours_arm(spark, big_settings, self.profile_dir, scale_n))
            self.log(f"{name} ours x{self.args.scale}: {ours_big.items} items in {ours_big.wall_s:.1f}s = {ours_big.items_per_s:.1f}/s")
        finally:
            spark.stop()
        out["ours_scaled"] = ours_big.as_dict()
        return out

    def bench_refresh(self, m: int) -> dict[str, Any]:
        from jobs.backfill import run_backfill
        from jobs.corpus import Window

        lakehouse = self.lakehouse(m, "refresh")
        settings = self.settings(lakehouse, None)
        enabled = sorted(settings.enabled_signals)  # the two embedding signals
        spark = self.session(settings)
        try:
            self.warm_up(spark, "refresh", None, refresh=True)
            with CpuShare() as backfill_cpu:
                backfill = run_backfill(spark, settings, Window(), run_id="bench-refresh-backfill")
            backfill_s = backfill_cpu.wall
            self.log(f"refresh: full backfill of {m} items x {len(enabled)} signals in {backfill_s:.1f}s")
            # the first refresh after a backfill compares the whole corpus (no refresh recorded
            # which corpus version the tables match); the next day's compares only what changed
            first, first_cpu, first_work = self.refresh_new_day(spark, settings, enabled, "bench-refresh-first")
            refresh, refresh_cpu, refresh_work = self.refresh_new_day(spark, settings, enabled, "bench-refresh-1pct")
            monitor = self.monitor_backfill(spark, settings, backfill.run_id, backfill_s)
        finally:
            spark.stop()
        return {"backfill_s": round(backfill_s, 2), "refresh_1pct_s": round(refresh_cpu.wall, 2), "ratio": round(refresh_cpu.wall / backfill_s, 4),
                "monitor": monitor,
                "first_refresh_1pct_s": round(first_cpu.wall, 2), "first_ratio": round(first_cpu.wall / backfill_s, 4),
                "items": m, "new_items": refresh.outcomes[0].rows_in, "signals": enabled,
                "backfill_status": backfill.status, "refresh_message": refresh.message, "first_refresh_message": first.message,
                "cpu": {"backfill": backfill_cpu.as_dict(), "first_refresh": first_cpu.as_dict(), "refresh": refresh_cpu.as_dict()},
                "worker_stages": {"first_refresh": first_work, "refresh": refresh_work}}

    def monitor_backfill(self, spark: Any, settings: Any, run_id: str, backfill_s: float) -> dict[str, Any]:
        """`content-signals monitor` of the backfill (drift against the reference, the rules, the
        verdicts kept, then the dashboard page drawn and logged to MLflow, which its user waits for
        too), after the refresh step, plus what keeping its statistics added to the backfill: its
        seconds against the backfill's, issue #21's cost target."""
        from jobs.monitor import publish_dashboard, run_monitor

        kept = self.stats_cost(settings, run_id)
        with CpuShare() as cpu:
            result = run_monitor(spark, settings, run_id)
        with CpuShare() as publish:
            publish_dashboard(settings, result)
        cost = cpu.wall + publish.wall + kept["summarise_cpu_s"] + kept["keep_s"]
        self.log(f"monitor of the backfill {run_id}: {cpu.wall:.1f}s, {len(result.judged)} signal days judged, {len(result.fired)} alerts, "
                 f"its dashboard drawn and logged in {publish.wall:.1f}s; its statistics cost the backfill "
                 f"{kept['summarise_cpu_s']:.2f} CPU-s in the tasks and {kept['keep_s']:.2f}s to keep")
        return {"monitor_s": round(cpu.wall, 2), "publish_s": round(publish.wall, 2), "statistics_in_backfill": kept, "cost_s": round(cost, 2),
                "ratio": round(cost / backfill_s, 4), "judged": len(result.judged), "alerts": len(result.fired),
                "cpu": cpu.as_dict(), "publish_cpu": publish.as_dict()}

    def stats_cost(self, settings: Any, run_id: str) -> dict[str, float]:
        """What keeping a run's statistics added to it: its rows summarised (the writing tasks'
        work, done again here over the same rows in batches of the same size, CPU seconds on one
        core: at most the wall time it added) and the summaries merged and committed (the
        driver's seconds, keeping the same statistics again)."""
        import pyarrow.compute as pc
        from deltalake import DeltaTable

        from lake import delta_io
        from monitoring.file_summary import summarise_file
        from monitoring.stats import keep_run_stats
        from signals.contracts import EMBEDDINGS, LABELS

        summaries, summarise_cpu = [], 0.0
        for contract in (EMBEDDINGS, LABELS):
            root = settings.table_root(contract.name)
            if not DeltaTable.is_deltatable(root):
                continue
            rows = delta_io.read_arrow(root, filters=pc.field("run_id") == run_id)
            started = time.process_time()
            summary = summarise_file(iter(rows.to_batches(max_chunksize=settings.spark.arrow_batch_rows)), run_id,
                                     settings.monitor.sample_size, settings.monitor.seed)
            summarise_cpu += time.process_time() - started
            summaries += [summary] if summary else []
        started = time.perf_counter()
        keep_run_stats(settings.lakehouse_root, run_id, "backfill", summaries, settings.monitor.sample_size)
        return {"summarise_cpu_s": round(summarise_cpu, 3), "keep_s": round(time.perf_counter() - started, 3)}

    def bench_compute_once(self, m: int, fraction: float = 0.3) -> dict[str, Any]:
        """A backfill of both embedding signals on a corpus of `m` items, `fraction` of them repins
        (another item's image and text), with compute_once and computing every item: the two
        alternate over `--repeat` rounds in one session, each way warmed up first on a small corpus
        of repins (its plan compiled outside the timings) and the order swapped every round, the
        fastest of each kept, and their tables compared."""
        import pyarrow.compute as pc
        from deltalake import DeltaTable

        from jobs.backfill import run_backfill

        source = DeltaTable(str(self.corpus(m) / CORPUS.name)).to_pyarrow_table()
        repinned = self.work / "corpora" / f"{m}-repins"
        write_corpus_table(repinned, with_repins(source, fraction, self.args.seed))
        ways = {"once": "compute_once=true", "every": "compute_once=false"}
        seconds: dict[str, list[float]] = {way: [] for way in ways}
        spark = self.session(self.settings(repinned, None))
        try:
            self.warm_up(spark, "compute-once", None)
            warm = self.work / "corpora" / f"{WARM_ITEMS}-repins"
            write_corpus_table(warm, with_repins(DeltaTable(str(self.corpus(WARM_ITEMS) / CORPUS.name)).to_pyarrow_table(), fraction,
                                                 self.args.seed))
            for way, toggle in ways.items():  # each way's own plan compiled before any is timed
                run_backfill(spark, self.settings(copy_lakehouse(warm, self.work / "runs" / f"warm-compute-{way}"), None, [toggle]),
                             run_id=f"bench-warm-compute-{way}")
            for round_ in range(self.args.repeat):
                for way, toggle in list(ways.items())[:: 1 if round_ % 2 == 0 else -1]:  # neither way always runs first
                    settings = self.settings(copy_lakehouse(repinned, self.work / "runs" / f"compute-{way}"), None, [toggle])
                    with CpuShare() as cpu:
                        run_backfill(spark, settings, run_id=f"bench-compute-{way}-{round_}")
                    seconds[way].append(round(cpu.wall, 2))
                    self.log(f"compute once: backfill of {m} items ({fraction:.0%} repins), {way}: {cpu.wall:.1f}s")
        finally:
            spark.stop()
        tables = {way: DeltaTable(str(self.work / "runs" / f"compute-{way}" / "embeddings")).to_pyarrow_table() for way in ways}
        once = tables["once"]
        # every column but the run's own (run_id, computed_at); vectors null in the same rows, else within float noise
        same = arms.compare_tables(once, tables["every"], list(EMBEDDINGS.key), ignore=("run_id", "computed_at"))
        best = {way: min(s) for way, s in seconds.items()}
        return {"items": m, "repin_fraction": fraction, "distinct_images": len(pc.unique(once.filter(pc.equal(once["signal"], "image_embedding"))["input_hash"])),
                "backfill_s": best, "rounds_s": seconds, "time_saved": round(1 - best["once"] / best["every"], 4),
                "target_met": 1 - best["once"] / best["every"] >= TARGETS["compute_once_saving"],
                "identical_tables": same["identical"], "largest_vector_difference": same["largest_vector_difference"],
                "table_differences": {k: same[k] for k in ("rows", "differing_columns", "vector_nulls_differ")}}

    def bench_scale(self, base: int, levels: Sequence[int], photos: str | None) -> dict[str, Any]:
        """At each corpus size (`base` x level items), in one warmed-up session: the corpus
        generated (cut from the folder `photos`' photos too), a backfill of both embedding signals, the first refresh after it (1% new items;
        it compares the whole corpus) and the dedup job, each timed; and the pairs dedup compared
        (counted after its timed run)."""
        from jobs.backfill import run_backfill
        from jobs.corpus import CorpusSource
        from jobs.dedup import candidate_pairs, fingerprints, run_dedup

        rows: list[dict[str, Any]] = []
        spark = self.session(self.settings(self.corpus(WARM_ITEMS), None))
        try:
            self.warm_up(spark, "scale", None, refresh=True, dedup=True)
            for level in levels:
                n = base * level
                settings = self.settings(self.lakehouse(n, f"scale-{level}x", photos), None)
                enabled = sorted(settings.enabled_signals)
                with CpuShare() as backfill:
                    run_backfill(spark, settings, run_id=f"bench-scale-{level}x")
                _, refresh, _ = self.refresh_new_day(spark, settings, enabled, f"bench-scale-{level}x-refresh")
                with CpuShare() as dedup:
                    run_dedup(spark, settings, run_id=f"bench-scale-{level}x-dedup")
                pairs = candidate_pairs(fingerprints(spark, settings, CorpusSource.of(settings).read(spark)), settings.dedup).count()
                row = {"level": level, "items": n, "corpus_written_s": self.corpora[_corpus_name(n, photos)]["written_s"],
                       "backfill_s": round(backfill.wall, 2),
                       "refresh_1pct_s": round(refresh.wall, 2), "dedup_s": round(dedup.wall, 2), "dedup_pairs": pairs}
                rows.append(row)
                self.log(f"scale {level}x ({n} items): {row}")
        finally:
            spark.stop()
        return summarise_scale(rows, len(enabled), {"folder": photos, "photos": len(photo_pool(photos))})

    def refresh_new_day(self, spark: Any, settings: Any, enabled: list[str], run_id: str) -> tuple[Any, CpuShare, dict[str, Any]]:
        """Add a day of new items (1% of the corpus), refresh, check it computed exactly those;
        with what the Python workers did meanwhile (a model load shows there)."""
        from jobs.refresh import run_refresh

        added = add_new_items(settings.table_root("corpus"), 0.01)
        before = stages.snapshot(self.profile_dir)
        with CpuShare() as cpu:
            result = run_refresh(spark, settings, run_id=run_id)
        work = stages.difference(before, stages.snapshot(self.profile_dir))
        self.log(f"refresh {run_id}: {len(added)} new items refreshed in {cpu.wall:.1f}s ({result.message}); workers: {work}")
        computed = {o.signal: o.rows_in for o in result.outcomes}
        if computed != {s: len(added) for s in enabled}:
            raise RuntimeError(f"the refresh computed {computed}, expected {len(added)} rows per signal")
        return result, cpu, work

    # ----------------------------------------------------------------------------- run

    def run(self) -> dict[str, Any]:
        started = dt.datetime.now(dt.UTC)
        t0 = time.perf_counter()
        sizes = {"image_embedding": self.args.items, "text_embedding": self.args.text_items or self.args.items}
        wanted = [s.strip() for s in self.args.signals.split(",") if s.strip()]
        results: dict[str, Any] = {}
        for name in wanted:
            results[name] = self.bench_signal(name, sizes.get(name, self.args.items))
        refresh_items = self.args.refresh_items if self.args.refresh_items is not None else self.args.items
        refresh = self.bench_refresh(refresh_items) if refresh_items else None
        report = summarise(results, refresh)
        if self.args.compute_once == "on" and refresh_items:
            report["compute_once"] = self.bench_compute_once(refresh_items)
            self.log(compute_once_line(report["compute_once"]))
        if self.args.scale_levels:
            levels = [int(level) for level in self.args.scale_levels.split(",")]
            self.log(f"scale: corpora of {', '.join(f'{level}x' for level in levels)} {self.args.scale_base} items")
            report["scale"] = self.bench_scale(self.args.scale_base, levels, self.args.scale_photos)
            self.log(scale_line(report["scale"]))
        if self.args.gpu == "on" or (self.args.gpu == "auto" and _cuda_available()):
            report["gpu"] = self.bench_gpu()
        if self.args.uri == "on":
            report["uri"] = self.bench_uri()
        if self.args.hostile == "on":
            self.log("hostile images: python -m benchmarks.hostile (one process per class)")
            report["hostile"] = hostile.run()
            self.log(f"hostile images: {report['hostile']['summary']}")
        if self.args.index == "on":
            self.log("index: python -m benchmarks.index (100k synthetic vectors, approximate against exact)")
            report["index"] = index_bench.run(seed=self.args.seed, workdir=self.work)
            self.log(index_line(report["index"]))
        if self.args.serving == "on":
            self.log("serving: python -m benchmarks.serving (content-signals serve under 1, 8 and 32 clients on loopback)")
            report["serving"] = serving_bench.run(seed=self.args.seed, workdir=self.work, log=self.log)
            self.log(serving_bench.serving_line(report["serving"]))
        if self.args.video == "on":
            self.log("video: python -m benchmarks.video (one process per video length)")
            report["video"] = video_bench.run()
            self.log(f"video: {report['video']['targets_met']}")
        if self.args.year == "on":
            self.log(f"year: python -m benchmarks.year --days {self.args.year_days} (a process of its own)")
            report["year"] = self.child_report("benchmarks.year", ["--days", str(self.args.year_days), "--seed", str(self.args.seed)])
            self.log(year_line(report["year"]) if "error" not in report["year"] else f"year: {report['year']['error']}")
        report.update({
            "machine": machine(),
            "corpus": {"generator": "sample_corpus.generate.generate_corpus", "seed": self.args.seed,
                       "sizes": {str(k): v for k, v in sorted(self.corpora.items())},
                       "per_signal_items": {name: results[name]["items"] for name in results},
                       "scale": self.args.scale, "warm_up_items": WARM_ITEMS},
            "settings": self.settings_used(),
            "started_at": started.isoformat(timespec="seconds"),
            "duration_s": round(time.perf_counter() - t0, 1),
        })
        return report

    def child_report(self, module: str, args: list[str]) -> dict[str, Any]:
        """`python -m <module> <args> --out FILE` in a process of its own, FILE beside the report
        (`benchmarks/results/<module>.json` by default, as the module alone writes it); its JSON, or the error."""
        import subprocess

        out = self.args.out.parent / f"{module.rpartition('.')[2]}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.unlink(missing_ok=True)  # an earlier run's must not stand in for this one's
        done = subprocess.run([sys.executable, "-m", module, *args, "--out", str(out)], check=False)
        if not out.exists():
            return {"error": f"{module} exited with {done.returncode} and wrote nothing"}
        return json.loads(out.read_text())

    def bench_gpu(self) -> dict[str, Any]:
        """benchmarks.gpu in a process of its own: it sets torch's threads for its prepare
        threads, and its CUDA context should not outlive it. With 1, 2 and 4 workers sharing
        the device: one Python worker is held back by its interpreter lock, not the GPU."""
        self.log("GPU path: python -m benchmarks.gpu (open_clip ViT-B-32, random weights)")
        return self.child_report("benchmarks.gpu", ["--workers", "1,2,4"])

    def bench_uri(self) -> dict[str, Any]:
        """benchmarks.uri in a process of its own: its servers' credentials go into its environment,
        which Spark's workers inherit, and its sessions' JVM ends with it."""
        self.log("images by URI: python -m benchmarks.uri (inline vs loopback HTTP vs S3, then worker memory)")
        args = ["--items", str(self.args.items), "--scale", str(self.args.scale), "--seed", str(self.args.seed)]
        return self.child_report("benchmarks.uri", args + [f"--set={o}" for o in self.args.overrides])

    def settings_used(self) -> dict[str, Any]:
        s = self.settings(self.work / "unused", None)
        return {
            "profile": "local", "overrides": self.args.overrides,
            "spark_master": s.spark.master, "arrow_batch_rows": s.spark.arrow_batch_rows, "spark_conf": dict(s.spark.conf),
            "torch_threads_per_spark_task": s.torch_threads, "prefetch_batches": s.prefetch,
            "raw_loop_torch_threads": self.args.raw_threads, "raw_loop_processes": 1,
            "batch_size": {n: s.signals[n].batch_size for n in SIGNALS},
            "models": {n: f"{s.signals[n].kind} ({s.signals[n].model.name} @ {s.signals[n].model.version or getattr(s.signals[n].model, 'alias', '')})"
                       for n in SIGNALS},
            "warm_up": "each Spark session first runs a 64-item backfill (the refresh session then two refreshes, one of each "
                       "kind), and before predict_batch_udf's first timed run a 64-item run of it; excluded from all arms (the "
                       "'model loads' column shows loads that still fell inside an arm)",
            "ours": "jobs.backfill.run_backfill with only the measured signal enabled",
            "predict_batch_udf": "same signal object: prepare() per row + embed() per batch, NaN vector for unusable input, plain parquet",
            "peak_worker_rss": "max RSS of any one Spark Python worker, polled every 50 ms during ours; 1x and scale x in fresh sessions",
        }

    def close(self) -> None:
        if not self.keep:
            shutil.rmtree(self.work, ignore_errors=True)


def _profile_signal_names() -> list[str]:
    """Every signal the local profile defines, read from its YAML layers (not validated)."""
    import yaml

    from conf.settings import CONF_DIR

    names: list[str] = []
    for layer in ("base.yaml", "local.yaml"):
        path = CONF_DIR / layer
        data = yaml.safe_load(path.read_text()) if path.exists() else None
        names += [n for n in ((data or {}).get("signals") or {}) if n not in names]
    return names


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def with_cpu(run: Any) -> arms.ArmResult:
    """Run an arm, recording how much CPU this benchmark and everything else used meanwhile."""
    with CpuShare() as cpu:
        result = run()
    result.extra["cpu"] = cpu.as_dict()
    return result


def machine() -> dict[str, Any]:
    import psutil
    import pyspark
    import torch

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version(), "torch": torch.__version__, "pyspark": pyspark.__version__,
            "platform": platform.platform(), "load_avg_at_end": [round(x, 2) for x in os.getloadavg()]}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench = Bench(args)
    try:
        report = bench.run()
    finally:
        bench.close()
    write_json(args.out, report)
    print()
    print(format_table(report))
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
