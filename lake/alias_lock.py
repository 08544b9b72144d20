"""A lock on the registry's aliases, so that two promotes or rollbacks at once cannot lose each
other's rollback-stack or history entries; new versions are created under it too (lake.registry's
`register` searches again holding it), so two registrations of the same weights make one version.

MLflow has no compare-and-set: an alias move reads the registered model's tags (its rollback
stack, its history), changes them and writes them back, and two moves at once each write back
what they read, losing the other's entry. The one atomic step every MLflow store has, a local
sqlite file or a tracking server, is numbering a new model version. So a mover takes a ticket (a
new version of the registered model `LOCK_MODEL`), holds the lock while its ticket is the lowest
live one, and deletes it when done: first come, first served, on any store, with no clock shared
between machines.

A ticket whose mover was killed is skipped: at once when its process was on this machine (the same
kernel boot and process namespace) and is gone; otherwise once this waiter has seen it hold the
lock for `stale_after_s` by its own clock (a move is a few registry calls, well under a second).
"""
from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

LOCK_MODEL = "content-signals.alias-lock"
HOLDER_TAG = "holder"  # JSON: host, machine (boot id and process namespace), pid of the ticket's process
STALE_AFTER_S = 60.0  # a ticket seen holding the lock this long belongs to a killed mover
WAIT_AT_MOST_S = 180.0  # then a mover gives up, naming the holder
POLL_S = 0.05
TELL_AFTER_S = 2.0  # a mover waiting this long says for whom

log = logging.getLogger(__name__)


class AliasConflict(Exception):
    """An alias move that did not happen because another one was under way: safe to retry."""


@contextmanager
def alias_lock(client: MlflowClient, stale_after_s: float = STALE_AFTER_S, wait_at_most_s: float = WAIT_AT_MOST_S) -> Iterator[None]:
    """Hold the registry's alias lock for the block (see the module docstring)."""
    try:
        client.create_registered_model(LOCK_MODEL, description="tickets of content-signals' alias moves (lake/alias_lock.py)")
    except MlflowException as e:
        if e.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    ticket = client.create_model_version(LOCK_MODEL, "content-signals:/alias-lock", tags={HOLDER_TAG: json.dumps(this_process())}, await_creation_for=0)
    try:
        _wait_for_turn(client, int(ticket.version), stale_after_s, wait_at_most_s)
        yield
    finally:
        _drop(client, ticket.version)


def _wait_for_turn(client: MlflowClient, mine: int, stale_after_s: float, wait_at_most_s: float) -> None:
    """Return once every ticket before `mine` is gone or stale; a stale one is deleted."""
    started, told = time.monotonic(), False
    head_since: dict[str, float] = {}  # ticket -> when this waiter first saw it hold the lock
    while True:
        ahead = []
        for ticket in sorted(client.search_model_versions(f"name = '{LOCK_MODEL}'"), key=lambda t: int(t.version)):
            if int(ticket.version) >= mine:
                break
            if process_gone(_holder(ticket)):
                _drop(client, ticket.version)
            else:
                ahead.append(ticket)
        if not ahead:
            return
        head, now = ahead[0], time.monotonic()
        if now - head_since.setdefault(head.version, now) > stale_after_s:
            _drop(client, head.version)
            continue
        if not told and now - started > TELL_AFTER_S:
            log.warning("waiting for the registry's alias lock: ticket %s of %r (%s) holds it; a killed mover's ticket "
                        "is dropped after %.0fs", head.version, LOCK_MODEL, _holder(head), stale_after_s)
            told = True
        if now - started > wait_at_most_s:
            raise AliasConflict(f"another alias move has held the registry's lock for {now - head_since[head.version]:.0f}s "
                                f"(ticket {head.version} of {LOCK_MODEL!r}, {_holder(head)}): try again when it is done")
        time.sleep(POLL_S)


def _drop(client: MlflowClient, version: str) -> None:
    try:
        client.delete_model_version(LOCK_MODEL, version)
    except MlflowException as e:
        if e.error_code != "RESOURCE_DOES_NOT_EXIST":  # dropped as stale by a waiter meanwhile
            raise


def _holder(ticket: ModelVersion) -> dict[str, object]:
    """Who took the ticket; nothing known of a tag that is not a JSON object (written by hand, say)."""
    try:
        holder = json.loads((ticket.tags or {}).get(HOLDER_TAG, "{}"))
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _machine() -> str | None:
    """This kernel's boot and this process's PID namespace: where a pid names the same process."""
    try:
        return f"{Path('/proc/sys/kernel/random/boot_id').read_text().strip()}:{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return None


def this_process() -> dict[str, object]:
    return {"host": socket.gethostname(), "machine": _machine(), "pid": os.getpid()}


def process_gone(holder: dict[str, object]) -> bool:
    """Whether the ticket's process is known to have ended: it ran on this machine and runs no more."""
    machine = _machine()
    pid = holder.get("pid")
    if machine is None or holder.get("machine") != machine or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
