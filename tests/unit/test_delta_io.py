"""Tests for lake.file_writer + lake.delta_io without Spark: the writer function is called
directly on Arrow batches (as mapInArrow would), its metadata rows are committed with delta-rs,
and the table is checked through deltalake.DeltaTable itself."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import clean_up_log
from deltalake import DeltaTable, write_deltalake

from conf.settings import UsageError
from lake import delta_io, file_writer
from lake.delta_io import DataFile
from lake.file_writer import FILE_METADATA_SCHEMA, make_file_writer, partition_path
from signals.contracts import ALERTS, CORPUS, DUPLICATES, EMBEDDINGS, HUMAN_LABELS, KEYFRAMES, LABELS, RUNS, SIGNAL_STATS, WEAK_LABELS

T0 = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)
SLICES = [("image_embedding", "2026-11-19"), ("image_embedding", "2026-11-20"), ("text_embedding", "2026-11-19"), ("text_embedding", "2026-11-20")]
SORT_KEY = ("signal", "model_version", "ds", "content_id", "run_id")


def make_rows(run_id: str = "run-1", per_slice: int = 5, slices=SLICES, model_version: str = "1") -> list[dict]:
    """Rows of EMBEDDINGS: some ok, some errors (null vector/dim/hash), across signals and days."""
    rows = []
    for s, (signal, ds) in enumerate(slices):
        for i in range(per_slice):
            ok = i % 3 != 1
            rows.append(
                {
                    "content_id": f"pin-{s}{i:03d}",
                    "signal": signal,
                    "model_name": "efficientnet-lite0" if signal.startswith("image") else "all-MiniLM-L6-v2",
                    "model_version": model_version,
                    "input_hash": None if i == 0 else f"{(s * 7 + i * 13) % 97:02d}hash",
                    "vector": [float(i), 0.5, -1.25] if ok else None,
                    "dim": 3 if ok else None,
                    "status": "ok" if ok else "error",
                    "error": None if ok else "image is corrupt or truncated",
                    "run_id": run_id,
                    "computed_at": T0 + dt.timedelta(seconds=s * 10 + i),
                    "ds": ds,
                }
            )
    return rows


def write(root: str, rows: list[dict], batch_rows: int = 3, prefix: str = "part-test", task: str = "t0") -> list[DataFile]:
    """Run the executor-side writer on `rows` (in small, interleaved batches) and return its files."""
    table = pa.Table.from_pylist(rows, schema=EMBEDDINGS.schema)
    writer = make_file_writer(root, EMBEDDINGS, prefix, task_id=lambda: task)
    out = list(writer(iter(table.to_batches(max_chunksize=batch_rows))))
    assert all(b.schema.equals(FILE_METADATA_SCHEMA) for b in out)
    return [DataFile.from_row(r) for r in pa.Table.from_batches(out, schema=FILE_METADATA_SCHEMA).to_pylist()]


def sorted_rows(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: tuple(r[k] for k in SORT_KEY))


def read_rows(root: str, version: int | None = None) -> list[dict]:
    table = delta_io.read_arrow(root, version=version)
    return sorted_rows(table.select(EMBEDDINGS.schema.names).to_pylist())


def add_actions(root: str, version: int | None = None) -> list[dict]:
    return pa.table(delta_io.snapshot(root, version).get_add_actions(flatten=True)).to_pylist()


def log_actions(root: str, version: int) -> list[dict]:
    path = Path(root) / "_delta_log" / f"{version:020d}.json"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def slice_of(signal: str, ds: str) -> Callable[[delta_io.LiveFile], bool]:
    """The files of a signal whose rows are all of one day, by their statistics (what a replacement of that day removes)."""
    return lambda live: live.partition_values["signal"] == signal and live.days == (ds, ds)


def write_by_day(root: str, rows: list[dict], prefix: str = "part-test") -> list[DataFile]:
    """`write` a day at a time, as daily runs do: a file per signal and day."""
    return [f for day in sorted({r["ds"] for r in rows}) for f in write(root, [r for r in rows if r["ds"] == day], prefix=f"{prefix}-{day}")]


@pytest.fixture
def root(tmp_path: Path) -> str:
    return str(tmp_path / "embeddings")


@pytest.fixture
def committed_table(root: str):
    """A table with one commit ("test/1") of the rows of make_rows(), a file per signal and day (`write_by_day`)."""
    rows = make_rows()
    files = write_by_day(root, rows)
    version = delta_io.commit_files(root, EMBEDDINGS, files, "test/1", {"run_id": "run-1", "job": "unit"})
    return root, rows, files, version


# --------------------------------------------------------------------------------------
# The writer
# --------------------------------------------------------------------------------------


def test_writer_writes_one_file_per_partition(root: str) -> None:
    rows = make_rows()
    files = write(root, rows, batch_rows=3)  # batches straddle partitions
    signals = {signal for signal, _ in SLICES}
    assert len(files) == len(signals)  # a file per (signal, model version), holding every day of the task's rows
    by_signal = {f.partition_values["signal"]: f for f in files}
    assert set(by_signal) == signals
    for signal, f in by_signal.items():
        expected = [r for r in rows if r["signal"] == signal]
        assert f.partition_values == {"signal": signal, "model_version": "1"}
        assert f.days == (min(r["ds"] for r in expected), max(r["ds"] for r in expected)) == ("2026-11-19", "2026-11-20")
        assert f.path.startswith(f"signal={signal}/model_version=1/part-test-t0-")
        assert f.path.endswith(".parquet")
        on_disk = Path(root) / f.path
        assert f.size == on_disk.stat().st_size
        assert f.num_records == len(expected)
        assert f.num_ok == sum(r["status"] == "ok" for r in expected)
        assert f.num_items == len({r["content_id"] for r in expected})
        assert abs(f.modification_time - on_disk.stat().st_mtime_ns // 1_000_000) <= 1
        # partition columns live in the folder names, not in the data files
        assert pq.read_schema(on_disk).names == EMBEDDINGS.data_columns
        assert pq.read_table(on_disk).num_rows == len(expected)


def interleaved(rows: list[dict]) -> list[dict]:
    """The rows in turn from each slice, as a compute-once task sends them: every small batch spans several partitions."""
    slices = [[r for r in rows if (r["signal"], r["ds"]) == s] for s in SLICES]
    return [r for turn in zip(*slices) for r in turn]


def test_writer_gathers_a_tasks_small_batches_into_one_row_group_per_file(root: str) -> None:
    # before, each batch's rows of a partition were a write of their own: a row group per batch and partition
    rows = interleaved(make_rows(per_slice=12))
    files = write(root, rows, batch_rows=3)
    assert len(files) == len({signal for signal, _ in SLICES})
    for f in files:
        expected = [r["content_id"] for r in rows if r["signal"] == f.partition_values["signal"]]
        on_disk = pq.ParquetFile(Path(root) / f.path)
        assert on_disk.metadata.num_row_groups == 1
        assert on_disk.read().column("content_id").to_pylist() == expected  # the task's order kept


def test_writer_writes_what_it_gathered_once_it_holds_enough(root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = interleaved(make_rows(per_slice=12))
    batches = pa.Table.from_pylist(rows, schema=EMBEDDINGS.schema).to_batches(max_chunksize=3)
    monkeypatch.setattr(file_writer, "GATHER_BYTES", max(b.nbytes for b in batches) + 1)  # written every second batch
    files = write(root, rows, batch_rows=3)
    # each file a row group per write holding its rows: not one (all gathered), not one per batch (12)
    assert all(1 < pq.ParquetFile(Path(root) / f.path).metadata.num_row_groups < 12 for f in files)
    delta_io.commit_files(root, EMBEDDINGS, files, "test/1", {"run_id": "run-1", "job": "unit"})
    assert read_rows(root) == sorted_rows(rows)


def test_writer_of_no_rows_writes_nothing(root: str) -> None:
    writer = make_file_writer(root, EMBEDDINGS, "part-test", task_id=lambda: "t0")
    out = list(writer(iter([])))
    assert sum(b.num_rows for b in out) == 0
    assert not Path(root).exists() or not any(Path(root).rglob("*.parquet"))


def test_two_attempts_of_the_same_task_never_share_a_file(root: str) -> None:
    rows = make_rows()
    first = write(root, rows, task="s1-p00000-a0")
    second = write(root, rows, task="s1-p00000-a0")
    assert not {f.path for f in first} & {f.path for f in second}
    assert all((Path(root) / f.path).exists() for f in first + second)


def test_files_an_executor_wrote_to_its_own_machines_folder_are_a_lakehouse_not_shared_not_a_vacuum(tmp_path: Path, root: str,
                                                                                                   monkeypatch) -> None:
    """A lakehouse path that is a folder on each machine: the executors (another host) write their
    files to their own disk, the driver finds none of them. Not a vacuum, and not safe to retry:
    a usage error naming the storage, and nothing committed."""
    executor_disk = str(tmp_path / "worker-7-disk" / "embeddings")
    with monkeypatch.context() as executor:
        executor.setattr(socket, "gethostname", lambda: "worker-7")
        files = write(executor_disk, make_rows())  # no report, as a dedup's or a refresh's copies
    assert {f.host for f in files} == {"worker-7"}
    delta_io.ensure_table(root, EMBEDDINGS)
    with pytest.raises(UsageError, match=r"written on worker-7.*storage the driver and every executor share") as refused:
        delta_io.commit_files(root, EMBEDDINGS, files, "test/1", {"job": "backfill"})
    assert not isinstance(refused.value, delta_io.CommitConflict) and delta_io.snapshot(root).version() == 0


def test_partition_path_names_plain_values_and_refuses_the_rest() -> None:
    assert partition_path(EMBEDDINGS, {"signal": "text_embedding", "model_version": "1"}) == "signal=text_embedding/model_version=1"
    for bad in ({"signal": "a/b"}, {"signal": "x y"}, {"model_version": "1\u00e9"}, {"model_version": ""}, {"signal": None}):
        with pytest.raises(ValueError, match="not plain ASCII names"):
            partition_path(EMBEDDINGS, {"signal": "text_embedding", "model_version": "1", **bad})


def test_datafile_from_row_parses_partition_values() -> None:
    row = {
        "path": "signal=s/model_version=1/f.parquet",
        "size": 10,
        "partition_values": json.dumps({"signal": "s", "model_version": "1"}),
        "num_records": 2,
        "num_ok": 1,
        "num_items": 2,
        "stats": json.dumps({"minValues": {"ds": "2026-11-19"}, "maxValues": {"ds": "2026-11-20"}}),
        "modification_time": 5,
    }
    f = DataFile.from_row(row)
    assert f.partition_values == {"signal": "s", "model_version": "1"}
    assert (f.path, f.size, f.num_records, f.num_ok, f.modification_time) == (row["path"], 10, 2, 1, 5)
    assert f.days == ("2026-11-19", "2026-11-20")  # its days from its statistics
    assert DataFile.from_row({**row, "stats": "{}"}).days is None  # none known: any day


# --------------------------------------------------------------------------------------
# Commit and read back
# --------------------------------------------------------------------------------------


def test_ensure_table_creates_an_empty_table_with_the_contract(root: str) -> None:
    table = delta_io.ensure_table(root, EMBEDDINGS)
    assert table.version() == 0
    assert table.metadata().partition_columns == list(EMBEDDINGS.partition_by)
    assert pa.schema(table.schema().to_arrow()).names == EMBEDDINGS.schema.names
    assert delta_io.read_arrow(root).num_rows == 0
    assert delta_io.ensure_table(root, EMBEDDINGS).version() == 0  # idempotent


def test_a_table_of_an_older_contract_gets_the_new_nullable_columns_and_keeps_its_rows(committed_table) -> None:
    root, rows, _, version = committed_table
    newer = dataclasses.replace(EMBEDDINGS, schema=EMBEDDINGS.schema.append(pa.field("added_later", pa.int64(), nullable=True)))
    table = delta_io.ensure_table(root, newer)
    assert table.version() == version + 1 and "added_later" in pa.schema(table.schema().to_arrow()).names
    back = delta_io.read_arrow(root)
    assert back.num_rows == len(rows) and back["added_later"].null_count == len(rows)  # old rows read it as null
    assert delta_io.ensure_table(root, newer).version() == version + 1  # once
    required = dataclasses.replace(EMBEDDINGS, schema=EMBEDDINGS.schema.append(pa.field("required_later", pa.int64(), nullable=False)))
    with pytest.raises(RuntimeError, match="lacks the required columns \\['required_later'\\]"):
        delta_io.ensure_table(root, required)


def test_committed_rows_read_back_equal(committed_table) -> None:
    root, rows, _, version = committed_table
    assert version == 1  # 0 is the table's creation
    assert read_rows(root) == sorted_rows(rows)
    # and through deltalake directly, not only through read_arrow
    direct = DeltaTable(root).to_pyarrow_table()
    assert sorted_rows(direct.select(EMBEDDINGS.schema.names).to_pylist()) == sorted_rows(rows)


def test_read_back_schema_is_the_contract(committed_table) -> None:
    root, *_ = committed_table
    schema = delta_io.read_arrow(root).schema
    for field in EMBEDDINGS.schema:
        assert schema.field(field.name).type == field.type, field.name


def test_partition_values_of_the_add_actions(committed_table) -> None:
    root, rows, files, _ = committed_table
    actions = add_actions(root)
    assert sorted(a["path"] for a in actions) == sorted(f.path for f in files)
    for a in actions:
        values = {k: a[f"partition.{k}"] for k in EMBEDDINGS.partition_by}
        assert a["path"].startswith(partition_path(EMBEDDINGS, values) + "/")
    table = delta_io.read_arrow(root)
    assert sorted(set(zip(table["signal"].to_pylist(), table["ds"].to_pylist()))) == sorted(SLICES)
    # partition filters prune by partition value
    only = delta_io.read_arrow(root, filters=(pa.compute.field("ds") == "2026-11-20") & (pa.compute.field("signal") == "text_embedding"))
    assert sorted(only["content_id"].to_pylist()) == sorted(r["content_id"] for r in rows if (r["signal"], r["ds"]) == SLICES[3])


def test_a_read_where_opens_only_the_files_that_may_match(committed_table, tmp_path: Path) -> None:
    """`where` on a partition column and on the day reads the rows those filters select and opens
    only the files whose partition values and day statistics may match: with every other file gone
    from disk (another signal's, and the same signal's of the other day), it still reads, and a plain read fails."""
    root, rows, _, _ = committed_table
    copy = tmp_path / "table"
    shutil.copytree(root, copy)
    signal, day = SLICES[3]
    gone = [a["path"] for a in add_actions(root) if (a["partition.signal"], a["min.ds"], a["max.ds"]) != (signal, day, day)]
    assert len(gone) == len(SLICES) - 1 and any(a["partition.signal"] == signal for a in add_actions(root) if a["path"] in gone)
    for path in gone:
        (copy / path).unlink()
    only = delta_io.read_arrow(str(copy), where=[("ds", "=", day), ("signal", "in", [signal])], columns=["content_id", "ds"])
    assert sorted(only["content_id"].to_pylist()) == sorted(r["content_id"] for r in rows if (r["signal"], r["ds"]) == (signal, day))
    assert set(only["ds"].to_pylist()) == {day}
    with pytest.raises(OSError):
        delta_io.read_arrow(str(copy))


ODD_IDS = ["", " ", "a/b", "a=b", "a%2Fb", "a b", "a\x00b", "a\nb", "it's", "a\\b", "NULL", "__HIVE_DEFAULT_PARTITION__", "x" * 10_000,
           "cafe\u0301", "caf\u00e9", "\U0001f600"]


@pytest.mark.parametrize("op", ["=", "in", "not in", ">=", "<=", ">", "<", "!="])
def test_a_read_where_on_odd_ids_finds_the_rows_a_read_of_the_live_files_finds(root: str, op: str) -> None:
    """Each odd id in a file of its own (its statistics a single value): `where` on it selects the
    rows an independent read (pyarrow over the files the log lists, compared in Python) selects.
    `content_id = ''` found no row: delta-rs takes '' in a tuple filter for null, and pruned every file."""
    files = []
    for n, content_id in enumerate(ODD_IDS):
        files += write(root, [{**make_rows(per_slice=1, slices=SLICES[:1])[0], "content_id": content_id}], prefix=f"part-{n}")
    delta_io.commit_files(root, EMBEDDINGS, files, "test/odd", {})
    stored = [i for f in delta_io.live_files(root) for i in pq.read_table(f"{root}/{unquote(f.path)}")["content_id"].to_pylist()]
    assert sorted(stored) == sorted(ODD_IDS)
    holds = {"=": str.__eq__, "!=": str.__ne__, ">=": str.__ge__, "<=": str.__le__, ">": str.__gt__, "<": str.__lt__,
             "in": lambda a, b: a in b, "not in": lambda a, b: a not in b}[op]
    for content_id in ODD_IDS:
        value = [content_id] if "in" in op else content_id
        found = delta_io.read_arrow(root, where=[("content_id", op, value)], columns=["content_id"])["content_id"].to_pylist()
        assert sorted(found) == sorted(i for i in stored if holds(i, value)), (op, content_id[:20])


def test_add_action_stats(committed_table) -> None:
    root, rows, _, _ = committed_table
    actions = add_actions(root)
    assert len(actions) == len(SLICES)  # a file per signal and day (`write_by_day`)
    for a in actions:
        mine = [r for r in rows if (r["signal"], r["ds"]) == (a["partition.signal"], a["min.ds"])]
        assert a["num_records"] == len(mine)
        for col in ("content_id", "input_hash", "dim", "status", "error", "run_id", "model_name", "ds"):
            present = [r[col] for r in mine if r[col] is not None]
            assert a[f"null_count.{col}"] == len(mine) - len(present), col
            assert a[f"min.{col}"] == min(present), col
            assert a[f"max.{col}"] == max(present), col
        assert a["size_bytes"] == (Path(root) / a["path"]).stat().st_size


def test_committed_and_version_of_commit(committed_table, tmp_path: Path) -> None:
    root, _, _, version = committed_table
    assert delta_io.committed(root, "test/1") is True
    assert delta_io.committed(root, "test/2") is False
    assert delta_io.committed(str(tmp_path / "no-table-here"), "test/1") is False
    assert delta_io.version_of_commit(root, "test/1") == version == 1
    with pytest.raises(LookupError, match="test/2"):
        delta_io.version_of_commit(root, "test/2")
    history = DeltaTable(root).history()
    commit = next(h for h in history if h["version"] == version)
    assert commit["app_id"] == "test/1" and commit["run_id"] == "run-1" and commit["job"] == "unit"


def test_a_commit_dates_its_app_id_so_that_a_retention_can_expire_it(committed_table) -> None:
    """Delta expires an app id by its txn's `lastUpdated`: one without it stayed in every checkpoint for good."""
    root, _, _, version = committed_table
    txn = next(a["txn"] for a in log_actions(root, version) if "txn" in a)
    committed_at = next(h["timestamp"] for h in DeltaTable(root).history() if h["version"] == version)
    assert txn["appId"] == "test/1" and abs(txn.get("lastUpdated", 0) - committed_at) < 60_000


def test_version_of_commit_finds_a_commit_however_old(committed_table) -> None:
    """A re-run of an old run id on a busy table: its commit is more than 50 versions back."""
    root, _, _, version = committed_table
    later = make_rows(per_slice=1, slices=SLICES[:1])
    for i in range(2, 72):  # past the first window of version_of_commit (64) and the old limit (50)
        delta_io.commit_files(root, EMBEDDINGS, write(root, later, prefix=f"part-{i}"), f"test/{i}", {"run_id": f"run-{i}"},
                              remove=slice_of(*SLICES[0]))
    assert DeltaTable(root).version() == version + 70
    assert delta_io.version_of_commit(root, "test/1") == version
    assert delta_io.version_of_commit(root, "test/71") == version + 70
    with pytest.raises(LookupError, match="test/72"):
        delta_io.version_of_commit(root, "test/72")


def test_a_commit_whose_log_entry_was_cleaned_up_has_no_known_version_and_is_not_made_again(committed_table) -> None:
    """Found in review: a retry of a run id more than the log's retention after its commit (behind a
    checkpoint, which keeps the app id) raised LookupError from `version_of_commit`, in the retry's
    check and in `commit_files_made`. Its version is None now; the commit is still not made twice,
    and an app id no commit carries still raises."""
    root, rows, _, _ = committed_table
    clean_up_log(root)
    version = DeltaTable(root).version()
    assert delta_io.committed(root, "test/1") and len(DeltaTable(root).history()) == 1
    assert delta_io.commit_of(root, "test/1") is None and delta_io.version_of_commit(root, "test/1") is None
    again = write(root, rows, prefix="part-retry")
    assert delta_io.commit_files_made(root, EMBEDDINGS, again, "test/1", {"run_id": "run-1"}) == (None, False)
    assert DeltaTable(root).version() == version
    with pytest.raises(LookupError, match="test/2"):
        delta_io.commit_of(root, "test/2")


def test_replace_removes_exactly_one_slice_in_the_same_commit(committed_table) -> None:
    root, rows, files, v1 = committed_table
    target = ("image_embedding", "2026-11-20")
    new_rows = [
        {**r, "run_id": "run-2", "content_id": r["content_id"] + "-new"} for r in rows if (r["signal"], r["ds"]) == target
    ][:3]
    new_files = write(root, new_rows, prefix="part-test2")
    v2 = delta_io.commit_files(root, EMBEDDINGS, new_files, "test/2", {"run_id": "run-2"}, remove=slice_of(*target))

    assert v2 == v1 + 1
    assert [h["version"] for h in DeltaTable(root).history()] == [v2, v1, 0]  # one commit, not remove-then-add
    actions = log_actions(root, v2)
    adds = [a["add"]["path"] for a in actions if "add" in a]
    removes = [a["remove"]["path"] for a in actions if "remove" in a]
    old_target = [f.path for f in files if slice_of(*target)(f)]
    assert len(old_target) == 1
    assert sorted(adds) == sorted(f.path for f in new_files)
    assert sorted(removes) == sorted(old_target)

    live = sorted(a["path"] for a in add_actions(root))
    untouched = [f.path for f in files if f.path not in old_target]
    assert live == sorted(untouched + [f.path for f in new_files])
    expected = [r for r in rows if (r["signal"], r["ds"]) != target] + new_rows
    assert read_rows(root) == sorted_rows(expected)
    assert delta_io.committed(root, "test/1") and delta_io.committed(root, "test/2")
    assert delta_io.version_of_commit(root, "test/2") == v2


def test_time_travel_returns_the_old_rows(committed_table) -> None:
    root, rows, _, v1 = committed_table
    target = ("text_embedding", "2026-11-19")
    new_rows = make_rows(run_id="run-2", per_slice=2, slices=[target])
    v2 = delta_io.commit_files(root, EMBEDDINGS, write(root, new_rows), "test/2", {}, remove=slice_of(*target))
    assert read_rows(root, version=v1) == sorted_rows(rows)
    assert read_rows(root, version=0) == []
    latest = read_rows(root)
    assert latest == read_rows(root, version=v2)
    assert [r["run_id"] for r in latest if (r["signal"], r["ds"]) == target] == ["run-2", "run-2"]


def test_replace_without_matching_files_only_adds(committed_table) -> None:
    root, rows, files, _ = committed_table
    new_rows = make_rows(run_id="run-2", per_slice=2, slices=[("image_embedding", "2026-11-21")])
    v2 = delta_io.commit_files(root, EMBEDDINGS, write(root, new_rows), "test/2", {}, remove=slice_of("image_embedding", "2026-11-21"))
    assert not [a for a in log_actions(root, v2) if "remove" in a]
    assert read_rows(root) == sorted_rows(rows + new_rows)


def _commit_day(root: str, run: str, day: str, read_version: int, remove=None) -> int:
    """A run of image_embedding version 1 that read the table at `read_version` and commits its rows of `day`."""
    files = write(root, make_rows(run, per_slice=2, slices=[("image_embedding", day)]), prefix=f"part-{run}")
    return delta_io.commit_files(root, EMBEDDINGS, files, f"test/{run}", {"run_id": run}, remove=remove, read_version=read_version)


def test_two_runs_of_one_signal_version_conflict_only_where_their_days_overlap(committed_table) -> None:
    """Commit conflicts are per slice (a partition and the days of the rows a commit adds or
    removes), not per partition: with the day no longer a partition, two runs of one signal version
    of different days, read at the same version, both land; of overlapping days, the second is refused."""
    root, rows, _, read_version = committed_table
    _commit_day(root, "today", "2026-11-21", read_version, remove=slice_of("image_embedding", "2026-11-21"))
    _commit_day(root, "last-month", "2026-10-21", read_version, remove=slice_of("image_embedding", "2026-10-21"))  # lands too
    both = delta_io.snapshot(root).version()
    assert both == read_version + 2
    _commit_day(root, "again", "2026-11-19", both, remove=slice_of("image_embedding", "2026-11-19"))
    with pytest.raises(delta_io.CommitConflict, match=r"image_embedding/1, days 2026-11-19\.\.2026-11-19.*Re-run"):
        _commit_day(root, "late", "2026-11-19", both, remove=slice_of("image_embedding", "2026-11-19"))
    assert delta_io.snapshot(root).version() == both + 1
    found = delta_io.read_arrow(root, where=[("signal", "=", "image_embedding")], columns=["run_id", "ds"]).to_pylist()
    assert sorted({(r["run_id"], r["ds"]) for r in found}) == [("again", "2026-11-19"), ("last-month", "2026-10-21"), ("run-1", "2026-11-20"),
                                                              ("today", "2026-11-21")]


@pytest.mark.parametrize("day", ["2026-11-19", "2026-11-20"])
@pytest.mark.parametrize("first", ["the day's commit", "the rewrite"])
def test_a_commit_removing_a_file_of_both_days_conflicts_with_a_commit_of_either(root: str, day: str, first: str) -> None:
    """A compacted file holds rows of several days: a commit rewriting it (a refresh dropping a
    changed item's row) and a commit of any one of its days, both read before either landed, clash
    whichever comes first, as a commit to one day partition clashed with another to it."""
    rows = make_rows(slices=[("image_embedding", "2026-11-19"), ("image_embedding", "2026-11-20")])
    read_version = delta_io.commit_files(root, EMBEDDINGS, write(root, rows), "test/1", {})
    compacted = next(f for f in delta_io.live_files(root))
    assert compacted.days == ("2026-11-19", "2026-11-20")

    def rewrite() -> int:
        kept = write(root, rows[1:], prefix="part-rewrite")
        return delta_io.commit_files(root, EMBEDDINGS, kept, "test/rewrite", {}, remove=lambda live: live.path == compacted.path,
                                     read_version=read_version)

    def of_the_day() -> int:
        return _commit_day(root, "day", day, read_version)

    landed, refused = (of_the_day, rewrite) if first == "the day's commit" else (rewrite, of_the_day)
    landed()
    with pytest.raises(delta_io.CommitConflict, match="Re-run"):
        refused()
    assert delta_io.snapshot(root).version() == read_version + 1


def test_append_without_replace_keeps_everything(committed_table) -> None:
    root, rows, _, _ = committed_table
    more = make_rows(run_id="run-2", per_slice=1, model_version="2")
    delta_io.commit_files(root, EMBEDDINGS, write(root, more), "test/2", {})
    assert read_rows(root) == sorted_rows(rows + more)


@pytest.mark.parametrize("where", ["table-root", "live-partition", "new-partition"])
def test_stray_parquet_files_are_never_read(committed_table, where: str) -> None:
    root, rows, _, _ = committed_table
    folder = {
        "table-root": Path(root),
        "live-partition": Path(root) / "signal=image_embedding/model_version=1",
        "new-partition": Path(root) / "signal=image_embedding/model_version=9",
    }[where]
    folder.mkdir(parents=True, exist_ok=True)
    stray = pa.Table.from_pylist(make_rows(run_id="stray"), schema=EMBEDDINGS.schema).select(EMBEDDINGS.data_columns)
    pq.write_table(stray, folder / "part-00000-stray.parquet")
    assert read_rows(root) == sorted_rows(rows)


def test_written_but_uncommitted_files_are_never_read(committed_table) -> None:
    root, rows, _, _ = committed_table
    orphans = write(root, make_rows(run_id="failed-attempt"), prefix="part-failed")
    assert all(os.path.exists(os.path.join(root, f.path)) for f in orphans)
    assert read_rows(root) == sorted_rows(rows)


def test_rows_with_partition_values_spark_would_misread_are_refused(root: str) -> None:
    rows = make_rows(per_slice=2, slices=[("image_embedding", "2026-11-20"), ("image_embedding\u00e9", "2026-11-20")])
    with pytest.raises(ValueError, match="not plain ASCII names"):
        write(root, rows)


# ------------------------------------------------------------------ what changed between versions


def _corpus_days(root: str, days: list[str], mode: str = "append", **kwargs) -> None:
    rows = pa.table({"content_id": [f"pin-{d}" for d in days], "ds": days})
    write_deltalake(root, rows, mode=mode, partition_by=["ds"], **kwargs)


def test_changed_files_are_the_files_added_and_removed_between_two_versions(tmp_path: Path) -> None:

    root = str(tmp_path / "corpus")
    _corpus_days(root, ["2026-01-01", "2026-01-02"])  # version 0
    _corpus_days(root, ["2026-01-03"])  # 1: a new day
    DeltaTable(root).delete("ds = '2026-01-01'")  # 2: a takedown
    added, removed = delta_io.changed_files(root, 0, 2)
    assert [f.partition_values["ds"] for f in added] == ["2026-01-03"]
    assert [f.partition_values["ds"] for f in removed] == ["2026-01-01"]
    assert delta_io.changed_files(root, 2, 2) == ([], [])
    assert delta_io.all_exist(root, removed)  # still in storage until a vacuum
    DeltaTable(root).vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    assert not delta_io.all_exist(root, removed)
    assert delta_io.all_exist(root, added)


def test_the_files_a_commit_removed_are_read_from_its_log_entry_with_their_days_where_still_known(tmp_path: Path) -> None:
    """What `changed_files` says a commit removed, with each file's days; any day for a file the snapshot
    before can no longer tell (the log behind the commit expired), and nothing read for a commit of adds."""
    root = str(tmp_path / "corpus")
    _corpus_days(root, ["2026-01-01", "2026-01-02", "2026-01-03 late"])  # version 0; a value the log's paths percent-encode
    _corpus_days(root, ["2026-01-04"])  # 1: adds only
    DeltaTable(root).delete("ds = '2026-01-01' OR ds = '2026-01-03 late'")  # 2: a takedown
    _, removed = delta_io.changed_files(root, 1, 2)
    assert sorted(f.days for f in delta_io.removed_by(root, 2)) == sorted(f.days for f in removed) == [
        ("2026-01-01", "2026-01-01"), ("2026-01-03 late", "2026-01-03 late")]
    assert delta_io.removed_by(root, 1) == []
    DeltaTable(root).create_checkpoint()  # at version 2: the entries before it can go
    for version in (0, 1):
        os.remove(os.path.join(root, "_delta_log", f"{version:020d}.json"))
    assert sorted((f.partition_values["ds"], f.days) for f in delta_io.removed_by(root, 2)) == [("2026-01-01", None), ("2026-01-03 late", None)]


def test_read_files_reads_the_files_of_escaped_partition_folders(tmp_path: Path) -> None:
    """delta-rs names a folder of a value outside plain names Hive-escaped (`ds=a%20b`); read_files
    unescaped the stored path once more and read none of those files. Each file read alone gives
    the rows pyarrow reads from it."""
    root = str(tmp_path / "escaped")
    days = ["2026-11-20", "a b", "a/b", "a%2Fb", "a=b", "caf\u00e9"]
    _corpus_days(root, days)
    for live in delta_io.live_files(root):
        stored = pq.read_table(f"{root}/{unquote(live.path)}", columns=["content_id"])["content_id"].to_pylist()
        read = delta_io.read_files(root, DeltaTable(root).version(), [live], ["content_id", "ds"]).to_pylist()
        assert read == [{"content_id": i, "ds": live.partition_values["ds"]} for i in stored], live.path


def test_a_table_that_may_delete_rows_in_place_is_recognised(tmp_path: Path) -> None:
    plain, with_dv = str(tmp_path / "plain"), str(tmp_path / "dv")
    _corpus_days(plain, ["2026-01-01"])
    _corpus_days(with_dv, ["2026-01-01"], configuration={"delta.enableDeletionVectors": "true"})
    assert not delta_io.has_deletion_vectors(plain)
    assert delta_io.has_deletion_vectors(with_dv)


def _value(type_: pa.DataType, i: int):
    """A value of `type_` for the i-th row: strings take six values, so a file of a partition holds three."""
    if pa.types.is_string(type_):
        return f"v{i % 6}"
    if pa.types.is_timestamp(type_):
        return T0 + dt.timedelta(seconds=i)
    if pa.types.is_integer(type_):
        return i
    if pa.types.is_floating(type_):
        return i / 4  # exact in float32
    if pa.types.is_boolean(type_):
        return i % 2 == 0
    if pa.types.is_binary(type_):
        return f"b{i}".encode()
    if pa.types.is_list(type_):
        return [_value(type_.value_type, i)]
    assert pa.types.is_struct(type_), type_
    return {f.name: _value(f.type, i) for f in type_}


def _canonical(rows: list[dict]) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True, default=str) for r in rows)


@pytest.mark.parametrize("change", ["delete", "update"])
@pytest.mark.parametrize("contract", [EMBEDDINGS, LABELS, SIGNAL_STATS, ALERTS, RUNS, HUMAN_LABELS, WEAK_LABELS], ids=lambda c: c.name)
def test_filtered_reads_of_a_table_delta_rs_rewrote_give_its_rows_in_the_contracts_types(tmp_path: Path, contract, change: str) -> None:
    """A delete or an update by delta-rs (a takedown, a GDPR delete) rewrites files with string_view
    columns, and a filtered read of them failed in pyarrow ("no kernel matching input types (string, string_view)")."""
    root = str(tmp_path / contract.name)
    rows = [{f.name: f"p{i % 2}" if f.name in contract.partition_by else _value(f.type, i) for f in contract.schema} for i in range(12)]
    delta_io.commit_files(root, contract, delta_io.write_driver_rows(root, contract, pa.Table.from_pylist(rows, contract.schema), "part-t"),
                          "test/1", {})
    column = next(f.name for f in contract.schema if pa.types.is_string(f.type) and f.name not in contract.partition_by)
    if change == "delete":
        DeltaTable(root).delete(f"{column} = 'v2'")
        kept = [r for r in rows if r[column] != "v2"]
    else:
        DeltaTable(root).update(updates={column: "'v9'"}, predicate=f"{column} = 'v2'")
        kept = [{**r, column: "v9" if r[column] == "v2" else r[column]} for r in rows]
    live = delta_io.live_files(root)
    assert any(pa.types.is_string_view(f.type) for file in live for f in pq.read_schema(f"{root}/{unquote(file.path)}")), "not rewritten"

    filtered = delta_io.read_arrow(root, filters=pa.compute.field(column) != "v0").select(contract.schema.names)
    assert filtered.schema.types == contract.schema.types
    assert _canonical(filtered.to_pylist()) == _canonical([r for r in kept if r[column] != "v0"])
    where = delta_io.read_arrow(root, where=[(column, "in", ["v1", "v9"])], columns=[column])
    assert sorted(where[column].to_pylist()) == sorted(r[column] for r in kept if r[column] in ("v1", "v9"))
    files = delta_io.read_files(root, DeltaTable(root).version(), live, contract.schema.names)
    assert _canonical(files.to_pylist()) == _canonical(kept)


def _filters_find_what_the_rows_hold(root: str, contract, conditions: list[pc.Expression]) -> None:
    """Each condition, as a filter of `delta_io.read_arrow` (files skipped by their Delta statistics),
    selects the rows the whole table filtered in memory does."""
    whole = delta_io.read_arrow(root).select(contract.schema.names)
    for condition in conditions:
        found = delta_io.read_arrow(root, filters=condition).select(contract.schema.names)
        assert _canonical(found.to_pylist()) == _canonical(whole.filter(condition).to_pylist()), condition


def _labels_scored(root: str, scores: list[float | None], **columns: list) -> pa.Table:
    """A labels table of one row per score (other `columns` given), committed by the project's writer."""
    rows = [{**{f.name: "p" if f.name in LABELS.partition_by else _value(f.type, i) for f in LABELS.schema}, "score": score,
             **{name: values[i] for name, values in columns.items()}} for i, score in enumerate(scores)]
    table = pa.Table.from_pylist(rows, LABELS.schema)
    delta_io.commit_files(root, LABELS, delta_io.write_driver_rows(root, LABELS, table, "part-t"), "test/1", {})
    return table


def _edit_latest_statistics(root: str, edit: Callable[[dict], None]) -> None:
    """Rewrite the Delta statistics of the files the table's latest commit added, as another writer would have written them."""
    log = Path(root, "_delta_log", f"{DeltaTable(root).version():020d}.json")
    actions = [json.loads(line) for line in log.read_text().splitlines()]
    for action in actions:
        if "add" in action:
            stats = json.loads(action["add"]["stats"])
            edit(stats)
            action["add"]["stats"] = json.dumps(stats)
    log.write_text("".join(json.dumps(a) + "\n" for a in actions))


@pytest.mark.parametrize("contract", [EMBEDDINGS, LABELS, DUPLICATES, RUNS, CORPUS, SIGNAL_STATS, ALERTS, HUMAN_LABELS, WEAK_LABELS,
                                      KEYFRAMES], ids=lambda c: c.name)
def test_a_filter_on_any_column_finds_the_rows_of_the_files_this_project_wrote(tmp_path: Path, contract) -> None:
    """Found in review: the writer counted a float, boolean or timestamp column's nulls without its
    range, which delta-rs reads as a file no row of matches: `Lakehouse.pandas("labels",
    filters=pc.field("score") > 0.5)` found no row, whatever the table held."""
    root = str(tmp_path / contract.name)
    rows = [{f.name: f"p{i % 2}" if f.name in contract.partition_by else None if f.nullable and i % 5 == 4 else _value(f.type, i)
             for f in contract.schema} for i in range(12)]
    for row in rows:  # timestamps below the millisecond, which Delta's statistics round away
        row.update({k: v + dt.timedelta(microseconds=123_456) for k, v in row.items() if isinstance(v, dt.datetime)})
    table = pa.Table.from_pylist(rows, contract.schema)
    delta_io.commit_files(root, contract, delta_io.write_driver_rows(root, contract, table, "part-t"), "test/1", {})
    scalar = [f for f in contract.schema if f.name not in contract.partition_by and not pa.types.is_nested(f.type) and not pa.types.is_binary(f.type)]
    conditions = [c for f in scalar for c in (pc.field(f.name) == table[f.name][3], pc.field(f.name) >= table[f.name][6],
                                              pc.field(f.name).is_null())]
    assert any(table.filter(c).num_rows for c in conditions)
    _filters_find_what_the_rows_hold(root, contract, conditions)
    actions = pa.table(DeltaTable(root).get_add_actions(flatten=True)).to_pylist()  # and readers may skip files by every such column
    assert all(a[f"min.{f.name}"] is not None for a in actions for f in scalar if a[f"null_count.{f.name}"] < a["num_records"])


@pytest.mark.parametrize("scores", [[0.25, float("nan"), 0.5, None], [float("nan")] * 2, [float("-inf"), 0.75, float("inf")]],
                         ids=["nan", "nan-alone", "infinities"])
def test_a_filter_on_a_float_column_holding_nan_or_an_infinity_finds_its_rows(tmp_path: Path, scores: list[float | None]) -> None:
    """JSON holds no NaN nor infinity: a float column holding one has no range, and the read does not
    let delta-rs skip the file for it (NaN != 0.5 is true)."""
    root = str(tmp_path / "labels")
    _labels_scored(root, scores, threshold=[None] * len(scores))
    _filters_find_what_the_rows_hold(root, LABELS, [pc.field("score") > 0.3, pc.field("score") <= 0.3, pc.field("score") != 0.5,
                                                    pc.field("score") == float("inf"), pc.is_nan(pc.field("score")),
                                                    pc.field("threshold").is_null(), pc.field("threshold") > 0])


def test_a_filter_finds_the_rows_of_files_whose_statistics_leave_a_column_without_a_range(tmp_path: Path) -> None:
    """delta-rs reads a column a file's statistics give no range as one no row of the file matches:
    a lakehouse this project wrote before its writer gave floats, booleans and timestamps a range,
    or a table Spark wrote beyond the 32 columns it keeps statistics of, lost every row to a filter on it."""
    root = str(tmp_path / "labels")
    rows = [{f.name: f"p{i % 2}" if f.name in LABELS.partition_by else _value(f.type, i) for f in LABELS.schema} for i in range(12)]
    table = pa.Table.from_pylist(rows, LABELS.schema)
    delta_io.commit_files(root, LABELS, delta_io.write_driver_rows(root, LABELS, table, "part-t"), "test/1", {})

    def as_before(stats: dict) -> None:  # as the writer before: no range of the float, boolean and timestamp columns; no statistics of `label`
        for column in ("score", "decision", "computed_at", "label"):
            stats["minValues"].pop(column, None)
            stats["maxValues"].pop(column, None)
        stats["nullCount"].pop("label")

    _edit_latest_statistics(root, as_before)
    conditions = [pc.field("score") > 0.5, pc.field("decision") == True, pc.field("computed_at") >= table["computed_at"][6],  # noqa: E712
                  pc.field("label") == "v3", (pc.field("content_id") == "v1") & (pc.field("score") < 2)]
    assert all(table.filter(c).num_rows for c in conditions)
    _filters_find_what_the_rows_hold(root, LABELS, conditions)


def test_a_filter_finds_the_rows_of_files_whose_statistics_bound_a_float_column_by_nan(tmp_path: Path) -> None:
    """Found in review: Spark writes a float column holding NaN with NaN as its max (NaN sorts above
    every number there), which delta-rs reads as a range: `score == 0.25` found no row of such a file,
    and `score > 0.1` kept its NaN rows unfiltered."""
    root = str(tmp_path / "labels")
    table = _labels_scored(root, [0.25, float("nan"), 0.75, None])

    def as_spark(stats: dict) -> None:  # the range Spark writes: the smallest number, and NaN (a JSON string)
        stats["minValues"]["score"], stats["maxValues"]["score"] = 0.25, "NaN"

    _edit_latest_statistics(root, as_spark)
    conditions = [pc.field("score") == 0.25, pc.field("score") > 0.1, pc.field("score") < 1, pc.is_nan(pc.field("score"))]
    assert all(table.filter(c).num_rows for c in conditions)
    _filters_find_what_the_rows_hold(root, LABELS, conditions)


def test_a_filter_not_equal_to_every_number_of_a_file_finds_its_nan_rows(tmp_path: Path) -> None:
    """Found in review: a parquet row group's statistics leave NaN out of a float column's range, and
    pyarrow skipped by them a row group whose numbers were all 0.5 for `score != 0.5`, though NaN != 0.5."""
    root = str(tmp_path / "labels")
    table = _labels_scored(root, [0.5, float("nan"), 0.5, None])
    conditions = [pc.field("score") != 0.5, ~(pc.field("score") < 1), pc.field("score") == 0.5]
    assert all(table.filter(c).num_rows for c in conditions)
    _filters_find_what_the_rows_hold(root, LABELS, conditions)


def test_hadoop_reads_a_file_at_its_path_on_disk_the_tables_root_unescaped_its_partition_folder_not(tmp_path) -> None:
    """delta-rs escapes a table's root in a file's URI (`d%20x%C3%A9`) but gives the path under it
    as on disk, where a partition folder holds Delta's own escapes (`ds=x%20y`): unescaping the
    whole URI (a change of this session) sent Spark to `ds=x y`, a folder that does not exist."""
    from lake.spark_io import hadoop_path

    root = tmp_path / "d xé"
    write_deltalake(root, pa.table({"a": [1, 2, 3], "ds": ["2026-11-2é", "x y", "p%q"]}), partition_by=["ds"])
    table = DeltaTable(str(root))
    on_disk = {hadoop_path(table.table_uri, uri) for uri in table.file_uris()}
    assert on_disk == {str(p) for p in root.rglob("*.parquet")}
