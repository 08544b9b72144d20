"""The loader: a pinned Delta snapshot into torch batches, sharded over workers, split by
near-duplicate group, in bounded memory (training/loader.py)."""
from __future__ import annotations

import ctypes
import multiprocessing
import sys
import time
import tracemalloc
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from embedding_tables import SIGNAL, append, delete, rows
from torch.utils.data import DataLoader

from conf.settings import UsageError
from lake import delta_io
from signals.contracts import DUPLICATES, EMBEDDINGS
from training.loader import READ_ROWS, SPLITS, EmbeddingBatches, batches, pin_snapshot, split_of
from training.loader_benchmark import stop_tracing


def day_ids(day: int, n: int) -> list[str]:
    return [f"d{day:02d}-{i:04d}" for i in range(n)]


def vectors(n: int, seed: int, dim: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def write_days(lakehouse, days: int, per_day: int, first: int = 0, dim: int = 16) -> list[str]:
    """`days` appends (a data file each) of ok rows, a few error rows and rows of another version."""
    ids = []
    for day in range(first, first + days):
        names = day_ids(day, per_day)
        ds = f"2026-11-{day + 1:02d}"
        append(lakehouse, pa.concat_tables([
            rows(names[:-3], vectors(per_day - 3, day, dim), ds=ds),
            rows(names[-3:], None, ds=ds),  # error rows: never trained on
            rows(names[:5], vectors(5, 100 + day, dim), model_version="2", ds=ds),  # another version
        ]))
        ids += names
    return ids


def with_dim(table: pa.Table, dim: int) -> pa.Table:
    """`table` with every row's dim column saying `dim`, whatever its vectors' length (another writer's rows)."""
    return table.set_column(table.schema.get_field_index("dim"), "dim", pa.array([dim] * table.num_rows, pa.int32()))


def collected(loader) -> pd.DataFrame:
    parts = [pd.DataFrame({"content_id": b["content_id"], "y": b["y"].numpy(), "x0": b["x"][:, 0].numpy()}) for b in loader]
    return pd.concat(parts, ignore_index=True)


@pytest.mark.subprocess  # DataLoader workers are processes
def test_two_workers_yield_every_labelled_ok_row_of_the_split_once(tmp_path):
    ids = write_days(tmp_path, days=5, per_day=40)
    labels = pd.DataFrame({"content_id": ids[::2], "p_positive": np.linspace(0, 1, len(ids[::2]))})
    snapshot = pin_snapshot(str(tmp_path), SIGNAL, "1", labels)
    table = delta_io.read_arrow(f"{tmp_path}/{EMBEDDINGS.name}", snapshot.embeddings_version).to_pandas()
    ok = table[(table["signal"] == SIGNAL) & (table["model_version"] == "1") & (table["status"] == "ok")]
    for split in SPLITS:
        stream = batches(snapshot, split, batch_size=16, shuffle_buffer=32, seed=3)
        got = collected(DataLoader(stream, batch_size=None, num_workers=2))
        expected = ok.merge(snapshot.labels[snapshot.labels["split"] == split], on="content_id")
        assert not got["content_id"].duplicated().any()
        assert set(got["content_id"]) == set(expected["content_id"])
        got = got.set_index("content_id").loc[expected["content_id"]]
        np.testing.assert_allclose(got["y"], expected["p_positive"], rtol=1e-6)
        np.testing.assert_allclose(got["x0"], [v[0] for v in expected["vector"]], rtol=1e-6)


@pytest.mark.subprocess  # DataLoader workers are processes
def test_set_epoch_reaches_persistent_workers(tmp_path):
    """Found in review: with `persistent_workers` the workers kept the copy of the stream they were
    started with, so `set_epoch` never reached them and every epoch gave the first one's order."""
    ids = write_days(tmp_path, days=3, per_day=30)
    snapshot = pin_snapshot(str(tmp_path), SIGNAL, "1", pd.DataFrame({"content_id": ids, "p_positive": 0.5}), fractions=(0.98, 0.01, 0.01))
    stream = batches(snapshot, "train", batch_size=8, shuffle_buffer=16, seed=1)
    persistent = DataLoader(stream, batch_size=None, num_workers=2, persistent_workers=True)
    orders = []
    for epoch in range(3):
        stream.set_epoch(epoch)
        orders.append(list(collected(persistent)["content_id"]))
        fresh = batches(snapshot, "train", batch_size=8, shuffle_buffer=16, seed=1)
        fresh.set_epoch(epoch)
        assert orders[-1] == list(collected(DataLoader(fresh, batch_size=None, num_workers=2))["content_id"])  # workers started anew
    assert orders[0] != orders[1] != orders[2] and sorted(orders[0]) == sorted(orders[2])


def test_a_later_commit_is_not_read_from_a_pinned_snapshot(tmp_path):
    ids = write_days(tmp_path, days=2, per_day=20)
    labels = pd.DataFrame({"content_id": ids, "p_positive": 1.0})
    snapshot = pin_snapshot(str(tmp_path), SIGNAL, "1", labels)
    write_days(tmp_path, days=1, per_day=20, first=2)
    seen = set().union(*(collected(batches(snapshot, s))["content_id"] for s in SPLITS))
    assert seen == {c for c in ids if int(c[-4:]) < 17}


def test_splits_are_disjoint_by_near_duplicate_group(tmp_path):
    ids = write_days(tmp_path, days=3, per_day=60)
    groups = [ids[i:i + 4] for i in range(0, 120, 4)]  # 30 groups of 4 copies
    write_deltalake(f"{tmp_path}/{DUPLICATES.name}", pa.Table.from_pylist([
        {"content_id": c, "group_id": g[0], "group_size": len(g), "is_canonical": c == g[0], "status": "ok",
         "run_id": "dedup", "computed_at": pd.Timestamp("2026-11-20", tz="UTC"), "ds": "2026-11-01"}
        for g in groups for c in g], schema=DUPLICATES.schema), partition_by=["ds"])
    snapshot = pin_snapshot(str(tmp_path), SIGNAL, "1", pd.DataFrame({"content_id": ids, "p_positive": 0.5}))
    split_by_id = {}
    for split in SPLITS:
        for content_id in collected(batches(snapshot, split))["content_id"]:
            split_by_id[content_id] = split
    for group in groups:
        assert len({split_by_id.get(c) for c in group} - {None}) == 1
        assert split_by_id[group[0]] == split_of(group[0])
    singles = [c for c in ids[120:] if c in split_by_id]
    assert all(split_by_id[c] == split_of(c) for c in singles)
    assert set(split_by_id.values()) == set(SPLITS)
    assert snapshot.ungrouped == 60 and snapshot.lineage()["items_without_duplicates_row"] == "60"  # newer than the dedup: said, not hidden
    # a snapshot pinned before any dedup (None) keeps its groups: a dedup that lands meanwhile changes no split
    before = pin_snapshot(str(tmp_path), SIGNAL, "1", pd.DataFrame({"content_id": ids, "p_positive": 0.5}), duplicates_version=None)
    assert (before.labels["group_id"] == before.labels["content_id"]).all() and before.ungrouped == len(ids)


def test_a_joined_embedding_appends_its_vector_and_leaves_out_items_without_an_ok_row_in_it(tmp_path):
    ids = write_days(tmp_path, days=2, per_day=30)
    text = vectors(len(ids), 7, 8)
    append(tmp_path, pa.concat_tables([rows(ids[:-4], text[:-4], signal="text_embedding"),
                                       rows(ids[-4:-2], None, signal="text_embedding")]))  # two errors, two without a row
    labels = pd.DataFrame({"content_id": ids, "p_positive": 0.5})
    snapshot = pin_snapshot(str(tmp_path), SIGNAL, "1", labels, joined=(("text_embedding", "1"),))
    table = delta_io.read_arrow(f"{tmp_path}/{EMBEDDINGS.name}", snapshot.embeddings_version).to_pandas()
    image = table[(table["signal"] == SIGNAL) & (table["model_version"] == "1") & (table["status"] == "ok")].set_index("content_id")
    got = {}
    for split in SPLITS:
        for batch in batches(snapshot, split, batch_size=7):
            got.update(zip(batch["content_id"], batch["x"].numpy()))
    assert set(got) == set(image.index) & set(ids[:-4])
    for content_id, x in got.items():
        np.testing.assert_array_equal(x, np.concatenate([image.loc[content_id, "vector"], text[ids.index(content_id)]]))
    assert snapshot.lineage()["joined_embeddings"] == "text_embedding@1"


def test_the_same_seed_gives_the_same_order_and_another_epoch_another(tmp_path):
    ids = write_days(tmp_path, days=2, per_day=50)
    snapshot = pin_snapshot(str(tmp_path), SIGNAL, "1", pd.DataFrame({"content_id": ids, "p_positive": 0.5}))
    first = list(collected(batches(snapshot, "train", shuffle_buffer=16, seed=1))["content_id"])
    again = list(collected(batches(snapshot, "train", shuffle_buffer=16, seed=1))["content_id"])
    stream = batches(snapshot, "train", shuffle_buffer=16, seed=1)
    stream.set_epoch(1)
    other = list(collected(stream)["content_id"])
    assert first == again
    assert first != other and sorted(first) == sorted(other)


def test_a_split_that_fits_is_read_once_and_gives_the_streamed_batches(tmp_path, monkeypatch):
    from training import loader

    ids = write_days(tmp_path, days=3, per_day=40)
    snapshot = pin_snapshot(str(tmp_path), SIGNAL, "1", pd.DataFrame({"content_id": ids, "p_positive": 0.5}))
    opened = []
    dataset = loader.ds.dataset
    monkeypatch.setattr(loader.ds, "dataset", lambda file, **kw: opened.append(file) or dataset(file, **kw))

    def epochs(stream) -> list[list[str]]:
        order = []
        for epoch in range(3):
            stream.set_epoch(epoch)
            order.append(list(collected(stream)["content_id"]))
        return order

    streamed = epochs(batches(snapshot, "train", batch_size=8, shuffle_buffer=16, seed=2))
    files = len(snapshot.file_uris())
    assert len(opened) == 3 * files
    opened.clear()
    assert epochs(batches(snapshot, "train", batch_size=8, shuffle_buffer=16, seed=2, keep_bytes=2**20)) == streamed
    assert len(opened) == files  # the first epoch only
    opened.clear()
    assert epochs(batches(snapshot, "train", batch_size=8, shuffle_buffer=16, seed=2, keep_bytes=16 * 4 * 10)) == streamed
    assert len(opened) == 3 * files  # ten vectors' bytes: too small to keep, streamed every epoch


def peak_while_streaming(lakehouse, days: int, per_day: int, dim: int) -> int:
    """Bytes held at most (numpy and Python by tracemalloc, Arrow by its pool) while a split streams."""
    ids = write_days(lakehouse, days=days, per_day=per_day, dim=dim)
    snapshot = pin_snapshot(str(lakehouse), SIGNAL, "1", pd.DataFrame({"content_id": ids, "p_positive": 0.5}))
    stream = batches(snapshot, "train", batch_size=64, shuffle_buffer=256)
    arrow_base, arrow_peak = pa.total_allocated_bytes(), 0
    tracemalloc.start()
    rows_seen = 0
    for batch in stream:
        arrow_peak = max(arrow_peak, pa.total_allocated_bytes() - arrow_base)
        rows_seen += len(batch["content_id"])
    python_peak = tracemalloc.get_traced_memory()[1]
    stop_tracing()
    assert rows_seen > days * per_day / 2
    return arrow_peak + python_peak


def in_a_fresh_process(function, *args):
    """`function(*args)` in a spawned process: no earlier test's allocations share Arrow's
    process-wide pool or tracemalloc, and a native crash fails the test, not the xdist worker."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def test_memory_stays_flat_when_the_table_grows_fourfold(tmp_path):
    dim, per_day = 256, 1000
    small = in_a_fresh_process(peak_while_streaming, tmp_path / "small", 3, per_day, dim)
    large = in_a_fresh_process(peak_while_streaming, tmp_path / "large", 12, per_day, dim)
    record_batch = READ_ROWS * dim * 4
    assert large < small + 2 * record_batch, (small, large)  # a record batch more or less in flight, never the table's growth
    assert large < 0.4 * 12 * per_day * dim * 4, (large,)  # far from the table's vectors


def test_a_pass_kept_in_memory_serves_only_the_same_files(tmp_path):
    """A pass in the main process reads every file; a DataLoader worker later asked for its share
    must not be served all of them (each row would come once per worker)."""
    ids = write_days(tmp_path, days=4, per_day=30)
    snapshot = pin_snapshot(str(tmp_path), SIGNAL, "1", pd.DataFrame({"content_id": ids, "p_positive": 0.5}))
    stream = batches(snapshot, "train", batch_size=8, shuffle_buffer=16, seed=2, keep_bytes=2**20)
    whole = sorted(collected(stream)["content_id"])
    share = stream.files[::2]  # what worker 0 of 2 reads
    expected = sorted(r[0] for r in EmbeddingBatches(share, stream.targets)._rows(share))  # a fresh dataset: nothing kept
    assert sorted(r[0] for r in stream._rows(share)) == expected and len(expected) < len(whole)


def test_ok_rows_without_a_usable_vector_are_left_out_as_error_rows_are(tmp_path):
    """Another writer's ok rows with a NaN, inf, null or empty vector: one such row in the train
    split made every weight of the head NaN (and its evaluation a ZeroDivisionError), a null one
    failed the read; they are left out, and every other row keeps its own vector."""
    ids = [f"v{i:02d}" for i in range(12)]
    table = rows(ids, vectors(len(ids), 0, 4)).to_pylist()
    bad = {"v01": [float("nan")] * 4, "v02": [1.0, float("inf"), 0.0, 0.0], "v03": None, "v04": []}
    for row in table:
        row["vector"] = bad.get(row["content_id"], row["vector"])
    append(tmp_path, pa.Table.from_pylist(table, schema=EMBEDDINGS.schema))
    snapshot = pin_snapshot(str(tmp_path), SIGNAL, "1", pd.DataFrame({"content_id": ids, "p_positive": 0.5}))
    got = {}
    for split in SPLITS:
        for batch in batches(snapshot, split, batch_size=5, shuffle_buffer=1):
            got.update(zip(batch["content_id"], batch["x"].numpy()))
    assert sorted(got) == [c for c in ids if c not in bad]
    for row in table:
        if row["content_id"] in got:
            np.testing.assert_array_equal(got[row["content_id"]], np.float32(row["vector"]))


def test_data_files_rewritten_by_delta_rs_are_read(tmp_path):
    """delta-rs's own delete (a takedown by another tool) rewrites a file with string_view columns,
    which the loader's status filter had no kernel for (ArrowNotImplementedError): each file is read
    in the table's types."""
    ids = write_days(tmp_path, days=2, per_day=20)
    delete(tmp_path, ids[0])
    snapshot = pin_snapshot(str(tmp_path), SIGNAL, "1", pd.DataFrame({"content_id": ids, "p_positive": 0.5}))
    table = delta_io.read_arrow(f"{tmp_path}/{EMBEDDINGS.name}", snapshot.embeddings_version).to_pandas()
    ok = table[(table["signal"] == SIGNAL) & (table["model_version"] == "1") & (table["status"] == "ok")].set_index("content_id")
    got = pd.concat([collected(batches(snapshot, s)) for s in SPLITS]).set_index("content_id")
    assert sorted(got.index) == sorted(ok.index) and ids[0] not in got.index
    np.testing.assert_array_equal(got.loc[ok.index, "x0"], [v[0] for v in ok["vector"]])


def test_a_pinned_version_whose_files_a_vacuum_removed_is_refused_as_every_reader_refuses_it(tmp_path):
    """Found in review: pinning an older embeddings version whose data files a vacuum had removed was
    accepted, and its first read was pyarrow's FileNotFoundError of one file (read_arrow and Spark's
    reads say `delta_io.vacuumed`); the latest version, and a vacuum of another signal's files, are read."""
    ids = write_days(tmp_path, days=2, per_day=20)
    append(tmp_path, rows(["t0"], vectors(1, 9, 8), signal="text_embedding"))
    pinned = DeltaTable(f"{tmp_path}/{EMBEDDINGS.name}").version()
    labels = pd.DataFrame({"content_id": ids, "p_positive": 0.5})
    delete(tmp_path, "t0")  # another signal's file rewritten and vacuumed: the pinned image rows are all still there
    DeltaTable(f"{tmp_path}/{EMBEDDINGS.name}").vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    kept = pin_snapshot(str(tmp_path), SIGNAL, "1", labels, embeddings_version=pinned)
    assert sum(len(collected(batches(kept, s))) for s in SPLITS) == 2 * 17
    delete(tmp_path, ids[0])
    DeltaTable(f"{tmp_path}/{EMBEDDINGS.name}").vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    with pytest.raises(UsageError, match=f"version {pinned} of .* can no longer be read: a vacuum"):
        pin_snapshot(str(tmp_path), SIGNAL, "1", labels, embeddings_version=pinned)
    latest = pin_snapshot(str(tmp_path), SIGNAL, "1", labels)
    assert sum(len(collected(batches(latest, s))) for s in SPLITS) == 2 * 17 - 1


@pytest.mark.parametrize("where", ["one record batch", "another file", "another file, its dim as the others'"])
def test_vectors_of_two_lengths_in_one_model_version_are_refused(tmp_path, where):
    """Another writer's rows of another length: within one record batch, a 6 and a 2 beside 4s were
    reshaped into 4s (each item trained on its neighbour's numbers); in another file, np.stack
    failed. A head reads one length: a usage error saying which (when pinned, where the dim column
    says so)."""
    ids = [f"v{i:02d}" for i in range(8)]
    table = rows(ids, vectors(len(ids), 0, 4)).to_pylist()
    if where == "one record batch":
        table[1]["vector"], table[2]["vector"] = [1.0] * 6, [2.0] * 2
    append(tmp_path, pa.Table.from_pylist(table, schema=EMBEDDINGS.schema))
    if where != "one record batch":
        append(tmp_path, with_dim(rows(["w00"], vectors(1, 1, 8)), 4 if "dim" in where else 8))
    labels = pd.DataFrame({"content_id": [*ids, "w00"], "p_positive": 0.5})
    with pytest.raises(UsageError, match="lengths"):
        snapshot = pin_snapshot(str(tmp_path), SIGNAL, "1", labels, fractions=(0.98, 0.01, 0.01))
        for split in SPLITS:
            list(batches(snapshot, split, batch_size=100))


@pytest.mark.subprocess  # DataLoader workers are processes
@pytest.mark.parametrize("dim_said", [16, 8])
def test_vectors_of_two_lengths_in_two_workers_files_are_refused(tmp_path, dim_said):
    """Found in review: the loader compared lengths within a DataLoader worker's own files, so with a file
    of 8-float vectors among files of 16 each worker's batches passed, one of them 8 wide. Refused when
    pinned where the dim column says 8, and where it says 16 by the worker that reads the 8 floats."""
    ids = write_days(tmp_path, days=2, per_day=20)
    append(tmp_path, with_dim(rows(["w00"], vectors(1, 1, 8)), dim_said))
    labels = pd.DataFrame({"content_id": [*ids, "w00"], "p_positive": 0.5})
    with pytest.raises(UsageError, match=r"two lengths \(16 floats, e.g. 'd00-0000', and 8, e.g. 'w00'\)"):
        snapshot = pin_snapshot(str(tmp_path), SIGNAL, "1", labels, fractions=(0.98, 0.01, 0.01))
        assert len(snapshot.file_uris()) == 3  # one worker each: the 8 floats alone in one of them
        list(DataLoader(batches(snapshot, "train", batch_size=100), batch_size=None, num_workers=3))


@pytest.mark.subprocess  # DataLoader workers are processes
@pytest.mark.parametrize("workers", [0, 2])
def test_an_item_with_two_ok_rows_of_the_model_version_is_refused(tmp_path, workers):
    """An item left with rows on two days (a lakehouse from before backfills dropped the older day's
    row): trained on twice, and held out twice, which failed the evaluation with pandas'
    InvalidIndexError; a usage error naming it, as the retrieval index refuses it. Found in review:
    with DataLoader workers each saw its own files, and an item whose two rows two workers read was
    yielded twice an epoch; it is refused when pinned, whatever the workers. An unlabelled item's
    two rows are not read, nor a labelled item's error row beside its ok one."""
    ids = write_days(tmp_path, days=2, per_day=20)
    again = ids[20]  # the second day's file, read by the second worker; its other row's file, the third, by the first
    append(tmp_path, pa.concat_tables([rows([again, ids[1]], vectors(2, 5, 16), ds="2026-11-09"), rows([ids[2]], None, ds="2026-11-09")]))
    labels = pd.DataFrame({"content_id": [c for c in ids if c != ids[1]], "p_positive": 0.5})  # ids[1]'s two rows: not read
    kept = pin_snapshot(str(tmp_path), SIGNAL, "1", labels[labels["content_id"] != again])
    assert kept.width == ("d00-0000", 16)
    with pytest.raises(UsageError, match=f"'{again}' has more than one ok row of {SIGNAL} model version 1"):
        snapshot = pin_snapshot(str(tmp_path), SIGNAL, "1", labels)
        assert len(snapshot.file_uris()) == 3  # in the order of their days: the second day's file second
        collected(DataLoader(batches(snapshot, split_of(again)), batch_size=None, num_workers=workers))


def test_an_item_with_two_ok_rows_of_a_joined_embedding_is_refused(tmp_path):
    """Found in review: a joined embedding's second ok row of an item replaced its first silently
    (whichever file was read last gave the vector appended); refused when pinned, naming it."""
    ids = write_days(tmp_path, days=1, per_day=10)
    append(tmp_path, rows(ids, vectors(10, 7, 4), signal="text_embedding"))
    append(tmp_path, rows(ids[:1], vectors(1, 8, 4), signal="text_embedding", ds="2026-11-30"))
    labels = pd.DataFrame({"content_id": ids, "p_positive": 0.5})
    assert pin_snapshot(str(tmp_path), SIGNAL, "1", labels[1:], joined=(("text_embedding", "1"),)).width == (ids[1], 16 + 4)
    with pytest.raises(UsageError, match=f"'{ids[0]}' has more than one ok row of text_embedding model version 1"):
        pin_snapshot(str(tmp_path), SIGNAL, "1", labels, joined=(("text_embedding", "1"),))


def measure_noting_the_label_maps(lakehouse: str, labels: pd.DataFrame, way: str, conf) -> tuple[dict, list[bool]]:
    """loader_benchmark.measure in this (fresh) process, with whether tracemalloc was tracing as each label map was made."""
    from training import loader_benchmark
    from training.loader import Snapshot

    made_while_tracing = []
    targets = Snapshot.targets
    Snapshot.targets = lambda self, split: made_while_tracing.append(tracemalloc.is_tracing()) or targets(self, split)
    return loader_benchmark.measure(lakehouse, labels, way, conf), made_while_tracing


@pytest.mark.parametrize("way", ["loader", "pandas_first"])
def test_the_loader_benchmark_makes_the_label_map_outside_the_measured_peak(tmp_path, way):
    """training/loader_benchmark.py labels every row, so its label map grows with the table: made
    under tracemalloc it read as the loader's memory growing (12.8 -> 15.4 MB from 1x to 4x).
    Measured in a fresh process, as the benchmark does (in the xdist worker, the pool's high-water
    mark was earlier tests', and a segmentation fault took the worker down)."""
    from conf.settings import TrainingSettings
    from training import loader_benchmark

    labels = loader_benchmark.write_table(tmp_path, files=2, rows_per_file=50, dim=8)
    conf = TrainingSettings()
    result, made_while_tracing = in_a_fresh_process(measure_noting_the_label_maps, str(tmp_path), labels, way, conf)
    assert made_while_tracing == [False, False]  # the traced pass's label map, then the timed pass's
    train = pin_snapshot(str(tmp_path), loader_benchmark.SIGNAL, loader_benchmark.MODEL_VERSION, labels, fractions=conf.splits).labels["split"] == "train"
    assert result["rows"] == int(train.sum()) > 0 and result["peak_mb"] > 0


def measure_with_a_thread_left_tracing(lakehouse: str, labels: pd.DataFrame, conf) -> dict:
    """loader_benchmark.measure, its traced pass ending with a native thread that has seen tracing on
    and waits for the GIL to record an allocation (as an Arrow thread dropping the pass's Python
    filesystem does)."""
    from training import loader_benchmark

    rows = loader_benchmark._rows

    def rows_then_a_waiting_thread(stream) -> int:
        seen = rows(stream)
        if tracemalloc.is_tracing():
            interval = sys.getswitchinterval()
            sys.setswitchinterval(1000)  # the thread cannot ask for the GIL: only a release hands it over
            python = ctypes.PyDLL(None)  # the GIL held across the call
            thread = ctypes.c_ulong()
            assert python.pthread_create(ctypes.byref(thread), None, ctypes.cast(python.PyTraceMalloc_Track, ctypes.c_void_p), None) == 0
            end = time.perf_counter() + 0.2
            while time.perf_counter() < end:  # the GIL held: the thread checks tracing, then waits for it
                pass
            sys.setswitchinterval(interval)
        return seen

    loader_benchmark._rows = rows_then_a_waiting_thread
    return loader_benchmark.measure(lakehouse, labels, "loader", conf)


def test_the_loader_benchmark_stops_tracing_only_once_a_waiting_thread_has_had_the_gil(tmp_path):
    """Python 3.11's tracemalloc.stop() frees the traceback buffer that a thread already past its
    tracing check writes once it has the GIL (cpython#128679): in measure, an Arrow thread dropping
    the pass's filesystem crashed the process (a segmentation fault; once in make test, and within
    9 to 124 rounds of both ways in a loop)."""
    from conf.settings import TrainingSettings
    from training import loader_benchmark

    labels = loader_benchmark.write_table(tmp_path, files=2, rows_per_file=50, dim=8)
    conf = TrainingSettings()
    result = in_a_fresh_process(measure_with_a_thread_left_tracing, str(tmp_path), labels, conf)
    train = pin_snapshot(str(tmp_path), loader_benchmark.SIGNAL, loader_benchmark.MODEL_VERSION, labels, fractions=conf.splits).labels["split"] == "train"
    assert result["rows"] == int(train.sum()) > 0 and result["peak_mb"] > 0
