"""One writer at a time per signal's index, so that two `index` runs at once cannot delete each
other's builds or leave a manifest that names a deleted one.

A writer holds the lock from reading the manifest to replacing it, so an update applies its
changes to the current build. In a local lakehouse the lock is `flock` on a file in the signal's
folder (the kernel releases it when the process dies). On S3 it is an object created with a
conditional put (`If-None-Match: *`, the condition delta-rs commits with: docs/design.md, The
lakehouse on object storage) and deleted when done, only if it is still its own (`If-Match`:
a writer whose lock was taken as stale deleted its successor's); a lock object whose writer ran on this
machine and has ended, or that a waiter has seen unchanged for `stale_after_s` by its own clock,
belonged to a killed writer and is deleted (only if still unchanged: `If-Match`).
"""
from __future__ import annotations

import fcntl
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from conf.settings import UsageError
from lake.alias_lock import process_gone, this_process
from lake.delta_io import CommitConflict, filesystem_of

LOCK = "writer.lock"
STALE_AFTER_S = 900.0  # an S3 lock object seen this long belongs to a killed writer (a save writes one index's files)
WAIT_AT_MOST_S = 1800.0  # then a writer gives up, naming the lock
POLL_S = 0.2

log = logging.getLogger(__name__)


@contextmanager
def writer_lock(folder: str, stale_after_s: float = STALE_AFTER_S, wait_at_most_s: float = WAIT_AT_MOST_S) -> Iterator[None]:
    """Hold the lock of the index folder `folder` (a local path or s3:// URI) for the block."""
    filesystem, path = filesystem_of(folder)
    if isinstance(filesystem, pafs.LocalFileSystem):
        with _file_lock(Path(path) / LOCK, wait_at_most_s):
            yield
    elif isinstance(filesystem, pafs.S3FileSystem):
        with _object_lock(f"{path}/{LOCK}", stale_after_s, wait_at_most_s):
            yield
    else:
        raise UsageError(f"indexes are kept in a local folder or on s3://, not at {folder}")


@contextmanager
def _file_lock(path: Path, wait_at_most_s: float) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as lock:  # closing it releases the lock
        wait = _waiter(str(path), wait_at_most_s)
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                wait()
        yield


@contextmanager
def _object_lock(path: str, stale_after_s: float, wait_at_most_s: float) -> Iterator[None]:
    import boto3  # only a lakehouse on S3 needs it; it reads the store's location from the AWS environment
    from botocore.exceptions import ClientError

    bucket, key = path.split("/", 1)
    client = boto3.client("s3")
    body = json.dumps({**this_process(), "nonce": uuid.uuid4().hex}).encode()  # its ETag differs from any earlier lock's
    wait = _waiter(f"s3://{path}", wait_at_most_s)
    first_seen: dict[str, float] = {}  # ETag of a lock object -> when this writer first saw it
    while True:
        try:
            mine = client.put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*")["ETag"]
            break
        except ClientError as e:
            if e.response["Error"]["Code"] not in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise
        try:
            held = client.get_object(Bucket=bucket, Key=key)
        except ClientError as e:
            if e.response["Error"]["Code"] == "NoSuchKey":  # released meanwhile
                continue
            raise
        etag, now = held["ETag"], time.monotonic()
        if process_gone(_holder(held["Body"].read())) or now - first_seen.setdefault(etag, now) > stale_after_s:
            try:
                client.delete_object(Bucket=bucket, Key=key, IfMatch=etag)
            except ClientError as e:
                if e.response["Error"]["Code"] not in ("PreconditionFailed", "NoSuchKey"):
                    raise
            continue
        wait()
    try:
        yield
    finally:
        try:  # only its own: a waiter that took it as stale holds another, which deleting would hand to a third writer
            client.delete_object(Bucket=bucket, Key=key, IfMatch=mine)
        except ClientError as e:
            if e.response["Error"]["Code"] not in ("PreconditionFailed", "NoSuchKey"):
                raise
            log.warning("the index lock s3://%s was taken as stale while this writer held it (held longer than %.0fs)", path, stale_after_s)


def _holder(body: bytes) -> dict[str, Any]:
    """Who holds a lock object; nothing known of one that is not a JSON object."""
    try:
        holder = json.loads(body)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _waiter(lock: str, wait_at_most_s: float) -> Callable[[], None]:
    """A poll's sleep while another writer holds `lock`: says once that this writer waits, and gives
    up after `wait_at_most_s`."""
    started, told = time.monotonic(), False

    def wait() -> None:
        nonlocal told
        waited = time.monotonic() - started
        if waited > wait_at_most_s:
            raise CommitConflict(f"another index writer has held {lock} for {waited:.0f}s: run again when it is done")
        if not told:
            log.warning("waiting for another index writer (lock %s)", lock)
            told = True
        time.sleep(POLL_S)

    return wait
