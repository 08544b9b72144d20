"""The refresh job: bring the signal tables (embeddings, labels, and keyframes for a corpus with
videos) in line with the corpus, computing only what changed since they were last brought in line.

    content-signals refresh

For every enabled signal, at its model version, the corpus is compared with the stored rows
by (content_id, input_hash, ds):
- a corpus item with no stored row of the same input hash in its day's partition is computed (new,
  its input changed, or it was ingested again on another day), or with compute once given a copy
  of an ok committed row of its input at the signal's version (an item ingested again, its own
  row); never a head's row, whose input is the item's own stored embedding row, which items of
  one input hash need not share (`udfs.rows.computes_once`): a head computes every such item;
- a stored row with no corpus item of the same hash and day is stale (the old row of a changed or
  moved item). An item still in the corpus whose newest row is in a file this refresh does not
  read (ingested twice, only its older row changed) is left as it is.
Stored rows of items that left the corpus are stale for EVERY signal and version in the table,
enabled or not: takedowns disappear from everything consumers read. Files holding stale rows
are rewritten without them (copy on write) in the same commit that adds the new rows, so
readers see either the old table or the new one. Nothing to do means no commit at all. The
keyframes table is refreshed the same way, its items being the corpus items that carry a video: a
new or changed video gets its keyframe rows, a taken-down or changed one loses its old ones, and
a corpus that maps no `video` column has no video item: an existing keyframes table is emptied.

Only the corpus rows that can have changed are compared. Each refresh commit records the corpus
version it brought the table in line with, for which signals at which versions; the next refresh
of the same signals compares only the rows of corpus files added or removed since that version
(Delta rewrites a file to change a row), and the stored rows of those items: a daily refresh
reads the day's new files, not the whole corpus's images. When those files are few, the
comparison is made on the driver from their key columns (`jobs.driver_plan`): the same plan
without the Spark comparison's jobs. It compares the whole corpus when
there is no such commit (a first refresh, after a backfill, after a signal or model version
changed), when that version's files were vacuumed, or with `--full` (after a table was edited by hand).

A stored error row whose reason may pass on another try (`signals.contracts.is_retried_error`: a
fetch that timed out or met a server error, the model failing on a batch) is not a valid row:
the next refresh, incremental or not, computes its item again, as if its input had changed (an
item of several rows, labels or keyframes, when any of them is one). Other errors (a corrupt image, a URI not found or not allowed) stay until their input changes.

Resume needs no bookkeeping: the comparison is against what is committed, so a run killed
before its commit is simply redone by the next one, and one killed after it finds nothing left.
A retry with the run id (`--run-id`) of a run killed between its tables' commits computes only
the tables the run has not committed to (a table's commit is made once per run id: work for
another could not be committed), from the corpus version the run read; what changed in the
corpus since is the next refresh's.
"""
from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import islice
from urllib.parse import unquote

import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from conf.settings import Settings
from jobs import driver_plan
from jobs.copy_on_write import KEY, ROW, Rewrite, no_rewrite, rewrite_dropping, rewrite_on_driver
from jobs.corpus import CorpusCheck, CorpusSource, broadcast_if_small, check_rows, newest_of_ids, newest_of_rows, one_row_per_id
from jobs.engine import (
    CORPUS_MAPPING,
    CORPUS_VERSION,
    Committed,
    Run,
    RunResult,
    already_committed,
    by_output,
    keep_stats,
    placements,
    recorded,
    run_outcomes,
    signal_rows,
    tracked,
    unknown_versions_said,
    write_and_commit,
)
from jobs.videos import image_signals, keyframe_rows
from lake import delta_io, spark_io
from lake.corpus import valid_utf8
from lake.ledger import NOTHING_TO_DO, SUCCEEDED
from lake.upkeep import is_compaction
from monitoring.monitor import stats_of_run
from rollout.models import build_signals
from signals.base import Signal
from signals.contracts import (
    EMBEDDINGS,
    KEYFRAMES,
    LABELS,
    RETRIED_ERROR_PREFIXES,
    STATUS_ERROR,
    STATUS_OK,
    UTC_MICROS,
    TableContract,
    keeps_rows,
)
from signals.hashing import TEXT_FIELD_SEPARATOR
from signals.labels.base import Labeler
from udfs.columns import input_hash_column
from udfs.resources import Placement
from udfs.rows import computes_once

JOB = "refresh"
REFRESHED = "refreshed"  # commit metadata: the refresh brought the table in line with its CORPUS_VERSION for these signals
READ_VERSION = "read_version"  # commit metadata: the table version the refresh compared the corpus with
CorpusAt = tuple[CorpusSource, int | None]  # the corpus and the Delta version a refresh reads (None: not Delta)
HISTORY_SEARCH = 50  # commits of a table searched for its last refresh


@dataclass(frozen=True)
class Checked:
    """What a run's plans read of the corpus rows they compare, for its tables that compare the same
    rows: the Spark plans' corpus checks by the files read (None: all of them) and the corpus's
    newest row per id by its version, cached once (Spark warns of each persist of a plan it holds
    already); the driver plans' changed rows by the files and the removed ids."""

    spark: dict[frozenset[str] | None, CorpusCheck] = field(default_factory=dict)
    newest: dict[int | None, DataFrame] = field(default_factory=dict)
    driver: dict[tuple[frozenset[str], frozenset[str]], driver_plan.ChangedCorpus] = field(default_factory=dict)


@dataclass(frozen=True)
class Scope:
    """The corpus rows a plan compares with a table: all of them (`since` None, and `why`), or
    the rows of the files added since corpus version `since` and of those removed since, each
    removed file read at a version (`removed`: (version, file)) where it was live."""

    since: int | None
    why: str = ""
    added: tuple[delta_io.LiveFile, ...] = ()
    removed: tuple[tuple[int, delta_io.LiveFile], ...] = ()

    @property
    def items(self) -> int:
        """Corpus rows in the changed files (an upper bound on the items to compare)."""
        return sum(f.num_records for f in (*self.added, *(f for _, f in self.removed)))

    def describe(self) -> str:
        if self.since is None:
            return f"whole corpus ({self.why})"
        return f"{len(self.added)} corpus files added and {len(self.removed)} removed since version {self.since}"


def refreshed_signature(signals: dict[str, Signal]) -> str:
    """The signals a refresh brings in line, at their model versions, as its commit records them."""
    return ",".join(sorted(f"{name}@{s.config.model.version}" for name, s in signals.items()))


@dataclass(frozen=True)
class LastRefresh:
    """What a table's latest refresh commit brought it in line with (a corpus version, for these
    signals), and the corpus version each commit that changed rows since the refresh read the
    table had read (None: it recorded none). A backfill that read the corpus before a takedown the
    refresh saw commits the taken-down items' rows after that read: the next refresh must compare
    from that version too."""

    corpus_version: int
    signature: str
    read_since: tuple[int | None, ...] = ()
    mappings: frozenset[str | None] = frozenset()  # the corpus (CorpusTable.mapping_id) the refresh and each later commit read

    @property
    def corpus_versions(self) -> set[int]:
        """The corpus versions the next incremental refresh compares from (all of them must stay readable)."""
        return {self.corpus_version, *(v for v in self.read_since if v is not None)}


def last_refresh(root: str) -> LastRefresh | None:
    """The table's latest refresh and the commits since it, from its last `HISTORY_SEARCH` commits:
    since it read the table, so a commit that landed between its read and its commit (to other
    partitions, which do not conflict) counts too, as its rows were not compared."""
    history = list(islice(delta_io.newest_commits(root), HISTORY_SEARCH))
    for at, entry in enumerate(history):
        if entry.get("job") != JOB:
            continue
        if CORPUS_VERSION not in entry:
            return None
        read = int(entry.get(READ_VERSION, entry["version"]))
        since = [e for e in [*history[:at], *(e for e in history[at + 1:] if int(e["version"]) > read)]
                 if not is_compaction(e) and not keeps_rows(e)]
        return LastRefresh(int(entry[CORPUS_VERSION]), entry.get(REFRESHED, ""),
                           tuple(int(e[CORPUS_VERSION]) if CORPUS_VERSION in e else None for e in since),
                           frozenset({entry.get(CORPUS_MAPPING), *(e.get(CORPUS_MAPPING) for e in since)}))
    return None


def plan_scope(table_root: str, signals: dict[str, Signal], corpus: CorpusAt, full: bool = False) -> Scope:
    """What the table's plan must compare: the corpus changes since its last refresh of the same
    signals (and since the corpus version each later commit read), or the whole corpus when those
    changes cannot be known for certain."""
    if full:
        return Scope(None, "--full")
    last = last_refresh(table_root) if DeltaTable.is_deltatable(table_root) else None
    if last is None:
        return Scope(None, f"no refresh recorded a corpus version in the table's last {HISTORY_SEARCH} commits")
    if last.signature != refreshed_signature(signals):
        return Scope(None, f"the last refresh was of {last.signature or 'no signals'}")
    if None in last.read_since:
        return Scope(None, "a commit since the last refresh recorded no corpus version")
    source, version = corpus
    if version is None:
        return Scope(None, f"the corpus is {source.settings.format}, not Delta: it has no versions to compare")
    if last.mappings != {source.mapping_id()}:  # another table, filter or column mapping: its changed files say nothing
        return Scope(None, "the corpus's location, filter or column mapping is not the one read since the last refresh")
    root = source.location
    if max(last.corpus_versions) > version:
        return Scope(None, f"the corpus is at version {version}, before version {max(last.corpus_versions)} the table's commits read")
    added: dict[str, delta_io.LiveFile] = {}
    removed: dict[str, tuple[int, delta_io.LiveFile]] = {}
    for since in sorted(last.corpus_versions):
        try:
            now, gone = delta_io.changed_files(root, since, version)
        except DeltaError:
            return Scope(None, f"corpus version {since} can no longer be read")
        if not delta_io.all_exist(root, gone):
            return Scope(None, f"files of corpus version {since} were vacuumed")
        added.update((f.path, f) for f in now)
        removed.update((f.path, (since, f)) for f in gone if f.path not in removed)
    return Scope(min(last.corpus_versions), added=tuple(added.values()), removed=tuple(removed.values()))


TODO_SIGNALS = "_todo_signals"  # apply_plan's column of a corpus item to compute: the signals that compute it
REUSE_COLUMNS = ("signal", "content_id", "ds", "input_hash", "source_id")  # an item, and the item whose committed row of the same input it copies
TODO_SCHEMA = f"content_id string, {TODO_SIGNALS} array<string>"


@dataclass(frozen=True)
class Plan:
    """What a refresh will do to one table, decided by two small Spark actions (none when the
    corpus has not changed since the table's last refresh, or when a small day's changes are
    compared on the driver: `jobs.driver_plan`; another counts the items of files holding stale rows).

    The keys it found (items to compute, stale rows) and the corpus's newest row per id stay
    cached, so applying the plan never hashes the corpus or aggregates its keys again; `release`
    frees them."""

    contract: TableContract
    signals: dict[str, Signal]
    scope: Scope
    read_version: int
    todo: dict[str, int]  # signal -> items to compute
    todo_days: tuple[str, ...]  # corpus days (ds) holding those items
    rewrite: Rewrite  # the files holding stale items, to write again without them
    todo_items: DataFrame  # content_id and TODO_SIGNALS (the signals that compute it) of every item to compute
    cached: tuple[DataFrame, ...]
    corpus_check: CorpusCheck | None = None  # what the corpus rule skipped among the rows compared
    reused: dict[str, int] = field(default_factory=dict)  # signal -> items given a copy of a committed row of their input
    reused_items: DataFrame | None = None  # REUSE_COLUMNS of every such item
    reused_files: frozenset[str] = frozenset()  # unescaped relative paths of the files holding the rows copied
    newest: DataFrame | None = None  # jobs.corpus.newest_of_ids of the corpus compared, cached (None: nothing was compared)
    todo_files: frozenset[str] | None = None  # the corpus files (unescaped relative paths) holding the items to compute (None: their days')
    repeated_ids: int | None = None  # ids with several keyable rows among those files' rows of its days (None: not known)

    @property
    def empty(self) -> bool:
        return not any(self.todo.values()) and not any(self.reused.values()) and not self.rewrite.files

    def release(self) -> None:
        for frame in self.cached:
            frame.unpersist()


def _hash_column(signal: Signal) -> str:
    """The name of the corpus's input-hash column for a signal: signals with the same inputs share one."""
    return "hash_" + "_".join(signal.input_columns)


def plan_refresh(spark: SparkSession, settings: Settings, contract: TableContract, signals: dict[str, Signal],
                 corpus: CorpusAt, scope: Scope, videos_only: bool = False, checked: Checked | None = None) -> Plan:
    """Compare the corpus (source, version) within `scope` with the committed rows of one table,
    in two joins whatever the number of signals: each stored row against its corpus item (stale:
    the item is gone, or its input hash changed), then each (item, enabled signal) against the
    rows still valid (todo). With `videos_only` (the keyframes table) only items that carry a
    video count as in the corpus. `checked` holds what the run's other tables' plans read of the
    corpus: a table comparing the same corpus rows reuses it (the same Spark action or reads again)."""
    root = settings.table_root(contract.name)
    read_version = delta_io.ensure_table(root, contract).version()
    hashes = {_hash_column(s): input_hash_column(s, video=True) for s in signals.values()}  # corpus rows have `video` (lake.corpus.CANONICAL)
    source, corpus_version = corpus
    checks = Checked() if checked is None else checked
    retry = driver_plan.retried_ids(root, read_version, {n: s.config.model.version for n, s in signals.items()}) if scope.since is not None else set()
    if scope.since is not None and not scope.added and not scope.removed and not retry:
        return _nothing_changed(spark, root, contract, signals, scope, read_version)
    if scope.since is not None and driver_plan.compares_on_driver(source, [*scope.added, *(f for _, f in scope.removed)]):
        return _plan_on_driver(spark, settings, contract, signals, corpus, scope, read_version, retry, videos_only, hashes, checks)
    changed = None if scope.since is None else {unquote(f.path) for f in scope.added}
    if retry:
        changed |= _files_holding(spark, corpus, spark.createDataFrame([(i,) for i in sorted(retry)], "content_id string"), len(retry))
    # the ids of the rows in removed files, each read at a version where its file was live
    removed = [source.read(spark, version, only={unquote(f.path) for v, f in scope.removed if v == version}).select("content_id")
               for version in sorted({v for v, _ in scope.removed})]
    if removed and changed is not None:  # every row of those ids is compared: an id whose newest row was removed has another one now
        changed |= _files_holding(spark, corpus, functools.reduce(DataFrame.unionByName, removed).distinct(), scope.items)
    if corpus_version not in checks.newest:  # the corpus check, the plans and their writes read it
        checks.newest[corpus_version] = newest_of_ids(source.keys(spark, corpus_version)).persist()
    newest = checks.newest[corpus_version]
    rows = source.read(spark, corpus_version, only=changed)
    compared = None if changed is None else frozenset(changed)
    if compared not in checks.spark:
        checks.spark[compared] = check_rows(rows, newest)
    corpus_check = checks.spark[compared]
    items = one_row_per_id(rows, newest, corpus_check.repeated_ids)
    with_video = items.filter(F.col("video").isNotNull()) if videos_only else items
    current = with_video.select("content_id", "ds", *[expr.alias(name) for name, expr in hashes.items()]).persist()
    table = spark_io.read_spark(spark, root, read_version, file_column="file")  # one read of the snapshot, for both joins
    stored = table.select(*KEY, F.col("ds").alias("stored_ds"), "input_hash", _retried_error().alias("retry"), "file")
    if scope.since is not None:  # only the stored rows of items in changed files can be stale or missing
        # (keyframes: of every such item, one whose newer row carries no video included, though it is not in `current`)
        compared_ids = (items if videos_only else current).select("content_id")
        candidates = functools.reduce(DataFrame.unionByName, removed, compared_ids)
        stored = stored.join(broadcast_if_small(candidates, scope.items), "content_id", "left_semi")
    if tuple(KEY) != contract.key:  # a labelled item has a row per label, a video a row per keyframe (and label): one per item here,
        # retried when any of its rows is (a keyframe the model failed on: the others in line kept the item and computed nothing)
        stored = stored.withColumn("retry", F.max("retry").over(Window.partitionBy(*KEY))).distinct()
    current_hash, enabled = F.lit(None).cast("string"), F.lit(False)
    for name, signal in signals.items():
        mine = (F.col("signal") == name) & (F.col("model_version") == signal.config.model.version)
        current_hash, enabled = F.when(mine, F.col(_hash_column(signal))).otherwise(current_hash), enabled | mine
    # in line: the same input (a retried error is as good as a changed input), in its corpus row's day partition (an item
    # ingested again on another day moves there: left in the old one, a backfill of either day would duplicate or drop it)
    in_line = F.col("input_hash").eqNullSafe(current_hash) & ~F.col("retry") & (F.col("stored_ds") == F.col("ds"))
    compared = F.col("compared").isNotNull()
    judged = stored.join(current.select("content_id", "ds", *hashes, F.lit(True).alias("compared")), "content_id", "left")
    in_corpus = compared  # the whole corpus was compared, or (keyframes) only its items with a video count
    if scope.since is not None and not videos_only:
        # an item still in the corpus whose newest row is in a file this refresh does not read is left as it is
        # (double-ingested, only its older row changed): its rows were in line with that row at the last refresh
        judged = judged.join(newest.select("content_id", F.lit(True).alias("in_corpus")), "content_id", "left")
        in_corpus = F.col("in_corpus").isNotNull()
    annotated = judged.select(
        *KEY, F.col("stored_ds").alias("ds"), "file", (~in_corpus | (compared & enabled & ~in_line)).alias("stale"),
        (compared & enabled & in_line).alias("valid"),
    ).persist()
    wanted = [current.select("content_id", "ds", F.col(_hash_column(s)).alias("input_hash"), F.lit(name).alias("signal"))
              for name, s in signals.items()]
    missing = (
        functools.reduce(DataFrame.unionByName, wanted).join(annotated.filter("valid").select("content_id", "signal"), ["content_id", "signal"], "left_anti")
        if wanted else spark.createDataFrame([], "content_id string, ds string, input_hash string, signal string")
    )
    shared = [name for name, s in signals.items() if computes_once(s, settings.compute_once)]  # never a head's (as in a run)
    if shared:  # an item whose input has a committed row at the signal's version gets a copy of it
        missing = missing.join(_committed_inputs(table, enabled & F.col("signal").isin(shared)), ["signal", "input_hash"], "left")
    else:
        missing = missing.select("*", F.lit(None).cast("string").alias("source_id"), F.lit(None).cast("array<string>").alias("source_files"))
    todo_items = missing.persist()
    # two actions, in this order: the first fills the caches of `current` and `annotated`, the
    # second reads them (in one action, each branch would scan the corpus and the table again)
    rewrite = rewrite_dropping(spark, root, read_version, annotated.filter("stale").select(*ROW, "file"))
    todo_by_day = todo_items.groupBy("signal", "ds", "source_files").count().collect()
    computed = [(r["signal"], r["ds"], r["count"]) for r in todo_by_day if r["source_files"] is None]
    return Plan(
        contract, signals, scope, read_version,
        todo={name: sum(n for signal, _, n in computed if signal == name) for name in signals},
        todo_days=tuple(sorted({day for _, day, _ in computed})),
        rewrite=rewrite,
        todo_items=todo_items.filter(F.col("source_files").isNull()).groupBy("content_id").agg(F.collect_set("signal").alias(TODO_SIGNALS)),
        cached=(newest, current, annotated, todo_items),
        corpus_check=corpus_check,
        reused={name: sum(r["count"] for r in todo_by_day if r["signal"] == name and r["source_files"] is not None) for name in signals},
        reused_items=todo_items.filter(F.col("source_files").isNotNull()).select(*REUSE_COLUMNS),
        reused_files=frozenset(delta_io.relative_path(root, f) for r in todo_by_day if r["source_files"] is not None for f in r["source_files"]),
        newest=newest,
    )


def _committed_inputs(table: DataFrame, enabled: Column) -> DataFrame:
    """One committed item per (signal, input hash) of the rows `enabled` selects (the signals
    that compute once, at their model versions: never a head, whose input is the item's own
    stored embedding row, which items of one input hash need not share), every row of it ok: an
    error row can be of its run's configuration or moment rather than of the input (an image
    over that run's decode limits, a URI not allowed or not found then, a video's keyframe the
    model failed on), and an input in error costs a fetch or a decode to compute again, not the
    model: (signal, input_hash, source_id, source_files), the item and every file
    holding its rows (a compaction may have split an item's label rows across files), of the
    table's rows with their files in `file`. Only its key columns are read (its vectors and scores
    are not)."""
    rows = table.filter(enabled & F.col("input_hash").isNotNull())
    items = rows.groupBy("signal", "input_hash", F.col("content_id").alias("source_id")).agg(
        F.max(F.col("status") != STATUS_OK).alias("failed"), F.array_sort(F.collect_set("file")).alias("source_files"))
    first = F.min(F.struct("source_id", "source_files"))
    return items.filter(~F.col("failed")).groupBy("signal", "input_hash").agg(first.alias("source")).select(
        "signal", "input_hash", "source.source_id", "source.source_files")


def _retried_error() -> Column:
    """Whether a stored row is an error that the next refresh computes again (signals.contracts.is_retried_error):
    never null, so an error row without a reason (a table written by hand) is judged like any other."""
    retried = (F.col("status") == STATUS_ERROR) & functools.reduce(Column.__or__, [F.col("error").startswith(p) for p in RETRIED_ERROR_PREFIXES])
    return F.coalesce(retried, F.lit(False))


def _files_holding(spark: SparkSession, corpus: CorpusAt, ids: DataFrame, count: int) -> set[str]:
    """Corpus files (unescaped relative paths) holding a row of one of `ids` (about `count`), by a
    scan of the corpus's ids and file names (no image is read)."""
    source, corpus_version = corpus
    files = source.read(spark, corpus_version, file_column="file").select("content_id", "file").join(
        broadcast_if_small(ids, count), "content_id", "left_semi")
    return {delta_io.relative_path(source.location, r.file) for r in files.select("file").distinct().collect()}


def _plan_on_driver(spark: SparkSession, settings: Settings, contract: TableContract, signals: dict[str, Signal], corpus: CorpusAt,
                    scope: Scope, read_version: int, retry: set[str], videos_only: bool, hashes: dict[str, Column],
                    checks: Checked) -> Plan:
    """`plan_refresh`'s plan of a small incremental scope, compared on the driver (jobs/driver_plan.py):
    the same plan without a Spark job; `retry`: the ids of the table's retried errors."""
    root = settings.table_root(contract.name)
    source, corpus_version = corpus
    removed: set[str] = set()
    for version in sorted({v for v, _ in scope.removed}):
        ids = source.rows(["content_id"], version, files=[f for v, f in scope.removed if v == version])["content_id"]
        removed |= set(ids.filter(valid_utf8(ids)).to_pylist())
    changed = {unquote(f.path) for f in scope.added} | (source.files_holding(retry | removed, corpus_version) if retry or removed else set())
    read = (frozenset(changed), frozenset(removed))
    if read not in checks.driver:
        checks.driver[read] = driver_plan.read_changed(source, corpus_version, changed, removed)
    found = driver_plan.compare(
        spark, root, read_version, {name: (s.config.model.version, _hash_column(s)) for name, s in signals.items()}, hashes,
        checks.driver[read], removed, [name for name, s in signals.items() if computes_once(s, settings.compute_once)], videos_only)
    computed = [t for t in found.todo if t.source_id is None]
    reused = [t for t in found.todo if t.source_id is not None]
    signals_of = defaultdict(list)
    for t in computed:
        signals_of[t.content_id].append(t.signal)
    recent = pa.table({"content_id": pa.array(list(found.newest), pa.string()), "ds": pa.array([ds for _, _, ds in found.newest.values()], pa.string()),
                       "updated_at": pa.array([at if dated else None for dated, at, _ in found.newest.values()], UTC_MICROS)})
    return Plan(
        contract, signals, scope, read_version,
        todo={name: sum(1 for t in computed if t.signal == name) for name in signals},
        todo_days=tuple(sorted({t.ds for t in computed})),
        rewrite=rewrite_on_driver(spark, root, read_version, found.stale),
        todo_items=spark.createDataFrame(sorted(signals_of.items()), TODO_SCHEMA),
        cached=(),
        corpus_check=found.check,
        reused={name: sum(1 for t in reused if t.signal == name) for name in signals},
        reused_items=spark.createDataFrame([tuple(getattr(t, c) for c in REUSE_COLUMNS) for t in reused],
                                           ", ".join(f"{c} string" for c in REUSE_COLUMNS)) if reused else None,
        reused_files=frozenset(f for t in reused for f in t.source_files or ()),
        newest=newest_of_rows(spark.createDataFrame(recent)),
        todo_files=frozenset(changed),
        repeated_ids=found.repeated_ids,
    )


def _nothing_changed(spark: SparkSession, root: str, contract: TableContract, signals: dict[str, Signal], scope: Scope, read_version: int) -> Plan:
    """The empty plan of a table whose corpus has not changed since its last refresh: no Spark job."""
    return Plan(
        contract, signals, scope, read_version, todo=dict.fromkeys(signals, 0), todo_days=(),
        rewrite=no_rewrite(spark, root, read_version),
        todo_items=spark.createDataFrame([], TODO_SCHEMA), cached=(),
    )


def apply_plan(spark: SparkSession, settings: Settings, run: Run, plan: Plan, corpus: CorpusAt,
               placed: dict[str, Placement]) -> Committed:
    """Compute the plan's items (reading only the days of the corpus (source, version) that hold
    them) where `placed` says, rewrite the files holding stale items without them, one commit."""
    root = settings.table_root(plan.contract.name)
    sources = plan.rewrite.kept(spark)  # the rows that stay in files holding stale rows
    items = None
    if plan.todo_days:
        source, version = corpus
        # only the items to compute go on past the scan, each with the signals that compute it: the rule's shuffle by id
        # (jobs.corpus) would otherwise carry every row of the days that hold them, images and all (Spark does not push the
        # join below it)
        rows = source.read(spark, version, days=plan.todo_days, only=plan.todo_files)
        items = one_row_per_id(rows.join(broadcast_if_small(plan.todo_items, sum(plan.todo.values())), "content_id"),
                               plan.newest, plan.repeated_ids)  # a plan with days to do compared the corpus
        if sum(1 for n in plan.signals if plan.todo[n]) > 1:  # each signal's rows read the cache: the days' scan and the rule's
            items = items.persist()  # window once, not once per signal (Spark reuses no exchange between their branches)
        rows_of = keyframe_rows if plan.contract is KEYFRAMES else signal_rows
        sources += [
            rows_of(items.filter(F.array_contains(TODO_SIGNALS, n)).drop(TODO_SIGNALS), s, settings, run, plan.todo[n], placed[n])
            for n, s in plan.signals.items() if plan.todo[n]
        ]
    if plan.reused_items is not None and any(plan.reused.values()):
        sources.append(spark_io.WriteSource(_copies(spark, root, plan, run)))
    expected = {n: plan.todo[n] + plan.reused.get(n, 0) for n in plan.todo}
    for signal, kept in plan.rewrite.items_kept().items():
        expected[signal] = expected.get(signal, 0) + kept
    try:
        return write_and_commit(
            spark, settings, run, plan.contract, sources, expected, remove=plan.rewrite.removes, read_version=plan.read_version,
            metadata={"stale_items": str(plan.rewrite.dropped_items), "computed": str(plan.todo), "reused": str(plan.reused),
                      REFRESHED: refreshed_signature(plan.signals), READ_VERSION: str(plan.read_version),
                      **({CORPUS_VERSION: str(corpus[1]), CORPUS_MAPPING: corpus[0].mapping_id()} if corpus[1] is not None else {})},
        )
    finally:
        if items is not None:
            items.unpersist()


def _copies(spark: SparkSession, root: str, plan: Plan, run: Run) -> DataFrame:
    """The rows of the plan's reused items: each a copy of the committed row (rows, for labels)
    of the item with the same input at the same model version, with the item's own key, day,
    run and time, its labels decided at this run's thresholds (`_decided`); an item's rows in one
    task, so in one file, wherever its source's rows were (split across files, they went to two
    writers, and the written-items check counted the item twice and refused the commit). A source
    with rows of two days (an older day's row a backfill before a9ed157 left beside the newer) gives
    one copy per key, not one per row."""
    versions = F.create_map(*[F.lit(v) for name, s in plan.signals.items() for v in (name, s.config.model.version)])
    items = plan.reused_items.select(*REUSE_COLUMNS, versions[F.col("signal")].alias("model_version"))  # type: ignore[union-attr]
    stored = spark_io.read_spark(spark, root, plan.read_version, only=set(plan.reused_files)).withColumnRenamed("content_id", "source_id")
    copied = stored.drop("ds", "run_id", "computed_at").join(items, ["signal", "model_version", "source_id", "input_hash"])
    stamped = {"run_id": F.lit(run.run_id), "computed_at": F.lit(run.started), **_decided(plan.signals)}
    return (copied.select(*[stamped[c].alias(c) if c in stamped else F.col(c) for c in plan.contract.schema.names])
            .dropDuplicates(list(plan.contract.key)).repartition("content_id"))


def _decided(signals: dict[str, Signal]) -> dict[str, Column]:
    """The threshold and decision of a copied label row at the signals' configured thresholds, as
    `signals.labels.base.Labeler.decide` makes them: thresholds are the profile's, not the model
    version's, so a copy kept its source's run's (null where a label has none, as an error row)."""
    thresholds = [F.lit(v) for name, s in signals.items() if isinstance(s, Labeler)
                  for label, threshold in s.thresholds.items() for v in (f"{name}{TEXT_FIELD_SEPARATOR}{label}", float(threshold))]
    threshold = (F.try_element_at(F.create_map(*thresholds), F.concat_ws(TEXT_FIELD_SEPARATOR, "signal", "label")) if thresholds
                 else F.lit(None)).cast("double")
    return {"threshold": threshold, "decision": F.when(threshold.isNotNull(), F.col("score") >= threshold)}


def run_refresh(spark: SparkSession, settings: Settings, run_id: str | None = None, full: bool = False) -> RunResult:
    """Compute what is new or changed, drop what is stale, one commit per table that changes
    (none at all if nothing has changed). `full` compares the whole corpus whatever the last
    refresh recorded."""
    source = CorpusSource.of(settings)
    run = Run.begin(JOB, run_id)
    signals = build_signals(settings)
    placed = placements(spark, settings, signals)
    done = already_committed(spark, settings, run, by_output(signals))
    if done:
        return done
    earlier = earlier_commits(settings, run)
    corpus = (source, version_to_read(earlier, source))  # plan and apply read the same corpus
    grouped = by_output(signals)
    # a video item's image signals have rows in the keyframes table too; a corpus that maps no video has no video item,
    # so an existing keyframes table is still planned (with nothing to compute) and every row of it is stale
    keyframe_signals = image_signals(signals) if source.maps_video() else {}
    tables = [(EMBEDDINGS, grouped.get(EMBEDDINGS, {}), False), (LABELS, grouped.get(LABELS, {}), False), (KEYFRAMES, keyframe_signals, True)]
    plans, checked = [], Checked()
    for contract, mine, videos_only in tables:
        table_root = settings.table_root(contract.name)
        if contract.name in earlier:  # its commit for this run id is made: work for it could not be committed
            continue
        if mine or DeltaTable.is_deltatable(table_root):  # takedowns reach every table
            plans.append(plan_refresh(spark, settings, contract, mine, corpus, plan_scope(table_root, mine, corpus, full), videos_only,
                                       checked))
    try:
        return _apply_plans(spark, settings, run, signals, placed, plans, corpus,
                            {name: None if c is None else int(c["version"]) for name, c in earlier.items()})
    finally:
        for plan in plans:
            plan.release()


def earlier_commits(settings: Settings, run: Run) -> dict[str, dict | None]:
    """table -> the log's record of this run id's commit to it, made by an earlier attempt of the
    run (`--run-id`, killed between its tables' commits): a retry makes the others only. None where
    the table holds the commit but its log entry was cleaned up since (`delta_io.commit_of`)."""
    roots = {c.name: settings.table_root(c.name) for c in (EMBEDDINGS, LABELS, KEYFRAMES)}
    return {name: delta_io.commit_of(root, run.app_id) for name, root in roots.items() if delta_io.committed(root, run.app_id)}


def version_to_read(commits: dict[str, dict | None], source: CorpusSource) -> int | None:
    """The version of the corpus a run reads: the one its earlier commits (`commits`) read, so a
    retry's tables agree with those committed, else the corpus's own (None: it has no versions),
    also where their records are gone from the log (the next refresh brings the committed tables in line).
    Version 0 is a version like any other (read as "none", a retry of a run that read it read the
    latest instead)."""
    read = next((int(c[CORPUS_VERSION]) for c in commits.values()
                 if c is not None and CORPUS_VERSION in c and c.get(CORPUS_MAPPING) == source.mapping_id()), None)
    return read if read is not None else source.version()


def _apply_plans(spark: SparkSession, settings: Settings, run: Run, signals: dict[str, Signal], placed: dict[str, Placement],
                 plans: list[Plan], corpus: CorpusAt, earlier: dict[str, int | None]) -> RunResult:
    """Apply the plans in the ledger; `earlier`: the versions of the run's commits an earlier attempt made (table -> version, None: no
    longer known)."""
    compared = "; ".join(f"{plan.contract.name}: {plan.scope.describe()}" for plan in plans)
    skipped = next((plan.corpus_check.describe() for plan in plans if plan.corpus_check and plan.corpus_check.skipped), None)
    with recorded(settings, run, tracked(signals)) as finish:
        if all(plan.empty for plan in plans):
            result = RunResult(run.run_id, NOTHING_TO_DO,
                               message=" ".join(filter(None, [f"the tables already match the corpus (compared {compared})", skipped])))
        else:
            committed = {plan.contract.name: apply_plan(spark, settings, run, plan, corpus, placed) for plan in plans if not plan.empty}
            if earlier:  # the commits of an attempt killed before keeping statistics have no summaries here: all the run's rows read
                stats_of_run(spark, settings, run.run_id, recompute=True)
            else:
                keep_stats(settings, run, committed)
            computed = sum(sum(plan.todo.values()) for plan in plans)
            reused = sum(sum(plan.reused.values()) for plan in plans)
            dropped = sum(plan.rewrite.dropped_items for plan in plans)
            versions = {**earlier, **{name: c.version for name, c in committed.items()}}
            result = RunResult(run.run_id, SUCCEEDED, versions, run_outcomes(settings, run.run_id, signals),
                               " ".join(filter(None, [f"computed {computed} items, copied {reused} from committed rows of the same input, "
                                                      f"dropped {dropped} stale items (compared {compared})", skipped,
                                                      unknown_versions_said(versions)])),
                               [use for c in committed.values() for use in c.executors])
        finish(result)
    return result
