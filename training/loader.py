"""Training data from the lake, streamed: a pinned Delta snapshot of one embedding signal, joined
with a label frame by content id, into torch batches with bounded memory whatever the table size.

petastorm did this for Spark users and cannot run with pyspark 4 (docs/design.md, petastorm), so
the snapshot's own parquet files are read with pyarrow: the data files of the signal's partitions
at the pinned version (from its log, in the order of their days), dealt out to the DataLoader's
workers by worker id, read one record batch at a time, kept to the labelled rows of one split,
mixed in a seeded shuffle buffer and handed on as tensors. What is held at once is the label
frame (one entry per labelled item, never per table row), one record batch and the buffer. What
must hold over every worker's files (one ok row per labelled item, vectors of one length) is
checked when the snapshot is pinned, over the rows' key columns only.

A snapshot may join further embedding signals (`joined`): each labelled row's vector is then its
own followed by theirs (a head on image and text embeddings together). Their vectors are read first,
for the split's labelled items only, so what is held grows with the labelled items, as the label
frame does, never with the table.

Splits are by a stable hash of the item's near-duplicate group (the `duplicates` table; an item
in no group is its own group), so every copy of a test item is in the test split too.
"""
from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import torch
from torch.utils.data import IterableDataset, get_worker_info

from conf.settings import UsageError
from lake import delta_io
from signals.contracts import DUPLICATES, EMBEDDINGS, STATUS_OK, lakehouse_table
from signals.labels.head import JOINED_SEPARATOR

SPLITS = ("train", "validation", "test")
READ_ROWS = 1024  # rows per record batch read from a data file
LATEST = "latest"  # pin_snapshot: the duplicates table's latest version
READ_COLUMNS = ("content_id", "status", "vector")
# each file read in the table's types: delta-rs's own rewrites (a delete, say) store strings as string_view
READ_SCHEMA = pa.schema([EMBEDDINGS.schema.field(c) for c in READ_COLUMNS])
KEY_COLUMNS = ("content_id", "status", "dim")  # what pin_snapshot reads of every row: no vector
KEY_SCHEMA = pa.schema([EMBEDDINGS.schema.field(c) for c in KEY_COLUMNS])


def group_point(group_id: str) -> float:
    """Where sha256 of a near-duplicate group's id falls in [0, 1): what splits and folds are cut from."""
    return int.from_bytes(hashlib.sha256(group_id.encode()).digest()[:8], "big") / 2**64


def split_of(group_id: str, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)) -> str:
    """The split of a near-duplicate group: where its point falls in [0, 1), cut by `fractions`."""
    point = group_point(group_id)
    cut = 0.0
    for name, share in zip(SPLITS, fractions):
        cut += share
        if point < cut:
            return name
    return SPLITS[-1]


def group_ids(lakehouse: str, content_ids: pd.Series, version: int | None) -> tuple[pd.Series, int]:
    """Each content id's near-duplicate group at the duplicates table's `version` (its own id
    when it has no row there: newer than the last dedup, or dedup never ran, `version` None), and
    how many have no row. Only the rows of these ids are read, whatever the corpus's size."""
    root = lakehouse_table(lakehouse, DUPLICATES.name)
    own = pd.Series(content_ids.to_numpy(), index=content_ids.to_numpy(), name="group_id")
    if version is None:
        return own, len(own)
    wanted = pc.field("content_id").isin(pa.array(list(own.index), pa.string()))
    groups = delta_io.read_arrow(root, version, filters=wanted, columns=["content_id", "group_id"]).to_pandas().set_index("content_id")["group_id"]
    found = groups.reindex(own.index)
    return found.fillna(own), int(found.isna().sum())


@dataclass(frozen=True)
class Snapshot:
    """What a head trains on: one embedding signal's rows at a pinned embeddings version, the
    duplicates version that decided the splits, and the labels (content_id, p_positive, split)."""

    lakehouse: str
    signal: str
    model_version: str
    embeddings_version: int
    duplicates_version: int | None  # None: no duplicates table when pinned
    labels: pd.DataFrame = field(repr=False)  # content_id, p_positive, group_id, split
    joined: tuple[tuple[str, str], ...] = ()  # (signal, model version) of embeddings appended to each row's vector, in order
    ungrouped: int = 0  # labelled items with no row in the duplicates version: each its own group, a copy of it may be in another split
    width: tuple[str, int] | None = None  # a labelled item and the length of every row's vector, joined ones too, by the dim column

    @property
    def embeddings_root(self) -> str:
        return lakehouse_table(self.lakehouse, EMBEDDINGS.name)

    def file_uris(self, signal: str | None = None, model_version: str | None = None) -> list[str]:
        """The data files of a signal's partitions (default: the snapshot's own) at the pinned version, in a stable order: by
        their rows' days, then their paths."""
        chosen = {"signal": signal or self.signal, "model_version": model_version or self.model_version}
        files = [f for f in delta_io.live_files(self.embeddings_root, self.embeddings_version)
                 if all(f.partition_values.get(k) == v for k, v in chosen.items())]
        base = self.embeddings_root.rstrip("/")
        return [f"{base}/{unquote(f.path)}" for f in sorted(files, key=lambda f: (f.days or ("", ""), f.path))]

    def targets(self, split: str) -> dict[str, float]:
        """content_id -> p_positive of the labelled items in `split`."""
        chosen = self.labels[self.labels["split"] == split]
        return dict(zip(chosen["content_id"], chosen["p_positive"].astype(float)))

    def lineage(self) -> dict[str, str]:
        """The exact inputs, as MLflow params: table versions and a digest of the labels."""
        labels = self.labels.sort_values("content_id")[["content_id", "p_positive"]]
        digest = hashlib.sha256(pd.util.hash_pandas_object(labels, index=False).to_numpy().tobytes()).hexdigest()
        joined = {"joined_embeddings": JOINED_SEPARATOR.join(f"{s}@{v}" for s, v in self.joined)} if self.joined else {}
        return {"embeddings_table": self.embeddings_root, "embeddings_version": str(self.embeddings_version),
                "duplicates_version": str(self.duplicates_version), "items_without_duplicates_row": str(self.ungrouped),
                "embedding_signal": self.signal,
                "embedding_model_version": self.model_version, **joined, "labels_sha256": digest, "labels_items": str(len(labels))}


def pin_snapshot(lakehouse: str, signal: str, model_version: str, labels: pd.DataFrame,
                 embeddings_version: int | None = None, duplicates_version: int | None | Literal["latest"] = LATEST,
                 fractions: tuple[float, float, float] = (0.7, 0.15, 0.15), joined: tuple[tuple[str, str], ...] = ()) -> Snapshot:
    """A snapshot at the given versions (default: the latest; a duplicates version of None: no
    table, as a snapshot pinned before any dedup says, never "the latest now"), its labels given
    their group and split, with the `joined` embeddings' vectors appended to each row's. A label
    whose p_positive is not a number in [0, 1] is a usage error naming its item, as is an older
    embeddings version whose files of the signals read a vacuum removed, a labelled item with two
    ok rows of a signal read, and rows of one signal whose dim differs (`_one_ok_row_each`)."""
    missing = {"content_id", "p_positive"} - set(labels.columns)
    if missing:
        raise UsageError(f"a label frame needs the columns content_id and p_positive; it lacks {sorted(missing)}")
    root = lakehouse_table(lakehouse, EMBEDDINGS.name)
    latest = delta_io.latest_version(root)
    embeddings_version = latest if embeddings_version is None else embeddings_version
    if embeddings_version is None:
        raise UsageError(f"no embeddings table at {root}: run a backfill first")
    if embeddings_version != latest:
        _refuse_vacuumed(root, embeddings_version, {(signal, model_version), *joined})
    if duplicates_version == LATEST:
        duplicates_version = delta_io.latest_version(lakehouse_table(lakehouse, DUPLICATES.name))
    frame = labels[["content_id", "p_positive"]].drop_duplicates("content_id").reset_index(drop=True)
    _refuse_non_probabilities(frame)
    groups, ungrouped = group_ids(lakehouse, frame["content_id"], duplicates_version)
    frame["group_id"] = groups.to_numpy()
    frame["split"] = [split_of(g, fractions) for g in frame["group_id"]]
    snapshot = Snapshot(lakehouse, signal, model_version, embeddings_version, duplicates_version, frame, tuple(joined), ungrouped)
    widths = [_one_ok_row_each(snapshot, part) for part in ((signal, model_version), *joined)]
    return snapshot if None in widths else replace(snapshot, width=(widths[0][0], sum(n for _, n in widths)))


def _one_ok_row_each(snapshot: Snapshot, part: tuple[str, str]) -> tuple[str, int] | None:
    """A labelled item with an ok row of the (signal, model version) `part` and its dim, after a pass
    over the key columns of the part's files, a record batch at a time (a byte per labelled item is
    kept), refusing a labelled item with two ok rows (`two_ok_rows`) and ok rows of two dims. Made
    here, before the stream is dealt out: DataLoader workers each see their own files, and an item
    with ok rows in two of them was yielded twice an epoch, and rows of two lengths in two batches."""
    slots = dict(zip(snapshot.labels["content_id"], range(len(snapshot.labels))))
    seen = np.zeros(len(slots), dtype=bool)
    width = None
    for file in snapshot.file_uris(*part):
        scan = ds.dataset(file, format="parquet", schema=KEY_SCHEMA).to_batches(columns=list(KEY_COLUMNS), batch_size=READ_ROWS,
                                                                                batch_readahead=1, use_threads=False)
        for batch in scan:
            ok = batch.filter(pc.equal(batch["status"], STATUS_OK))
            for content_id, dim in zip(ok["content_id"].to_pylist(), ok["dim"].to_pylist()):
                if (slot := slots.get(content_id)) is None:
                    continue
                if seen[slot]:
                    raise two_ok_rows(content_id, *part)
                seen[slot] = True
                if dim is None:  # another writer's row without it: its vector's length is checked as it is read
                    continue
                width = width or (content_id, dim)
                if dim != width[1]:
                    _refuse_lengths(width[0], content_id, width[1], dim)
    return width


def two_ok_rows(content_id: str, signal: str, model_version: str) -> UsageError:
    """The refusal of an item with two ok rows of an embedding (rows on two days, left by backfills before they dropped the
    older day's): which day's vector is meant cannot be told, and read twice it was trained on, or sampled, twice."""
    return UsageError(f"{content_id!r} has more than one ok row of {signal} model version {model_version} (rows on two days): the "
                      "embeddings table must hold one row per item and model version; a refresh drops an item's rows of its older days")


def _refuse_vacuumed(root: str, version: int, parts: Collection[tuple[str, str]]) -> None:
    """`delta_io.vacuumed` where a data file of the (signal, model version) `parts` at an older `version`
    is gone, as every other reader of an old version says it: the loader's first read was a FileNotFoundError of one file."""
    files = [f for f in delta_io.live_files(root, version) if (f.partition_values["signal"], f.partition_values["model_version"]) in parts]
    if not delta_io.all_exist(root, files):
        raise delta_io.vacuumed(root, version)


def _refuse_non_probabilities(frame: pd.DataFrame) -> None:
    """A usage error naming an item whose p_positive is not a number in [0, 1]: a NaN made every weight of the
    head NaN (refused as diverged training, with the wrong cure) and one past 0 or 1 was trained on as more than sure."""
    p = pd.to_numeric(frame["p_positive"], errors="coerce").astype(float)  # a missing value (None, pd.NA) NaN
    if (outside := frame[~p.between(0, 1)]).empty:
        return
    first = outside.iloc[0]
    raise UsageError(f"p_positive is the probability of the positive value: {len(outside)} label(s) are not a number in [0, 1], "
                     f"e.g. {first['content_id']!r} ({first['p_positive']})")


def fold_of(group_id: str, folds: int) -> int:
    """The fold (0 to folds - 1) of a near-duplicate group, for cross-fitting: its point cut in equal parts."""
    return min(int(group_point(group_id) * folds), folds - 1)


def with_folds(snapshot: Snapshot, test_fold: int, folds: int) -> Snapshot:
    """The snapshot with its labels split by fold instead: `test_fold` the test split, the next
    fold the validation split, the others the train split."""
    fold = snapshot.labels["group_id"].map(lambda g: fold_of(g, folds))
    split = np.where(fold == test_fold, "test", np.where(fold == (test_fold + 1) % folds, "validation", "train"))
    return replace(snapshot, labels=snapshot.labels.assign(split=split))


class EmbeddingBatches(IterableDataset):
    """Batches {"x": float32 [n, dim], "y": float32 [n], "content_id": list} of one split of a
    snapshot: the `ok` rows of labelled items, each once per epoch, shuffled through a buffer of
    `shuffle_buffer` rows seeded by (seed, epoch, worker). Use with DataLoader(batch_size=None), persistent workers or not.

    A split whose rows come to at most `keep_bytes` is read from the table once and kept for the
    later epochs (a small split's epochs are otherwise spent opening files); larger ones, and all
    with `keep_bytes=0`, stream every epoch. Either way an epoch yields the same batches.

    A row whose vector is not `width`'s length (an item and the length the pin found) is refused,
    in whichever worker reads it; an item's second ok row the pin refused already."""

    def __init__(self, files: list[str], targets: Mapping[str, float], batch_size: int = 256,
                 shuffle_buffer: int = 4096, seed: int = 0, keep_bytes: int = 0, appended: Mapping[str, np.ndarray] | None = None,
                 width: tuple[str, int] | None = None) -> None:
        super().__init__()
        self.files, self.targets, self.appended, self.width = files, dict(targets), appended, width
        self.batch_size, self.shuffle_buffer, self.seed = batch_size, shuffle_buffer, seed
        self.keep_bytes = keep_bytes
        # in shared memory: a DataLoader's persistent workers keep the copy they started with, and saw epoch 0 every epoch
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._kept: tuple[tuple[str, ...], list[tuple[str, np.ndarray, float]]] | None = None  # (the files read, their rows)

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle differently (and reproducibly) in the next pass, in this process and its DataLoader's workers."""
        self._epoch.fill_(epoch)

    def _my_files(self) -> tuple[list[str], int]:
        info = get_worker_info()
        if info is None:
            return self.files, 0
        return self.files[info.id::info.num_workers], info.id

    def _rows(self, files: list[str]) -> Iterator[tuple[str, np.ndarray, float]]:
        """(content_id, vector, target) of the labelled ok rows of `files`, a record batch at a time,
        or from memory once a whole pass over the same files fitted in `keep_bytes` (a pass made
        outside a DataLoader's worker read every file: a worker's share is other files)."""
        if self._kept is not None and self._kept[0] == tuple(files):
            yield from self._kept[1]
            return
        kept: list[tuple[str, np.ndarray, float]] | None = [] if self.keep_bytes else None
        size, width = 0, self.width  # width: (content id, length) the pin gave, else of the first row read
        for file in files:  # a dataset per file: a file's metadata is let go once it is read
            # one thread: a threaded scan reads ahead by more than batch_readahead when the consumer is slow (a loaded machine)
            scan = ds.dataset(file, format="parquet", schema=READ_SCHEMA).to_batches(columns=list(READ_COLUMNS), batch_size=READ_ROWS,
                                                                                    batch_readahead=1, use_threads=False)
            for batch in scan:
                for row in _labelled(batch, self.targets, self.appended):
                    if width is None:
                        width = row[0], len(row[1])
                    elif len(row[1]) != width[1]:
                        _refuse_lengths(width[0], row[0], width[1], len(row[1]))
                    if kept is not None:
                        kept.append(row)
                        size += row[1].nbytes
                        kept = kept if size <= self.keep_bytes else None
                    yield row
        self._kept = None if kept is None else (tuple(files), kept)

    def _shuffled(self, rows: Iterator[tuple[str, np.ndarray, float]], worker: int) -> Iterator[tuple[str, np.ndarray, float]]:
        rng = np.random.default_rng([self.seed, int(self._epoch), worker])
        buffer: list[tuple[str, np.ndarray, float]] = []
        for row in rows:
            if len(buffer) < self.shuffle_buffer:
                buffer.append(row)
                continue
            i = int(rng.integers(len(buffer)))
            buffer[i], row = row, buffer[i]
            yield row
        rng.shuffle(buffer)
        yield from buffer

    def __iter__(self) -> Iterator[dict[str, object]]:
        files, worker = self._my_files()
        chunk: list[tuple[str, np.ndarray, float]] = []
        for row in self._shuffled(self._rows(files), worker):
            chunk.append(row)
            if len(chunk) == self.batch_size:
                yield _collated(chunk)
                chunk = []
        if chunk:
            yield _collated(chunk)


def _ok_rows(batch: pa.RecordBatch) -> tuple[list[str], np.ndarray | None]:
    """The content ids and vectors (one row each) of a record batch's ok rows with a usable vector:
    one whose vector is null, empty or not finite (another writer's) is left out, as an error row is."""
    batch = batch.filter(pc.equal(batch["status"], STATUS_OK))
    batch = batch.filter(pc.fill_null(pc.greater(pc.list_value_length(batch["vector"]), 0), False))
    if not batch.num_rows:
        return [], None
    lengths = pc.list_value_length(batch["vector"])
    if len(found := pc.unique(lengths).to_pylist()) > 1:
        first, second = (pc.filter(batch["content_id"], pc.equal(lengths, n))[0].as_py() for n in found[:2])
        _refuse_lengths(first, second, *found[:2])
    matrix = batch["vector"].flatten().to_numpy(zero_copy_only=False).reshape(batch.num_rows, -1)
    finite = np.isfinite(matrix).all(axis=1)
    if finite.all():
        return batch["content_id"].to_pylist(), matrix
    return pc.filter(batch["content_id"], pa.array(finite)).to_pylist(), matrix[finite]


def _refuse_lengths(first: str, second: str, first_length: int, second_length: int) -> None:
    """A usage error: the rows a head reads hold vectors of two lengths (another writer's rows)."""
    raise UsageError(f"the embedding rows read hold vectors of two lengths ({first_length} floats, e.g. {first!r}, and {second_length}, "
                     f"e.g. {second!r}): a head reads one length; delete or recompute the rows of the other")


def _labelled(batch: pa.RecordBatch, wanted: Mapping[str, float],
              appended: Mapping[str, np.ndarray] | None = None) -> Iterator[tuple[str, np.ndarray, float]]:
    """(content_id, vector, target) of the ok rows of a record batch whose id is in `wanted` (and,
    with `appended`, has a vector there too, put after its own)."""
    ids, matrix = _ok_rows(batch)
    for i, content_id in enumerate(ids):
        if content_id not in wanted:
            continue
        if appended is None:
            yield content_id, matrix[i].copy(), wanted[content_id]  # a copy: a view would hold its whole batch
        elif content_id in appended:
            yield content_id, np.concatenate([matrix[i], appended[content_id]]), wanted[content_id]


def joined_vectors(snapshot: Snapshot, content_ids: Collection[str]) -> dict[str, np.ndarray]:
    """content_id -> the snapshot's joined embeddings' vectors, one after another, of those of
    `content_ids` with an ok row in every one of them."""
    found: dict[str, np.ndarray] | None = None
    for signal, model_version in snapshot.joined:
        mine: dict[str, np.ndarray] = {}
        for file in snapshot.file_uris(signal, model_version):
            for batch in ds.dataset(file, format="parquet", schema=READ_SCHEMA).to_batches(columns=list(READ_COLUMNS), batch_size=READ_ROWS):
                ids, matrix = _ok_rows(batch)
                mine.update((c, matrix[i].copy()) for i, c in enumerate(ids) if c in content_ids)
        found = mine if found is None else {c: np.concatenate([v, mine[c]]) for c, v in found.items() if c in mine}
    return found or {}


def _collated(rows: list[tuple[str, np.ndarray, float]]) -> dict[str, object]:
    return {"content_id": [r[0] for r in rows],
            "x": torch.from_numpy(np.stack([r[1] for r in rows]).astype(np.float32, copy=False)),
            "y": torch.tensor([r[2] for r in rows], dtype=torch.float32)}


def batches(snapshot: Snapshot, split: str, batch_size: int = 256, shuffle_buffer: int = 4096, seed: int = 0,
            keep_bytes: int = 0) -> EmbeddingBatches:
    """The split's stream over the snapshot's files (kept in memory after a pass if it fits in `keep_bytes`)."""
    targets = snapshot.targets(split)
    appended = joined_vectors(snapshot, targets.keys()) if snapshot.joined else None
    return EmbeddingBatches(snapshot.file_uris(), targets, batch_size, shuffle_buffer, seed, keep_bytes, appended, snapshot.width)
