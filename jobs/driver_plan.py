"""A small day's refresh compared on the driver, without a Spark job.

`jobs.refresh.plan_refresh` compares the corpus with a table in Spark: joins that scale to a
corpus no driver could hold, at some thirty small Spark jobs whatever the day's size, which made
a daily refresh of a few items cost a fifth of a full backfill. An incremental refresh compares
only the rows of the corpus files changed since the table's last refresh (`jobs.refresh.Scope`);
when those are few (`compares_on_driver`), the same comparison is made here from key columns
read with delta-rs: the changed files' rows, every corpus row of their ids (the one-row-per-id
rule looks at the whole corpus), and the table's rows of those ids and of their inputs. Its
result is the Spark comparison's, field for field (tests/spark/test_refresh.py plans a day both ways).
The inputs' hashes are Spark's own expressions over a frame of the few rows, which Spark
evaluates on the driver (a projection of local rows runs no job).
"""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, SparkSession

from jobs.copy_on_write import KEY, ROW
from jobs.corpus import EXAMPLES, CorpusCheck
from lake import delta_io
from lake.corpus import CANONICAL, KEYS_WITHOUT_SPARK, CorpusTable, keyable_rows, latest_rows, valid_utf8
from signals.contracts import STATUS_ERROR, STATUS_OK, is_retried_error

MAX_CHANGED_BYTES = 256 * 1024 * 1024  # the changed corpus files the driver reads whole (their images are hashed)
Recency = tuple[bool, datetime, str]  # what makes one corpus row of an id newer than another (jobs/corpus.py `_recency`)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def compares_on_driver(source: CorpusTable, changed: Sequence[delta_io.LiveFile]) -> bool:
    """Whether a comparison of these changed corpus files is made on the driver: a Delta corpus
    without `corpus.filter` (read by DataFusion here, by Spark there), few rows and bytes in them."""
    return (source.is_delta and not source.settings.filter and sum(f.num_records for f in changed) <= KEYS_WITHOUT_SPARK
            and sum(f.size for f in changed) <= MAX_CHANGED_BYTES)


def recency(updated_at: datetime | None, ds: str) -> Recency:
    """A row's recency as jobs/corpus.py `_recency` orders it: a null `updated_at` older than any timestamp."""
    return (updated_at is not None, updated_at if updated_at is not None else _EPOCH, ds)


@dataclass(frozen=True)
class Todo:
    """An item a signal's rows are missing for: computed, or (`source_id`) given a copy of the
    committed rows of another item of the same input, held in `source_files`."""

    signal: str
    content_id: str
    ds: str
    input_hash: str | None
    source_id: str | None = None
    source_files: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ChangedCorpus:
    """The corpus side of a comparison, the same for every table of a refresh that compares the
    same changed files and removed ids: their rows, each id's newest row in the whole corpus, the
    row the rule keeps of each id whose newest row is among them, and the rule's counts."""

    rows: pa.Table
    keyable: pa.Table
    newest: dict[str, Recency]
    items: pa.Table
    check: CorpusCheck


def read_changed(source: CorpusTable, corpus_version: int, changed: set[str], removed_ids: set[str]) -> ChangedCorpus:
    """The corpus rows of the `changed` files (unescaped relative paths) at `corpus_version`, with
    what the one-row-per-id rule needs of the whole corpus for their ids and `removed_ids`."""
    live = {unquote(f.path): f for f in delta_io.live_files(source.location, corpus_version)}
    rows = source.rows([name for name, _ in CANONICAL], corpus_version, files=[live[path] for path in sorted(changed)])
    keyable = rows.filter(keyable_rows(rows))
    newest = _newest(source, corpus_version, set(keyable["content_id"].to_pylist()) | removed_ids)
    items = latest_rows(rows)
    items = items.filter(pa.array([recency(u, d) >= newest[i] for i, u, d in _keys(items)], pa.bool_()))
    return ChangedCorpus(rows, keyable, newest, items, _check(rows, newest))


@dataclass(frozen=True)
class Comparison:
    """What the comparison found: the corpus rule's counts, the items to compute or copy, the
    stored items that are stale by file, and the recency of each computed item's corpus row."""

    check: CorpusCheck
    todo: list[Todo]
    stale: dict[str, list[tuple[str, ...]]]  # unescaped relative path -> ROW (KEY and day) of each stale row in it
    newest: dict[str, Recency]
    repeated_ids: int  # computed items with several keyable rows among the changed files' rows of their days


def retried_ids(root: str, version: int, versions: dict[str, str]) -> set[str]:
    """Ids of the table's items whose rows of these signals (name -> model version) are errors
    the next refresh computes again; files whose statistics show no error are not opened."""
    if not versions or not delta_io.files_with_errors(root, version):
        return set()
    errors = delta_io.read_arrow(root, version, filters=pc.field("status") == STATUS_ERROR, columns=["content_id", "signal", "model_version", "error"])
    return {r["content_id"] for r in errors.to_pylist() if versions.get(r["signal"]) == r["model_version"] and is_retried_error(r["error"])}


def compare(spark: SparkSession, root: str, read_version: int, signals: dict[str, tuple[str, str]], hashes: dict[str, Column],
            corpus: ChangedCorpus, removed_ids: set[str], shared: Collection[str], videos_only: bool) -> Comparison:
    """Compare the `corpus` rows read of the changed files and the items of `removed_ids` with the
    table at `read_version`, as `jobs.refresh.plan_refresh` does in Spark: `signals` maps each
    enabled signal to (its model version, its column in `hashes`); `shared` names those that
    compute once."""
    items, newest = corpus.items, corpus.newest
    compared = items.filter(pc.is_valid(items["video"])) if videos_only else items
    current = _hashed(spark, compared, hashes)
    candidates = set(items["content_id"].to_pylist()) | removed_ids
    in_corpus = set(current) if videos_only else set(newest)  # keyframes: only an item with a video is in their corpus
    valid, stale = set(), defaultdict(list)
    for row in _stored(root, read_version, candidates):
        item = current.get(row["content_id"])
        version, column = signals.get(row["signal"], (None, None))
        enabled = item is not None and row["model_version"] == version
        in_line = enabled and row["input_hash"] == item[1][column] and not row["retry"] and row["ds"] == item[0]
        if row["content_id"] not in in_corpus or (enabled and not in_line):
            stale[row["file"]].append(tuple(row[k] for k in ROW))
        if in_line:
            valid.add((row["content_id"], row["signal"]))
    missing = [Todo(name, content_id, ds, hashed[column]) for name, (_, column) in signals.items()
               for content_id, (ds, hashed) in current.items() if (content_id, name) not in valid]
    sources = _committed_inputs(root, read_version, {name: signals[name][0] for name in shared},
                                {t.input_hash for t in missing if t.signal in shared and t.input_hash is not None})
    todo = [Todo(t.signal, t.content_id, t.ds, t.input_hash, *sources.get((t.signal, t.input_hash), (None, None))) for t in missing]
    computed = {t.content_id: t.ds for t in todo if t.source_id is None}
    days = set(computed.values())
    held = Counter(i for i, _, ds in _keys(corpus.keyable) if i in computed and ds in days)
    return Comparison(corpus.check, todo, dict(stale), {i: newest[i] for i in computed}, sum(1 for n in held.values() if n > 1))


def _keys(rows: pa.Table) -> list[tuple[str, datetime | None, str]]:
    """(content_id, updated_at, ds) of each row."""
    return list(zip(*(rows[c].to_pylist() for c in ("content_id", "updated_at", "ds")), strict=True))


def _newest(source: CorpusTable, version: int, ids: set[str]) -> dict[str, Recency]:
    """The recency of each id's newest keyable row in the whole corpus (jobs/corpus.py `newest_of_ids`)."""
    if not ids:
        return {}
    return {i: recency(u, d) for i, u, d in _keys(latest_rows(source.rows(["content_id", "ds", "updated_at"], version, ids=ids)))}


def _hashed(spark: SparkSession, items: pa.Table, hashes: dict[str, Column]) -> dict[str, tuple[str, dict[str, str | None]]]:
    """content_id -> (ds, each hash column's value) of the items, by Spark's expressions over their rows on the driver."""
    if not len(items):
        return {}
    frame = spark.createDataFrame(items).select("content_id", "ds", *[expr.alias(name) for name, expr in hashes.items()])
    return {r["content_id"]: (r["ds"], {name: r[name] for name in hashes}) for r in frame.collect()}


def _stored(root: str, version: int, ids: set[str]) -> list[dict[str, Any]]:
    """The table's rows of `ids`, one per item and file, each with `retry`: whether any row of the
    item is an error the next refresh computes again (labels and keyframes have several rows)."""
    if not ids:
        return []
    table = delta_io.read_arrow(root, version, filters=pc.field("content_id").isin(sorted(ids)),
                                columns=[*KEY, "ds", "input_hash", "status", "error", delta_io.FILE_COLUMN]).to_pylist()
    retried = {tuple(r[k] for k in KEY) for r in table if r["status"] == STATUS_ERROR and is_retried_error(r["error"])}
    unique = {}
    for r in table:
        key = tuple(r[k] for k in KEY)
        unique[(*key, r["ds"], r["input_hash"], r[delta_io.FILE_COLUMN])] = {
            **dict(zip(KEY, key, strict=True)), "ds": r["ds"], "input_hash": r["input_hash"], "retry": key in retried, "file": r[delta_io.FILE_COLUMN]}
    return list(unique.values())


def _committed_inputs(root: str, version: int, versions: dict[str, str], wanted: set[str]) -> dict[tuple[str, str], tuple[str, tuple[str, ...]]]:
    """(signal, input hash) -> (the committed item, the files holding its rows) of each wanted
    input of these signals (name -> model version) with an item whose every row is ok, the least
    by id then files, as `jobs.refresh._committed_inputs` chooses it."""
    if not versions or not wanted:
        return {}
    rows = delta_io.read_arrow(root, version, filters=pc.field("input_hash").isin(sorted(wanted)),
                               columns=["content_id", "signal", "model_version", "input_hash", "status", delta_io.FILE_COLUMN]).to_pylist()
    failed, files = set(), defaultdict(set)
    for r in rows:
        if versions.get(r["signal"]) != r["model_version"]:
            continue
        item = (r["signal"], r["input_hash"], r["content_id"])
        files[item].add(r[delta_io.FILE_COLUMN])
        if r["status"] != STATUS_OK:
            failed.add(item)
    chosen: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {}
    for item, held in files.items():
        if item not in failed:
            signal, input_hash, content_id = item
            candidate = (content_id, tuple(sorted(held)))
            chosen[(signal, input_hash)] = min(chosen.get((signal, input_hash), candidate), candidate)
    return chosen


def _check(rows: pa.Table, newest: dict[str, Recency]) -> CorpusCheck:
    """What the rule keeps and skips among `rows`, as jobs/corpus.py `check_rows` counts it."""
    valid, keyable = valid_utf8(rows["content_id"]), keyable_rows(rows)
    bad_day = pc.and_(valid, pc.invert(keyable))
    days = rows["ds"].filter(bad_day).cast(pa.binary()).to_pylist()
    latest: dict[str, Recency] = {}
    count: dict[str, int] = defaultdict(int)
    for content_id, updated_at, ds in _keys(rows.filter(keyable)):
        count[content_id] += 1
        latest[content_id] = max(latest.get(content_id, recency(updated_at, ds)), recency(updated_at, ds))
    kept = {i for i, r in latest.items() if i not in newest or r >= newest[i]}
    examples = sorted(i for i in latest if count[i] > 1 or i not in kept)
    return CorpusCheck(
        items=len(kept), null_ids=pc.sum(pc.invert(valid).cast(pa.int64())).as_py() or 0,
        bad_days=sorted({d.decode(errors="replace") for d in days if d is not None})[:EXAMPLES],
        duplicates=sum(count.values()) - len(kept), duplicate_examples=examples[:EXAMPLES], bad_day_rows=len(days),
        repeated_ids=sum(1 for n in count.values() if n > 1),
    )
