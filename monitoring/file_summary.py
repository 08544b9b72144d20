"""What the rows one run wrote to one data file add to the run's statistics, summarised where
the file is written (a backfill's or refresh's task, as it writes) or read again (the monitor,
for a run whose statistics were not kept), and merged on the driver into rows of
`signal_stats`: per signal, model version and day, the counts and error reasons, each label's
decisions, histogram and scores, and the ok vectors' VectorSummary with the file's sample
candidates. Pure numpy and pyarrow: the writing tasks and the reading tasks run the same code,
and a Python worker imports no more than it needs.

An item's rows of one run are in one file (a task writes all of an item's rows, one file per
partition), so a file's distinct items add up across files.
"""
from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from monitoring.vector_summary import VectorSummary, vector_matrix
from signals.contracts import EMBEDDINGS, HISTOGRAM_BINS, LABELS, QUANTILES, STATUS_OK, TableContract

KEYS = ("signal", "model_version", "ds")  # a signal's day at one model version: one row of statistics
ROW_COLUMNS = (*KEYS, "run_id", "content_id", "status", "error")  # what a summary reads of every row, and of each table's:
COLUMNS_READ = {EMBEDDINGS.name: (*ROW_COLUMNS, "vector", "dim"), LABELS.name: (*ROW_COLUMNS, "label", "score", "decision")}
TOP_REASONS = 5
_CATEGORY = re.compile(r"^((?:transient: |model failed: )?[^:]*)")

# A file's parts: a row per group (`label` null) with its counts, reasons and vectors, and a row
# per label of a label group with its counts, histogram and scores. Arrays go into Arrow from
# numpy and come back as numpy, never a Python float apiece.
PART_SCHEMA = pa.schema([
    pa.field("signal", pa.string()), pa.field("model_version", pa.string()), pa.field("ds", pa.string()), pa.field("kind", pa.string()),
    pa.field("label", pa.string()), pa.field("rows", pa.int64()), pa.field("items", pa.int64()), pa.field("error_items", pa.int64()),
    pa.field("decided", pa.int64()), pa.field("positives", pa.int64()),
    pa.field("reasons", pa.list_(pa.struct([pa.field("reason", pa.string()), pa.field("count", pa.int64())]))),
    pa.field("dim", pa.int32()), pa.field("widths", pa.list_(pa.int32())), pa.field("count", pa.int64()),
    pa.field("histogram", pa.list_(pa.int64())), pa.field("scores", pa.list_(pa.float64())),
    pa.field("mean", pa.list_(pa.float64())), pa.field("squared_deviations", pa.list_(pa.float64())), pa.field("norms", pa.list_(pa.float64())),
    pa.field("sample_keys", pa.list_(pa.int64())), pa.field("sample_ids", pa.list_(pa.string())),
    pa.field("sample", pa.list_(pa.float32())),  # the candidates' vectors, `dim` values each
])
ARRAYS = ("histogram", "scores", "mean", "squared_deviations", "norms", "sample_keys", "sample")


def list_column(arrays: Sequence[np.ndarray | None], type: pa.ListType) -> pa.ListArray:
    """Numpy arrays (None: a null) as one Arrow list column, their values copied in one piece;
    a 2-d array is its rows' values one after the other."""
    sizes = [0 if a is None else a.size for a in arrays]
    offsets = np.zeros(len(arrays) + 1, np.int32)
    offsets[1:] = np.cumsum(sizes)
    dtype = type.value_type.to_pandas_dtype()
    values = np.concatenate([np.asarray(a, dtype).ravel() for a in arrays if a is not None] or [np.zeros(0, dtype)])
    mask = pa.array([a is None for a in arrays]) if any(a is None for a in arrays) else None
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(values, type.value_type), type=type, mask=mask)


def matrix_column(matrices: Sequence[np.ndarray | None], type: pa.ListType) -> pa.ListArray:
    """2-d numpy arrays (None: a null) as one Arrow column of lists of their rows."""
    rows = [row for m in matrices if m is not None for row in m]
    offsets = np.zeros(len(matrices) + 1, np.int32)
    offsets[1:] = np.cumsum([0 if m is None else len(m) for m in matrices])
    mask = pa.array([m is None for m in matrices]) if any(m is None for m in matrices) else None
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), list_column(rows, type.value_type), type=type, mask=mask)


def column_arrays(column: pa.ChunkedArray | pa.ListArray) -> list[np.ndarray]:
    """An Arrow list column's entries as numpy arrays (views of one buffer where they can be)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    values = array.values.to_numpy(zero_copy_only=False)
    offsets = array.offsets.to_numpy()
    return [values[offsets[i]:offsets[i + 1]] for i in range(len(array))]


def reason_category(error: str | None) -> str:
    """What an error row's reason says, without its particulars: the text before its first colon
    (after a retried error's prefix), numbers as N, at most 80 characters."""
    return re.sub(r"[0-9]+", "N", _CATEGORY.match(error or "").group(1))[:80]


def sample_keys(content_ids: Sequence[str], seed: int) -> np.ndarray:
    """Each id's place in the seeded sample: a keyed 63-bit hash of it (the smallest are chosen),
    the same in every process."""
    key = str(seed).encode()
    return np.array([int.from_bytes(hashlib.blake2b(c.encode(), digest_size=8, key=key).digest(), "little") >> 1 for c in content_ids],
                    np.int64)


@dataclass
class _Label:
    """One label's ok rows: counts, decisions, the fixed-bin histogram and the scores."""

    rows: int = 0
    decided: int = 0
    positives: int = 0
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(HISTOGRAM_BINS, np.int64))
    scores: list[np.ndarray] = field(default_factory=list)

    def absorb(self, other: _Label) -> None:
        self.rows += other.rows
        self.decided += other.decided
        self.positives += other.positives
        self.histogram = self.histogram + other.histogram
        self.scores += other.scores

    def stats(self, label: str) -> dict:
        """The label's entry in a `signal_stats` row."""
        scores = np.concatenate(self.scores) if self.scores else np.zeros(0)
        return {"label": label, "rows": self.rows, "decided": self.decided, "positives": self.positives,
                "decision_rate": self.positives / self.decided if self.decided else None,
                "quantiles": np.quantile(scores, QUANTILES, method="inverted_cdf").tolist() if len(scores) else [],
                "histogram": self.histogram.tolist()}


@dataclass
class _Group:
    """A signal's day at one model version, in one file or merged over many."""

    kind: str
    rows: int = 0
    items: int = 0
    error_items: int = 0
    reasons: Counter = field(default_factory=Counter)
    labels: dict[str, _Label] = field(default_factory=dict)
    vectors: VectorSummary = field(default_factory=VectorSummary.empty)
    dim: int | None = None
    widths: set[int] = field(default_factory=set)  # the ok vectors' lengths: more than one, and no statistics can be made of them

    def absorb(self, other: _Group, sample_size: int) -> None:
        self.rows += other.rows
        self.items += other.items
        self.error_items += other.error_items
        self.reasons.update(other.reasons)
        for label, mine in other.labels.items():
            self.labels.setdefault(label, _Label()).absorb(mine)
        self.widths |= other.widths
        if len(self.widths) < 2:
            self.vectors = self.vectors.merged(other.vectors).trimmed(sample_size)
        self.dim = max((d for d in (self.dim, other.dim) if d is not None), default=None)

    def parts(self, key: tuple[str, ...]) -> list[dict]:
        """The group as rows of PART_SCHEMA (arrays as numpy): its own, then one per label."""
        v, common = self.vectors, {**dict(zip(KEYS, key)), "kind": self.kind}
        own = {**common, "label": None, "rows": self.rows, "items": self.items, "error_items": self.error_items,
               "reasons": [{"reason": r, "count": n} for r, n in self.reasons.items()], "dim": self.dim, "widths": sorted(self.widths), "count": v.count,
               "mean": v.mean, "squared_deviations": v.squared_deviations, "norms": v.norms, "sample_keys": v.sample_keys,
               "sample_ids": list(v.sample_ids), "sample": v.sample}
        return [own, *({**common, "label": label, "rows": m.rows, "decided": m.decided, "positives": m.positives, "histogram": m.histogram,
                        "scores": np.concatenate(m.scores) if m.scores else np.zeros(0)} for label, m in self.labels.items())]

    @classmethod
    def of_part(cls, part: dict) -> _Group:
        """The group of its own part row (PART_SCHEMA, arrays as numpy); its labels come in their rows."""
        return cls(part["kind"], part["rows"], part["items"], part["error_items"], Counter({r["reason"]: r["count"] for r in part["reasons"]}),
                   {}, VectorSummary.of_part(part), part["dim"], set(part["widths"] or ()))

    def stats(self, key: tuple[str, ...], sample_size: int) -> dict:
        """The group's `signal_stats` row, without the run's columns (`dim_mean`, `dim_std` and
        `sample` as numpy)."""
        row = {**dict(zip(KEYS, key)), "kind": self.kind, "rows": self.rows, "items": self.items, "error_items": self.error_items,
               "error_reasons": [{"reason": r, "count": n} for r, n in sorted(self.reasons.items(), key=lambda rn: (-rn[1], rn[0]))[:TOP_REASONS]]}
        if self.kind == "label":
            return {**row, "labels": [self.labels[label].stats(label) for label in sorted(self.labels)]}
        v = self.vectors
        if len(self.widths) > 1:
            return {**row, "widths": sorted(self.widths)}  # refused by stats_table, naming them
        if not v.count:
            return row
        return {**row, "dim": self.dim, "norm_quantiles": v.norm_quantiles(), "dim_mean": v.mean, "dim_std": v.std(),
                "sample": v.chosen_sample(sample_size)}


class FileSummary:
    """The running summary of one file's rows of one run, fed batch by batch as they are written
    or read; rows of other runs (those a refresh keeps in a file it rewrites) are left out."""

    def __init__(self, run_id: str, sample_size: int, seed: int) -> None:
        self.run_id, self.sample_size, self.seed = run_id, sample_size, seed
        self.groups: dict[tuple[str, ...], _Group] = {}
        self.ids: dict[tuple[str, ...], tuple[set[str], set[str]]] = {}  # per group: its items, its items with an error row

    def add(self, rows: pa.Table) -> None:
        """Take in a batch of the file's rows. A batch is small (a writer's), so its rows are
        sorted into groups in Python: a few column reads a batch, not a compute call per group."""
        columns = {name: rows[name].to_pylist() for name in ROW_COLUMNS}
        by_group: dict[tuple[str, ...], list[int]] = {}
        for i, run in enumerate(columns["run_id"]):
            if run == self.run_id:
                by_group.setdefault((columns["signal"][i], columns["model_version"][i], columns["ds"][i]), []).append(i)
        for key, mine in by_group.items():
            self._add_group(key, rows, mine, columns)

    def _add_group(self, key: tuple[str, ...], rows: pa.Table, mine: list[int], columns: dict[str, list]) -> None:
        kind = "embedding" if "vector" in rows.column_names else "label"
        group = self.groups.setdefault(key, _Group(kind))
        items, error_items = self.ids.setdefault(key, (set(), set()))
        ids, status, error = columns["content_id"], columns["status"], columns["error"]
        items.update(ids[i] for i in mine)
        failed = [i for i in mine if status[i] != STATUS_OK]
        error_items.update(ids[i] for i in failed)
        batch = _Group(kind, len(mine), reasons=Counter(reason_category(error[i]) for i in failed))
        good = [i for i in mine if status[i] == STATUS_OK]
        if kind == "embedding":
            with_vector = rows if len(good) == rows.num_rows else rows.take(pa.array(good, pa.int64()))
            if with_vector["vector"].null_count:
                with_vector = with_vector.filter(pc.is_valid(with_vector["vector"]))
            batch.widths = set(pc.unique(pc.list_value_length(with_vector["vector"])).to_pylist())
            if len(batch.widths) > 1:  # another writer's vectors of several lengths: no matrix to make of them
                with_vector = with_vector.slice(0, 0)
            vectors = vector_matrix(with_vector["vector"])
            finite = np.isfinite(vectors).all(axis=1)
            if not finite.all():  # another writer's NaN or infinite vector: left out as a null one is (the drift test cannot take it)
                with_vector, vectors = with_vector.filter(pa.array(finite)), vectors[finite]
            good_ids = with_vector["content_id"].to_pylist()
            keys = sample_keys(good_ids, self.seed)
            chosen = sorted(range(len(good_ids)), key=lambda i: (keys[i], good_ids[i]))[:self.sample_size]
            batch.vectors = VectorSummary.of(vectors, keys[chosen], [good_ids[i] for i in chosen], vectors[chosen])
            batch.dim = max((d for d in with_vector["dim"].to_pylist() if d is not None), default=None)
        else:
            batch.labels = _labels(rows.select(["label", "score", "decision"]).take(pa.array(good, pa.int64())).to_pylist())
        group.absorb(batch, self.sample_size)
        group.items, group.error_items = len(items), len(error_items)

    def to_bytes(self) -> bytes | None:
        """The file's parts (PART_SCHEMA rows) as Arrow IPC; None when it holds no row of the run."""
        if not self.groups:
            return None
        rows = [row for key, group in self.groups.items() for row in group.parts(key)]
        columns = [list_column([r.get(f.name) for r in rows], f.type) if f.name in ARRAYS else pa.array([r.get(f.name) for r in rows], f.type)
                   for f in PART_SCHEMA]
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, PART_SCHEMA) as writer:
            writer.write_table(pa.Table.from_arrays(columns, schema=PART_SCHEMA))
        return sink.getvalue().to_pybytes()


def _labels(rows: list[dict]) -> dict[str, _Label]:
    """Per label, its ok rows' counts, decisions, histogram and scores (rows without a label
    are left out; a score that is no number, which only another writer makes, counts as a row
    but not as a score)."""
    out: dict[str, _Label] = {}
    for label in {r["label"] for r in rows if r["label"] is not None}:
        mine = [r for r in rows if r["label"] == label]
        decisions = [r["decision"] for r in mine if r["decision"] is not None]
        scores = np.array([r["score"] for r in mine if r["score"] is not None and math.isfinite(r["score"])], np.float64)
        bins = np.clip(np.floor(scores * HISTOGRAM_BINS), 0, HISTOGRAM_BINS - 1).astype(np.int64)
        out[label] = _Label(len(mine), len(decisions), sum(decisions), np.bincount(bins, minlength=HISTOGRAM_BINS).astype(np.int64), [scores])
    return out


@dataclass(frozen=True)
class FileSummaries:
    """What a writer asks for each file it opens: a FileSummary of the run's rows for a signal
    table (embeddings, labels), none for any other. Plain values: it travels to the tasks."""

    run_id: str
    sample_size: int
    seed: int

    def __call__(self, contract: TableContract) -> FileSummary | None:
        return FileSummary(self.run_id, self.sample_size, self.seed) if contract.name in (EMBEDDINGS.name, LABELS.name) else None


def summarise_file(batches: Iterator[pa.RecordBatch], run_id: str, sample_size: int, seed: int) -> bytes | None:
    """The summary of one file's rows (read again, with its partition columns) of the run."""
    summary = FileSummary(run_id, sample_size, seed)
    for batch in batches:
        summary.add(pa.Table.from_batches([batch]))
    return summary.to_bytes()


def merged_stats(summaries: Iterable[bytes], sample_size: int) -> list[dict]:
    """The `signal_stats` rows (without the run's columns; `dim_mean`, `dim_std` and `sample` as
    numpy) of a run's file summaries, merged per signal, model version and day."""
    merged: dict[tuple[str, ...], _Group] = {}
    for blob in summaries:
        table = pa.ipc.open_stream(blob).read_all()
        arrays = {name: column_arrays(table[name]) for name in ARRAYS}
        for i, part in enumerate(table.drop_columns(list(ARRAYS)).to_pylist()):
            part.update({name: arrays[name][i] for name in ARRAYS})
            key = tuple(part[k] for k in KEYS)
            group = merged.setdefault(key, _Group(part["kind"]))
            if part["label"] is None:
                group.absorb(_Group.of_part(part), sample_size)
            else:
                group.labels.setdefault(part["label"], _Label()).absorb(
                    _Label(part["rows"], part["decided"], part["positives"], part["histogram"].astype(np.int64), [part["scores"]]))
    return [group.stats(key, sample_size) for key, group in sorted(merged.items())]
