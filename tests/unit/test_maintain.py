"""Table upkeep without Spark (lake/upkeep.py, jobs/maintain.py): tables are built with the jobs'
own writer and commits (many small commits), then maintained; rows and keys are compared with
what the table held before, sorted, and named versions are read back by time travel."""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import settings_for
from deltalake import CommitProperties, DeltaTable, QueryBuilder, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError
from deltalake.table import TableAlterer
from test_delta_io import log_actions, make_rows, write, write_by_day
from test_ledger_and_failures import _started

from conf.settings import UsageError
from jobs import maintain
from jobs.cli import _parser
from jobs.dry_run import refresh_scope
from jobs.engine import CORPUS_VERSION, committed_to
from jobs.failures import DAMAGED, explain
from jobs.maintain import UpkeepFailed, named_versions, policy_of, run_maintain
from jobs.refresh import REFRESHED, last_refresh
from lake import delta_io, ledger, upkeep
from retrieval import index_store
from retrieval.vector_index import EXACT, IndexKind, VectorIndex
from signals.contracts import ALERTS, CORPUS, EMBEDDINGS, KEYFRAMES, RUNS

DAYS = ("2026-11-19", "2026-11-20")
NO_RETENTION = upkeep.UpkeepPolicy(checkpoint_every=5, small_file_bytes=2**20, min_small_files=3, target_file_bytes=2**27,
                                   min_retention=dt.timedelta(0))


def _sorted(table: pa.Table) -> pa.Table:
    columns = EMBEDDINGS.schema.names
    return table.select(columns).sort_by([(c, "ascending") for c in ("signal", "model_version", "ds", "content_id")])


def _daily_commits(root: str, commits: int, slices=(("image_embedding", DAYS[0]), ("image_embedding", DAYS[1]))) -> None:
    """`commits` small commits, each adding 2 new items to each slice, a file per slice (`write_by_day`): many small
    files per partition, of different days."""
    for n in range(commits):
        rows = [{**r, "content_id": f"{r['content_id']}-{n}"} for r in make_rows(f"run-{n}", per_slice=2, slices=list(slices))]
        delta_io.commit_files(root, EMBEDDINGS, write_by_day(root, rows, prefix=f"part-run-{n}"), f"test/{n}",
                              {"job": "unit", "run_id": f"run-{n}"})


def _files_on_disk(root: str) -> set[str]:
    return {str(p.relative_to(root)) for p in Path(root).rglob("*.parquet") if "_delta_log" not in p.parts}


def _maintain(root: str, keep=(), policy=NO_RETENTION, app_id="content-signals/maintain-1", **kwargs) -> upkeep.Upkeep:
    return upkeep.maintain_table(root, EMBEDDINGS, policy, set(keep), app_id, "part-maintain-1", {"job": "maintain"}, **kwargs)


def test_compaction_keeps_every_row_and_key_and_the_log_gets_a_checkpoint(tmp_path: Path) -> None:
    root = str(tmp_path / "embeddings")
    _daily_commits(root, 8)
    _daily_commits(root, 2, slices=(("text_embedding", DAYS[0]),))  # a partition of 2 small files: not crowded
    before, files_before = _sorted(delta_io.read_arrow(root)), {f.path for f in delta_io.live_files(root)}
    quiet = {f.path for f in delta_io.live_files(root) if f.partition_values["signal"] == "text_embedding"}

    done = _maintain(root)

    after = _sorted(delta_io.read_arrow(root))
    assert after.equals(before)
    keys = list(zip(*(after[c].to_pylist() for c in EMBEDDINGS.key)))
    assert len(keys) == len(set(keys))
    live = delta_io.live_files(root)
    assert {f.path for f in live if f.partition_values["signal"] == "text_embedding"} == quiet  # left alone
    crowded = [f for f in live if f.partition_values["signal"] == "image_embedding"]
    assert len(crowded) == 1 and not {f.path for f in crowded} & files_before  # one file per crowded partition
    assert crowded[0].days == DAYS  # the small files of both days folded into it
    assert (done.files_before, done.files_after, done.files_compacted, done.partitions_compacted) == (len(files_before), len(live), 16, 1)
    # one commit, moving rows only: every action says dataChange false
    actions = [a for a in log_actions(root, done.compaction_version) if "add" in a or "remove" in a]
    assert len(actions) == 16 + 1 and all(not (a.get("add") or a.get("remove"))["dataChange"] for a in actions)
    # the statistics the jobs rely on are there (files holding errors are found by them)
    assert delta_io.files_with_errors(root) == {f.path for f in crowded}
    # the log is checkpointed at the version maintain ended on, and a fresh reader starts from it
    assert done.checkpoint == DeltaTable(root).version() == upkeep.last_checkpoint(root)
    assert (Path(root) / "_delta_log" / f"{done.checkpoint:020d}.checkpoint.parquet").exists()
    assert _sorted(DeltaTable(root).to_pyarrow_table()).equals(before)
    # with no retention and no named version, the replaced small files are gone from storage
    assert _files_on_disk(root) == {f.path for f in live}


def test_a_second_run_finds_nothing_to_do(tmp_path: Path) -> None:
    root = str(tmp_path / "embeddings")
    _daily_commits(root, 6)
    _maintain(root)
    version = DeltaTable(root).version()
    again = _maintain(root, app_id="content-signals/maintain-2")
    assert (again.files_compacted, again.vacuumed, again.checkpoint, again.compaction_version) == (0, 0, None, None)
    assert DeltaTable(root).version() == version


def _old_and_new_app_ids(root: str, monkeypatch) -> None:
    """Two commits: `test/old` committed a day longer ago than the app id retention, `test/new` now."""
    aged = time.time() - (upkeep.APP_ID_RETENTION + dt.timedelta(days=1)).total_seconds()
    for app_id, at in (("test/old", aged), ("test/new", time.time())):
        monkeypatch.setattr(delta_io.time, "time", lambda at=at: at)
        delta_io.commit_files(root, EMBEDDINGS, write(root, make_rows(app_id, per_slice=1), prefix=f"part-{app_id[5:]}"), app_id, {"job": "unit"})
    monkeypatch.undo()


def _checkpoint_app_ids(root: str, version: int) -> set[str]:
    checkpoint = pq.read_table(Path(root) / "_delta_log" / f"{version:020d}.checkpoint.parquet", columns=["txn"])
    return {t["appId"] for t in checkpoint["txn"].to_pylist() if t}


def test_maintain_gives_app_ids_a_retention_so_checkpoints_stop_carrying_every_run(tmp_path: Path, monkeypatch) -> None:
    """Each commit's app id stayed in every checkpoint for good (a run a day: thousands after some years);
    maintain sets the table's app id retention, so a checkpoint drops those older than it, a retry
    within it is still recognised, and the next maintain makes no second property commit."""
    root = str(tmp_path / "embeddings")
    _old_and_new_app_ids(root, monkeypatch)
    assert delta_io.committed(root, "test/old")

    done = _maintain(root, policy=dataclasses.replace(NO_RETENTION, checkpoint_every=0))

    assert DeltaTable(root).metadata().configuration[upkeep.TXN_RETENTION] == f"interval {upkeep.APP_ID_RETENTION.days} days"
    assert _checkpoint_app_ids(root, done.checkpoint) == {"test/new"}
    assert not delta_io.committed(root, "test/old") and delta_io.committed(root, "test/new")
    version = DeltaTable(root).version()
    _maintain(root, app_id="content-signals/maintain-2")
    assert DeltaTable(root).version() == version


def _commits_at(root: str, ages_h: list[float], monkeypatch) -> dict[int, dt.datetime]:
    """One commit per age (hours ago), each replacing the whole slice, its removals dated so and the
    log's commit times read so (a test cannot wait hours): {version: committed at}."""
    now, committed = time.time(), {}
    for n, age in enumerate(ages_h):
        at = now - age * 3600
        monkeypatch.setattr(delta_io.time, "time", lambda at=at: at)
        files = write(root, make_rows(f"run-{n}", per_slice=3), prefix=f"part-run-{n}")
        for f in files:
            os.utime(f"{root}/{f.path}", (at, at))
        version = delta_io.commit_files(root, EMBEDDINGS, files, f"test/{n}", {"job": "unit"}, remove=lambda live: True)
        committed[version] = dt.datetime.fromtimestamp(at, dt.UTC)
    monkeypatch.undo()
    monkeypatch.setattr(upkeep, "commit_times", lambda root: committed)
    return committed


def test_vacuum_keeps_the_named_versions_and_every_version_current_within_the_retention(tmp_path: Path, monkeypatch) -> None:
    root = str(tmp_path / "embeddings")
    committed = _commits_at(root, [18, 15, 12, 9, 6, 3], monkeypatch)
    expected = {v: _sorted(delta_io.read_arrow(root, v)) for v in committed}
    seven_hours = upkeep.UpkeepPolicy(5, 2**20, 3, 2**27, dt.timedelta(hours=7))

    done = _maintain(root, keep=[1], policy=seven_hours)

    assert done.kept_versions == (1,) and done.retention_hours == 7
    assert sorted(committed) == [1, 2, 3, 4, 5, 6]  # version 0 made the table
    current = {4, 5, 6}  # committed within 7 hours (6 and 3 hours ago), and the latest 7 hours ago (committed 9 hours ago)
    for version in committed:
        if version in {1, *current}:
            assert _sorted(delta_io.read_arrow(root, version)).equals(expected[version]), version
        else:
            assert not delta_io.all_exist(root, delta_io.live_files(root, version)), version


def test_a_retention_longer_than_the_logs_removal_records_still_keeps_its_versions(tmp_path: Path, monkeypatch) -> None:
    """A checkpoint drops removals older than a week (delta.deletedFileRetentionDuration): a version
    replaced ten days ago is still kept by a 30-day retention."""
    root = str(tmp_path / "embeddings")
    _commits_at(root, [40 * 24, 10 * 24], monkeypatch)
    DeltaTable(root).create_checkpoint()
    expected = _sorted(delta_io.read_arrow(root, 0))
    month = upkeep.UpkeepPolicy(100, 2**20, 100, 2**27, dt.timedelta(days=30))

    done = _maintain(root, policy=month)

    assert done.vacuumed == 0 and _sorted(delta_io.read_arrow(root, 0)).equals(expected)


def _aged_log(root: str, committed: dict[int, dt.datetime], checkpoint: int) -> None:
    """The log's files as old as their commits (version 0 as the first), and a checkpoint at
    `checkpoint` as old as its commit (one delta-rs or an earlier maintain wrote then)."""
    DeltaTable(root, version=checkpoint).create_checkpoint()
    for version, at in {0: committed[1], **committed}.items():
        for path in (Path(root) / "_delta_log").glob(f"{version:020d}.*"):
            os.utime(path, (at.timestamp(), at.timestamp()))


def _log_names(root: str) -> list[str]:
    return sorted(p.name for p in (Path(root) / "_delta_log").iterdir() if p.name[:20].isdigit())


def test_the_log_past_its_retention_expires_and_a_named_version_keeps_a_checkpoint_of_its_own(tmp_path: Path, monkeypatch) -> None:
    """delta-rs deleted the log entries before a checkpoint older than `delta.logRetentionDuration`
    (30 days) at any commit, named or not: a head's lineage naming a version 45 days old, behind a
    checkpoint 34 days old, could not be read after the next commit. Then maintain extended the
    retention instead, and the log kept every entry since the oldest named version: a year of daily
    commits for a pinned day 1, each listed by every reader (issue #23). Now maintain turns delta-rs's
    expiry off and expires the log itself: the unnamed versions behind the old checkpoint go, and the
    named one stays readable by a checkpoint of its own, through later commits."""
    root = str(tmp_path / "embeddings")
    committed = _commits_at(root, [50 * 24, 45 * 24, 34 * 24], monkeypatch)
    _aged_log(root, committed, 3)
    expected = _sorted(delta_io.read_arrow(root, 2))
    week = upkeep.UpkeepPolicy(1, 2**20, 3, 2**27, dt.timedelta(days=7))

    done = _maintain(root, keep=[2], policy=week)
    delta_io.commit_files(root, EMBEDDINGS, write(root, make_rows("run-9"), prefix="part-run-9"), "test/9", {"job": "unit"})

    assert DeltaTable(root).metadata().configuration[upkeep.LOG_CLEANUP] == "false"
    assert done.vacuumed > 0  # version 1's files are gone, version 2's kept
    assert _sorted(delta_io.read_arrow(root, 2)).equals(expected)
    assert [n for n in _log_names(root) if int(n[:20]) < 3] == [f"{2:020d}.checkpoint.parquet", f"{2:020d}.json"]
    assert done.log_expired == 2 and "2 log files before version 3 expired, versions [2] kept by checkpoints of their own" in done.notes
    with pytest.raises(DeltaError):  # expired
        DeltaTable(root, version=1)
    assert _sorted(delta_io.read_arrow(root)).num_rows > 0  # the latest reads from its checkpoint on
    again = _maintain(root, keep=[2], policy=week, app_id="content-signals/maintain-2")
    assert again.kept_versions == (2,) and again.notes == () and again.log_expired == 0


def test_a_multi_part_checkpoint_missing_a_part_is_no_cut_for_the_expiry(tmp_path: Path, monkeypatch) -> None:
    """Left alone by the fiftieth session's review: every file named `.checkpoint.` counted, so a
    multi-part checkpoint whose writer was killed before its last part (Spark's Delta writes them for
    large tables) let the expiry delete the entries behind it, which nothing else could rebuild."""
    root = str(tmp_path / "embeddings")
    _aged_log(root, _commits_at(root, [50 * 24, 45 * 24, 34 * 24], monkeypatch), 3)
    log = Path(root) / "_delta_log"

    def part(n: int) -> Path:
        return log / f"{3:020d}.checkpoint.{n:010d}.{2:010d}.parquet"

    (log / f"{3:020d}.checkpoint.parquet").rename(part(1))  # part 2 of 2 never written, nor the hint written after it
    (log / "_last_checkpoint").unlink()
    before = _log_names(root)
    assert upkeep.checkpoint_versions(root) == []
    assert upkeep.expire_log(root, (), dt.timedelta(0), dry_run=False) == (0, []) and _log_names(root) == before
    part(2).write_bytes(part(1).read_bytes())  # now whole (as names go): the same log is expired
    assert upkeep.checkpoint_versions(root) == [3]
    assert upkeep.expire_log(root, (), dt.timedelta(0), dry_run=False)[0] > 0


def _named_version_behind_an_old_checkpoint(root: str, monkeypatch) -> pa.Table:
    """Versions 1-4 committed 50, 45, 40 and 34 days ago, a checkpoint at 4 as old: version 2's rows."""
    committed = _commits_at(root, [50 * 24, 45 * 24, 40 * 24, 34 * 24], monkeypatch)
    _aged_log(root, committed, 4)
    return _sorted(delta_io.read_arrow(root, 2))


class _Deleting:
    """The table's filesystem with `delete_file` replaced (a kill, another maintain), the rest as it is."""

    def __init__(self, filesystem: Any, delete: Callable[[str], None]) -> None:
        self.filesystem, self.delete_file = filesystem, delete

    def __getattr__(self, name: str) -> Any:
        return getattr(self.filesystem, name)


def test_an_expiry_killed_part_way_keeps_the_named_version_and_the_next_one_ends_it(tmp_path: Path, monkeypatch) -> None:
    root = str(tmp_path / "embeddings")
    expected = _named_version_behind_an_old_checkpoint(root, monkeypatch)
    latest = _sorted(delta_io.read_arrow(root))
    filesystem, base = delta_io.filesystem_of(root)
    deleted = []

    def killed_after_one(path: str) -> None:
        if deleted:
            raise KeyboardInterrupt
        filesystem.delete_file(path)
        deleted.append(path)

    monkeypatch.setattr(upkeep.delta_io, "filesystem_of", lambda root: (_Deleting(filesystem, killed_after_one), base))
    with pytest.raises(KeyboardInterrupt):
        upkeep.expire_log(root, [2], dt.timedelta(days=7), dry_run=False)
    monkeypatch.setattr(upkeep.delta_io, "filesystem_of", lambda root: (filesystem, base))

    assert _sorted(delta_io.read_arrow(root, 2)).equals(expected) and _sorted(delta_io.read_arrow(root)).equals(latest)
    assert upkeep.expire_log(root, [2], dt.timedelta(days=7), dry_run=True)[0] == 2  # version 0's entry went; 1 and 3's remain
    assert upkeep.expire_log(root, [2], dt.timedelta(days=7), dry_run=False)[0] == 2
    assert [int(n[:20]) for n in _log_names(root) if int(n[:20]) < 4] == [2, 2]
    assert _sorted(delta_io.read_arrow(root, 2)).equals(expected)


def test_a_named_versions_checkpoint_that_cannot_be_written_expires_nothing(tmp_path: Path, monkeypatch) -> None:
    """The store failing once as the expiry wrote named version 2's checkpoint let version 2's log go
    with the rest, though it could still be read: now nothing expires that run, said, and the next
    maintain, with the store back, keeps it by its checkpoint."""
    root = str(tmp_path / "embeddings")
    expected = _named_version_behind_an_old_checkpoint(root, monkeypatch)
    before = _log_names(root)

    def store_fails(self: DeltaTable) -> None:
        raise DeltaError("the store answered 503")

    with monkeypatch.context() as failing:
        failing.setattr(DeltaTable, "create_checkpoint", store_fails)
        expired, notes = upkeep.expire_log(root, [2], dt.timedelta(days=7), dry_run=False)

    assert expired == 0 and _log_names(root) == before
    assert notes == ["log not expired: named version 2's checkpoint could not be written (the store answered 503); the next maintain tries again"]
    assert _sorted(delta_io.read_arrow(root, 2)).equals(expected)
    assert upkeep.expire_log(root, [2], dt.timedelta(days=7), dry_run=False)[0] > 0
    assert _sorted(delta_io.read_arrow(root, 2)).equals(expected)


def test_a_commit_kept_behind_the_expired_log_is_not_given_another_versions_number(tmp_path: Path, monkeypatch) -> None:
    """delta-rs numbers the commits its history finds by counting down from the latest: named
    version 2's commit, kept behind the expired versions 0, 1 and 3, came back as version 3, so a
    retry of its run, or the ledger's recovery, took 3 for its version (which cannot be read). The
    history now ends where the log has a version missing."""
    root = str(tmp_path / "embeddings")
    _named_version_behind_an_old_checkpoint(root, monkeypatch)  # version 2 is test/1's commit
    assert delta_io.version_of_commit(root, "test/1") == 2
    upkeep.expire_log(root, [2], dt.timedelta(days=7), dry_run=False)

    assert delta_io.version_of_commit(root, "test/1") in (2, None)  # None: its entry is not in the history searched
    assert [e["version"] for e in delta_io.newest_commits(root)] == [4]


def test_a_named_version_whose_entry_is_there_but_cannot_be_read_does_not_stop_the_upkeep(tmp_path: Path, monkeypatch) -> None:
    """Behind an expiry killed after its first deletion (or delta-rs's own cleanup, which deletes by
    age), version 1's entry is there but the entry it is read from is not. Once something named it,
    delta-rs's vacuum failed on it, and that table's upkeep, its log's expiry included, failed at
    every maintain. Now that vacuum is skipped, said (nothing is deleted on a read that failed), and
    the rest is done; the expiry, which cannot give version 1 a checkpoint, lets its entry go, and
    the next maintain vacuums."""
    root = str(tmp_path / "embeddings")
    expected = _named_version_behind_an_old_checkpoint(root, monkeypatch)
    DeltaTable(root, version=2).create_checkpoint()  # the killed expiry's first step, then its first deletion
    os.remove(Path(root) / "_delta_log" / f"{0:020d}.json")

    done = _maintain(root, keep=[1, 2], policy=upkeep.UpkeepPolicy(1, 2**20, 3, 2**27, dt.timedelta(days=7)))

    assert done.vacuumed == 0 and any(n.startswith("vacuum skipped: named versions [1] cannot be loaded") for n in done.notes)
    assert done.log_expired > 0 and _sorted(delta_io.read_arrow(root, 2)).equals(expected)
    monkeypatch.undo()  # the log's own times: version 1's entry is gone
    again = _maintain(root, keep=[1, 2], policy=upkeep.UpkeepPolicy(1, 2**20, 3, 2**27, dt.timedelta(days=7)), app_id="content-signals/maintain-2")
    assert again.kept_versions == (2,) and again.vacuumed > 0 and _sorted(delta_io.read_arrow(root, 2)).equals(expected)


def test_two_expiries_at_once_both_end_and_keep_the_named_version(tmp_path: Path, monkeypatch) -> None:
    """Two maintains expiring one log at the same time: each entry the other deleted first is no failure."""
    root = str(tmp_path / "embeddings")
    expected = _named_version_behind_an_old_checkpoint(root, monkeypatch)
    filesystem, base = delta_io.filesystem_of(root)

    def other_maintain_first(path: str) -> None:
        filesystem.delete_file(path)  # the other maintain's deletion
        filesystem.delete_file(path)

    monkeypatch.setattr(upkeep.delta_io, "filesystem_of", lambda root: (_Deleting(filesystem, other_maintain_first), base))
    assert upkeep.expire_log(root, [2], dt.timedelta(days=7), dry_run=False)[0] == 3
    monkeypatch.setattr(upkeep.delta_io, "filesystem_of", lambda root: (filesystem, base))
    assert [int(n[:20]) for n in _log_names(root) if int(n[:20]) < 4] == [2, 2]
    assert _sorted(delta_io.read_arrow(root, 2)).equals(expected)


def test_a_maintain_whose_property_commit_loses_to_a_job_still_keeps_the_named_version(tmp_path: Path, monkeypatch) -> None:
    """Where a concurrent commit wins over maintain's property commit, delta-rs's own log cleanup
    stays on for that run: its compaction and vacuum commits then deleted every entry before the old
    checkpoint, the named version's too, before `expire_log` could give it a checkpoint of its own.
    Now its compaction commits with delta-rs's cleanup off, and its vacuum, whose first commit
    delta-rs cleans up after whatever it is told, waits for the next maintain."""
    root = str(tmp_path / "embeddings")
    committed = _commits_at(root, [50 * 24, 45 * 24, 40 * 24, 34 * 24], monkeypatch)
    for n in range(4):  # small files to compact, committed since
        rows = [{**r, "content_id": f"{r['content_id']}-new"} for r in make_rows(f"run-new-{n}", per_slice=1, slices=[("image_embedding", DAYS[0])])]
        delta_io.commit_files(root, EMBEDDINGS, write(root, rows, prefix=f"part-run-new-{n}"), f"test/new-{n}", {"job": "unit"})
    _aged_log(root, committed, 4)
    expected = _sorted(delta_io.read_arrow(root, 2))

    def lost_to_a_job(*args: Any, **kwargs: Any) -> None:
        raise CommitFailedError("a concurrent commit")

    monkeypatch.setattr(TableAlterer, "set_table_properties", lost_to_a_job)
    done = _maintain(root, keep=[2], policy=upkeep.UpkeepPolicy(1, 2**20, 3, 2**27, dt.timedelta(days=7)))

    assert _sorted(delta_io.read_arrow(root, 2)).equals(expected)
    assert any(n.startswith("table properties") and "not set" in n for n in done.notes)
    assert done.compaction_version is not None and done.vacuumed == 0 and any(n.startswith("vacuum skipped") for n in done.notes)
    assert done.log_expired > 0 and not any("cannot be read" in n for n in done.notes)
    monkeypatch.undo()  # the next maintain sets the properties, then vacuums
    again = _maintain(root, keep=[2], policy=upkeep.UpkeepPolicy(1, 2**20, 3, 2**27, dt.timedelta(0)), app_id="content-signals/maintain-2")
    assert again.vacuumed > 0 and _sorted(delta_io.read_arrow(root, 2)).equals(expected)


def test_an_app_id_retention_set_in_upper_case_is_written_so_delta_rs_reads_it(tmp_path: Path, monkeypatch) -> None:
    """Left alone by the fiftieth session's review: Delta reads `INTERVAL 90 DAYS`, delta-rs only
    `interval 90 days`, and took the first for no retention at all: maintain kept the operator's
    value, and every checkpoint carried every run's app id for good."""
    root = str(tmp_path / "embeddings")
    _old_and_new_app_ids(root, monkeypatch)
    DeltaTable(root).alter.set_table_properties({upkeep.TXN_RETENTION: "INTERVAL 90 DAYS"})

    done = _maintain(root, policy=dataclasses.replace(NO_RETENTION, checkpoint_every=0))

    assert DeltaTable(root).metadata().configuration[upkeep.TXN_RETENTION] == "interval 90 days"
    assert _checkpoint_app_ids(root, done.checkpoint) == {"test/new"}


def test_log_cleanup_turned_off_in_upper_case_is_off_for_delta_rs_too_and_turned_on_is_said(tmp_path: Path, monkeypatch) -> None:
    """Delta takes `FALSE` for false; delta-rs reads only `false`, and took `FALSE` for its default,
    on: maintain kept the operator's value, and delta-rs deleted the named version's log entries at
    the vacuum's first commit. Now it is written `false`; a value meaning on is kept and said."""
    root = str(tmp_path / "embeddings")
    committed = _commits_at(root, [50 * 24, 45 * 24, 40 * 24, 34 * 24], monkeypatch)
    DeltaTable(root).alter.set_table_properties({upkeep.LOG_CLEANUP: "FALSE"})
    _aged_log(root, committed, 4)
    expected = _sorted(delta_io.read_arrow(root, 2))

    done = _maintain(root, keep=[2], policy=upkeep.UpkeepPolicy(1, 2**20, 3, 2**27, dt.timedelta(days=7)))
    delta_io.commit_files(root, EMBEDDINGS, write(root, make_rows("run-9"), prefix="part-run-9"), "test/9", {"job": "unit"})

    assert _sorted(delta_io.read_arrow(root, 2)).equals(expected)
    assert done.vacuumed > 0 and DeltaTable(root).metadata().configuration[upkeep.LOG_CLEANUP] == "false"
    on = str(tmp_path / "on")
    write_deltalake(on, pa.table({"x": [1]}), configuration={upkeep.LOG_CLEANUP: "True"})
    assert any(n.startswith(f"{upkeep.LOG_CLEANUP}=True kept") for n in upkeep.set_upkeep_properties(on, True, {}))


def test_a_version_inside_a_retention_over_a_month_stays_readable_behind_an_old_checkpoint(tmp_path: Path, monkeypatch) -> None:
    """A `min_retention_hours` over the log's 30 days keeps the files of every version current
    within it; their log entries went the same way as a named version's (above)."""
    root = str(tmp_path / "embeddings")
    committed = _commits_at(root, [44 * 24, 42 * 24, 34 * 24], monkeypatch)
    _aged_log(root, committed, 3)
    expected = _sorted(delta_io.read_arrow(root, 2))

    done = _maintain(root, policy=upkeep.UpkeepPolicy(100, 2**20, 3, 2**27, dt.timedelta(days=43)))
    delta_io.commit_files(root, EMBEDDINGS, write(root, make_rows("run-9"), prefix="part-run-9"), "test/9", {"job": "unit"})

    assert done.vacuumed == 0 and _sorted(delta_io.read_arrow(root, 2)).equals(expected)  # committed 42 days ago: current within 43


def test_without_a_named_version_only_the_latest_is_kept(tmp_path: Path) -> None:
    root = str(tmp_path / "embeddings")
    for n in range(3):
        delta_io.commit_files(root, EMBEDDINGS, write(root, make_rows(f"run-{n}"), prefix=f"part-run-{n}"), f"test/{n}", {"job": "unit"},
                              remove=lambda live: True)
    latest, files = _sorted(delta_io.read_arrow(root)), len(delta_io.live_files(root))
    done = _maintain(root)
    assert files == 2 and done.vacuumed == 2 * files and done.kept_versions == ()  # a file per signal, two old versions
    assert _sorted(delta_io.read_arrow(root)).equals(latest)
    assert _files_on_disk(root) == {f.path for f in delta_io.live_files(root)}


def test_the_minimum_retention_keeps_young_files_whatever_is_named(tmp_path: Path) -> None:
    root = str(tmp_path / "embeddings")
    for n in range(3):
        delta_io.commit_files(root, EMBEDDINGS, write(root, make_rows(f"run-{n}"), prefix=f"part-run-{n}"), f"test/{n}", {"job": "unit"},
                              remove=lambda live: True)
    on_disk = _files_on_disk(root)
    week = upkeep.UpkeepPolicy(5, 2**20, 3, 2**27, dt.timedelta(days=7))
    done = _maintain(root, policy=week)
    assert done.vacuumed == 0 and done.retention_hours == 168
    assert _files_on_disk(root) == on_disk


def test_a_compaction_killed_before_its_commit_leaves_the_table_exact_and_vacuum_removes_its_files(tmp_path: Path, monkeypatch) -> None:
    root = str(tmp_path / "embeddings")
    _daily_commits(root, 6)
    before, version, live = _sorted(delta_io.read_arrow(root)), DeltaTable(root).version(), _files_on_disk(root)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed after the compacted files were written, before the commit")

    monkeypatch.setattr(DeltaTable, "create_write_transaction", killed)
    with pytest.raises(KeyboardInterrupt):
        _maintain(root)
    monkeypatch.undo()
    assert DeltaTable(root).version() == version + 1  # only the upkeep properties' commit, which changes no row
    assert DeltaTable(root).history(1)[0]["operation"] == "SET TBLPROPERTIES"
    assert _sorted(DeltaTable(root).to_pyarrow_table()).equals(before)
    orphans = _files_on_disk(root) - live
    assert orphans  # written, never committed: no snapshot names them

    done = _maintain(root, app_id="content-signals/maintain-2")  # the next run compacts, and vacuums the orphans
    assert _sorted(delta_io.read_arrow(root)).equals(before)
    assert done.compaction_version is not None
    assert not orphans & _files_on_disk(root)
    assert _files_on_disk(root) == {f.path for f in delta_io.live_files(root)}


def test_a_commit_that_would_remove_a_file_a_compaction_moved_conflicts(tmp_path: Path) -> None:
    """A refresh that read the table before a compaction and drops a whole file of stale rows
    must not land: the compaction carried those rows into a new file."""
    root = str(tmp_path / "embeddings")
    _daily_commits(root, 5)
    read_version = DeltaTable(root).version()
    stale = next(f for f in delta_io.live_files(root) if f.days == (DAYS[0], DAYS[0]))
    _maintain(root)  # compacts both days' files into one
    elsewhere = write(root, make_rows("run-late", per_slice=2, slices=[("text_embedding", DAYS[1])]), prefix="part-run-late")
    with pytest.raises(delta_io.CommitConflict, match="Re-run"):
        delta_io.commit_files(root, EMBEDDINGS, elsewhere, "test/late", {"job": "refresh"},
                              remove=lambda live: live.path == stale.path, read_version=read_version)
    # a commit that only adds, to a partition the compaction did not touch, lands on top of it
    assert delta_io.commit_files(root, EMBEDDINGS, elsewhere, "test/late", {"job": "refresh"}, read_version=read_version)


def test_a_commit_landing_while_a_vacuum_lists_its_files_keeps_its_files(tmp_path: Path, monkeypatch) -> None:
    """The vacuum deleted from the snapshot it had listed with: files a job committed in between
    were no file of it, and (inside the retention, here none) were deleted under the latest
    version (found in review)."""
    root = str(tmp_path / "embeddings")
    _daily_commits(root, 3)
    delta_io.commit_files(root, EMBEDDINGS, write(root, make_rows("run-3", per_slice=1), prefix="part-run-3"), "test/3", {"job": "unit"},
                          remove=lambda live: True)  # replaced files: something to vacuum
    real_absent = delta_io.absent

    def listed_then_a_job_commits(root_: str, paths):
        monkeypatch.setattr(delta_io, "absent", real_absent)
        delta_io.commit_files(root, EMBEDDINGS, write(root, make_rows("run-late", per_slice=1), prefix="part-run-late"), "test/late",
                              {"job": "unit"})
        return real_absent(root_, paths)

    monkeypatch.setattr(delta_io, "absent", listed_then_a_job_commits)
    deleted, *_ = upkeep.vacuum(root, set(), dt.timedelta(0), dry_run=False, metadata={})
    assert deleted and delta_io.read_arrow(root).num_rows == 2 * len(make_rows("run", per_slice=1))


def test_a_vacuum_that_loses_its_commit_to_a_job_is_skipped_not_fatal(tmp_path: Path, monkeypatch) -> None:
    """delta-rs commits a vacuum's start; a commit that removed files meanwhile fails it. The
    other tables must still be maintained: the vacuum is skipped, said, and left to the next run."""
    from deltalake.exceptions import CommitFailedError

    root = str(tmp_path / "embeddings")
    _daily_commits(root, 4)
    real = DeltaTable.vacuum

    def concurrent(self, *args, dry_run: bool = True, **kwargs):
        if not dry_run:
            raise CommitFailedError("a concurrent transaction deleted data this operation read")
        return real(self, *args, dry_run=dry_run, **kwargs)

    monkeypatch.setattr(DeltaTable, "vacuum", concurrent)
    done = _maintain(root)
    assert done.vacuumed == 0 and any(n.startswith("vacuum skipped: a concurrent commit") for n in done.notes)


def _corpus_lakehouse(tmp_path: Path, changes: int) -> tuple:
    """A lakehouse with a sample-like corpus of many small versions, and an embeddings table whose
    last refresh recorded comparing corpus version 2."""
    settings = settings_for(tmp_path, "maintain.min_retention_hours=0", "maintain.min_small_files=1", "maintain.checkpoint_every=3")
    corpus_root = settings.table_root(CORPUS.name)
    for n in range(changes):
        rows = [{"content_id": f"c{n}-{i}", "image": b"x", "title": f"t{i}", "description": None, "created_at": None, "updated_at": None,
                 "ds": DAYS[i % 2]} for i in range(3)]
        write_deltalake(corpus_root, pa.Table.from_pylist(rows, CORPUS.schema), mode="overwrite" if n % 3 == 0 else "append",
                        partition_by=list(CORPUS.partition_by))
    root = settings.table_root(EMBEDDINGS.name)
    _daily_commits(root, 3)
    delta_io.commit_files(root, EMBEDDINGS, write(root, make_rows("refresh-1", per_slice=1), prefix="part-refresh-1"), "test/refresh",
                          {"job": "refresh", CORPUS_VERSION: "2", REFRESHED: "image_embedding@1"})
    return settings, corpus_root


def _verdicts(run_id: str, day: str) -> pa.Table:
    return pa.Table.from_pylist([{"run_id": run_id, "signal": "image_embedding", "model_version": "1", "rule": "error_rate",
                                  "label": None, "fired": False, "value": 0.0, "threshold": 0.1, "cause": None, "reference": "none",
                                  "message": "ok", "evaluated_at": dt.datetime.now(dt.UTC), "ds": day}], schema=ALERTS.schema)


def test_a_runs_rows_replaced_after_a_compaction_leave_the_other_runs_it_merged(tmp_path: Path) -> None:
    """A compaction merges several runs' verdicts (or statistics) into one file; replacing one
    run's rows removed the files whose run-id range held it, and with them the others' rows (found
    in review: a backfill monitored after a maintain erased the alerts of every run it sorts among)."""
    root = str(tmp_path / "alerts")
    runs = ["backfill-20261101T000000-aaaaaa", *(f"refresh-2026111{d}T010000-bbbbbb" for d in range(5))]
    for run_id in runs:
        delta_io.replace_run_rows(root, ALERTS, _verdicts(run_id, DAYS[0]), run_id, {"job": "monitor"})
    done = upkeep.maintain_table(root, ALERTS, NO_RETENTION, set(), "content-signals/maintain-1", "part-maintain-1", {"job": "maintain"})
    assert done.files_compacted == len(runs) and len(delta_io.live_files(root)) == 1
    late = "backfill-20261125T000000-cccccc"  # sorts between the merged runs
    for _ in range(2):  # done again: replaced, not duplicated
        delta_io.replace_run_rows(root, ALERTS, _verdicts(late, DAYS[1]), late, {"job": "monitor"})
    delta_io.replace_run_rows(root, ALERTS, _verdicts(runs[2], DAYS[1]), runs[2], {"job": "monitor"})  # a merged run, again
    rows = delta_io.read_arrow(root)
    assert sorted(zip(rows["run_id"].to_pylist(), rows["ds"].to_pylist())) == sorted(
        [*((r, DAYS[0]) for r in runs if r != runs[2]), (late, DAYS[1]), (runs[2], DAYS[1])])


def test_a_runs_rows_replaced_while_another_run_keeps_its_own_in_the_same_day_are_both_kept(tmp_path: Path, monkeypatch) -> None:
    """Two jobs keep their statistics (or two monitors their verdicts) of the same day at once: the
    one whose commit came second raised CommitConflict, though replacing its rows again from the
    newer version is exact, and a backfill or refresh keeping its statistics after its commits
    failed with exit 3, "nothing was committed" (found in review)."""
    root = str(tmp_path / "alerts")
    first, second = "refresh-20261120T010000-aaaaaa", "backfill-20261120T010000-bbbbbb"
    real, raced = delta_io.write_driver_rows, []

    def the_other_lands_first(root_, contract, rows, prefix):
        files = real(root_, contract, rows, prefix)
        if not raced:  # between this replacement's read and its commit
            raced.append(True)
            delta_io.replace_run_rows(root, ALERTS, _verdicts(second, DAYS[0]), second, {"job": "monitor"})
        return files

    monkeypatch.setattr(delta_io, "write_driver_rows", the_other_lands_first)
    delta_io.replace_run_rows(root, ALERTS, _verdicts(first, DAYS[0]), first, {"job": "monitor"})
    rows = delta_io.read_arrow(root)
    assert raced and sorted(rows["run_id"].to_pylist()) == sorted([first, second])


def test_maintain_keeps_the_corpus_versions_read_by_commits_since_the_last_refresh(tmp_path: Path) -> None:
    """A backfill committed after the last refresh read its own corpus version: the next refresh
    compares from it too, so a vacuum must keep it."""
    settings, _ = _corpus_lakehouse(tmp_path, changes=7)
    root = settings.table_root(EMBEDDINGS.name)
    delta_io.commit_files(root, EMBEDDINGS, write(root, make_rows("backfill-2", per_slice=1), prefix="part-backfill-2"), "test/backfill",
                          {"job": "backfill", CORPUS_VERSION: "4"})
    assert named_versions(settings) == {"corpus": {2, 4}}
    run_maintain(settings)  # its compaction commit reads no corpus: nothing more to keep
    assert named_versions(settings) == {"corpus": {2, 4}}
    last = last_refresh(root)
    assert (last.corpus_version, last.read_since) == (2, (4,))
    assert refresh_scope(last, full=False).startswith("last refreshed to corpus version 2 for image_embedding@1, then rows committed from "
                                                      "corpus versions [4]: compares the corpus files changed since")
    delta_io.commit_files(root, EMBEDDINGS, write(root, make_rows("by-hand", per_slice=1), prefix="part-by-hand"), "test/by-hand", {})
    assert last_refresh(root).read_since == (None, 4)  # newest first: a commit that recorded no corpus version
    assert refresh_scope(last_refresh(root), full=False).endswith("with no corpus version recorded: compares the whole corpus")


def test_maintain_keeps_the_corpus_version_the_last_refresh_compared_and_never_compacts_the_corpus(tmp_path: Path) -> None:
    settings, corpus_root = _corpus_lakehouse(tmp_path, changes=7)
    assert named_versions(settings) == {"corpus": {2}}
    at_2 = DeltaTable(corpus_root, version=2).to_pyarrow_table().sort_by("content_id")
    latest = DeltaTable(corpus_root).version()
    corpus_files = {f.path for f in delta_io.live_files(corpus_root)}

    result = run_maintain(settings)

    by_table = {u.table: u for u in result.tables}
    assert set(by_table) == {"corpus", "embeddings"}  # the ledger was made by this run's own first rows
    assert by_table["corpus"].kept_versions == (2,) and by_table["corpus"].files_compacted == 0
    assert {f.path for f in delta_io.live_files(corpus_root)} == corpus_files  # not compacted
    assert DeltaTable(corpus_root, version=2).to_pyarrow_table().sort_by("content_id").equals(at_2)
    # what the next incremental refresh compares is what it compared before maintain ran
    added, removed = delta_io.changed_files(corpus_root, latest, DeltaTable(corpus_root).version())
    assert added == [] and removed == []
    assert by_table["embeddings"].files_compacted > 0 and by_table["embeddings"].checkpoint is not None
    # the run is in the ledger, one row per table, started then succeeded
    ledger = delta_io.read_arrow(settings.table_root(RUNS.name), filters=pc.field("run_id") == result.run_id).to_pylist()
    assert sorted((r["signal"], r["status"]) for r in ledger) == sorted(
        (t, s) for t in ("corpus", "embeddings") for s in ("started", "succeeded"))
    assert all(r["job"] == "maintain" and r["table_version"] is not None for r in ledger if r["status"] == "succeeded")
    # the next run compacts the ledger too (unpartitioned, a file per append), keeping its rows
    runs_root, order = settings.table_root(RUNS.name), [(c, "ascending") for c in ("run_id", "signal", "status")]
    runs = delta_io.read_arrow(runs_root).sort_by(order)
    again = run_maintain(settings)
    second = {u.table: u for u in again.tables}["runs"]
    assert second.files_compacted == second.files_before == 3 and second.files_after == 1  # and the second run's started rows
    compacted = delta_io.read_arrow(runs_root, second.compaction_version)
    assert compacted.filter(pc.field("run_id") != again.run_id).sort_by(order).equals(runs)
    assert compacted.filter(pc.field("run_id") == again.run_id)["status"].to_pylist() == ["started"] * 3


def test_the_pinned_corpus_version_and_the_configured_ones_are_named(tmp_path: Path) -> None:
    settings, _ = _corpus_lakehouse(tmp_path, changes=4)
    settings = settings.model_copy(update={"corpus": settings.corpus.model_copy(update={"version": 1}),
                                           "maintain": settings.maintain.model_copy(update={"keep_versions": {"embeddings": (1,)}})})
    assert named_versions(settings) == {"corpus": {1, 2}, "embeddings": {1}}


def test_the_embeddings_version_an_index_was_built_from_is_named(tmp_path: Path) -> None:
    settings, _ = _corpus_lakehouse(tmp_path, changes=4)
    index = VectorIndex.build(["a", "b"], np.eye(2, dtype=np.float32), IndexKind(EXACT))
    for signal, version in (("image_embedding", 3), ("text_embedding", 5)):
        index_store.save(settings.lakehouse_root, signal, index, settings.table_root("embeddings"), "table-id", version, "1", {"build": True})
    (Path(settings.lakehouse_root) / "_indexes" / "half-written").mkdir()  # no manifest: not an index
    assert named_versions(settings)["embeddings"] == {3, 5}


def test_an_index_whose_manifest_is_damaged_names_nothing_and_maintain_says_so(tmp_path: Path) -> None:
    """Its version cannot be known and the index must be built again anyway (an update refuses it):
    before, one damaged manifest stopped the upkeep of every table."""
    settings, _ = _corpus_lakehouse(tmp_path, changes=4)
    index = VectorIndex.build(["a", "b"], np.eye(2, dtype=np.float32), IndexKind(EXACT))
    for signal, version in (("image_embedding", 3), ("text_embedding", 5)):
        index_store.save(settings.lakehouse_root, signal, index, settings.table_root("embeddings"), "table-id", version, "1", {"build": True})
    (Path(index_store.signal_folder(settings.lakehouse_root, "text_embedding")) / index_store.MANIFEST).write_text("{")
    unknown: list[str] = []
    assert named_versions(settings, unknown)["embeddings"] == {3}
    assert len(unknown) == 1 and "text_embedding" in unknown[0] and "is not an index manifest" in unknown[0]
    result = run_maintain(settings)
    assert result.unknown == unknown and result.tables


def test_a_dry_run_changes_nothing(tmp_path: Path) -> None:
    settings, corpus_root = _corpus_lakehouse(tmp_path, changes=4)
    roots = [settings.table_root(n) for n in ("corpus", "embeddings")]
    state = [(DeltaTable(r).version(), _files_on_disk(r), sorted(p.name for p in (Path(r) / "_delta_log").iterdir())) for r in roots]
    result = run_maintain(settings, dry_run=True)
    assert [(DeltaTable(r).version(), _files_on_disk(r), sorted(p.name for p in (Path(r) / "_delta_log").iterdir())) for r in roots] == state
    assert not DeltaTable.is_deltatable(settings.table_root(RUNS.name))  # not recorded in the ledger
    by_table = {u.table: u for u in result.tables}
    assert by_table["embeddings"].files_compacted > 0 and by_table["embeddings"].checkpoint is not None  # what it would do
    assert by_table["embeddings"].files_after < by_table["embeddings"].files_before


def test_unknown_tables_and_a_corpus_someone_else_owns_are_refused(tmp_path: Path) -> None:
    settings, _ = _corpus_lakehouse(tmp_path, changes=1)
    with pytest.raises(UsageError, match="no table embedings"):
        run_maintain(settings, ["embedings"])
    other = settings.model_copy(update={"corpus": settings.corpus.model_copy(update={"path": str(tmp_path / "elsewhere")})})
    with pytest.raises(UsageError, match="not the lakehouse's sample corpus"):
        run_maintain(other, ["corpus"])
    assert "corpus" not in {u.table for u in run_maintain(other, dry_run=True).tables}
    latest = DeltaTable(settings.table_root("embeddings")).version()
    ahead = settings.model_copy(update={"maintain": settings.maintain.model_copy(update={"keep_versions": {"embeddings": (latest + 1,)}})})
    with pytest.raises(UsageError, match=f"names version {latest + 1} of embeddings, whose latest version is {latest}"):
        run_maintain(ahead, dry_run=True)
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        settings_for(tmp_path, "maintain.keep_versions={embeddings: [-1]}")


def test_the_keyframes_refresh_names_its_corpus_version_and_a_table_with_unknown_columns_is_not_compacted(tmp_path: Path) -> None:
    settings, _ = _corpus_lakehouse(tmp_path, changes=4)
    root = settings.table_root(KEYFRAMES.name)
    rows = pa.table({**{f.name: pa.nulls(2, f.type) for f in KEYFRAMES.schema}, "content_id": ["v1", "v2"], "keyframe_index": [0, 0],
                     "signal": ["image_embedding"] * 2, "model_name": ["m"] * 2, "model_version": ["1"] * 2, "status": ["ok"] * 2,
                     "run_id": ["r"] * 2, "computed_at": pa.array([dt.datetime(2026, 11, 20, tzinfo=dt.UTC)] * 2), "ds": [DAYS[0]] * 2}
                    ).select(KEYFRAMES.schema.names).cast(KEYFRAMES.schema)
    for _ in range(5):
        write_deltalake(root, rows, mode="append", partition_by=list(KEYFRAMES.partition_by),
                        commit_properties=CommitProperties(custom_metadata={"job": "refresh", CORPUS_VERSION: "1", REFRESHED: "image_embedding@1"}))
    assert named_versions(settings)["corpus"] == {1, 2}
    write_deltalake(root, rows.append_column("legacy", pa.array(["x", "y"])), mode="append", schema_mode="merge",
                    partition_by=list(KEYFRAMES.partition_by))
    done = {u.table: u for u in run_maintain(settings, ["keyframes"]).tables}["keyframes"]
    assert done.files_compacted == 0 and "columns its contract lacks (legacy)" in done.notes[0]
    assert DeltaTable(root).to_pyarrow_table().num_rows == 12


LAID_OUT_OTHERWISE = {  # tables another writer made, as write_deltalake options on the contract's rows
    "partitioned by day only": {"partition_by": ["ds"]},  # before: a KeyError that stopped the upkeep of every table
    "vectors of doubles": {"schema": EMBEDDINGS.schema.set(EMBEDDINGS.schema.get_field_index("vector"), pa.field("vector", pa.list_(pa.float64())))},
    "column mapping": {"configuration": {"delta.columnMapping.mode": "name"}},  # before: the files' columns read as nulls, a crash
}


@pytest.mark.parametrize("layout", list(LAID_OUT_OTHERWISE))
def test_a_table_another_writer_laid_out_otherwise_is_vacuumed_not_compacted(tmp_path: Path, layout: str) -> None:
    """Compaction reads the files' columns by name and writes the contract's columns and
    partitions: on a table laid out otherwise it would fail or change rows (doubles narrowed to the
    contract's floats), so it is skipped with a note, and the table is still vacuumed."""
    root, options = str(tmp_path / "embeddings"), dict(LAID_OUT_OTHERWISE[layout])
    schema, options["partition_by"] = options.pop("schema", EMBEDDINGS.schema), options.get("partition_by", list(EMBEDDINGS.partition_by))
    rows = [{**r, "content_id": f"{r['content_id']}-{n}", "vector": r["vector"] and [v + 0.1 for v in r["vector"]]}
            for n in range(6) for r in make_rows(f"run-{n}", per_slice=2)]
    for n, mode in enumerate(["append", "overwrite", "append", "append", "append", "append", "append"]):  # files replaced, small files
        write_deltalake(root, pa.Table.from_pylist(rows[max(n - 1, 0) * 8 : n * 8 + 8], schema=schema), mode=mode, **options)
        options.pop("configuration", None)
    def read() -> pa.Table:  # through DataFusion, which reads a column-mapped table (delta-rs's pyarrow dataset does not)
        return pa.table(QueryBuilder().register("t", DeltaTable(root)).execute("SELECT * FROM t ORDER BY content_id").read_all())
    before = read()

    done = _maintain(root)

    assert done.files_compacted == 0 and done.compaction_version is None and done.notes[0].startswith("compaction skipped: ")
    assert done.vacuumed > 0 and read().equals(before) and before["content_id"].null_count == 0


OLDER_LAYOUT = ["signal", "model_version", "ds"]  # the signal tables' partitions before the forty-sixth session


def _day_partitioned(root: str, commits: int = 4) -> pa.Table:
    """An embeddings table written with the older layout (a partition a day), in small commits, one replacing
    what came before: its latest rows."""
    for n in range(commits):
        rows = [{**r, "content_id": f"{r['content_id']}-{n}"} for r in make_rows(f"run-{n}", per_slice=2)]
        write_deltalake(root, pa.Table.from_pylist(rows, schema=EMBEDDINGS.schema), mode="overwrite" if n == 1 else "append",
                        partition_by=OLDER_LAYOUT)
    return _sorted(delta_io.read_arrow(root))


def test_a_table_of_the_older_layout_is_refused_then_laid_out_again_by_maintain(tmp_path: Path) -> None:
    """A table written when the day was a partition: a job refuses it, naming maintain; maintain lays
    it out in the contract's partitions, with the same rows and keys, the version before still readable by
    time travel, and the table usable again; a second maintain does not lay it out again."""
    root = str(tmp_path / "embeddings")
    before = _day_partitioned(root)
    older = DeltaTable(root).version()
    with pytest.raises(UsageError, match="partitioned by \\['signal', 'model_version', 'ds'\\].*`content-signals maintain") as refused:
        delta_io.ensure_table(root, EMBEDDINGS)
    assert DeltaTable(root).version() == older
    named = re.search(r"`content-signals ([^`]*)`", str(refused.value))[1]
    assert _parser().parse_args(named.split()).command == "maintain"  # a command the CLI takes as it is said

    done = _maintain(root, keep=[older])

    assert done.relayout_version == older + 2  # after the upkeep properties' commit
    assert done.notes[0].startswith("laid out again by ['signal', 'model_version']")
    assert DeltaTable(root).metadata().partition_columns == list(EMBEDDINGS.partition_by)
    assert delta_io.ensure_table(root, EMBEDDINGS).version() == DeltaTable(root).version()  # usable: no refusal, no schema commit
    after = _sorted(delta_io.read_arrow(root))
    assert after.equals(before)
    keys = list(zip(*(after[c].to_pylist() for c in EMBEDDINGS.key)))
    assert len(keys) == len(set(keys)) == before.num_rows
    assert all(f.days is not None and "ds=" not in f.path for f in delta_io.live_files(root))  # days from the files' statistics
    assert DeltaTable(root, version=older).metadata().partition_columns == OLDER_LAYOUT
    assert _sorted(delta_io.read_arrow(root, older)).equals(before)  # time travel to the version before, in its layout
    version = DeltaTable(root).version()
    again = _maintain(root, keep=[older], app_id="content-signals/maintain-2")
    assert again.relayout_version is None and not any("laid out again" in n for n in again.notes)
    assert DeltaTable(root).version() == version


def test_a_dry_run_says_it_would_lay_out_a_table_of_the_older_layout_and_changes_nothing(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "maintain.min_retention_hours=0")
    root = settings.table_root(EMBEDDINGS.name)
    before = _day_partitioned(root)
    state = (DeltaTable(root).version(), _files_on_disk(root), sorted(p.name for p in (Path(root) / "_delta_log").iterdir()))

    result = run_maintain(settings, ["embeddings"], dry_run=True)

    done = result.tables[0]
    assert done.relayout_version is None and done.notes[0].startswith("would lay out again by ['signal', 'model_version']")
    assert (DeltaTable(root).version(), _files_on_disk(root), sorted(p.name for p in (Path(root) / "_delta_log").iterdir())) == state
    assert DeltaTable(root).metadata().partition_columns == OLDER_LAYOUT and _sorted(delta_io.read_arrow(root)).equals(before)


def test_a_partition_whose_value_the_writer_refuses_is_left_alone_and_the_rest_is_maintained(tmp_path: Path) -> None:
    """Another writer's partition value that is not a plain name (`signal=image embedding`, escaped in its
    folder) cannot be written again by the file writer: that partition is not compacted, with a
    note, and the table's other partitions are compacted, vacuumed and checkpointed. Before, the
    writer's ValueError ended the table's upkeep (no vacuum, no checkpoint) and maintain with a traceback."""
    root, odd = str(tmp_path / "embeddings"), "image embedding"
    for n, mode in enumerate(["append", "overwrite", "append", "append", "append", "append"]):  # replaced files, small files
        rows = make_rows(f"run-{n}", per_slice=2, slices=[("image_embedding", DAYS[0]), (odd, DAYS[0])])
        write_deltalake(root, pa.Table.from_pylist([{**r, "content_id": f"{r['content_id']}-{n}"} for r in rows], schema=EMBEDDINGS.schema),
                        mode=mode, partition_by=list(EMBEDDINGS.partition_by))
    before, odd_files = _sorted(delta_io.read_arrow(root)), {f.path for f in delta_io.live_files(root) if f.partition_values["signal"] == odd}

    done = _maintain(root, policy=dataclasses.replace(NO_RETENTION, min_small_files=1))

    assert _sorted(delta_io.read_arrow(root)).equals(before)
    live = delta_io.live_files(root)
    assert {f.path for f in live if f.partition_values["signal"] == odd} == odd_files  # left as it was
    assert len([f for f in live if f.partition_values["signal"] == "image_embedding"]) == 1  # compacted
    assert (done.partitions_compacted, done.files_compacted) == (1, 5)
    assert any(odd in note and "not compacted" in note for note in done.notes)
    assert done.vacuumed > 0 and done.checkpoint == DeltaTable(root).version()


def test_a_run_whose_files_a_vacuum_deleted_before_its_commit_commits_nothing(tmp_path: Path) -> None:
    """A retention shorter than a run in flight (here none) deletes the files it wrote and has not
    committed: its commit refuses, and the table stays readable, rather than naming files that are gone."""
    settings = settings_for(tmp_path, "maintain.min_retention_hours=0")
    root = settings.table_root(EMBEDDINGS.name)
    delta_io.commit_files(root, EMBEDDINGS, write(root, make_rows("run-0"), prefix="part-run-0"), "test/0", {"job": "backfill"})
    read_version = delta_io.snapshot(root).version()
    in_flight = write(root, make_rows("run-1", slices=[("text_embedding", "2026-11-21")]), prefix="part-run-1")
    assert run_maintain(settings).tables[0].vacuumed == len(in_flight)
    maintained = delta_io.snapshot(root).version()  # the vacuum's own commits
    with pytest.raises(delta_io.CommitConflict, match="deleted before its commit"):
        delta_io.commit_files(root, EMBEDDINGS, in_flight, "test/1", {"job": "backfill"}, read_version=read_version)
    assert delta_io.snapshot(root).version() == maintained and delta_io.read_arrow(root).num_rows == len(make_rows("run-0"))


def test_files_another_machine_wrote_that_a_vacuum_deleted_are_still_told_as_a_vacuum(tmp_path: Path, monkeypatch) -> None:
    """On a cluster the files come from executors on other hosts: where the log holds a vacuum
    since they were written, that vacuum, not unshared storage, is what the commit says deleted them."""
    settings = settings_for(tmp_path, "maintain.min_retention_hours=0")
    root = settings.table_root(EMBEDDINGS.name)
    delta_io.commit_files(root, EMBEDDINGS, write(root, make_rows("run-0"), prefix="part-run-0"), "test/0", {"job": "backfill"})
    with monkeypatch.context() as executor:
        executor.setattr(socket, "gethostname", lambda: "worker-7")
        in_flight = write(root, make_rows("run-1", slices=[("text_embedding", "2026-11-21")]), prefix="part-run-1")
    assert {f.host for f in in_flight} == {"worker-7"} and run_maintain(settings).tables[0].vacuumed == len(in_flight)
    with pytest.raises(delta_io.CommitConflict, match="deleted before its commit"):
        delta_io.commit_files(root, EMBEDDINGS, in_flight, "test/1", {"job": "backfill"})


def test_the_versions_a_registered_head_was_trained_on_are_named(tmp_path: Path, empty_registry_db) -> None:
    from embedding_tables import registry_in

    settings, _ = _corpus_lakehouse(tmp_path, changes=4)
    registry = registry_in(Path(settings.lakehouse_root), empty_registry_db, versions=1)
    model = registry.register("head_low_quality", "code:head", {"kind": "image_embedding_head"})
    run = registry.client.create_run(registry.client.create_experiment("training"))
    for param, value in {"embeddings_version": "2", "duplicates_version": "None", "human_labels_version": "3", "labels": "weak"}.items():
        registry.client.log_param(run.info.run_id, param, value)
    registry.client.set_model_version_tag("head_low_quality", model.version, "mlflow_run_id", run.info.run_id)
    registry.client.set_registered_model_alias("head_low_quality", "challenger", model.version)
    named = named_versions(settings)
    assert named["embeddings"] == {2} and named["human_labels"] == {3} and "duplicates" not in named


def test_the_versions_a_head_the_profile_does_not_name_was_trained_on_are_named_too(tmp_path: Path, empty_registry_db) -> None:
    """Found in review: only the profile's heads were read, so the lineage of a head registered in the lakehouse's
    registry under a task the profile does not name (a task since dropped or renamed, another profile's) was not
    kept, and a vacuum could delete the files its training snapshot reads. Every registered head's aliases are read."""
    from embedding_tables import registry_in

    settings, _ = _corpus_lakehouse(tmp_path, changes=4)
    registry = registry_in(Path(settings.lakehouse_root), empty_registry_db, versions=1)
    experiment = registry.client.create_experiment("training")
    for head, embeddings_version in (("head_retired_task", "1"), ("head_low_quality", "3")):
        assert (head in settings.signals) == (head == "head_low_quality")
        model = registry.register(head, "code:head", {"kind": "image_embedding_head"})
        run = registry.client.create_run(experiment)
        registry.client.log_param(run.info.run_id, "embeddings_version", embeddings_version)
        registry.client.set_model_version_tag(head, model.version, "mlflow_run_id", run.info.run_id)
        registry.client.set_registered_model_alias(head, "champion", model.version)
    assert named_versions(settings)["embeddings"] == {1, 3}
    result = run_maintain(settings, ["embeddings"])
    assert result.tables[0].kept_versions == (1, 3)
    assert _sorted(delta_io.read_arrow(settings.table_root(EMBEDDINGS.name), 1)).num_rows > 0  # its training snapshot still reads


def test_a_head_whose_training_run_is_gone_names_nothing_and_maintain_says_so(tmp_path: Path, empty_registry_db) -> None:
    from embedding_tables import registry_in

    settings, _ = _corpus_lakehouse(tmp_path, changes=4)
    registry = registry_in(Path(settings.lakehouse_root), empty_registry_db, versions=1)
    model = registry.register("head_low_quality", "code:head", {"kind": "image_embedding_head"})
    gone = "0" * 32  # a run `mlflow gc` deleted for good: MLflow no longer knows it
    registry.client.set_model_version_tag("head_low_quality", model.version, "mlflow_run_id", gone)
    registry.client.set_registered_model_alias("head_low_quality", "champion", model.version)
    unknown: list[str] = []
    assert "embeddings" not in named_versions(settings, unknown)
    assert len(unknown) == 1 and gone in unknown[0] and "head_low_quality" in unknown[0]
    result = run_maintain(settings)
    assert result.unknown == unknown and result.tables
    ledger_messages = {r["message"] for r in delta_io.read_arrow(settings.table_root(RUNS.name)).to_pylist() if r["run_id"] == result.run_id}
    assert any(gone in (m or "") for m in ledger_messages)


def test_a_table_whose_upkeep_fails_does_not_stop_the_others(tmp_path: Path) -> None:
    """Found in review: one table's unexpected failure stopped `maintain` for every table after it.
    A data file of the embeddings (maintained first) is missing: the corpus still gets its upkeep,
    and the run fails as that table's damage is explained (exit 4, how to heal it), saying what was
    done for the others."""
    settings, corpus_root = _corpus_lakehouse(tmp_path, changes=4)
    root = settings.table_root(EMBEDDINGS.name)
    lost = next(f.path for f in delta_io.live_files(root) if f.days == (DAYS[0], DAYS[0]))
    os.remove(f"{root}/{lost}")
    corpus_version = DeltaTable(corpus_root).version()
    with pytest.raises(UpkeepFailed) as failed:
        run_maintain(settings, ["embeddings", "corpus"])
    assert list(failed.value.failed) == ["embeddings"] and [u.table for u in failed.value.done] == ["corpus"]
    # the corpus's log was checkpointed after the embeddings failed (and after its app id retention's property commit)
    assert upkeep.last_checkpoint(corpus_root) == corpus_version + 1
    explained = explain(failed.value, settings.lakehouse_root)
    assert explained is not None and explained.status == DAMAGED
    assert f"with rows of days {DAYS[0]}..{DAYS[0]} is missing" in explained.message and "corpus: files" in explained.message
    ledger = DeltaTable(settings.table_root(RUNS.name)).to_pyarrow_table().to_pylist()
    ended = {r["signal"]: r for r in ledger if r["status"] != "started"}
    # found in review: the corpus was recorded `failed` although its upkeep was done (its log checkpointed)
    assert {s: r["status"] for s, r in ended.items()} == {"embeddings": "failed", "corpus": "succeeded"}
    assert ended["corpus"]["table_version"] == failed.value.done[0].version  # as a run that ends well records it
    assert all("upkeep of embeddings failed" in r["message"] and "corpus: files" in r["message"] for r in ended.values())


def test_a_refreshed_table_whose_log_is_damaged_does_not_stop_the_others_upkeep(tmp_path: Path) -> None:
    """Found in review: a damaged log entry of the embeddings made reading its last refresh (for
    the corpus versions to keep) raise before any table's upkeep, so no table was maintained; it
    now names nothing, said, and the run fails as that table's damage is explained after the
    others' upkeep (the next refresh of the healed table compares the whole corpus if it must)."""
    settings, corpus_root = _corpus_lakehouse(tmp_path, changes=4)
    (Path(settings.table_root(EMBEDDINGS.name)) / "_delta_log" / f"{2:020d}.json").write_text("{not json\n")
    with pytest.raises(UpkeepFailed) as failed:
        run_maintain(settings, ["embeddings", "corpus"])
    assert list(failed.value.failed) == ["embeddings"] and [u.table for u in failed.value.done] == ["corpus"]
    assert upkeep.last_checkpoint(corpus_root) == DeltaTable(corpus_root).version()  # the corpus's upkeep was done
    assert explain(failed.value, settings.lakehouse_root).status == DAMAGED
    unknown: list[str] = []
    assert CORPUS.name not in named_versions(settings, unknown) and "embeddings table's last refresh cannot be read" in unknown[0]


def _closing_rows(settings, run_id: str) -> dict[str, list[tuple]]:
    """table -> the (status, table version) of each row the ledger closed `run_id`'s entry for it with."""
    rows = delta_io.read_arrow(settings.table_root(RUNS.name)).to_pylist()
    closing: dict[str, list[tuple]] = {}
    for r in rows:
        if r["run_id"] == run_id and r["status"] != ledger.STARTED:
            closing.setdefault(r["signal"], []).append((r["status"], r["table_version"]))
    return closing


def test_a_table_whose_log_is_damaged_is_recorded_failed_and_the_run_explained(tmp_path: Path) -> None:
    """Found in review: recording the failure read the damaged table again (was the run's commit in
    it?), which raised the damage itself in place of `UpkeepFailed`: no ledger row closed the run,
    the others' upkeep went unsaid, and the next job's reconciliation read the same table."""
    settings, corpus_root = _corpus_lakehouse(tmp_path, changes=4)
    root = settings.table_root(ALERTS.name)
    for day in DAYS:
        delta_io.replace_run_rows(root, ALERTS, _verdicts("refresh-1", day), "refresh-1", {"job": "monitor"})
    (Path(root) / "_delta_log" / f"{1:020d}.json").write_text("{not json\n")
    with pytest.raises(UpkeepFailed) as failed:
        run_maintain(settings, ["alerts", "corpus"])
    assert list(failed.value.failed) == ["alerts"] and [u.table for u in failed.value.done] == ["corpus"]
    assert explain(failed.value, settings.lakehouse_root).status == DAMAGED
    run_id = next(r["run_id"] for r in delta_io.read_arrow(settings.table_root(RUNS.name)).to_pylist() if r["signal"] == "alerts")
    closing = _closing_rows(settings, run_id)
    assert closing == {"alerts": [(ledger.FAILED, None)], "corpus": [(ledger.SUCCEEDED, failed.value.done[0].version)]}


def test_a_killed_runs_entry_on_a_table_whose_log_is_damaged_stays_open_and_stops_no_job_that_does_not_read_it(tmp_path: Path) -> None:
    """Found in review: a killed maintain's open entry for a table whose log cannot be read made every later job's
    reconciliation raise that damage (exit 4), here a maintain of the corpus alone, and no other dead run's entry was
    closed. The entry is left open, said, and closed by the first run after the table is healed; the others are closed."""
    settings, corpus_root = _corpus_lakehouse(tmp_path, changes=4)
    root = settings.table_root(ALERTS.name)
    for day in DAYS:
        delta_io.replace_run_rows(root, ALERTS, _verdicts("refresh-1", day), "refresh-1", {"job": "monitor"})
    ledger.record_runs(settings.table_root(RUNS.name), [_started("maintain-killed", "alerts", maintain.JOB),
                                                        _started("backfill-killed", "image_safety")])
    entry = Path(root) / "_delta_log" / f"{1:020d}.json"
    kept = entry.read_bytes()
    entry.write_text("{not json\n")

    with pytest.warns(UserWarning, match="maintain run maintain-killed for alerts is left open: a table it may have committed to"):
        result = run_maintain(settings, ["corpus"])

    assert [u.table for u in result.tables] == ["corpus"] and upkeep.last_checkpoint(corpus_root) == DeltaTable(corpus_root).version()
    assert _closing_rows(settings, "maintain-killed") == {}  # its commit may be in the entry that cannot be read
    assert _closing_rows(settings, "backfill-killed") == {"image_safety": [(ledger.ABANDONED, None)]}
    entry.write_bytes(kept)  # healed
    run_maintain(settings, ["corpus"])
    assert _closing_rows(settings, "maintain-killed") == {"alerts": [(ledger.ABANDONED, None)]}  # it never reached the table


def test_a_maintain_killed_after_its_compaction_commit_is_recovered_as_succeeded(tmp_path: Path) -> None:
    """Found in review: the next run closed it as `abandoned` ("died before committing"), since a
    compaction writes no row of its run and the ledger looked for the run's rows."""
    settings, _ = _corpus_lakehouse(tmp_path, changes=4)
    root = settings.table_root(EMBEDDINGS.name)
    done = upkeep.maintain_table(root, EMBEDDINGS, policy_of(settings), set(), "content-signals/maintain-killed", "part-maintain-killed",
                                 {"job": maintain.JOB, "run_id": "maintain-killed"})
    assert done.compaction_version is not None
    ledger.record_runs(settings.table_root(RUNS.name), [_started("maintain-killed", name, maintain.JOB) for name in ("embeddings", "labels")])

    run_maintain(settings, ["corpus"])  # the next run reconciles the killed one

    assert _closing_rows(settings, "maintain-killed") == {"embeddings": [(ledger.SUCCEEDED, done.compaction_version)],
                                                          "labels": [(ledger.ABANDONED, None)]}


def test_a_maintain_that_fails_after_compacting_tables_records_them_as_succeeded(tmp_path: Path, monkeypatch) -> None:
    """Found in review: a compacted table was recorded `failed`, and a compacted run ledger made the
    recording of the failure itself raise KeyError (it counted the ledger's rows as signal rows)."""
    settings, _ = _corpus_lakehouse(tmp_path, changes=4)
    run_maintain(settings, ["corpus"])  # the ledger gets rows, and files to compact
    real = maintain.maintain_table

    def failing_on_the_corpus(root: str, *args, **kwargs) -> upkeep.Upkeep:
        if root == settings.table_root(CORPUS.name):
            raise OSError("the corpus's store went away")
        return real(root, *args, **kwargs)

    monkeypatch.setattr(maintain, "maintain_table", failing_on_the_corpus)
    with pytest.raises(UpkeepFailed) as failed:
        run_maintain(settings, ["embeddings", "runs", "corpus"])
    compacted = {u.table: u.compaction_version for u in failed.value.done}
    assert None not in compacted.values() and set(compacted) == {"embeddings", "runs"}
    ended = {u.table: u.version for u in failed.value.done}  # their upkeep was done: the version it ended at, as in a run that ends well
    run_id = next(r["run_id"] for r in delta_io.read_arrow(settings.table_root(RUNS.name)).to_pylist() if r["signal"] == "runs")
    assert _closing_rows(settings, run_id) == {"embeddings": [(ledger.SUCCEEDED, ended["embeddings"])],
                                               "runs": [(ledger.SUCCEEDED, ended["runs"])], "corpus": [(ledger.FAILED, None)]}


def _killed_in_upkeep(settings, run_id: str, table: str, checkpoint_every: int = 3) -> upkeep.Upkeep:
    """The upkeep of `table` by a maintain `run_id` that was killed after it, its ledger entries for `table` and the embeddings
    still `started` (the run got no further)."""
    contract = {"corpus": CORPUS, "embeddings": EMBEDDINGS}[table]
    policy = dataclasses.replace(policy_of(settings), checkpoint_every=checkpoint_every)
    done = upkeep.maintain_table(settings.table_root(table), contract, policy, set(), f"content-signals/{run_id}", f"part-{run_id}",
                                 {"job": maintain.JOB, "run_id": run_id}, compaction=False)
    ledger.record_runs(settings.table_root(RUNS.name), [_started(run_id, name, maintain.JOB) for name in (table, "embeddings")])
    return done


def test_a_maintain_killed_after_its_vacuum_is_recovered_and_one_that_did_nothing_is_not_said_to_hide_files(tmp_path: Path) -> None:
    """Found in review: a maintain killed after vacuuming a table (no compaction) was closed `abandoned`, "died before
    committing; its files were never visible", though its vacuum had deleted files; and the entry of a table it never
    reached said its files were never visible, which is no account of upkeep."""
    settings, corpus_root = _corpus_lakehouse(tmp_path, changes=4)
    done = _killed_in_upkeep(settings, "maintain-killed", "corpus")
    assert done.vacuumed and done.compaction_version is None
    vacuum_end = DeltaTable(corpus_root).history(1)[0]
    assert vacuum_end["operation"] == "VACUUM END"

    closed = {r.signal: r for r in ledger.reconcile(settings.table_root(RUNS.name), lambda record: committed_to(settings, record))}

    assert (closed["corpus"].status, closed["corpus"].table_version) == (ledger.SUCCEEDED, vacuum_end["version"])
    assert "vacuum" in closed["corpus"].message
    assert closed["embeddings"].status == ledger.ABANDONED and closed["embeddings"].table_version is None
    assert closed["embeddings"].message.startswith("died before compacting or vacuuming the table: no row moved and no file was deleted")


def test_a_maintain_killed_during_its_vacuum_is_abandoned_saying_files_may_be_deleted(tmp_path: Path) -> None:
    """Killed between its vacuum's start and end commits, a maintain may have deleted some of the files it listed (none a
    kept version reads): its entry is `abandoned`, and says so rather than that nothing happened."""
    settings, corpus_root = _corpus_lakehouse(tmp_path, changes=4)
    _killed_in_upkeep(settings, "maintain-killed", "corpus", checkpoint_every=1000)
    end, start = DeltaTable(corpus_root).history(2)
    assert (start["operation"], end["operation"]) == ("VACUUM START", "VACUUM END")
    os.remove(f"{corpus_root}/_delta_log/{end['version']:020d}.json")  # as if killed before the end was committed

    closed = {r.signal: r for r in ledger.reconcile(settings.table_root(RUNS.name), lambda record: committed_to(settings, record))}

    assert (closed["corpus"].status, closed["corpus"].table_version) == (ledger.ABANDONED, None)
    assert f"during its vacuum (started at version {start['version']})" in closed["corpus"].message


def test_a_maintain_killed_after_laying_a_table_out_again_is_recovered_as_succeeded(tmp_path: Path) -> None:
    """A maintain killed after its relayout commit (every row of the table written again), before compacting or
    vacuuming: its entry is `succeeded` at that commit, not "no row moved"."""
    settings = settings_for(tmp_path, "maintain.min_retention_hours=0")
    root = settings.table_root(EMBEDDINGS.name)
    _day_partitioned(root)
    relaid = upkeep.relayout(root, EMBEDDINGS, upkeep.relayout_app_id(ledger.run_app_id("maintain-killed")),
                             {"job": maintain.JOB, "run_id": "maintain-killed"})
    assert relaid is not None
    ledger.record_runs(settings.table_root(RUNS.name), [_started("maintain-killed", "embeddings", maintain.JOB)])

    closed = ledger.reconcile(settings.table_root(RUNS.name), lambda record: committed_to(settings, record))

    assert [(r.status, r.table_version) for r in closed] == [(ledger.SUCCEEDED, relaid)] and "laid the table out again" in closed[0].message


def test_a_killed_backfill_is_still_said_to_have_left_its_files_invisible(tmp_path: Path) -> None:
    """What other jobs' abandoned entries say is unchanged by upkeep's own account."""
    runs = str(tmp_path / "runs")
    ledger.record_runs(runs, [_started("backfill-killed", "image_safety")])
    closed = ledger.reconcile(runs, lambda _: [str(tmp_path / "labels")])
    assert [(r.status, r.message) for r in closed] == [(ledger.ABANDONED, "died before committing; its files were never visible")]


def test_the_versions_a_head_version_the_profile_pins_was_trained_on_are_named(tmp_path: Path, empty_registry_db) -> None:
    """Found in review: only the heads' aliased versions named their lineage, so a profile pinning an older head
    version (`signals.head_low_quality.model.version`, which its jobs run in place of the champion) had the
    embeddings version that head was trained on vacuumed, and its training snapshot no longer read."""
    from embedding_tables import registry_in

    settings, _ = _corpus_lakehouse(tmp_path, changes=4)
    root = settings.table_root(EMBEDDINGS.name)
    expected = _sorted(delta_io.read_arrow(root, 1))
    replaced = delta_io.commit_files(root, EMBEDDINGS, write(root, make_rows("backfill-2", per_slice=1, slices=[("image_embedding", DAYS[0])]),
                                                            prefix="part-backfill-2"),
                                     "test/backfill", {"job": "backfill"}, remove=lambda f: f.days == (DAYS[0], DAYS[0]))
    registry = registry_in(Path(settings.lakehouse_root), empty_registry_db, versions=1)
    experiment = registry.client.create_experiment("training")
    for number, embeddings_version in (("1", 1), ("2", replaced)):
        model = registry.register("head_low_quality", f"code:head-{number}", {"kind": "image_embedding_head"})
        run = registry.client.create_run(experiment)
        registry.client.log_param(run.info.run_id, "embeddings_version", str(embeddings_version))
        registry.client.set_model_version_tag("head_low_quality", model.version, "mlflow_run_id", run.info.run_id)
        assert model.version == number
    registry.client.set_registered_model_alias("head_low_quality", "champion", "2")
    pinned = settings_for(Path(settings.lakehouse_root), "maintain.min_retention_hours=0", "maintain.min_small_files=1",
                          "signals.head_low_quality.model.version=1")
    assert named_versions(settings)["embeddings"] == {replaced}  # the profile that does not pin it runs the champion only
    assert named_versions(pinned)["embeddings"] == {1, replaced}
    assert run_maintain(pinned, ["embeddings"]).tables[0].kept_versions == (1, replaced)
    assert _sorted(delta_io.read_arrow(root, 1)).equals(expected)  # its training snapshot still reads
    unknown: list[str] = []  # a pin of a version never registered (a typo) names nothing, said, and stops no upkeep
    typo = settings_for(Path(settings.lakehouse_root), "signals.head_low_quality.model.version=9")
    assert named_versions(typo, unknown)["embeddings"] == {replaced} and len(unknown) == 1 and "version 9" in unknown[0]


@pytest.mark.parametrize("value, retention", [
    ("interval 30 days", dt.timedelta(days=30)), ("interval 1 day 12 hours", dt.timedelta(hours=36)),
    ("INTERVAL 2 Weeks 3 days", dt.timedelta(days=17)), ("7 days", dt.timedelta(days=7)),
    ("interval 1 fortnight", None), ("interval 1.5 days", None), ("interval 3", None), ("interval", None)])
def test_the_log_retention_is_read_as_delta_reads_it_several_units_added_up(tmp_path: Path, value: str, retention) -> None:
    """A retention of several units (`interval 1 day 12 hours`, which Delta reads) was not read, and
    the log was never expired; a value that cannot be read still expires nothing (said by `expire_log`)."""
    root = str(tmp_path / "t")
    write_deltalake(root, pa.table({"x": [1]}), configuration={upkeep.LOG_RETENTION: value})
    assert upkeep.log_retention(DeltaTable(root)) == retention
