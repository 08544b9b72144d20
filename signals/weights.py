"""Model weights as the registry and the workers see them: where a source names them, and their sha256.

The registry hashes the weights of a version when it registers them (on the driver); each worker
hashes them again when it loads them, and refuses weights that are not the version's.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

_CHUNK = 1 << 20
NO_WEIGHTS = "no weights at"  # how a missing weights path is said, here and wherever a worker said it (jobs.failures)
NO_HUB_WEIGHTS = "cannot load the weights of hub tag"  # how an unavailable hub tag is said, here and by a worker (jobs.failures)
STORAGE_SCHEMES = {"s3", "s3a", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss"}


class HubWeightsUnavailable(FileNotFoundError):
    """Weights named by a hub tag that neither the hub (unreachable, or without the tag) nor the local
    hub cache gives: a setting to change, said in one line, not the download library's traceback."""

    @classmethod
    def of(cls, tag: str, reason: str) -> HubWeightsUnavailable:
        """The error for `tag`, with the first line of why and where weights may come from instead."""
        why = (reason.strip() or "no reason given").splitlines()[0]
        return cls(f"{NO_HUB_WEIGHTS} {tag!r} ({why}): weights come from a hub tag every Python worker reaches or finds "
                   "in its hub cache (HF_HOME), or a checkpoint path on storage every worker reads (README, Running on a cluster)")


class WeightsMismatch(RuntimeError):
    """Weights that are not the ones their registry version was registered with: rows computed
    with them would carry a version and a sha256 that did not compute them."""


def local_path(source: str) -> str | None:
    """`source` as an absolute local path if it names one: an existing file or folder, or
    anything written as a path (`/...`, `./...`, `~...`, `file://...`), which must then exist."""
    explicit = source.startswith(("/", "./", "../", "~", "file://"))
    if source.startswith("file://"):
        source = urlparse(source).path
    path = Path(source).expanduser()
    if path.exists() and "://" not in source:
        return str(path.resolve())
    if explicit:
        raise FileNotFoundError(f"{NO_WEIGHTS} {source}")
    return None


def driver_path(source: str) -> str:
    """`source` made absolute where it is a local path relative to this process's folder or to `~`
    (an existing file or folder, or one written `./`, `../`, `~`): each Python worker reads it from
    its own working folder, an executor's on a cluster. Absolute paths (symlinks kept), URIs and hub
    tags are returned as written."""
    path = os.path.expanduser(source)
    if "://" in source or os.path.isabs(source) or not (source.startswith(("./", "../", "~")) or os.path.exists(path)):
        return source
    return os.path.abspath(path)


def is_weights_location(source: str) -> bool:
    """A path or storage URI (hashed); anything else (`laion2b_s34b_b79k`, `hf-hub:org/model`) is a hub tag."""
    return local_path(source) is not None or urlparse(source).scheme in STORAGE_SCHEMES


def weights_sha256(path: str) -> str:
    """sha256 of a weight file, or of a folder: for every file under it, in sorted relative
    (POSIX) path order, its relative path, a NUL byte, then its bytes. The paths are hashed so
    that renaming a file (tokenizer.json, config.json) makes a different model.
    Local paths and `file://` URIs are read directly, storage URIs (`s3://`, `hdfs://`) through pyarrow."""
    filesystem, files = _files(path)
    digest = hashlib.sha256()
    for rel, info in files:
        if rel:
            digest.update(rel.encode() + b"\0")
        _update(digest, filesystem, info.path)
    return digest.hexdigest()


def weights_bytes(path: str) -> bytes:
    """The bytes of a single weights file, local or at a storage URI (a small one: a trained head)."""
    filesystem, files = _files(path)
    if [rel for rel, _ in files] != [""]:
        raise IsADirectoryError(f"{path} is a folder of weights, not one file")
    with filesystem.open_input_stream(files[0][1].path) as stream:
        return stream.read()


def weights_stat(path: str) -> str | None:
    """A fingerprint of the weights at `path` from their listing alone: the location and each
    file's relative path, size and modification time. The same fingerprint means weights left
    alone since, without reading a byte of them; None where the storage keeps no modification times."""
    _, files = _files(path)
    if any(info.mtime_ns is None for _, info in files):
        return None
    listing = [path, *((rel, info.size, info.mtime_ns) for rel, info in files)]
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()


def _files(path: str) -> tuple[Any, list[tuple[str, Any]]]:
    """The filesystem of the weights at `path` and their files, as (relative path, pyarrow
    FileInfo) in relative path order; a single file is listed with the relative path ''."""
    from pyarrow import fs as pafs

    local = local_path(path)
    if local is not None:
        filesystem, base = pafs.LocalFileSystem(), local
    else:
        filesystem, base = pafs.FileSystem.from_uri(path)
    info = filesystem.get_file_info(base)
    if info.type == pafs.FileType.File:
        return filesystem, [("", info)]
    if info.type != pafs.FileType.Directory:
        raise FileNotFoundError(f"{NO_WEIGHTS} {path}")
    prefix = base.rstrip("/") + "/"
    entries = filesystem.get_file_info(pafs.FileSelector(base, recursive=True))
    return filesystem, sorted(((e.path[len(prefix):], e) for e in entries if e.type == pafs.FileType.File), key=lambda f: f[0])


def _update(digest: Any, filesystem: Any, path: str) -> Any:
    with filesystem.open_input_stream(path) as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest
