"""`content-signals index` and `neighbours` in-process, on an embeddings table written with delta-rs
and a registry whose champion says which model version to index (no Spark)."""
from __future__ import annotations

import base64
import json
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from deltalake import DeltaTable
from embedding_tables import SIGNAL, append, brute_force, delete, random_vectors, registry_in, rows, shift_faiss_ids
from labels_helpers import jpeg

from conf.settings import Settings, load_settings
from jobs.cli import main
from lake import delta_io
from lake.registry import Registry
from retrieval import index_store
from retrieval.build import build_index, embeddings_root, update_index
from serving.app import create_app
from serving.connections import ClosedConnections
from serving.reload import Champions
from serving.scorer import Item, Scorer
from serving.server import running

IDS = [f"pin-{i:03d}" for i in range(50)]


@pytest.fixture
def lakehouse(tmp_path, empty_registry_db):
    """Champion version 1 of SIGNAL; its rows (the last 5 errors) and version 2's in the table."""
    registry_in(tmp_path, empty_registry_db)
    append(tmp_path, rows(IDS[:45], random_vectors(45, 0)))
    append(tmp_path, rows(IDS[45:], None))
    append(tmp_path, rows(IDS, random_vectors(50, 1), model_version="2"))
    return tmp_path


def run(capsys, lakehouse, *args: str) -> tuple[int, str]:
    status = main([*args, "--set", f"lakehouse={lakehouse}"])
    return status, capsys.readouterr().out


def serving_settings(lakehouse: Path) -> Settings:
    """The local profile on the lakehouse with SIGNAL its only enabled signal."""
    enabled = load_settings("local").enabled_signals
    return load_settings("local", [f"lakehouse={lakehouse}", *(f"signals.{n}.enabled={'true' if n == SIGNAL else 'false'}" for n in enabled)])


def test_index_then_neighbours_prints_the_exact_neighbours(lakehouse, capsys) -> None:
    status, out = run(capsys, lakehouse, "index", SIGNAL)
    assert status == 0, out
    assert "built image_embedding: flat index of 45 items at model version 1, from embeddings version 2" in out
    status, out = run(capsys, lakehouse, "neighbours", SIGNAL, "pin-007", "-k", "5")
    assert status == 0, out
    query = next(r["vector"] for r in delta_io.read_arrow(embeddings_root(str(lakehouse))).to_pylist()
                 if r["content_id"] == "pin-007" and r["model_version"] == "1")
    expected = [c for c, _ in brute_force(lakehouse, 2, query, 6) if c != "pin-007"]
    printed = [line.split("│")[2].strip() for line in out.splitlines() if line.startswith("│")]
    assert printed == expected
    assert "note:" not in out


def test_neighbours_of_the_empty_id_are_found(lakehouse, capsys) -> None:
    """"" is a valid content id (jobs/corpus.py keys any non-null UTF-8 id): it is indexed, and
    `neighbours SIGNAL ""` found no row of it (delta-rs read the filter `content_id = ''` as null)."""
    append(lakehouse, rows([""], random_vectors(1, 3)))
    assert run(capsys, lakehouse, "index", SIGNAL)[0] == 0
    status, out = run(capsys, lakehouse, "neighbours", SIGNAL, "", "-k", "5")
    assert status == 0, out
    query = next(r["vector"] for r in delta_io.read_arrow(embeddings_root(str(lakehouse))).to_pylist()
                 if r["content_id"] == "" and r["model_version"] == "1")
    expected = [c for c, _ in brute_force(lakehouse, 3, query, 6) if c != ""]
    assert [line.split("│")[2].strip() for line in out.splitlines() if line.startswith("│")] == expected


def test_bad_requests_exit_2_with_the_reason(lakehouse, tmp_path, capsys) -> None:
    status, out = run(capsys, tmp_path / "elsewhere", "index", SIGNAL)
    assert status == 2 and "no embeddings table at" in out
    status, out = run(capsys, lakehouse, "index", "no_such")
    assert status == 2 and "no signal 'no_such' in the profile" in out
    status, out = run(capsys, lakehouse, "index", "text_embedding")  # no champion registered
    assert status == 2 and "cannot resolve 'text_embedding'" in out
    status, out = run(capsys, lakehouse, "neighbours", SIGNAL, "pin-001")
    assert status == 2 and "no index of image_embedding" in out
    append(lakehouse, rows(["pin-nan"], random_vectors(1, 2) * np.nan))  # an ok row without a direction (another writer's)
    assert run(capsys, lakehouse, "index", SIGNAL)[0] == 0
    status, out = run(capsys, lakehouse, "neighbours", SIGNAL, "pin-047")
    assert status == 2 and "'pin-047' has no vector for image_embedding at model version 1: image is corrupt" in out
    status, out = run(capsys, lakehouse, "neighbours", SIGNAL, "pin-nan")
    assert status == 2 and "'pin-nan' has a vector without a direction (not finite, or zero)" in out
    status, out = run(capsys, lakehouse, "neighbours", SIGNAL, "pin-999")
    assert status == 2 and "no row of 'pin-999'" in out


def test_a_new_champion_is_not_mixed_into_the_index(lakehouse, capsys) -> None:
    assert run(capsys, lakehouse, "index", SIGNAL)[0] == 0
    Registry(f"sqlite:///{lakehouse}/_registry/mlflow.db").promote(SIGNAL, "2")
    status, out = run(capsys, lakehouse, "index", SIGNAL, "--update")
    assert status == 2 and "holds model version 1 and the champion is now 2" in out
    status, out = run(capsys, lakehouse, "neighbours", SIGNAL, "pin-001", "-k", "3")
    assert status == 0 and "note: the champion of image_embedding is now model version 2" in out
    status, out = run(capsys, lakehouse, "index", SIGNAL)
    assert status == 0 and "index of 50 items at model version 2" in out


def test_the_service_skips_an_outdated_index_without_reading_it(lakehouse, capsys) -> None:
    """The online scorer serves no neighbours from an index of another model version, and does not
    read it either: its manifest says enough (here the index file is garbage, which reading would raise on)."""
    assert run(capsys, lakehouse, "index", SIGNAL)[0] == 0
    Registry(f"sqlite:///{lakehouse}/_registry/mlflow.db").promote(SIGNAL, "2")
    manifest = index_store.read_manifest(str(lakehouse), SIGNAL)
    (Path(index_store.signal_folder(str(lakehouse), SIGNAL)) / manifest.index_file).write_bytes(b"not an index")
    scorer = Scorer.load(serving_settings(lakehouse))
    assert list(scorer.signals) == [SIGNAL] and not scorer.indexes
    assert "its index holds model version 1, the champion is 2" in scorer.skipped[SIGNAL]


@pytest.fixture
def served_lakehouse(tmp_path, empty_registry_db) -> Path:
    """Champion version 1 of SIGNAL, with vectors of the served model's dimension (EfficientNet's 1280), and their index."""
    registry_in(tmp_path, empty_registry_db)
    append(tmp_path, rows(IDS, np.random.default_rng(0).standard_normal((len(IDS), 1280)).astype(np.float32)))
    build_index(str(tmp_path), SIGNAL, "1", load_settings("local").index)
    return tmp_path


def test_the_service_skips_a_damaged_index_rather_than_serve_the_build_before_it(served_lakehouse, capsys) -> None:
    """A damaged build (or manifest) is skipped like an outdated index: before, the service would not
    start, and a reload to it failed, so the build before it, with the item taken down since, was
    served on (and every other signal's reload was held back)."""
    lakehouse = served_lakehouse
    champions = Champions(serving_settings(lakehouse))
    assert "pin-001" in champions.current.indexes[SIGNAL].index.ids
    delete(lakehouse, "pin-001")
    assert run(capsys, lakehouse, "index", SIGNAL, "--update")[0] == 0
    folder = Path(index_store.signal_folder(str(lakehouse), SIGNAL))
    (folder / index_store.read_manifest(str(lakehouse), SIGNAL).index_file).write_bytes(b"not an index")
    assert champions.check() and champions.last_error is None
    assert SIGNAL not in champions.current.indexes and "are damaged" in champions.current.skipped[SIGNAL]
    assert not champions.check()  # skipped once, not reloaded at every check
    assert SIGNAL not in Champions(serving_settings(lakehouse)).current.indexes  # and the service starts
    (folder / index_store.MANIFEST).write_text("not a manifest")
    assert champions.check() and "is not an index manifest" in champions.current.skipped[SIGNAL]
    assert not champions.check()


def test_the_service_skips_an_index_whose_manifest_holds_a_value_of_another_type(served_lakehouse, capsys) -> None:
    """A manifest whose values are not of their fields' types (a count as a string, a build as a
    number: another writer's, or edited by hand) was taken for a manifest: the service did not start
    (a TypeError), a reload to it failed and served the build before it on, and `neighbours` was a traceback."""
    path = Path(index_store.signal_folder(str(served_lakehouse), SIGNAL)) / index_store.MANIFEST
    doc = json.loads(path.read_text())
    champions = Champions(serving_settings(served_lakehouse))
    for field, value in (("items", str(doc["items"])), ("build", 5), ("dim", str(doc["dim"])), ("made_by", None)):
        path.write_text(json.dumps({**doc, field: value}))
        scorer = Scorer.load(serving_settings(served_lakehouse))
        assert not scorer.indexes and f"is not an index manifest (its {field} is a" in scorer.skipped[SIGNAL], field
        status, out = run(capsys, served_lakehouse, "neighbours", SIGNAL, IDS[0])
        assert status == 2 and "is not an index manifest" in out, field
    assert champions.check() and champions.last_error is None and SIGNAL not in champions.current.indexes


def test_the_service_skips_an_index_whose_build_is_gone_and_loads_the_next_one(served_lakehouse, capsys) -> None:
    """A manifest that names a build whose files are gone (a partial copy of the lakehouse, a folder
    deleted by hand) stopped the service from starting, and a reload to it failed, as damaged files did."""
    champions = Champions(serving_settings(served_lakehouse))
    delete(served_lakehouse, "pin-001")
    assert run(capsys, served_lakehouse, "index", SIGNAL, "--update")[0] == 0
    build = index_store.read_manifest(str(served_lakehouse), SIGNAL).build
    shutil.rmtree(Path(index_store.signal_folder(str(served_lakehouse), SIGNAL)) / "builds" / build)
    assert champions.check() and SIGNAL not in champions.current.indexes
    assert f"the files of its build {build} are gone" in champions.current.skipped[SIGNAL]
    assert not champions.check()
    assert SIGNAL not in Champions(serving_settings(served_lakehouse)).current.indexes  # and the service starts
    assert run(capsys, served_lakehouse, "index", SIGNAL)[0] == 0
    assert champions.check() and "pin-001" not in champions.current.indexes[SIGNAL].index.ids


def test_each_answer_names_the_index_build_its_neighbours_came_from(served_lakehouse, capsys) -> None:
    """An answer's neighbours did not say which build they came from (only /health did, and a reload may
    come between the two requests): a consumer that caches answers could not tell which a new build outdates."""
    settings = serving_settings(served_lakehouse)
    champions = Champions(settings)
    item = json.dumps({"image": base64.b64encode(jpeg(skimage.data.chelsea())).decode()}).encode()
    with running(create_app(champions, settings.serve, ClosedConnections())) as url:
        def score() -> dict:
            with urllib.request.urlopen(urllib.request.Request(f"{url}/score", item, {"Content-Type": "application/json"}), timeout=60) as answer:
                return json.loads(answer.read())

        first, first_build = score(), index_store.read_manifest(str(served_lakehouse), SIGNAL).build
        delete(served_lakehouse, "pin-001")
        assert run(capsys, served_lakehouse, "index", SIGNAL, "--update")[0] == 0
        assert champions.check()  # the new build picked up
        second, second_build = score(), index_store.read_manifest(str(served_lakehouse), SIGNAL).build
    assert first["neighbours"][SIGNAL] and first["index_builds"] == {SIGNAL: first_build}
    assert second["neighbours"][SIGNAL] and second["index_builds"] == {SIGNAL: second_build} and second_build != first_build


def test_the_service_skips_an_index_whose_ids_file_names_other_faiss_ids_rather_than_fail_every_request(served_lakehouse) -> None:
    """An ids file naming other faiss ids than its index holds (as many of them) was loaded: the
    search of every batch met an id it does not name (a KeyError), so every request was answered 500."""
    shift_faiss_ids(served_lakehouse)
    scorer = Scorer.load(serving_settings(served_lakehouse))
    assert not scorer.indexes and "does not name the faiss ids" in scorer.skipped[SIGNAL]
    result = scorer.score([Item(image=jpeg(skimage.data.chelsea()))])[0]
    assert result.embeddings[SIGNAL]["status"] == "ok" and not result.neighbours


def test_the_service_skips_an_index_of_another_dimension_rather_than_fail_every_request(lakehouse, capsys) -> None:
    """An index whose manifest names the served model version but not its dimension holds another
    model's vectors (here 16 floats a vector against EfficientNet's 1280; a registry that numbered its
    versions anew): every batch failed on it, so every request was answered 500."""
    assert run(capsys, lakehouse, "index", SIGNAL)[0] == 0
    scorer = Scorer.load(serving_settings(lakehouse))
    assert not scorer.indexes and "vectors of 16 dimensions, model version 1 gives 1280" in scorer.skipped[SIGNAL]
    result = scorer.score([Item(image=jpeg(skimage.data.chelsea()))])[0]
    assert result.embeddings[SIGNAL]["status"] == "ok" and not result.neighbours
    assert not Champions(serving_settings(lakehouse), scorer).check()  # skipped once, not reloaded at every check


def test_a_version_a_vacuum_removed_is_bad_input_not_damage(lakehouse, capsys, monkeypatch) -> None:
    """Its log is still there but its files are not: exit 2 naming the vacuum, not exit 4's 'backfill that day'."""
    pinned = DeltaTable(embeddings_root(str(lakehouse))).version()
    delete(lakehouse, "pin-003")
    DeltaTable(embeddings_root(str(lakehouse))).vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    status, out = run(capsys, lakehouse, "index", SIGNAL, "--version", str(pinned))
    assert status == 2 and f"version {pinned} of" in out and "a vacuum" in " ".join(out.split())
    assert run(capsys, lakehouse, "index", SIGNAL, "--version", str(pinned + 1))[0] == 0
    delete(lakehouse, "pin-004")
    monkeypatch.chdir(lakehouse.parent)  # an API caller may name the lakehouse relative to where it runs
    assert update_index(lakehouse.name, SIGNAL, "1", load_settings("local").index).manifest.items == 43


def test_neighbours_after_the_table_was_dropped_and_written_again_say_to_build_the_index_again(lakehouse, capsys) -> None:
    """The query vector was read at the manifest's version number of whatever table is there now:
    another table's vector, queried against the old table's index (found in review, left alone then)."""
    assert run(capsys, lakehouse, "index", SIGNAL)[0] == 0
    shutil.rmtree(embeddings_root(str(lakehouse)))
    for seed in (5, 6, 7):  # the new table reaches the index's version number (2) with other vectors
        append(lakehouse, rows(IDS, random_vectors(50, seed)))
    status, out = run(capsys, lakehouse, "neighbours", SIGNAL, "pin-007")
    out = " ".join(out.split())  # rich wraps long lines at the terminal's width
    assert status == 2 and "dropped and written again" in out and "content-signals index image_embedding" in out
    shutil.rmtree(embeddings_root(str(lakehouse)))
    append(lakehouse, rows(IDS, random_vectors(50, 8)))  # one version: the index's is not there at all
    status, out = run(capsys, lakehouse, "neighbours", SIGNAL, "pin-007")
    assert status == 2 and "content-signals index image_embedding" in " ".join(out.split())
    assert run(capsys, lakehouse, "index", SIGNAL)[0] == 0
    assert run(capsys, lakehouse, "neighbours", SIGNAL, "pin-007")[0] == 0
