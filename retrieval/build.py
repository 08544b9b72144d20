"""A signal's index from the embeddings table: built whole from a pinned table version, or
brought up to a later version by applying only what changed since the version it was built from.

An index holds the ok rows of one model version (the caller resolves the champion's). An update
reads the data files added and removed in the signal's partitions since the manifest's version
(lake.delta_io.changed_files): it removes every item of those files, then adds back the ok rows
of the added files, so new and changed items are in, and takedowns and items whose row became an
error are out. It rebuilds instead when the table is not the one the index was built from (its
Delta id differs: dropped and written again), when the files of the old version are gone (vacuumed), or
when the number of items calls for the other kind of index; the result is the same either way.
Builds and updates of one signal take turns (retrieval.writer_lock), from reading its manifest to
replacing it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow.compute as pc

from conf.settings import IndexSettings, UsageError
from retrieval import index_store
from retrieval.embedding_rows import changes, held_by, item_vector, pinned_version, signal_rows, table_id, vectors_of
from retrieval.index_store import Manifest
from retrieval.vector_index import EXACT, IndexKind, VectorIndex, choose_kind, probed
from retrieval.writer_lock import writer_lock
from signals.contracts import EMBEDDINGS, lakehouse_table


@dataclass(frozen=True)
class IndexOutcome:
    """The manifest of the signal's index now, and what the command did, in a sentence."""

    manifest: Manifest
    message: str


def embeddings_root(lakehouse_root: str) -> str:
    return lakehouse_table(lakehouse_root, EMBEDDINGS.name)


def _another_table(manifest: Manifest, table: str, identity: str) -> str | None:
    """Why the index is not of the table whose Delta id is `identity`; None when it is."""
    if manifest.table_id == identity:
        return None
    if manifest.table_id:
        return f"the index was built from table {manifest.table_id}, and {table} is now table {identity} (dropped and written again)"
    return "its manifest does not say which table it was built from (it predates table ids)"


def indexed_vector(lakehouse_root: str, manifest: Manifest, content_id: str) -> np.ndarray:
    """An item's vector in the snapshot its index was built or updated from (`item_vector`), refused
    when the table there now is another (dropped and written again): its vectors are not the index's."""
    table = embeddings_root(lakehouse_root)
    if why := _another_table(manifest, table, table_id(table, None)):  # a table's id is the same at every version
        raise UsageError(f"the index of {manifest.signal} cannot be queried: {why}; build the index again "
                         f"(content-signals index {manifest.signal})")
    return item_vector(table, manifest.signal, manifest.model_version, manifest.table_version, content_id)


def _describe(manifest: Manifest) -> str:
    kind = manifest.kind
    params = ", ".join(f"{k} {v}" for k, v in kind.items() if k in ("lists", "probes"))
    return (f"{manifest.signal}: {kind['name']}{f' ({params})' if params else ''} index of {manifest.items} items at model version "
            f"{manifest.model_version}, from {EMBEDDINGS.name} version {manifest.table_version}")


def build_index(lakehouse_root: str, signal: str, model_version: str, settings: IndexSettings, version: int | None = None) -> IndexOutcome:
    """A new index of the signal's ok rows at `model_version` in the table at `version` (latest if None)."""
    pinned_version(embeddings_root(lakehouse_root), version)  # a wrong lakehouse is said before its lock is made there
    with writer_lock(index_store.signal_folder(lakehouse_root, signal)):
        return _build(lakehouse_root, signal, model_version, settings, version)


def update_index(lakehouse_root: str, signal: str, model_version: str, settings: IndexSettings, version: int | None = None) -> IndexOutcome:
    """The signal's index brought to the table at `version` (latest if None) by its changes alone."""
    index_store.read_manifest(lakehouse_root, signal)  # no index: said before its lock is made
    with writer_lock(index_store.signal_folder(lakehouse_root, signal)):
        return _update(lakehouse_root, signal, model_version, settings, version)


def _build(lakehouse_root: str, signal: str, model_version: str, settings: IndexSettings, version: int | None,
           reason: str = "", replacing: Manifest | None = None) -> IndexOutcome:
    """A new index; when it replaces the index `replacing` (an update that rebuilds), a signal with
    no ok rows left gives an empty index of its dimension, as an update in place empties it."""
    table = embeddings_root(lakehouse_root)
    version = pinned_version(table, version)
    has_rows = replacing is None or (signal, model_version) in held_by(table, version)  # else signal_rows refuses
    vectors = vectors_of(signal_rows(table, signal, model_version, version), model_version) if has_rows else None
    if vectors is not None and vectors.content_ids:
        index = VectorIndex.build(vectors.content_ids, vectors.matrix, choose_kind(len(vectors.content_ids), settings))
    elif replacing is not None:
        index = VectorIndex.build([], np.empty((0, replacing.dim), np.float32), IndexKind(EXACT))
    else:
        raise UsageError(f"{table} version {version} has no ok rows of {signal} at model version {model_version}: nothing to index")
    manifest = index_store.save(lakehouse_root, signal, index, EMBEDDINGS.name, table_id(table, version), version, model_version,
                                {"how": "build", **({"reason": reason} if reason else {})})
    return IndexOutcome(manifest, f"built {_describe(manifest)}{f' ({reason})' if reason else ''}")


def _update(lakehouse_root: str, signal: str, model_version: str, settings: IndexSettings, version: int | None) -> IndexOutcome:
    manifest, loaded = index_store.load(lakehouse_root, signal)
    index = VectorIndex(loaded.index, probed(loaded.kind, settings), loaded.ids, loaded.next_id)  # the lists of its build, the probes set now
    if manifest.model_version != model_version:
        raise UsageError(f"the index of {signal} holds model version {manifest.model_version} and the champion is now {model_version}: "
                         f"one index never mixes two models' vectors; build a new one (content-signals index {signal}, without --update)")
    table = embeddings_root(lakehouse_root)
    version = pinned_version(table, version)
    identity = table_id(table, version)
    if why := _another_table(manifest, table, identity):  # another table's version numbers say nothing about the index's items
        return _build(lakehouse_root, signal, model_version, settings, version, f"rebuilt: {why}", manifest)
    if version < manifest.table_version:
        raise UsageError(f"the index of {signal} is at {EMBEDDINGS.name} version {manifest.table_version}, after {version}: "
                         f"build one at {version} instead (without --update)")
    if version == manifest.table_version:
        return IndexOutcome(manifest, f"nothing to do: {_describe(manifest)}")
    found = changes(table, signal, model_version, manifest.table_version, version)
    if found is None:
        return _build(lakehouse_root, signal, model_version, settings, version,
                      f"rebuilt: the files of version {manifest.table_version} are no longer all there", manifest)
    before = set(index.ids)
    fresh = vectors_of(found.rows, model_version, index.dim)
    index.remove(found.removed_ids | set(pc.unique(found.rows["content_id"]).to_pylist()))
    index.add(fresh.content_ids, fresh.matrix)
    if len(index) and choose_kind(len(index), settings).name != index.kind.name:  # emptied: saved empty, as it is
        return _build(lakehouse_root, signal, model_version, settings, version,
                      f"rebuilt: {len(index)} items call for another kind of index than {index.kind.name}")
    after = set(index.ids)
    # re-added: items of the added files that were in the index already (changed, or in a file rewritten around a change)
    counts = {"added": len(after - before), "re_added": len(fresh.content_ids) - len(after - before), "removed": len(before - after)}
    manifest = index_store.save(lakehouse_root, signal, index, EMBEDDINGS.name, identity, version, model_version,
                                {"how": "update", "from_table_version": manifest.table_version, **counts})
    return IndexOutcome(manifest, f"updated {_describe(manifest)}: " + ", ".join(f"{n} {what.replace('_', '-')}" for what, n in counts.items()))
