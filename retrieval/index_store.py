"""Where an index lives: beside the tables, on the lakehouse's own storage (a folder or s3://,
through pyarrow's filesystems), one folder per signal:

    <lakehouse>/_indexes/<signal>/manifest.json                  the current build, written last
    <lakehouse>/_indexes/<signal>/builds/<build>/index.faiss     faiss's serialised index
    <lakehouse>/_indexes/<signal>/builds/<build>/ids.parquet     content_id -> faiss id

A build's files are never rewritten: a new build (or update) writes a new folder, then replaces
the manifest (written aside and moved into place), so a reader that read the manifest finds its
files. The folders of builds before the previous one are deleted then; a folder named after the
previous build (a later one, or one still being written) is never deleted, nor the build just
published (build names begin with their writer's clock, which may be behind the previous writer's). Writers of one signal
take turns (retrieval.writer_lock); a reader whose build was deleted after it read the manifest
reads the manifest again.
"""
from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import asdict, dataclass, field
from types import UnionType
from typing import Any, get_origin, get_type_hints

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from conf.settings import UsageError
from lake.delta_io import filesystem_of
from retrieval.vector_index import IndexKind, VectorIndex

INDEXES = "_indexes"
MANIFEST = "manifest.json"
FORMAT = 1


@dataclass(frozen=True)
class Manifest:
    """What an index was built from and how: read before the index, checked against the request."""

    signal: str
    table: str  # the embeddings table's root
    table_version: int
    model_version: str
    dim: int
    kind: dict[str, Any]  # IndexKind.as_dict(): name and parameters
    items: int
    next_id: int  # the faiss id the next added item gets
    build: str  # its folder under builds/
    index_file: str  # relative to the signal's folder
    ids_file: str
    built_at: str
    made_by: dict[str, Any] = field(default_factory=dict)  # build, or update of which version with what counts
    table_id: str | None = None  # the table's Delta id (its version numbers restart when it is written anew); None: not recorded
    format: int = FORMAT

    @property
    def index_kind(self) -> IndexKind:
        return IndexKind(**self.kind)


def signal_folder(lakehouse_root: str, signal: str) -> str:
    return f"{lakehouse_root.rstrip('/')}/{INDEXES}/{signal}"


def save(lakehouse_root: str, signal: str, index: VectorIndex, table: str, table_id: str, table_version: int, model_version: str,
         made_by: dict[str, Any]) -> Manifest:
    """Write the index as a new build and make it the signal's current one; returns its manifest."""
    filesystem, folder = filesystem_of(signal_folder(lakehouse_root, signal))
    previous = _current_build(filesystem, folder)
    now = dt.datetime.now(dt.UTC)
    build = f"{now.strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:8]}"
    index_file, ids_file = f"builds/{build}/index.faiss", f"builds/{build}/ids.parquet"
    filesystem.create_dir(f"{folder}/builds/{build}")
    with filesystem.open_output_stream(f"{folder}/{index_file}") as out:
        out.write(index.to_bytes())
    pairs = sorted(index.ids.items())
    pq.write_table(pa.table({"content_id": pa.array([c for c, _ in pairs], pa.string()), "faiss_id": pa.array([i for _, i in pairs], pa.int64())}),
                   f"{folder}/{ids_file}", filesystem=filesystem)
    manifest = Manifest(signal, table, table_version, model_version, index.dim, index.kind.as_dict(), len(index), index.next_id, build,
                        index_file, ids_file, now.isoformat(timespec="seconds"), made_by, table_id)
    aside = f"{folder}/{MANIFEST}.{build}"
    with filesystem.open_output_stream(aside) as out:
        out.write(json.dumps(asdict(manifest), indent=2).encode())
    filesystem.move(aside, f"{folder}/{MANIFEST}")
    _delete_builds_before(filesystem, folder, previous, build)
    return manifest


def _current_build(filesystem: pafs.FileSystem, folder: str) -> str | None:
    try:
        return json.loads(_read(filesystem, f"{folder}/{MANIFEST}"))["build"]
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def _read(filesystem: pafs.FileSystem, path: str) -> bytes:
    with filesystem.open_input_stream(path) as stream:
        return stream.read()


def _delete_builds_before(filesystem: pafs.FileSystem, folder: str, previous: str | None, published: str) -> None:
    """Delete the folders of builds made before `previous` (build names begin with their writer's
    UTC time), never the build just `published`: its writer's clock may be behind previous's."""
    if previous is None:
        return
    for entry in filesystem.get_file_info(pafs.FileSelector(f"{folder}/builds", allow_not_found=True)):
        if entry.type == pafs.FileType.Directory and entry.base_name < previous and entry.base_name != published:
            filesystem.delete_dir(entry.path)


def indexed_signals(lakehouse_root: str) -> list[str]:
    """The signals with an index (a manifest) in the lakehouse."""
    filesystem, folder = filesystem_of(f"{lakehouse_root.rstrip('/')}/{INDEXES}")
    signals = [e.base_name for e in filesystem.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
               if e.type == pafs.FileType.Directory]
    manifests = filesystem.get_file_info([f"{folder}/{s}/{MANIFEST}" for s in signals])
    return sorted(s for s, m in zip(signals, manifests) if m.type == pafs.FileType.File)


def read_manifest(lakehouse_root: str, signal: str) -> Manifest:
    """The signal's current manifest; a UsageError when there is none or it is not this signal's."""
    filesystem, folder = filesystem_of(signal_folder(lakehouse_root, signal))
    try:
        text = _read(filesystem, f"{folder}/{MANIFEST}")
    except FileNotFoundError:
        raise UsageError(f"no index of {signal} in {lakehouse_root}: build one first (content-signals index {signal})") from None
    try:
        manifest = Manifest(**json.loads(text))
    except (ValueError, TypeError) as e:
        raise UsageError(f"{folder}/{MANIFEST} is not an index manifest ({e}): build the index again") from e
    if wrong := _of_another_type(manifest):
        raise UsageError(f"{folder}/{MANIFEST} is not an index manifest (its {wrong}): build the index again")
    if manifest.signal != signal:
        raise UsageError(f"{folder}/{MANIFEST} describes an index of {manifest.signal}, not {signal}: build the index of {signal} again")
    if manifest.format != FORMAT:
        raise UsageError(f"{folder}/{MANIFEST} has format {manifest.format}, this code reads {FORMAT}: build the index again")
    if "/" in manifest.build or manifest.build in ("", ".", "..") or \
            (manifest.index_file, manifest.ids_file) != (f"builds/{manifest.build}/index.faiss", f"builds/{manifest.build}/ids.parquet"):
        raise UsageError(f"{folder}/{MANIFEST} names files outside its build's folder ({manifest.index_file}, {manifest.ids_file}): "
                         f"build the index again")
    try:
        manifest.index_kind  # noqa: B018 (refused here rather than when the index is loaded)
    except TypeError as e:
        raise UsageError(f"{folder}/{MANIFEST} has an index kind this code does not know ({e}): build the index again") from e
    return manifest


def _of_another_type(manifest: Manifest) -> str | None:
    """The first field whose value is not of the field's type, and what it is (another writer's
    manifest, or one edited by hand: a count as a string failed comparisons later); None if none."""
    for name, hint in get_type_hints(Manifest).items():
        value = getattr(manifest, name)
        if not isinstance(value, hint if get_origin(hint) in (None, UnionType) else get_origin(hint)):
            return f"{name} is a {type(value).__name__}, not {hint.__name__ if isinstance(hint, type) else hint}"
    return None


def load(lakehouse_root: str, signal: str, manifest: Manifest | None = None) -> tuple[Manifest, VectorIndex]:
    """The signal's current index and its manifest (or the build `manifest`, already read, names)."""
    filesystem, folder = filesystem_of(signal_folder(lakehouse_root, signal))
    read_here, manifest = manifest is None, manifest or read_manifest(lakehouse_root, signal)
    try:
        data = _read(filesystem, f"{folder}/{manifest.index_file}")
    except FileNotFoundError:
        if not read_here:
            raise
        manifest = read_manifest(lakehouse_root, signal)  # two saves landed since it was read: the second deleted its build
        data = _read(filesystem, f"{folder}/{manifest.index_file}")
    damaged = f"the index files of build {manifest.build} of {signal} are damaged"
    if len(data) < manifest.items * manifest.dim * 4:  # before faiss allocates what a damaged header claims
        raise UsageError(f"{damaged} ({manifest.index_file} has {len(data)} bytes, too few for {manifest.items} vectors of "
                         f"{manifest.dim} floats): build the index again (content-signals index {signal})")
    try:
        ids = pq.read_table(f"{folder}/{manifest.ids_file}", filesystem=filesystem)
        mapping = dict(zip(ids["content_id"].to_pylist(), ids["faiss_id"].to_pylist()))
        index = VectorIndex.from_bytes(data, manifest.index_kind, mapping, manifest.next_id)
        held = set(index.faiss_ids())
    except (RuntimeError, KeyError, pa.ArrowInvalid) as e:  # faiss reports a bad file as a RuntimeError
        raise UsageError(f"{damaged} ({str(e).strip().splitlines()[0][:200]}): build the index again (content-signals index {signal})") from e
    if not len(index) == manifest.items == ids.num_rows == len(mapping) or index.dim != manifest.dim:
        raise UsageError(f"{damaged}: they hold {len(index)} vectors of {index.dim} dimensions and {ids.num_rows} ids, its manifest "
                         f"says {manifest.items} of {manifest.dim}: build the index again (content-signals index {signal})")
    if held != set(mapping.values()):  # else a search that finds an id the ids file does not name fails: every request of the service
        raise UsageError(f"{damaged}: {manifest.ids_file} does not name the faiss ids {manifest.index_file} holds: build the index again "
                         f"(content-signals index {signal})")
    return manifest, index
