"""What an index is made of: one signal's rows at one model version in the embeddings table at a
pinned Delta version, read with delta-rs on the driver (no Spark), and what changed in them
between two versions (the data files added and removed in the signal's partitions).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError, TableNotFoundError

from conf.settings import UsageError
from lake import delta_io
from signals.contracts import STATUS_OK

COLUMNS = ("content_id", "model_version", "status", "vector")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Vectors:
    """The ok rows of one model version: content ids in order and their vectors, one row each."""

    content_ids: list[str]
    matrix: np.ndarray
    model_version: str


@dataclass(frozen=True)
class Changes:
    """Between two versions: the rows of the files added in the signal's partitions (new,
    changed, or rewritten around a change), and the content ids of the files removed."""

    rows: pa.Table
    removed_ids: set[str]


def pinned_version(root: str, version: int | None) -> int:
    """The table version to read: `version`, or the latest; a clear UsageError for a missing
    table or a version it does not have."""
    try:  # not DeltaTable.is_deltatable: it holds the GIL while it lists the store, so an S3 server in this process (moto, in tests) never answers
        latest = DeltaTable(root).version()
    except TableNotFoundError:
        raise UsageError(f"no embeddings table at {root}: run a backfill first (content-signals backfill), or check --profile/--set lakehouse") from None
    if version is None:
        return latest
    if not 0 <= version <= latest:
        raise UsageError(f"{root} has versions 0 to {latest}, not {version}")
    try:
        delta_io.snapshot(root, version)
    except DeltaError as e:
        raise UsageError(f"version {version} of {root} can no longer be read ({e}); index a later one") from e
    return version


def table_id(root: str, version: int | None) -> str:
    """The table's Delta id at `version` (None: the latest): a table dropped and written again reuses version numbers, not its id."""
    return delta_io.snapshot(root, version).metadata().id


def _partition(signal: str, model_version: str) -> delta_io.Where:
    """The partition of one signal at one model version: only its files are opened."""
    return [("signal", "=", signal), ("model_version", "=", model_version)]


def held_by(root: str, version: int) -> set[tuple[str, str]]:
    """The (signal, model version) pairs with rows in the snapshot at `version` (from its log)."""
    return {(f.partition_values["signal"], f.partition_values["model_version"]) for f in delta_io.live_files(root, version)}


def signal_rows(root: str, signal: str, model_version: str, version: int) -> pa.Table:
    """Every row (ok or error) of `signal` at `model_version` in the snapshot at `version`; a
    UsageError naming what the table holds when it has none."""
    if (signal, model_version) not in (held := held_by(root, version)):
        what = ", ".join(f"{s} at model version {v}" for s, v in sorted(held)) or "nothing"
        raise UsageError(f"{root} version {version} has no rows of {signal} at model version {model_version}; it holds {what}")
    return delta_io.read_arrow(root, version, where=_partition(signal, model_version), columns=COLUMNS)


def with_direction(matrix: np.ndarray) -> np.ndarray:
    """Per row (a vector), whether it has a direction to find neighbours along: finite and not zero."""
    return np.isfinite(matrix).all(axis=1) & matrix.any(axis=1)


def vectors_of(rows: pa.Table, model_version: str, dim: int | None = None) -> Vectors:
    """The ok rows' vectors, ordered by content id, but for vectors with no direction (not finite,
    or zero: another writer's); refuses rows of another model version (two models' vectors are not
    comparable), an item's second row and vectors of differing lengths, or of another length than
    `dim` (the vectors of the index they join)."""
    versions = set(pc.unique(rows["model_version"]).to_pylist())
    if versions - {model_version}:
        raise UsageError(f"rows of model versions {sorted(versions)}: an index holds one model version's vectors "
                         f"({model_version}), whose distances to another model's mean nothing")
    counts = pc.value_counts(rows["content_id"])
    repeated = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1)).to_pylist()
    if repeated:
        raise UsageError(f"rows of model version {model_version} hold {len(repeated)} content id{'s' * (len(repeated) > 1)} more than once "
                         f"({', '.join(sorted(repeated)[:5])}): the table must hold one row per item and model version")
    ok = rows.filter(pc.equal(rows["status"], STATUS_OK)).sort_by("content_id")
    lengths = set(pc.unique(pc.list_value_length(ok["vector"])).to_pylist()) | ({dim} if dim is not None else set())
    if len(lengths) > 1:
        raise UsageError(f"vectors of model version {model_version} have different lengths {sorted(lengths)}")
    dim = lengths.pop() if lengths else 0
    flat = ok["vector"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
    matrix = flat.astype(np.float32).reshape(ok.num_rows, dim)
    usable = with_direction(matrix)
    if not usable.all():
        log.warning("%d ok rows of model version %s have a vector that is not finite or is zero, left out as error rows are: %s",
                    (~usable).sum(), model_version, ", ".join(pc.filter(ok["content_id"], pa.array(~usable)).to_pylist()[:5]))
    return Vectors(pc.filter(ok["content_id"], pa.array(usable)).to_pylist(), matrix[usable], model_version)


def changes(root: str, signal: str, model_version: str, since: int, version: int) -> Changes | None:
    """What changed in the signal's rows at `model_version` from `since` to `version`; None when it
    cannot be known from the files (the old version's log or files are gone: vacuumed)."""
    try:
        added, removed = delta_io.changed_files(root, since, version)
    except DeltaError:
        return None
    added, removed = ([f for f in files if (f.partition_values["signal"], f.partition_values["model_version"]) == (signal, model_version)]
                      for files in (added, removed))
    if delta_io.has_deletion_vectors(root) or not delta_io.all_exist(root, removed):
        return None
    removed_ids = delta_io.read_files(root, since, removed, ["content_id"])["content_id"].to_pylist()
    return Changes(delta_io.read_files(root, version, added, COLUMNS), set(removed_ids))


def item_vector(root: str, signal: str, model_version: str, version: int, content_id: str) -> np.ndarray:
    """One item's vector in the snapshot at `version`; a UsageError when it has no ok row there."""
    rows = delta_io.read_arrow(root, version, where=[*_partition(signal, model_version), ("content_id", "=", content_id)],
                               columns=("status", "error", "vector"))
    if rows.num_rows == 0:
        raise UsageError(f"{root} version {version} has no row of {content_id!r} for {signal} at model version {model_version}")
    row = rows.to_pylist()[0]
    if row["status"] != STATUS_OK:
        raise UsageError(f"{content_id!r} has no vector for {signal} at model version {model_version}: {row['error']}")
    vector = np.asarray(row["vector"] or [], dtype=np.float32)
    if not with_direction(vector[None, :])[0]:  # left out of every index (vectors_of): no neighbours to find
        raise UsageError(f"{content_id!r} has a vector without a direction (not finite, or zero) for {signal} at model version "
                         f"{model_version}: another writer's row, not indexed")
    return vector
