"""A year of daily refreshes, simulated: what the Delta log, the data files and typical reads
become after a backfill and N daily refreshes, with `maintain` weekly and without it.

    python -m benchmarks.year [--days 365] [--items 480] [--upkeep both|on|off] [--out benchmarks/results/year.json]

One real backfill (image and text embeddings, the image quality labels) of a generated sample
corpus, copied into one lakehouse per arm. Then each day: the corpus takes one commit (a merge:
1% of it new items in a new day partition or changed items, and as many takedowns as new items by
default, so that the reads measure what the days did to the table, not a corpus that grew), and the signal
tables are brought in line with it. On most days that is done by the refresh's own commit path
with generated rows (`commit_day`): a new or changed item takes another item's image and text
(a repin), so its rows are copies of that item's committed rows with its own key, day and run,
as a refresh with compute once makes them; files holding rows of taken-down or changed items are
rewritten without them, in the same commit, recording the corpus version compared; the run is in
the ledger like a refresh. On day 1 and the days compared (below) a real `jobs.refresh.run_refresh` does
it, timed: a Spark refresh takes seconds even on a tiny corpus, too many for 365 a run on two
cores. The "with upkeep" arm runs `jobs.maintain.run_maintain` every `--upkeep-every` days.

A simulated day lasts seconds, so the retentions that count by the clock count simulated days
there: before a maintain, the tables' tombstone, log and app id retentions (`RETENTION_DAYS`) and
the vacuum's least retention are set to their days times the seconds the last week's days took,
and the version of day 1 is pinned, as a reader would, for the time travel (`set_retentions`,
`compressed`). The vacuum's deletions, in whole hours, still count real time: the simulation keeps
every data file (disk use is not measured).

Per day and table: commits since the last checkpoint, files in `_delta_log`, data files, rows and
the most files in one partition; per day the time of three reads of the embeddings with delta-rs
(the latest snapshot, one backfill day's rows, time travel to the version of day 1), each the
fastest of `READ_ROUNDS` on the `READS_COMPARED` days ending on day 30 and on the last day, whose
medians are compared: a whole upkeep cycle, so where a day falls in it (how many files and commits
since a checkpoint compaction left) does not decide. Real refreshes are timed on day 1 and the
`REFRESHES_COMPARED` days ending on day 30 and on the last day. Written as JSON
(`--out`) and a PNG of the series (`--plot`); `make bench` stores the report under "year" (`--year on`).
"""
from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
from deltalake import DeltaTable

from benchmarks.report import TARGETS, write_json, year_line
from conf.settings import Settings
from jobs.corpus import CorpusSource
from jobs.engine import CORPUS_MAPPING, CORPUS_VERSION, Run, RunResult, recorded, tracked
from jobs.maintain import run_maintain
from jobs.refresh import REFRESHED, refreshed_signature
from lake import delta_io, upkeep
from lake.ledger import SUCCEEDED
from rollout.models import build_signals
from signals.base import Signal
from signals.contracts import CORPUS, EMBEDDINGS, LABELS, RUNS, TableContract
from signals.table_rows import output_of

SIGNALS = ("image_embedding", "text_embedding", "image_quality")  # both tables, the cheapest labeler
TABLES = (EMBEDDINGS, LABELS, RUNS, CORPUS)
READ_ROUNDS = 5  # reads of the days compared: the fastest counts
REFRESHES_COMPARED = 3  # real refreshes, timed, ending on day 30 and on the last day: a median of these
READS_COMPARED = 7  # days of reads ending on day 30 and on the last day, a whole upkeep cycle: a median of these
CLOCK_DRIFT = 0.25  # the retentions are set again when a simulated day's seconds moved by more than this
TOMBSTONE_RETENTION = "delta.deletedFileRetentionDuration"  # delta-rs leaves older removals out of a checkpoint
RETENTION_DAYS = {TOMBSTONE_RETENTION: 7, upkeep.LOG_RETENTION: 30, upkeep.TXN_RETENTION: upkeep.APP_ID_RETENTION.days}  # a real year's: delta's defaults, ours
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "year.json"


@dataclass(frozen=True)
class DayChanges:
    """One day's corpus commit: new items, changed items and takedowns; each new or changed item
    holds the inputs of its source item (an item alive before the day)."""

    day: str
    new: dict[str, str]  # new id -> source id
    changed: dict[str, str]  # changed id -> source id
    takedowns: tuple[str, ...]
    days: dict[str, str]  # new or changed id -> its day partition
    corpus_version: int


def alive_items(settings: Settings, signals: dict[str, Signal]) -> list[str]:
    """Ids that a day may change, take down or copy: once in the corpus, with a row of every
    signal in its table (the corpus's bad rows and double-ingested ids are left alone)."""
    corpus_ids = delta_io.read_arrow(settings.table_root(CORPUS.name), columns=["content_id"])["content_id"]
    counts = pc.value_counts(corpus_ids.drop_null())
    alive = {v["values"] for v in counts.to_pylist() if v["counts"] == 1}
    for contract, names in _by_table(signals).items():
        rows = delta_io.read_arrow(settings.table_root(contract.name), columns=["content_id", "signal"]).to_pylist()
        having = defaultdict(set)
        for r in rows:
            having[r["content_id"]].add(r["signal"])
        alive &= {cid for cid, found in having.items() if found >= set(names)}
    return sorted(alive)


def _by_table(signals: dict[str, Signal]) -> dict[TableContract, list[str]]:
    grouped: dict[TableContract, list[str]] = defaultdict(list)
    for name, signal in signals.items():
        grouped[output_of(signal)].append(name)
    return dict(grouped)


def change_corpus(corpus_root: str, number: int, alive: list[str], rng: np.random.Generator, new: int, changed: int,
                  takedowns: int) -> DayChanges:
    """Day `number`'s corpus commit, one merge: `new` items in a new day partition and `changed`
    items, each taking the image, title and description of a random alive item, and `takedowns`
    items deleted. `alive` is updated."""
    corpus = DeltaTable(corpus_root)
    picked = rng.choice(len(alive), changed + takedowns, replace=False)
    changed_ids = [alive[i] for i in picked[:changed]]
    gone = tuple(alive[i] for i in picked[changed:])
    candidates = [a for a in alive if a not in gone and a not in changed_ids]
    day = (dt.date(2027, 1, 1) + dt.timedelta(days=number)).isoformat()
    new_ids = [f"year-{day}-{i:03d}" for i in range(new)]
    sources = {item: candidates[i] for item, i in zip([*new_ids, *changed_ids], rng.choice(len(candidates), new + changed))}
    wanted = sorted({*sources.values(), *changed_ids, *gone})
    table = corpus.to_pyarrow_table()  # filtered here: files a merge wrote hold string_view, which a pushed-down filter refuses
    current = {r["content_id"]: r for r in table.filter(pc.is_in(table["content_id"], pa.array(wanted, pa.string()))).to_pylist()}
    rows = [{**current[source], "content_id": item, "ds": day} for item, source in sources.items() if item in new_ids]
    rows += [{**current[item], **{k: current[sources[item]][k] for k in ("image", "title", "description")}} for item in changed_ids]
    rows += [{**current.get(item, {}), "content_id": item, "_takedown": True} for item in gone]
    schema = corpus.schema().to_arrow()
    source = pa.Table.from_pylist([{**r, "_takedown": r.get("_takedown", False)} for r in rows],
                                  schema=pa.schema([*pa.schema(schema), pa.field("_takedown", pa.bool_())]))
    columns = {name: f"s.{name}" for name in pa.schema(schema).names}
    (corpus.merge(source, "t.content_id = s.content_id", source_alias="s", target_alias="t")
     .when_matched_delete("s._takedown").when_matched_update(columns).when_not_matched_insert(columns).execute())
    alive[:] = sorted((set(alive) - set(gone)) | set(new_ids))
    days = {**{i: day for i in new_ids}, **{i: current[i]["ds"] for i in changed_ids}}
    return DayChanges(day, {i: sources[i] for i in new_ids}, {i: sources[i] for i in changed_ids}, gone, days,
                      DeltaTable(corpus_root).version())


def commit_day(settings: Settings, signals: dict[str, Signal], changes: DayChanges, run: Run) -> dict[str, int]:
    """Bring the signal tables in line with the day's corpus commit as the refresh's commit does
    (copies of the sources' rows for new and changed items; files holding their old rows or a
    takedown's rewritten without them; the corpus version and mapping compared recorded), one commit per table."""
    items = {**changes.new, **changes.changed}
    versions = {}
    for contract, names in _by_table(signals).items():
        root = settings.table_root(contract.name)
        table = delta_io.snapshot(root)
        rows = _rows_of_files(table, {*changes.takedowns, *changes.changed, *items.values()})
        holding = {path: t for path, t in rows.items() if pc.any(_stale(t, changes, names)).as_py()}
        kept = [t.filter(pc.invert(_stale(t, changes, names))) for t in holding.values()]
        copies = _copies(pa.concat_tables(rows.values()) if rows else None, items, changes.days, names, run)
        files = [f for new, prefix in ((copies, "copies"), (pa.concat_tables(kept) if kept else None, "kept")) if new is not None and new.num_rows
                 for f in delta_io.write_driver_rows(root, contract, new, f"part-{run.run_id}-{prefix}")]
        metadata = {"stale_items": str(sum(t.num_rows for t in holding.values()) - sum(t.num_rows for t in kept)),
                    "computed": str(dict.fromkeys(names, 0)), "reused": str(dict.fromkeys(names, len(items))),
                    REFRESHED: refreshed_signature({n: signals[n] for n in names}), CORPUS_VERSION: str(changes.corpus_version),
                    CORPUS_MAPPING: CorpusSource.of(settings).mapping_id()}
        versions[contract.name] = delta_io.commit_files(root, contract, files, run.app_id, {"job": run.job, "run_id": run.run_id, **metadata},
                                                        remove=lambda f, holding=holding: unquote(f.path) in holding, read_version=table.version())
    return versions


def _stale(rows: pa.Table, changes: DayChanges, names: Sequence[str]) -> pa.ChunkedArray:
    """Which rows the day makes stale: every row of a takedown, the rows of `names` of a changed item."""
    def among(column: str, values: Sequence[str]) -> pa.ChunkedArray:
        return pc.is_in(rows[column], pa.array(list(values), pa.string()))

    return pc.or_(among("content_id", changes.takedowns), pc.and_(among("content_id", list(changes.changed)), among("signal", names)))


def _copies(rows: pa.Table | None, items: dict[str, str], days: dict[str, str], names: Sequence[str], run: Run) -> pa.Table | None:
    """The rows of each new or changed item (`items`: item -> source): its source's rows of
    `names` among `rows`, with its own id, day (`days`), run and time."""
    if rows is None:
        return None
    by_source = defaultdict(list)
    for row in rows.filter(pc.is_in(rows["signal"], pa.array(list(names)))).to_pylist():
        by_source[row["content_id"]].append(row)
    return pa.Table.from_pylist([{**row, "content_id": item, "ds": days[item], "run_id": run.run_id, "computed_at": run.started}
                                 for item, source in items.items() for row in by_source[source]], schema=rows.schema)


def _rows_of_files(table: DeltaTable, ids: set[str]) -> dict[str, pa.Table]:
    """The rows of each file of the snapshot (by unescaped relative path) whose content_id
    statistics say it may hold one of `ids`: only those files are read."""
    actions = pa.table(table.get_add_actions(flatten=True)).to_pylist()
    paths = {unquote(a["path"]) for a in actions
             if a.get("min.content_id") is None or any(a["min.content_id"] <= i <= a["max.content_id"] for i in ids)}
    if not paths:
        return {}
    dataset = table.to_pyarrow_dataset()
    return {unquote(f.path): f.to_table(schema=dataset.schema) for f in dataset.get_fragments() if unquote(f.path) in paths}


def table_shape(root: str) -> dict[str, int]:
    """The log and the files of a table now: its version, commits since its last checkpoint (what a
    reader replays), files in `_delta_log`, data files, rows, and the most data files in one partition."""
    version = delta_io.snapshot(root).version()
    last = upkeep.last_checkpoint(root)
    filesystem, base = pafs.FileSystem.from_uri(root)
    log = filesystem.get_file_info(pafs.FileSelector(f"{base}/_delta_log"))
    partitions = defaultdict(int)
    live = delta_io.live_files(root, version)
    for f in live:
        partitions[tuple(sorted(f.partition_values.items()))] += 1
    return {"version": version, "commits_since_checkpoint": version - (-1 if last is None else last),
            "log_files": sum(1 for info in log if info.type == pafs.FileType.File), "data_files": len(live), "rows": sum(f.num_records for f in live),
            "most_files_in_a_partition": max(partitions.values(), default=0)}


def read_seconds(root: str, day: str, version: int, rounds: int) -> dict[str, float]:
    """Seconds of three typical reads of a table with delta-rs, each the fastest of `rounds`, the
    log opened anew each time: the latest snapshot, one day's partition, time travel to `version`."""
    reads = {"latest": lambda: delta_io.read_arrow(root), "one_day": lambda: delta_io.read_arrow(root, where=[("ds", "=", day)]),
             "time_travel": lambda: delta_io.read_arrow(root, version)}
    times = {}
    for name, read in reads.items():
        seconds = []
        for _ in range(rounds):
            start = time.perf_counter()
            read()
            seconds.append(time.perf_counter() - start)
        times[name] = round(min(seconds), 4)
    return times


Refresh = Callable[[Settings], float]  # a real refresh of the lakehouse; its seconds


def timed_refresh(spark: Any, settings: Settings, refresh: Callable[[Any, Settings], RunResult], log: Callable[[str], None] = print) -> float:
    """The seconds of `refresh` (jobs.refresh.run_refresh) of the lakehouse; an error unless it
    succeeded: every day commits new, changed and taken-down items, so a refresh that found nothing
    to do (or skipped) timed a run that refreshed nothing."""
    start = time.perf_counter()
    result = refresh(spark, settings)
    took = time.perf_counter() - start
    log(f"year: real refresh {took:.1f}s: {result.message}")
    if result.status != SUCCEEDED:
        raise RuntimeError(f"a real refresh of the year did not refresh the day's changes: {result.status} ({result.message})")
    return took


def simulate(settings: Settings, days: int, upkeep_every: int | None, changes_per_day: tuple[int, int, int], seed: int,
             refresh: Refresh | None = None, refresh_days: Sequence[int] = (), reads: bool = True,
             measured: Sequence[TableContract] = TABLES, log: Callable[[str], None] = print) -> dict[str, Any]:
    """`days` days of corpus commits, each brought into the tables by a simulated refresh commit
    (a real one on `refresh_days`), `maintain` every `upkeep_every` days (None: never); returns
    the days' changes and each day's shapes of the `measured` tables, refresh seconds and (with `reads`) read times:
    the fastest of READ_ROUNDS on the days whose reads are compared, one round on the others."""
    signals = build_signals(settings)
    signals = {n: s for n, s in signals.items() if n in settings.enabled_signals}
    alive, rng = alive_items(settings, signals), np.random.default_rng(seed)
    corpus_root, embeddings = settings.table_root(CORPUS.name), settings.table_root(EMBEDDINGS.name)
    read_day = min(delta_io.read_arrow(embeddings, columns=["ds"])["ds"].to_pylist())
    new, changed, takedowns = changes_per_day
    history, series, first_version, read_days = [], [], None, compared_days(days, READS_COMPARED)
    week_start, clock_day_s = time.perf_counter(), None
    for number in range(1, days + 1):
        changes = change_corpus(corpus_root, number, alive, rng, new, changed, takedowns)
        history.append(changes)
        day: dict[str, Any] = {"day": number}
        if number in refresh_days and refresh is not None:
            day["refresh_s"] = round(refresh(settings), 3)
        else:
            run = Run.begin("refresh")
            with recorded(settings, run, tracked(signals)) as finish:
                finish(RunResult(run.run_id, SUCCEEDED, commit_day(settings, signals, changes, run), message="simulated"))
        if first_version is None:
            first_version = delta_io.snapshot(embeddings).version()
        if upkeep_every and number % upkeep_every == 0:
            day_s = (time.perf_counter() - week_start) / upkeep_every
            if clock_day_s is None or abs(day_s / clock_day_s - 1) > CLOCK_DRIFT:
                clock_day_s = day_s
                set_retentions(settings, clock_day_s)
            start = time.perf_counter()
            run_maintain(compressed(settings, clock_day_s, first_version))
            day["maintain_s"] = round(time.perf_counter() - start, 3)
            week_start = time.perf_counter()
        day["tables"] = {c.name: table_shape(settings.table_root(c.name)) for c in measured if DeltaTable.is_deltatable(settings.table_root(c.name))}
        if reads:
            day["read_s"] = read_seconds(embeddings, read_day, first_version, READ_ROUNDS if number in read_days else 1)
        series.append(day)
        if number % 30 == 0:
            log(f"day {number}: {day.get('tables', {}).get(EMBEDDINGS.name, {})} reads {day.get('read_s')}")
    return {"changes": history, "series": series, "read_day": read_day, "day_1_version": first_version}


def set_retentions(settings: Settings, day_s: float) -> None:
    """Count the tables' clock-based retentions in simulated days of `day_s` seconds: a year lived
    in minutes would otherwise keep every removal and app id in its checkpoints, and every entry in
    its log, which a real year forgets after `RETENTION_DAYS` (one property commit per table)."""
    properties = {name: f"interval {max(1, round(days * day_s))} seconds" for name, days in RETENTION_DAYS.items()}
    for contract in TABLES:
        if DeltaTable.is_deltatable(root := settings.table_root(contract.name)):
            DeltaTable(root).alter.set_table_properties(properties)


def compressed(settings: Settings, day_s: float, day_1_version: int) -> Settings:
    """`settings` for a maintain of the simulated year: its vacuum keeps the versions current
    within the configured retention counted in simulated days of `day_s` seconds, and the version
    of day 1 (which the time travel reads), pinned as a reader would."""
    conf = settings.maintain
    maintain = conf.model_copy(update={"min_retention_hours": conf.min_retention_hours * day_s / 86_400,
                                       "keep_versions": {**conf.keep_versions, EMBEDDINGS.name: (day_1_version,)}})
    return settings.model_copy(update={"maintain": maintain})


def compared_days(days: int, width: int) -> list[int]:
    """Day 1, and the `width` days ending on day 30 and on the last day: those whose figures are compared."""
    return sorted({1, *[d - k for d in (30, days) for k in range(width) if 1 <= d - k <= days]})


def around(series: list[dict[str, Any]], last: int, key: Callable[[dict[str, Any]], float | None], width: int) -> float | None:
    """The median of `key` over the days `last - width + 1` to `last` that have it."""
    values = [v for d in series if last - width < d["day"] <= last and (v := key(d)) is not None]
    return round(statistics.median(values), 4) if values else None


def summarise_year(arms: dict[str, dict[str, Any]], days: int) -> dict[str, Any]:
    """Per arm: refresh seconds and read times near day 30 and near the last day (medians of the
    days compared), the log and files of the embeddings on the last day; the target on the arm with upkeep."""
    out: dict[str, Any] = {"days": days, "arms": {}}
    for arm, result in arms.items():
        series = result["series"]
        figures = {"refresh_s": (lambda d: d.get("refresh_s"), REFRESHES_COMPARED),
                   **{f"read_{r}_s": (lambda d, r=r: d["read_s"][r], READS_COMPARED) for r in ("latest", "one_day", "time_travel")}}
        at = {name: {"day_30": around(series, 30, key, width), f"day_{days}": around(series, days, key, width)}
              for name, (key, width) in figures.items()}
        ratios = {name: round(v[f"day_{days}"] / v["day_30"], 3) if v["day_30"] and v[f"day_{days}"] is not None else None
                  for name, v in at.items()}
        out["arms"][arm] = {"figures": at, f"day_{days}_over_day_30": ratios, "last_day_tables": series[-1]["tables"],
                            "maintain_s": [d["maintain_s"] for d in series if "maintain_s" in d]}
    if "upkeep" in out["arms"]:
        ratios = out["arms"]["upkeep"][f"day_{days}_over_day_30"]
        out["target_met"] = all(r is not None and r <= 1 + TARGETS["year_growth"] for r in ratios.values())
    return out


def plot(arms: dict[str, dict[str, Any]], path: Path) -> None:
    """A PNG of the per-day series of the embeddings table, both arms: refresh seconds, the log, files, reads."""
    from matplotlib.figure import Figure

    from rollout.html_report import figure_png

    panels = [("refresh s (real refreshes)", lambda d: d.get("refresh_s")),
              ("commits since checkpoint", lambda d: d["tables"][EMBEDDINGS.name]["commits_since_checkpoint"]),
              ("files in _delta_log", lambda d: d["tables"][EMBEDDINGS.name]["log_files"]),
              ("data files", lambda d: d["tables"][EMBEDDINGS.name]["data_files"]),
              ("most files in a partition", lambda d: d["tables"][EMBEDDINGS.name]["most_files_in_a_partition"]),
              ("read latest s", lambda d: d["read_s"]["latest"]), ("read one day s", lambda d: d["read_s"]["one_day"]),
              ("time travel to day 1 s", lambda d: d["read_s"]["time_travel"])]
    fig = Figure(figsize=(16, 7))
    for i, (title, key) in enumerate(panels):
        axis = fig.add_subplot(2, 4, i + 1)
        for arm, result in arms.items():
            points = [(d["day"], v) for d in result["series"] if (v := key(d)) is not None]
            if points:
                xs, ys = zip(*points)
                axis.plot(xs, ys, "o" if i == 0 else "-", label=arm, markersize=4, linewidth=1)
        axis.set_title(f"embeddings: {title}" if 0 < i < 5 else title, fontsize=9)
        axis.set_xlabel("day", fontsize=8)
        axis.legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(figure_png(fig))


def year_settings(lakehouse: Path, registry: Path, *overrides: str) -> Settings:
    """The local profile at `lakehouse` with only SIGNALS enabled, the registry shared by the arms."""
    from conf.settings import load_settings

    names = load_settings("local", [f"lakehouse={lakehouse}"]).signals
    toggles = [f"signals.{n}.enabled={'true' if n in SIGNALS else 'false'}" for n in names]
    return load_settings("local", [f"lakehouse={lakehouse}", *toggles, f"registry.tracking_uri=sqlite:///{registry}", *overrides])


def run(days: int = 365, items: int = 480, arms: Sequence[str] = ("upkeep", "none"), upkeep_every: int = 7, takedowns: int | None = None,
        seed: int = 7, workdir: Path | None = None, plot_path: Path | None = None, real_refreshes: bool = True,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """The year: one real backfill, then `days` days in each arm (with `maintain` every `upkeep_every`
    days, and without), real refreshes timed on `refresh_days` (unless `real_refreshes` is off:
    every day simulated, and no Spark at all when the backfill is reused); the report, and the plot at `plot_path`."""
    import os
    import sys

    from benchmarks.corpus import write_corpus
    from jobs.backfill import run_backfill
    from jobs.refresh import run_refresh
    from jobs.session import build_session

    for name, value in {"PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1",
                        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
        os.environ.setdefault(name, value)  # as benchmarks.bench sets them: Spark's workers run this interpreter
    work = Path(workdir or tempfile.mkdtemp(prefix="content-signals-year-")).resolve()
    try:
        base, registry = work / "backfilled", work / "registry" / "mlflow.db"
        registry.parent.mkdir(parents=True, exist_ok=True)
        settings = year_settings(base, registry)
        reused = DeltaTable.is_deltatable(settings.table_root(EMBEDDINGS.name))  # a kept --workdir's backfill
        spark = build_session(settings.spark) if real_refreshes or not reused else None
        try:
            start = time.perf_counter()
            if not reused:
                write_corpus(base, items, seed)
                run_backfill(spark, settings)
            backfill_s = None if reused else round(time.perf_counter() - start, 2)
            log(f"year: backfill of {items} items: {'reused from ' + str(base) if reused else f'{backfill_s}s'}")
            refresh_days = compared_days(days, REFRESHES_COMPARED)
            changing = max(1, round(items * 0.01))
            new = changing - changing // 2
            per_day = (new, changing // 2, new if takedowns is None else takedowns)  # new, changed, taken down

            def refresh(arm_settings: Settings) -> float:
                return timed_refresh(spark, arm_settings, run_refresh, log)

            results = {}
            for arm in arms:
                lakehouse = work / arm
                shutil.rmtree(lakehouse, ignore_errors=True)
                shutil.copytree(base, lakehouse)
                start = time.perf_counter()
                results[arm] = simulate(year_settings(lakehouse, registry), days, upkeep_every if arm == "upkeep" else None, per_day, seed,
                                        refresh if real_refreshes else None, refresh_days, log=lambda m, arm=arm: log(f"year {arm}: {m}"))
                log(f"year {arm}: {days} days in {time.perf_counter() - start:.0f}s")
        finally:
            if spark is not None:
                spark.stop()
        report = summarise_year(results, days)
        report.update({"items": items, "changes_per_day": dict(zip(("new", "changed", "takedowns"), per_day)), "upkeep_every": upkeep_every,
                       "signals": list(SIGNALS), "backfill_s": backfill_s, "refresh_days": refresh_days if real_refreshes else [],
                       "load_avg_at_end": [round(x, 2) for x in os.getloadavg()],
                       "series": {arm: r["series"] for arm, r in results.items()}})
        if plot_path is not None:
            plot(results, plot_path)
            report["plot"] = str(plot_path)
        return report
    finally:
        if workdir is None:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.year", description=__doc__.split("\n")[0])
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--items", type=int, default=480, help="corpus size (1%% of it new or changed each day)")
    p.add_argument("--upkeep", choices=("both", "on", "off"), default="both", help="the arms: maintain weekly, none, or both")
    p.add_argument("--upkeep-every", type=int, default=7, help="days between maintain runs in the arm with upkeep")
    p.add_argument("--takedowns", type=int, default=None,
                   help="items taken down each day (default: as many as are new, so the corpus keeps its size)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--workdir", type=Path, default=None,
                   help="kept lakehouses, its backfill reused by the next run (default: a temp folder, removed after)")
    p.add_argument("--real-refreshes", choices=("on", "off"), default="on",
                   help=f"real Spark refreshes on day 1 and the {REFRESHES_COMPARED} days ending on day 30 and on the last "
                        "(off: every day simulated, no refresh seconds)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--plot", type=Path, default=DEFAULT_OUT.with_suffix(".png"))
    args = p.parse_args(argv)
    arms = {"both": ("upkeep", "none"), "on": ("upkeep",), "off": ("none",)}[args.upkeep]
    report = run(args.days, args.items, arms, args.upkeep_every, args.takedowns, args.seed, args.workdir, args.plot, args.real_refreshes == "on")
    write_json(args.out, report)
    print(year_line(report))
    print(f"written to {args.out} and {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
