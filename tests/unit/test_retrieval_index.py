"""retrieval without Spark: indexes built from small embeddings tables written with delta-rs in the
table's contract schema, checked against numpy brute force over the same table version."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pytest
from deltalake import DeltaTable
from embedding_tables import DIM, SIGNAL, append, assert_same, brute_force, delete, random_vectors, rows, shift_faiss_ids

from conf.settings import IndexSettings, UsageError
from jobs.failures import explain
from lake import delta_io
from retrieval import index_store
from retrieval.build import build_index, embeddings_root, update_index
from retrieval.embedding_rows import vectors_of
from retrieval.vector_index import EXACT, IVF_FLAT, IndexKind, VectorIndex, neighbours
from retrieval.writer_lock import writer_lock
from tests.killed import run_killed

EXACT_ONLY = IndexSettings()


@pytest.fixture
def lakehouse(tmp_path) -> Path:
    """Versions 0 and 1: 120 items of SIGNAL (10 of them error rows) on two days, another signal
    and another model version beside them; version 2: 30 more items."""
    ids = [f"pin-{i:03d}" for i in range(120)]
    append(tmp_path, rows(ids[:60], random_vectors(60, 0)))
    table = pa.concat_tables([
        rows(ids[60:110], random_vectors(50, 1), ds="2026-11-20"), rows(ids[110:], None, ds="2026-11-20"),
        rows(ids, random_vectors(120, 2), signal="text_embedding"), rows(ids, random_vectors(120, 3), model_version="2"),
    ])
    append(tmp_path, table)
    append(tmp_path, rows([f"later-{i}" for i in range(30)], random_vectors(30, 4), ds="2026-11-21"))
    return tmp_path


def test_an_index_of_a_pinned_version_returns_the_exact_neighbours(lakehouse) -> None:
    pinned = DeltaTable(embeddings_root(str(lakehouse))).version() - 1  # before the 30 later items
    outcome = build_index(str(lakehouse), SIGNAL, "1", EXACT_ONLY, version=pinned)
    manifest, index = index_store.load(str(lakehouse), SIGNAL)
    assert manifest == outcome.manifest
    assert (manifest.table_version, manifest.model_version, manifest.signal, manifest.kind["name"]) == (pinned, "1", SIGNAL, EXACT)
    assert manifest.items == len(index) == 110 and manifest.dim == DIM
    for query in random_vectors(20, 9):
        assert_same(neighbours(index, query, 10), brute_force(lakehouse, pinned, query, 10))
    assert not any(c.startswith("later-") for c, _ in neighbours(index, random_vectors(1, 9)[0], 200))
    latest = build_index(str(lakehouse), SIGNAL, "1", EXACT_ONLY)  # default: the latest version, recorded
    assert (latest.manifest.table_version, latest.manifest.items) == (pinned + 1, 140)


def refresh_like_change(lakehouse: Path | str) -> dict[str, np.ndarray]:
    """New items (one in an existing day), a takedown, an item whose row became an error, an item
    whose vector changed: as a refresh commits them, in several versions. Returns the new vectors."""
    new, changed = random_vectors(4, 20), random_vectors(1, 21)
    append(lakehouse, rows(["new-0", "new-1", "new-2"], new[:3], ds="2026-11-22"))
    append(lakehouse, rows(["new-3"], new[3:], ds="2026-11-19"))
    delete(lakehouse, "pin-003", "pin-070", "pin-071")  # pin-003: a takedown
    append(lakehouse, rows(["pin-070"], None, ds="2026-11-20"))  # ... pin-070 is now an error
    append(lakehouse, rows(["pin-071"], changed, ds="2026-11-20"))  # ... and pin-071 has a new vector
    return {"new-0": new[0], "new-3": new[3], "pin-071": changed[0]}


def test_an_update_never_returns_a_removed_item_and_equals_a_full_rebuild(lakehouse, tmp_path) -> None:
    root = str(lakehouse)
    before = build_index(root, SIGNAL, "1", EXACT_ONLY).manifest
    _, old = index_store.load(root, SIGNAL)
    removed_vectors = [np.asarray(r["vector"], np.float32) for r in delta_io.read_arrow(embeddings_root(root)).to_pylist()
                       if r["content_id"] in ("pin-003", "pin-070") and r["signal"] == SIGNAL and r["model_version"] == "1"]
    fresh = refresh_like_change(lakehouse)
    outcome = update_index(root, SIGNAL, "1", EXACT_ONLY)
    manifest, updated = index_store.load(root, SIGNAL)
    latest = DeltaTable(embeddings_root(root)).version()
    assert manifest.made_by["how"] == "update" and manifest.made_by["from_table_version"] == before.table_version
    assert (manifest.made_by["added"], manifest.made_by["removed"]) == (4, 2) and manifest.table_version == latest
    assert manifest.items == before.items + 4 - 2 == len(updated)
    assert "4 added" in outcome.message and "2 removed" in outcome.message
    for vector in removed_vectors:  # the removed items' own vectors do not find them
        assert {"pin-003", "pin-070"}.isdisjoint(c for c, _ in neighbours(updated, vector, len(updated)))
    for content_id, vector in fresh.items():
        assert neighbours(updated, vector, 1)[0][0] == content_id
    assert neighbours(old, fresh["pin-071"], 1)[0][0] != "pin-071"  # the change is the update's doing

    shutil.copytree(lakehouse / "embeddings", tmp_path / "rebuilt" / "embeddings")
    build_index(str(tmp_path / "rebuilt"), SIGNAL, "1", EXACT_ONLY)
    _, rebuilt = index_store.load(str(tmp_path / "rebuilt"), SIGNAL)
    for query in [*random_vectors(20, 30), *removed_vectors, *fresh.values()]:
        found = neighbours(updated, query, 15)
        assert_same(found, neighbours(rebuilt, query, 15))
        assert_same(found, brute_force(lakehouse, latest, query, 15))
    assert update_index(root, SIGNAL, "1", EXACT_ONLY).message.startswith("nothing to do")


def test_an_ivf_index_takes_the_same_update_in_place(lakehouse) -> None:
    """IVF-Flat above the threshold; searching every list makes it exact, so its results show
    that the lists hold exactly the live items after the update."""
    root = str(lakehouse)
    every_list = IndexSettings(exact_below=50, ivf_lists=2, ivf_probes=2)
    assert build_index(root, SIGNAL, "1", every_list).manifest.kind == {"name": IVF_FLAT, "lists": 2, "probes": 2, "train_per_list": 64}
    refresh_like_change(lakehouse)
    manifest = update_index(root, SIGNAL, "1", every_list).manifest
    assert manifest.made_by["how"] == "update" and manifest.kind["name"] == IVF_FLAT
    _, updated = index_store.load(root, SIGNAL)
    for query in random_vectors(20, 40):
        assert_same(neighbours(updated, query, 20), brute_force(lakehouse, manifest.table_version, query, 20))


def test_an_update_searches_the_ivf_probes_configured_now(lakehouse) -> None:
    """The lists stay those trained at the build, but how many a query searches is a query's
    setting: an update kept the build's probes (here 1 of 2) whatever `ivf_probes` said since, so
    raising it for recall took effect only at the next full build, in `neighbours` and the service."""
    root = str(lakehouse)
    assert build_index(root, SIGNAL, "1", IndexSettings(exact_below=50, ivf_lists=2, ivf_probes=1)).manifest.kind["probes"] == 1
    refresh_like_change(lakehouse)
    manifest = update_index(root, SIGNAL, "1", IndexSettings(exact_below=50, ivf_lists=2, ivf_probes=9)).manifest
    assert manifest.made_by["how"] == "update" and manifest.kind == {"name": IVF_FLAT, "lists": 2, "probes": 2, "train_per_list": 64}
    _, updated = index_store.load(root, SIGNAL)
    for query in random_vectors(20, 41):  # every list searched: exact
        assert_same(neighbours(updated, query, 20), brute_force(lakehouse, manifest.table_version, query, 20))


def test_an_index_whose_items_are_all_taken_down_is_emptied_whatever_its_kind(tmp_path) -> None:
    """An IVF index emptied by an update used to ask for a rebuild of nothing, which refused, so the
    index kept answering with taken-down items."""
    ids = [f"pin-{i:03d}" for i in range(50)]
    for settings in (EXACT_ONLY, IndexSettings(exact_below=40, ivf_lists=1)):
        root = tmp_path / f"below-{settings.exact_below}"
        append(root, rows(ids, random_vectors(50, 0)))
        build_index(str(root), SIGNAL, "1", settings)
        delete(root, *ids)
        assert update_index(str(root), SIGNAL, "1", settings).manifest.items == 0
        _, index = index_store.load(str(root), SIGNAL)
        assert len(index) == 0 and neighbours(index, random_vectors(1, 5)[0], 3) == []


def test_ok_rows_without_a_usable_vector_are_left_out_of_either_kind_of_index(tmp_path) -> None:
    """ok rows another writer left with a vector that has no direction (NaN, inf, all zeros) are not
    indexed, as error rows are not: faiss's k-means refused the first two, so no IVF index of the
    signal could be built, and an exact index answered with them (a zero vector's item at cosine 0)."""
    ids = [f"pin-{i:03d}" for i in range(120)]
    vectors = random_vectors(120, 0)
    vectors[3], vectors[4, 5], vectors[5], vectors[110] = np.nan, np.inf, 0, np.nan
    unusable = {"pin-003", "pin-004", "pin-005", "pin-110"}
    for settings in (EXACT_ONLY, IndexSettings(exact_below=50, ivf_lists=2, ivf_probes=2)):
        root = tmp_path / f"below-{settings.exact_below}"
        append(root, rows(ids[:100], vectors[:100]))
        assert build_index(str(root), SIGNAL, "1", settings).manifest.items == 97
        latest = append(root, rows(ids[100:], vectors[100:], ds="2026-11-20"))
        assert update_index(str(root), SIGNAL, "1", settings).manifest.items == 116
        _, index = index_store.load(str(root), SIGNAL)
        assert unusable.isdisjoint(index.ids)
        for query in random_vectors(5, 9):  # every list searched: exact, so the lists hold the usable rows alone
            assert_same(neighbours(index, query, 20), brute_force(root, latest, query, 20))


def test_an_item_with_two_rows_of_one_model_version_is_a_usage_error_naming_it(tmp_path) -> None:
    """A table that breaks one row per key (another writer's rows) is said, with the item, rather than
    failing inside the index with a ValueError (exit 1, a traceback)."""
    append(tmp_path, rows(["pin-1", "pin-2"], random_vectors(2, 0)))
    append(tmp_path, rows(["pin-2"], random_vectors(1, 1), ds="2026-11-20"))
    with pytest.raises(UsageError, match=r"rows of model version 1 hold 1 content id more than once \(pin-2\)"):
        build_index(str(tmp_path), SIGNAL, "1", EXACT_ONLY)


def test_an_update_rebuilds_when_the_old_files_were_vacuumed(lakehouse) -> None:
    root = str(lakehouse)
    build_index(root, SIGNAL, "1", EXACT_ONLY)
    refresh_like_change(lakehouse)
    latest = DeltaTable(embeddings_root(root)).version()
    _, gone = delta_io.changed_files(embeddings_root(root), latest - 3, latest - 2)  # the files the takedowns' commit rewrote
    assert gone
    for f in gone:
        (lakehouse / "embeddings" / f.path).unlink()
    outcome = update_index(root, SIGNAL, "1", EXACT_ONLY)
    assert outcome.manifest.made_by["how"] == "build" and "no longer all there" in outcome.message
    _, index = index_store.load(root, SIGNAL)
    query = random_vectors(1, 50)[0]
    assert_same(neighbours(index, query, 10), brute_force(lakehouse, latest, query, 10))


def test_model_versions_are_never_mixed(lakehouse) -> None:
    root = str(lakehouse)
    build_index(root, SIGNAL, "1", EXACT_ONLY)
    with pytest.raises(UsageError, match="holds model version 1 and the champion is now 2: one index never mixes"):
        update_index(root, SIGNAL, "2", EXACT_ONLY)
    table = delta_io.read_arrow(embeddings_root(root))
    both = table.filter(pc.equal(table["signal"], SIGNAL))
    with pytest.raises(UsageError, match=r"rows of model versions \['1', '2'\]: an index holds one model version's vectors"):
        vectors_of(both, "1")
    assert build_index(root, SIGNAL, "2", EXACT_ONLY).manifest.items == 120  # version 2 alone: its own index


def test_bad_requests_are_usage_errors(lakehouse, tmp_path) -> None:
    root = str(lakehouse)
    with pytest.raises(UsageError, match="no embeddings table at"):
        build_index(str(tmp_path / "elsewhere"), SIGNAL, "1", EXACT_ONLY)
    with pytest.raises(UsageError, match="has no rows of image_safety at model version 1; it holds image_embedding at model version 1"):
        build_index(root, "image_safety", "1", EXACT_ONLY)
    with pytest.raises(UsageError, match="has versions 0 to"):
        build_index(root, SIGNAL, "1", EXACT_ONLY, version=99)
    with pytest.raises(UsageError, match="no index of text_embedding"):
        update_index(root, "text_embedding", "1", EXACT_ONLY)
    build_index(root, SIGNAL, "1", EXACT_ONLY)
    theirs = Path(index_store.signal_folder(root, "text_embedding"))
    theirs.mkdir(parents=True)
    shutil.copy(Path(index_store.signal_folder(root, SIGNAL)) / index_store.MANIFEST, theirs / index_store.MANIFEST)
    with pytest.raises(UsageError, match="describes an index of image_embedding, not text_embedding"):
        index_store.load(root, "text_embedding")
    (theirs / index_store.MANIFEST).write_text(json.dumps({"signal": "text_embedding"}))
    with pytest.raises(UsageError, match="is not an index manifest"):
        update_index(root, "text_embedding", "1", EXACT_ONLY)
    pinned = build_index(root, SIGNAL, "1", EXACT_ONLY, version=1).manifest.table_version
    with pytest.raises(UsageError, match=f"after {pinned - 1}"):
        update_index(root, SIGNAL, "1", EXACT_ONLY, version=pinned - 1)


@pytest.mark.parametrize("kind", [IndexKind(EXACT), IndexKind(IVF_FLAT, lists=1, probes=1, train_per_list=256)], ids=lambda k: k.name)
def test_neighbours_of_fewer_than_one_item_is_a_value_error_naming_k(kind) -> None:
    """`neighbours(index, vector, 0)` (or a negative k) was faiss's bare AssertionError, with no word of what was wrong."""
    ids = [f"pin-{i:03d}" for i in range(50)]
    index = VectorIndex.build(ids, random_vectors(50, 0), kind)
    for k in (0, -3):
        with pytest.raises(ValueError, match=f"k is {k}: a search returns at least 1 neighbour"):
            neighbours(index, random_vectors(1, 1)[0], k)
    index.remove(ids)
    with pytest.raises(ValueError, match="k is 0"):  # an empty index refuses it too, rather than answer nothing
        neighbours(index, random_vectors(1, 1)[0], 0)
    assert len(neighbours(VectorIndex.build(ids, random_vectors(50, 0), kind), random_vectors(1, 1)[0], 1)) == 1


def test_an_update_that_adds_vectors_of_another_length_is_refused_as_a_build_is(lakehouse) -> None:
    """A build refused ok rows whose vectors have another length (another writer's) with a message;
    an update met them in VectorIndex.add, a ValueError traceback. Both now say it (exit 2), and the
    index stays as it was."""
    root = str(lakehouse)
    before = build_index(root, SIGNAL, "1", EXACT_ONLY).manifest
    append(lakehouse, rows(["pin-short"], random_vectors(1, 5)[:, : DIM // 2]))
    for make in (update_index, build_index):
        with pytest.raises(UsageError, match=rf"vectors of model version 1 have different lengths \[{DIM // 2}, {DIM}\]") as raised:
            make(root, SIGNAL, "1", EXACT_ONLY)
        assert explain(raised.value).status == 2
    assert index_store.read_manifest(root, SIGNAL) == before


def test_old_builds_are_deleted_but_the_previous_one(lakehouse) -> None:
    root = str(lakehouse)
    builds = [build_index(root, SIGNAL, "1", EXACT_ONLY).manifest.build for _ in range(3)]
    assert sorted(p.name for p in (Path(index_store.signal_folder(root, SIGNAL)) / "builds").iterdir()) == sorted(builds[1:])


@pytest.mark.subprocess
@pytest.mark.parametrize("target, when", [
    ("pyarrow.parquet:write_table", "True"),  # its index file written, its ids file not
    ("retrieval.index_store:asdict", "True"),  # its build's files written, no manifest
    ("retrieval.index_store:_delete_builds_before", "True"),  # its manifest published, the old builds not deleted
], ids=["index-file-written", "build-written", "manifest-published"])
def test_an_update_killed_as_it_saves_is_redone_by_the_retry_and_its_leftovers_go_with_the_next_saves(lakehouse, target, when) -> None:
    """An `index --update` process killed (no `finally`) at each step of its save: the retry is not held by
    the writer lock, brings the index to the table's latest version as the brute force over it finds, and
    the folder the killed run wrote goes with the next build but one, as any replaced build does."""
    root = str(lakehouse)
    first = build_index(root, SIGNAL, "1", EXACT_ONLY).manifest
    refresh_like_change(lakehouse)
    run_killed(target, when, "from conf.settings import IndexSettings; from retrieval.build import update_index; "
               f"update_index(argv[0], {SIGNAL!r}, '1', IndexSettings())", root)
    builds = Path(index_store.signal_folder(root, SIGNAL)) / "builds"
    killed = {p.name for p in builds.iterdir()} - {first.build}
    assert len(killed) == 1
    published = index_store.read_manifest(root, SIGNAL).build
    assert published == (killed.pop() if target.endswith("_delete_builds_before") else first.build)
    retried = update_index(root, SIGNAL, "1", EXACT_ONLY).manifest
    latest = DeltaTable(embeddings_root(root)).version()
    assert retried.table_version == latest
    manifest, index = index_store.load(root, SIGNAL)
    assert manifest == retried and len(index) == manifest.items
    for query in random_vectors(20, 50):
        assert_same(neighbours(index, query, 15), brute_force(lakehouse, latest, query, 15))
    build_index(root, SIGNAL, "1", EXACT_ONLY)
    last = build_index(root, SIGNAL, "1", EXACT_ONLY).manifest
    left = {p.name for p in builds.iterdir()}
    assert len(left) == 2 and last.build in left  # the published build and the one before it, nothing the killed run wrote


def test_an_index_on_the_object_store_is_built_updated_and_read_there(s3_server, monkeypatch) -> None:
    """The lakehouse on S3 (moto), located by the AWS environment as the jobs' lakehouse is."""
    for name, value in {"AWS_ENDPOINT_URL": s3_server.endpoint_url, "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    s3_server.put("indexes", {})
    root = "s3://indexes/lakehouse"
    append(root, rows([f"pin-{i:03d}" for i in range(80)], random_vectors(80, 60)))
    first = build_index(root, SIGNAL, "1", EXACT_ONLY).manifest
    refresh_like_change(root)
    manifest = update_index(root, SIGNAL, "1", EXACT_ONLY).manifest
    assert manifest.made_by["how"] == "update" and (manifest.made_by["added"], manifest.made_by["removed"]) == (4, 2)
    _, index = index_store.load(root, SIGNAL)
    for query in random_vectors(10, 61):
        assert_same(neighbours(index, query, 10), brute_force(root, manifest.table_version, query, 10))
    build_index(root, SIGNAL, "1", EXACT_ONLY)  # a third build: the first one's files go
    store = pafs.S3FileSystem(endpoint_override=s3_server.endpoint_url, scheme="http", region="us-east-1")
    builds = {e.base_name for e in store.get_file_info(pafs.FileSelector("indexes/lakehouse/_indexes/image_embedding/builds"))}
    assert len(builds) == 2 and first.build not in builds and manifest.build in builds


def test_a_writer_whose_s3_lock_was_taken_as_stale_leaves_the_next_holders_lock(s3_server, monkeypatch) -> None:
    """A writer that outlived `stale_after_s` (a long build) has its lock object taken by a waiter; at
    its end it deleted whatever lock object was there, the waiter's, so a third writer got in beside it."""
    import boto3

    for name, value in {"AWS_ENDPOINT_URL": s3_server.endpoint_url, "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    s3_server.put("indexes", {})
    folder = "s3://indexes/lakehouse/_indexes/image_embedding"
    holding, done = threading.Event(), threading.Event()

    def waiter() -> None:
        with writer_lock(folder, stale_after_s=0.5, wait_at_most_s=30):
            holding.set()
            done.wait(30)

    with writer_lock(folder, stale_after_s=0.5, wait_at_most_s=30):
        second = threading.Thread(target=waiter)
        second.start()
        assert holding.wait(30)  # the waiter took the lock as stale
    try:  # the waiter's lock object is still there once the first writer has ended
        boto3.client("s3").head_object(Bucket="indexes", Key="lakehouse/_indexes/image_embedding/writer.lock")
    finally:
        done.set()
        second.join()


def test_two_builds_at_once_take_turns_and_the_manifest_names_a_build_that_is_there(lakehouse, monkeypatch) -> None:
    """Two saves at once used to delete each other's builds, leaving a manifest that named a deleted
    one. Writer 1 is paused after writing its build's files, before its manifest; writer 2 must wait."""
    root = str(lakehouse)
    build_index(root, SIGNAL, "1", EXACT_ONLY)
    paused, release = threading.Event(), threading.Event()

    def pausing_asdict(manifest):
        if threading.current_thread().name == "writer-1":
            paused.set()
            release.wait(30)
        return dataclasses.asdict(manifest)

    monkeypatch.setattr(index_store, "asdict", pausing_asdict)
    built = {}
    writers = [threading.Thread(target=lambda n=n: built.update({n: build_index(root, SIGNAL, "1", EXACT_ONLY).manifest}), name=n)
               for n in ("writer-1", "writer-2")]
    writers[0].start()
    assert paused.wait(30)
    writers[1].start()
    writers[1].join(1.0)
    assert "writer-2" not in built  # waits for writer 1 to finish
    release.set()
    for writer in writers:
        writer.join(30)
    manifest, index = index_store.load(root, SIGNAL)
    assert manifest == built["writer-2"] and len(index) == manifest.items == 140
    builds = {p.name for p in (Path(index_store.signal_folder(root, SIGNAL)) / "builds").iterdir()}
    assert {built["writer-1"].build, built["writer-2"].build} <= builds


def test_a_save_never_deletes_a_build_newer_than_the_current_one(lakehouse) -> None:
    root = str(lakehouse)
    build_index(root, SIGNAL, "1", EXACT_ONLY)
    later = Path(index_store.signal_folder(root, SIGNAL)) / "builds" / "99991231T000000000000-inflight"  # another writer's, in progress
    later.mkdir()
    build_index(root, SIGNAL, "1", EXACT_ONLY)
    build_index(root, SIGNAL, "1", EXACT_ONLY)
    assert later.is_dir()


def test_a_save_after_one_whose_clock_ran_ahead_keeps_the_build_it_publishes(lakehouse, monkeypatch) -> None:
    """Builds are named by their writer's clock: a save after one made on a machine whose clock ran
    ahead deleted the build it had just published, as older than that one, leaving a manifest that
    names nothing (every update and reload then failed until a build on a clock ahead again)."""
    root = str(lakehouse)

    class Ahead(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> dt.datetime:
            return dt.datetime(2099, 1, 1, tzinfo=tz)

    with monkeypatch.context() as ahead:
        ahead.setattr(index_store, "dt", SimpleNamespace(datetime=Ahead, UTC=dt.UTC))
        build_index(root, SIGNAL, "1", EXACT_ONLY)
    current = build_index(root, SIGNAL, "1", EXACT_ONLY).manifest
    assert index_store.load(root, SIGNAL)[0] == current
    delete(lakehouse, "pin-003")
    assert update_index(root, SIGNAL, "1", EXACT_ONLY).manifest.items == current.items - 1


def test_a_reader_whose_build_went_since_it_read_the_manifest_reads_the_manifest_again(lakehouse, monkeypatch) -> None:
    root = str(lakehouse)
    stale = build_index(root, SIGNAL, "1", EXACT_ONLY).manifest
    build_index(root, SIGNAL, "1", EXACT_ONLY)
    current = build_index(root, SIGNAL, "1", EXACT_ONLY).manifest  # the stale manifest's build is deleted now
    manifests = iter([stale])
    read = index_store.read_manifest
    monkeypatch.setattr(index_store, "read_manifest", lambda *a: next(manifests, None) or read(*a))
    manifest, index = index_store.load(root, SIGNAL)
    assert manifest == current and len(index) == current.items
    with pytest.raises(FileNotFoundError):  # a build the caller named is not swapped for another
        index_store.load(root, SIGNAL, stale)


def test_an_update_that_rebuilds_after_a_vacuum_empties_an_index_whose_items_are_all_taken_down(tmp_path) -> None:
    """The rebuild used to refuse a signal with no rows left, so the index kept answering with
    taken-down items; it now saves an empty index, as the update in place does."""
    ids = [f"pin-{i:03d}" for i in range(50)]
    root = str(tmp_path)
    append(root, rows(ids, random_vectors(50, 0)))
    append(root, rows(["other-1"], random_vectors(1, 1), signal="text_embedding"))
    build_index(root, SIGNAL, "1", EXACT_ONLY)
    before = DeltaTable(embeddings_root(root)).version()
    after = delete(root, *ids)
    _, gone = delta_io.changed_files(embeddings_root(root), before, after)
    for f in gone:  # what a vacuum does to the old files
        (tmp_path / "embeddings" / f.path).unlink()
    outcome = update_index(root, SIGNAL, "1", EXACT_ONLY)
    assert outcome.manifest.made_by["how"] == "build" and "no longer all there" in outcome.message
    manifest, index = index_store.load(root, SIGNAL)
    assert (manifest.items, len(index), manifest.table_version, manifest.dim) == (0, 0, after, DIM)
    assert neighbours(index, random_vectors(1, 0)[0], 3) == []


def test_damaged_index_files_and_a_manifest_that_points_elsewhere_are_usage_errors(lakehouse) -> None:
    """faiss's errors and a kind the code cannot make used to end in tracebacks, and a manifest's
    `../` file names were followed; each is now a message (exit 2) naming what to do."""
    root = str(lakehouse)
    folder = Path(index_store.signal_folder(root, SIGNAL))
    good = build_index(root, SIGNAL, "1", EXACT_ONLY).manifest
    index_bytes = (folder / good.index_file).read_bytes()
    doc = json.loads((folder / index_store.MANIFEST).read_text())
    damages = {
        "truncated": lambda: (folder / good.index_file).write_bytes(index_bytes[: len(index_bytes) // 2]),
        "garbage": lambda: (folder / good.index_file).write_bytes(b"x" * len(index_bytes)),
        "unknown kind key": lambda: (folder / index_store.MANIFEST).write_text(json.dumps({**doc, "kind": {"name": "flat", "metric": "ip"}})),
        "ivf of a flat index": lambda: (folder / index_store.MANIFEST).write_text(json.dumps({**doc, "kind": {"name": IVF_FLAT, "lists": 4, "probes": 2}})),
        "outside its build": lambda: (folder / index_store.MANIFEST).write_text(json.dumps({**doc, "index_file": "../../x/index.faiss"})),
        "build with ../": lambda: (folder / index_store.MANIFEST).write_text(json.dumps(
            {**doc, "build": "..", "index_file": "builds/../index.faiss", "ids_file": "builds/../ids.parquet"})),
        "fewer items than the manifest": lambda: (folder / index_store.MANIFEST).write_text(json.dumps({**doc, "items": doc["items"] - 1})),
        "another dimension": lambda: (folder / index_store.MANIFEST).write_text(json.dumps({**doc, "dim": DIM // 2})),
    }
    for what, damage in damages.items():
        damage()
        with pytest.raises(UsageError, match="damaged|outside its build|index kind this code does not know") as raised:
            index_store.load(root, SIGNAL)
        assert explain(raised.value).status == 2, what
        (folder / good.index_file).write_bytes(index_bytes)
        (folder / index_store.MANIFEST).write_text(json.dumps(doc))
    assert len(index_store.load(root, SIGNAL)[1]) == good.items


@pytest.mark.parametrize("settings", [EXACT_ONLY, IndexSettings(exact_below=1)], ids=[EXACT, IVF_FLAT])
def test_an_ids_file_that_names_other_faiss_ids_than_its_index_is_damage(lakehouse, settings) -> None:
    """An ids file of the index's count naming other faiss ids (another build's, copied by hand) was
    read as good: a search that found an id it does not name raised a KeyError, in the service on
    every request (a 500)."""
    root = str(lakehouse)
    kind = build_index(root, SIGNAL, "1", settings).manifest.kind["name"]
    shift_faiss_ids(lakehouse)
    with pytest.raises(UsageError, match="damaged: .*ids.parquet does not name the faiss ids .*index.faiss holds") as raised:
        index_store.load(root, SIGNAL)
    assert explain(raised.value).status == 2 and kind == (EXACT if settings is EXACT_ONLY else IVF_FLAT)


@pytest.mark.parametrize("new_versions", [1, 2, 3])
def test_an_update_after_the_table_was_dropped_and_written_again_rebuilds_from_the_new_table(tmp_path, new_versions) -> None:
    """The manifest named a version number, not which table: an update applied the new table's
    changes to the old table's items (or said "nothing to do", or refused, at a version number the
    old table had reached); it now sees the table's Delta id differ and rebuilds, saying why."""
    root = str(tmp_path)
    append(root, rows([f"old-{i}" for i in range(40)], random_vectors(40, 0)))
    append(root, rows([f"old-{i}" for i in range(40, 60)], random_vectors(20, 1)))
    old = build_index(root, SIGNAL, "1", EXACT_ONLY).manifest
    shutil.rmtree(embeddings_root(root))
    for day in range(new_versions):
        latest = append(root, rows([f"new-{day}-{i}" for i in range(10)], random_vectors(10, 10 + day), ds=f"2026-11-2{day}"))
    outcome = update_index(root, SIGNAL, "1", EXACT_ONLY)
    new_id = DeltaTable(embeddings_root(root)).metadata().id
    assert outcome.manifest.made_by["how"] == "build" and "dropped and written again" in outcome.message
    assert (outcome.manifest.table_id, outcome.manifest.table_version) == (new_id, latest) and old.table_id != new_id
    _, index = index_store.load(root, SIGNAL)
    assert sorted(index.ids) == sorted(f"new-{d}-{i}" for d in range(new_versions) for i in range(10))
    query = random_vectors(1, 7)[0]
    assert_same(neighbours(index, query, 10), brute_force(tmp_path, latest, query, 10))


def test_an_update_of_an_index_whose_manifest_predates_table_ids_rebuilds(lakehouse) -> None:
    """A manifest written before table ids were recorded cannot say its table is this one: the
    update rebuilds once, saying so, and the next update is an update again."""
    root = str(lakehouse)
    build_index(root, SIGNAL, "1", EXACT_ONLY, version=1)
    manifest_file = Path(index_store.signal_folder(root, SIGNAL)) / index_store.MANIFEST
    doc = json.loads(manifest_file.read_text())
    manifest_file.write_text(json.dumps({k: v for k, v in doc.items() if k != "table_id"}))
    assert index_store.read_manifest(root, SIGNAL).table_id is None  # still readable, by neighbours and the service
    outcome = update_index(root, SIGNAL, "1", EXACT_ONLY)
    assert outcome.manifest.made_by["how"] == "build" and "does not say which table" in outcome.message
    assert outcome.manifest.table_id == DeltaTable(embeddings_root(root)).metadata().id
    refresh_like_change(lakehouse)
    assert update_index(root, SIGNAL, "1", EXACT_ONLY).manifest.made_by["how"] == "update"
