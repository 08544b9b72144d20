"""lake.registry on a local sqlite MLflow registry: hashes of the packaged weights, idempotent
registration, alias resolution, promotion and rollback (registry and run ledger), and MLflow
kept off the network."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from deltalake import DeltaTable

from conf.settings import load_settings
from lake import registry as registry_module
from lake.alias_lock import HOLDER_TAG, LOCK_MODEL, AliasConflict, alias_lock, this_process
from lake.registry import CHAMPION, UNRECORDED, AliasMoved, Registry, RegistryError, local_store_uri
from rollout.compare import log_to_mlflow
from rollout.models import build_signals
from signals.embedders.efficientnet import default_weights_path
from signals.embedders.minilm import default_model_dir
from signals.weights import weights_sha256
from tests.killed import child_env, run_killed
from tests.loopback import free_port, wait_until_up

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def registry(tmp_path, empty_registry_db) -> Registry:
    """A registry of its own for each test (a copy of the empty database)."""
    shutil.copy(empty_registry_db, tmp_path / "mlflow.db")
    return Registry(local_store_uri(tmp_path))


def folder_sha256(root: Path) -> str:
    """The documented folder hash: relative path, NUL, bytes, for each file in sorted path order."""
    digest = hashlib.sha256()
    for rel in sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()):
        digest.update(rel.encode() + b"\0" + (root / rel).read_bytes())
    return digest.hexdigest()


def weights_file(folder: Path, name: str, content: bytes) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(content)
    return str(folder / name)


def test_packaged_models_register_with_a_stable_hash_and_are_reused(registry):
    efficientnet = default_weights_path()
    expected = hashlib.sha256(Path(efficientnet).read_bytes()).hexdigest()
    first = registry.register("efficientnet-lite0", efficientnet, {"image_size": 224, "resize": "bicubic"})
    assert first.weights_sha256 == expected
    assert Path(efficientnet).name.split("-")[-1].split(".")[0] == expected[:8]  # the file is named after its hash
    assert (first.version, first.source, first.params) == ("1", efficientnet, {"image_size": 224, "resize": "bicubic"})
    again = registry.register("efficientnet-lite0", efficientnet, {"resize": "bicubic", "image_size": 224})
    assert again == first  # same weights, same params (in any key order): the same version

    minilm = Path(default_model_dir())
    text = registry.register("all-MiniLM-L6-v2", str(minilm), {"max_tokens": 256})
    assert text.weights_sha256 == folder_sha256(minilm) == weights_sha256(str(minilm))
    assert registry.register("all-MiniLM-L6-v2", str(minilm), {"max_tokens": 256}).version == text.version == "1"

    changed = registry.register("efficientnet-lite0", efficientnet, {"image_size": 256, "resize": "bicubic"})
    assert changed.version == "2" and changed.weights_sha256 == expected
    assert [v.version for v in registry.versions("efficientnet-lite0")] == ["1", "2"]


def test_new_weights_make_a_new_version_and_moved_weights_do_not(registry, tmp_path):
    one = registry.register("m", weights_file(tmp_path / "a", "w.pt", b"weights one"), {})
    two = registry.register("m", weights_file(tmp_path / "b", "w.pt", b"weights two"), {})
    moved = registry.register("m", weights_file(tmp_path / "c", "other-name.pt", b"weights one"), {})
    assert (one.version, two.version, moved.version) == ("1", "2", "1")
    assert one.weights_sha256 == hashlib.sha256(b"weights one").hexdigest()


def test_folder_hash_covers_every_file_and_its_name(tmp_path):
    folder = tmp_path / "model"
    weights_file(folder, "config.json", b"{}")
    weights_file(folder / "sub", "weights.bin", b"\x00\x01")
    original = weights_sha256(str(folder))
    assert original == folder_sha256(folder) == weights_sha256(f"file://{folder}")
    (folder / "config.json").rename(folder / "config2.json")
    renamed = weights_sha256(str(folder))
    (folder / "sub" / "weights.bin").write_bytes(b"\x00\x02")
    assert len({original, renamed, weights_sha256(str(folder))}) == 3


def test_weights_are_hashed_once_per_version_not_on_every_run(registry, tmp_path, monkeypatch):
    hashed = []
    monkeypatch.setattr(registry_module, "weights_sha256", lambda path, real=weights_sha256: hashed.append(path) or real(path))
    path = weights_file(tmp_path / "a", "w.pt", b"weights one")
    first = registry.register_first_use("m", path, {"arch": "a"})
    for _ in range(3):  # daily runs
        assert registry.register_first_use("m", path, {"arch": "a"}) == first
    assert len(hashed) == 1
    assert registry.register("m", path, {"arch": "b"}).version == "2" and len(hashed) == 2  # other params: a version of its own

    os.utime(path, ns=(1_000_000_000, 1_000_000_000))  # touched (copied with a new time, say): read again, the same version
    assert registry.register("m", path, {"arch": "a"}) == first and len(hashed) == 3
    assert registry.register("m", path, {"arch": "a"}) == first and len(hashed) == 3  # ... once
    moved = weights_file(tmp_path / "b", "w.pt", b"weights one")
    assert registry.register("m", moved, {"arch": "a"}) == first and len(hashed) == 4

    Path(moved).write_bytes(b"weights two")  # the same size, rewritten
    assert registry.register("m", moved, {"arch": "a"}).version == "3" and len(hashed) == 5
    folder = tmp_path / "model"
    weights_file(folder / "sub", "weights.bin", b"\x00")
    assert registry.register("m", str(folder), {}).version == "4"
    weights_file(folder, "config.json", b"{}")  # a file added to a folder
    assert registry.register("m", str(folder), {}).version == "5" and len(hashed) == 7


def _without_threads(params):
    return {k: v for k, v in params.items() if k != "threads"}


def test_params_the_caller_ignores_are_left_out_of_comparing_not_of_what_a_version_records(registry, tmp_path):
    """A version that recorded run settings (registered before a version's params identified it alone) is the version
    of the params without them where the caller ignores them, found by its fingerprint or hashed again: no copy."""
    path = weights_file(tmp_path / "a", "w.pt", b"weights one")
    legacy = registry.register("m", path, {"arch": "a", "threads": 3})
    assert registry.register("m", path, {"arch": "a"}, identifies=_without_threads) == legacy  # by its fingerprint
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    assert registry.register("m", path, {"arch": "a"}, identifies=_without_threads) == legacy  # hashed again
    assert registry.register("m", path, {"arch": "b"}, identifies=_without_threads).version == "2"  # other identity: its own
    assert registry.register("m", path, {"arch": "a"}).params == {"arch": "a"}  # not ignored: compared, and recorded, whole
    assert registry.resolve("m", "1").params == {"arch": "a", "threads": 3}


def test_hub_tags_have_no_hash_and_missing_paths_are_refused(registry, tmp_path):
    tag = registry.register("clip", "laion2b_s34b_b79k", {"arch": "ViT-B-32"})
    assert tag.weights_sha256 is None and tag.source == "laion2b_s34b_b79k"
    assert registry.register("clip", "laion2b_s34b_b79k", {"arch": "ViT-B-32"}).version == tag.version
    assert registry.register("clip", "hf-hub:laion/other", {"arch": "ViT-B-32"}).version == "2"
    with pytest.raises(FileNotFoundError):
        registry.register("clip", str(tmp_path / "missing.pt"), {})


def test_resolve_by_alias_number_and_latest(registry, tmp_path):
    one = registry.register("m", weights_file(tmp_path, "1.pt", b"1"), {"p": 1})
    two = registry.register("m", weights_file(tmp_path, "2.pt", b"2"), {"p": 2})
    assert registry.register_first_use("m", str(tmp_path / "1.pt"), {"p": 1}) == one  # champion set on first use
    assert registry.register_first_use("m", str(tmp_path / "2.pt"), {"p": 2}) == one  # ... and only then
    registry.promote("m", "2", alias="challenger")
    assert registry.aliases("m") == {CHAMPION: "1", "challenger": "2"}
    assert registry.resolve("m", CHAMPION) == one
    assert registry.resolve("m", "challenger") == two
    assert registry.resolve("m", "2") == two and registry.resolve("m", 1) == one
    assert registry.resolve("m", "latest") == two
    with pytest.raises(RegistryError, match="canary"):
        registry.resolve("m", "canary")
    with pytest.raises(RegistryError, match="'7'"):
        registry.resolve("m", "7")
    with pytest.raises(RegistryError):
        registry.aliases("no-such-model")
    assert registry.promote("m", "challenger") == "1"  # promote whatever the challenger is
    assert registry.aliases("m") == {CHAMPION: "2", "challenger": "2"}


def test_promote_then_rollback_moves_the_alias_and_writes_the_ledger(registry, tmp_path):
    ledger = str(tmp_path / "lakehouse" / "runs")
    registry.register_first_use("efficientnet-lite0", weights_file(tmp_path, "1.pt", b"1"), {})
    registry.register("efficientnet-lite0", weights_file(tmp_path, "2.pt", b"2"), {})

    assert registry.promote("efficientnet-lite0", "2", ledger_root=ledger, signal="image_embedding") == "1"
    assert registry.resolve("efficientnet-lite0", CHAMPION).version == "2"
    assert registry.rollback("efficientnet-lite0", ledger_root=ledger, signal="image_embedding") == "1"
    assert registry.resolve("efficientnet-lite0", CHAMPION).version == "1"

    rows = sorted(DeltaTable(ledger).to_pyarrow_table().to_pylist(), key=lambda r: r["started_at"])
    assert [(r["job"], r["signal"], r["model_name"], r["model_version"], r["message"], r["status"]) for r in rows] == [
        ("promote", "image_embedding", "efficientnet-lite0", "2", "champion 1 -> 2", "succeeded"),
        ("rollback", "image_embedding", "efficientnet-lite0", "1", "champion 2 -> 1", "succeeded"),
    ]
    assert len({r["run_id"] for r in rows}) == 2
    assert [(e["action"], e["from"], e["to"]) for e in registry.history("efficientnet-lite0")] == [
        ("promote", None, "1"), ("promote", "1", "2"), ("rollback", "2", "1")]
    assert "rolled_back.champion" in registry.client.get_model_version("efficientnet-lite0", "2").tags


def test_rollbacks_walk_back_and_stop_with_a_clear_error(registry, tmp_path):
    for i in (1, 2, 3):
        registry.promote("m", registry.register("m", weights_file(tmp_path, f"{i}.pt", bytes([i])), {}).version)
    assert registry.promote("m", "3") == "3"  # already there: nothing moves, nothing is pushed
    assert registry.rollback("m") == "2"
    assert registry.rollback("m") == "1"
    with pytest.raises(RegistryError, match="no earlier version"):
        registry.rollback("m")
    assert registry.aliases("m") == {CHAMPION: "1"}


def test_rollback_after_the_alias_was_moved_by_hand_still_goes_back(registry, tmp_path):
    for i in (1, 2, 3):
        registry.promote("m", registry.register("m", weights_file(tmp_path, f"{i}.pt", bytes([i])), {}).version)
    registry.client.set_registered_model_alias("m", CHAMPION, "2")  # in the MLflow UI, say
    assert registry.rollback("m") == "1"  # not a no-op back to 2


def test_a_rollback_goes_past_a_version_deleted_from_the_registry(registry, tmp_path, caplog):
    """Found in review: a version deleted by hand (the MLflow UI's delete) stayed on the rollback
    stack, and every rollback after ended in MLflow's "not found" traceback, the alias unmoved and
    the stack as it was: no rerun could get past it."""
    for i in (1, 2, 3):
        registry.promote("m", registry.register("m", weights_file(tmp_path, f"{i}.pt", bytes([i])), {}).version)
    registry.client.delete_model_version("m", "2")
    assert [v.version for v in registry.versions("m")] == ["1", "3"]
    assert registry.rollback("m", expected="3") == "1"  # the version before, of those still registered
    assert registry.aliases("m") == {CHAMPION: "1"}
    assert "version 2, which m's 'champion' named before, is no longer in the registry" in caplog.text
    assert [(e["action"], e["from"], e["to"]) for e in registry.history("m")][-1] == ("rollback", "3", "1")
    with pytest.raises(RegistryError, match="no earlier version"):
        registry.rollback("m")


def ledger_moves(ledger: str) -> list[tuple[str, str, str]]:
    """(job, message, status) of the ledger's alias moves, in the order they were made."""
    rows = sorted(DeltaTable(ledger).to_pyarrow_table().to_pylist(), key=lambda r: r["started_at"])
    return [(r["job"], r["message"], r["status"]) for r in rows]


def test_a_promote_killed_part_way_leaves_rollback_going_back_to_a_real_champion(registry, tmp_path, monkeypatch):
    ledger = str(tmp_path / "runs")
    for i in (1, 2, 3):
        registry.register("m", weights_file(tmp_path, f"{i}.pt", bytes([i])), {})
    registry.promote("m", "1")
    registry.promote("m", "2", ledger_root=ledger)
    moved_at = registry.client.set_registered_model_alias

    def killed_after_the_move(*args):
        moved_at(*args)
        raise SystemExit("killed")
    monkeypatch.setattr(registry.client, "set_registered_model_alias", killed_after_the_move)
    with pytest.raises(SystemExit):
        registry.promote("m", "3", ledger_root=ledger)  # died as the alias moved, before the history and the ledger
    monkeypatch.undo()
    assert registry.aliases("m") == {CHAMPION: "3"}
    assert registry.history("m")[-1]["action"] == UNRECORDED  # the move is not lost with its entry
    assert registry.rollback("m", ledger_root=ledger) == "2"  # the version it replaced, not the one before that
    assert [(e["action"], e["from"], e["to"]) for e in registry.history("m")] == [
        ("promote", None, "1"), ("promote", "1", "2"), (UNRECORDED, "2", "3"), ("rollback", "3", "2")]  # kept by the rollback
    assert ledger_moves(ledger) == [("promote", "champion 1 -> 2", "succeeded"), (UNRECORDED, "champion 2 -> 3", "succeeded"),
                                    ("rollback", "champion 3 -> 2", "succeeded")]  # and by the ledger


@pytest.mark.subprocess
@pytest.mark.parametrize("target, when, moved", [
    ("lake.registry:Registry._set_tag_list", "a[2] == registry.STACK_TAG", None),  # holding the lock, nothing written
    ("mlflow:MlflowClient.set_registered_model_alias", "a[2] == 'champion'", None),  # the rollback stack pushed
    ("lake.registry:Registry._set_tag_list", "a[2] == registry.HISTORY_TAG", UNRECORDED),  # the alias moved, no entry of it
    ("lake.registry:record_runs", "True", "promote"),  # its history entry written
    ("lake.alias_lock:_drop", "True", "promote"),  # done, its lock ticket not dropped
], ids=["in-the-lock", "stack-pushed", "alias-moved", "history-written", "ticket-left"])
def test_a_promote_process_killed_at_each_step_leaves_a_rollback_that_goes_back_and_records_each_move_once(
        registry, tmp_path, target, when, moved):
    """A promote process killed (no `finally`: its lock ticket stays) at each step of its move: the next
    command is not held by the lock, rolls back to the champion before the move that landed, and the ledger
    has every landed move once (`moved`: as what; one that left no history entry as unrecorded); no lock ticket is left."""
    ledger = str(tmp_path / "runs")
    for i in (1, 2, 3):
        registry.register("m", weights_file(tmp_path, f"{i}.pt", bytes([i])), {})
    registry.promote("m", "1", ledger_root=ledger)
    registry.promote("m", "2", ledger_root=ledger)
    run_killed(target, when.replace("registry.", "__import__('lake.registry').registry."),
               "from lake.registry import Registry; Registry(argv[0]).promote('m', '3', ledger_root=argv[1])", registry.tracking_uri, ledger)
    assert registry.aliases("m") == {CHAMPION: "3" if moved else "2"}
    started = time.monotonic()
    assert registry.rollback("m", ledger_root=ledger) == ("2" if moved else "1")
    assert time.monotonic() - started < 30  # the killed mover's ticket skipped at once, not after it is stale (60 s)
    landed = [("promote", "champion None -> 1"), ("promote", "champion 1 -> 2")] + ([(moved, "champion 2 -> 3")] if moved else [])
    rollback = ("rollback", "champion 3 -> 2") if moved else ("rollback", "champion 2 -> 1")
    assert ledger_moves(ledger) == [(job, message, "succeeded") for job, message in [*landed, rollback]]
    assert [(e["action"], e["from"], e["to"]) for e in registry.history("m")][-1] == ("rollback", *rollback[1].split()[1::2])
    assert registry.client.search_model_versions(f"name = '{LOCK_MODEL}'") == []


@pytest.mark.subprocess
def test_a_rollback_process_killed_after_the_alias_moved_leaves_the_next_rollback_going_further_back(registry, tmp_path):
    """Killed after moving the alias back, before popping its rollback stack: the next rollback does not return to
    the version the alias names now, and the ledger keeps the killed move once, as unrecorded."""
    ledger = str(tmp_path / "runs")
    for i in (1, 2, 3):
        registry.register("m", weights_file(tmp_path, f"{i}.pt", bytes([i])), {})
        registry.promote("m", str(i), ledger_root=ledger)
    run_killed("lake.registry:Registry._set_tag_list", "a[2] == __import__('lake.registry').registry.STACK_TAG",
               "from lake.registry import Registry; Registry(argv[0]).rollback('m', ledger_root=argv[1])", registry.tracking_uri, ledger)
    assert registry.aliases("m") == {CHAMPION: "2"}
    assert registry.rollback("m", ledger_root=ledger) == "1"
    assert ledger_moves(ledger)[-2:] == [(UNRECORDED, "champion 3 -> 2", "succeeded"), ("rollback", "champion 2 -> 1", "succeeded")]
    with pytest.raises(RegistryError, match="no earlier version"):
        registry.rollback("m")


def test_a_promote_killed_before_its_ledger_record_has_it_written_by_the_next_move(registry, tmp_path, monkeypatch):
    """Killed between its two writes (the alias's history entry, then the ledger record): the
    record was lost for good, though the history kept the move."""
    ledger = str(tmp_path / "runs")
    for i in (1, 2, 3):
        registry.register("m", weights_file(tmp_path, f"{i}.pt", bytes([i])), {})
    registry.promote("m", "1")
    registry.promote("m", "2", ledger_root=ledger)

    def killed(*args, **kwargs):
        raise SystemExit("killed")
    monkeypatch.setattr(registry_module, "record_runs", killed)
    with pytest.raises(SystemExit):
        registry.promote("m", "3", ledger_root=ledger)  # the alias moved and its history entry is written
    monkeypatch.undo()
    assert registry.aliases("m") == {CHAMPION: "3"} and registry.history("m")[-1]["action"] == "promote"
    assert registry.rollback("m", ledger_root=ledger) == "2"
    assert ledger_moves(ledger) == [("promote", "champion 1 -> 2", "succeeded"), ("promote", "champion 2 -> 3", "succeeded"),
                                    ("rollback", "champion 3 -> 2", "succeeded")]
    registry.promote("m", "3", ledger_root=ledger)
    assert len(ledger_moves(ledger)) == 4  # each record once


@pytest.mark.parametrize("killed_in, recorded_as", [
    ("alias moved", UNRECORDED),  # before its history entry
    ("history written", "promote"),  # before its ledger record
])
def test_a_promote_killed_after_its_alias_moved_is_recorded_by_its_retry(registry, tmp_path, monkeypatch, killed_in, recorded_as):
    """Found in review: the retry of a promote killed after its alias moved found the alias at its version and
    returned before anything was written, so the move stayed out of the history tag and the ledger until the
    alias's next move (which may come months later); the retry now writes what the killed promote owed."""
    ledger = str(tmp_path / "runs")
    for i in (1, 2):
        registry.register("m", weights_file(tmp_path, f"{i}.pt", bytes([i])), {})
    registry.promote("m", "1", ledger_root=ledger)

    def killed(*args, **kwargs):
        raise SystemExit("killed")
    if killed_in == "alias moved":
        moved_at = registry.client.set_registered_model_alias
        monkeypatch.setattr(registry.client, "set_registered_model_alias", lambda *a: (moved_at(*a), killed()))
    else:
        monkeypatch.setattr(registry_module, "record_runs", killed)
    with pytest.raises(SystemExit):
        registry.promote("m", "2", ledger_root=ledger, expected="1")
    monkeypatch.undo()
    assert registry.aliases("m") == {CHAMPION: "2"}
    assert registry.promote("m", "2", ledger_root=ledger, expected="2") == "2"  # the retry: the champion it reads is 2 now
    stored = json.loads(registry.client.get_registered_model("m").tags["alias_history.champion"])
    assert [(e["action"], e["from"], e["to"]) for e in stored] == [("promote", None, "1"), (recorded_as, "1", "2")]
    assert ledger_moves(ledger) == [("promote", "champion None -> 1", "succeeded"), (recorded_as, "champion 1 -> 2", "succeeded")]
    registry.promote("m", "2", ledger_root=ledger, expected="2")
    assert len(ledger_moves(ledger)) == 2 and len(registry.history("m")) == 2  # each once


def test_a_promote_checked_against_a_champion_that_moved_meanwhile_moves_nothing(registry, tmp_path):
    for i in (1, 2, 3):
        registry.register("m", weights_file(tmp_path, f"{i}.pt", bytes([i])), {})
    registry.promote("m", "1")
    checked = registry.aliases("m")[CHAMPION]  # the promote command judges version 3 against this champion...
    registry.promote("m", "2")  # ...while another promote lands
    with pytest.raises(AliasMoved, match="moved from version 1 to 2"):
        registry.promote("m", "3", expected=checked)
    assert registry.aliases("m") == {CHAMPION: "2"}
    assert [e["to"] for e in registry.history("m")] == ["1", "2"]
    assert registry.promote("m", "3", expected="2") == "2"


def test_a_rollback_of_a_champion_that_moved_meanwhile_moves_nothing(registry, tmp_path):
    for i in (1, 2, 3):
        registry.promote("m", registry.register("m", weights_file(tmp_path, f"{i}.pt", bytes([i])), {}).version)
    read = registry.aliases("m")[CHAMPION]  # the rollback command says it rolls back this champion...
    registry.rollback("m")  # ...while another rollback lands
    with pytest.raises(AliasMoved, match="moved from version 3 to 2 after this rollback read it"):
        registry.rollback("m", expected=read)  # would have undone the other's move, not the one it named
    assert registry.aliases("m") == {CHAMPION: "2"}
    assert registry.rollback("m", expected="2") == "1"


def test_two_first_uses_at_once_agree_on_one_champion(registry, tmp_path):
    sources = [weights_file(tmp_path, f"{i}.pt", bytes([i])) for i in (1, 2)]
    for source in sources:
        registry.register("m", source, {})
    original = registry.promote
    both_read = threading.Barrier(2)

    def promote_after_both_read(*args, **kwargs):  # each first use has seen no champion before either moves it
        both_read.wait(timeout=30)
        return original(*args, **kwargs)
    registry.promote = promote_after_both_read
    with ThreadPoolExecutor(2) as pool:
        champions = list(pool.map(lambda source: registry.register_first_use("m", source, {}).version, sources))
    assert champions[0] == champions[1] == registry.aliases("m")[CHAMPION]
    assert len(registry.history("m")) == 1  # the second first use moved nothing


def test_two_registrations_of_the_same_weights_at_once_make_one_version(registry, tmp_path):
    """Found in review: two `register`s (or `train`s, or first runs) of the same weights, each having
    searched the versions before either created one, made two versions of one model."""
    source = weights_file(tmp_path, "w.pt", b"weights")
    searched = registry._versions
    both_searched, waited = threading.Barrier(2), set()

    def search_then_wait_for_the_other(name):  # each registration's first search sees no version before either creates one
        found = searched(name)
        if threading.get_ident() not in waited:
            waited.add(threading.get_ident())
            both_searched.wait(timeout=30)
        return found
    registry._versions = search_then_wait_for_the_other
    with ThreadPoolExecutor(2) as pool:
        made = list(pool.map(lambda _: registry.register("m", source, {"size": 1}).version, range(2)))
    registry._versions = searched
    assert made == ["1", "1"]
    assert [(v.version, v.weights_sha256) for v in registry.versions("m")] == [("1", hashlib.sha256(b"weights").hexdigest())]


def test_two_first_runs_logged_at_once_share_one_experiment(registry, tmp_path, monkeypatch):
    """Found in review: two first `train`s (or `compare`s) at once each found no experiment and
    created it; the second's MLflow "already exists" was a traceback after its head was trained."""
    from mlflow import MlflowClient

    looked_up = MlflowClient.get_experiment_by_name
    both_looked, waited = threading.Barrier(2), set()

    def look_up_then_wait_for_the_other(client, name):  # each run finds no experiment before either creates it
        found = looked_up(client, name)
        if threading.get_ident() not in waited:
            waited.add(threading.get_ident())
            both_looked.wait(timeout=30)
        return found
    monkeypatch.setattr(MlflowClient, "get_experiment_by_name", look_up_then_wait_for_the_other)
    report = tmp_path / "latest.html"
    report.write_text("<html>a report</html>")
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda i: log_to_mlflow(registry.tracking_uri, report, {"loss": i}, f"train {i}", experiment="e"), range(2)))
    monkeypatch.setattr(MlflowClient, "get_experiment_by_name", looked_up)
    experiment = registry.client.get_experiment_by_name("e").experiment_id
    assert sorted(registry.client.get_run(r).data.metrics["loss"] for r in runs) == [0.0, 1.0]
    assert {registry.client.get_run(r).info.experiment_id for r in runs} == {experiment}


def test_two_registers_at_once_each_say_which_challenger_their_version_replaced(tmp_path, empty_registry_db, monkeypatch):
    """Found in review: `register` (and `train`) pointed the challenger outside the registry's lock and
    said "is now 'challenger'"; two at once left the last to move it, and the other's words were false,
    or (on the sqlite store, two moves at the same moment) one ended in a traceback of MLflow's UNIQUE constraint.
    Here both have made their versions before either moves the alias, and the first to report waits
    until the other has reported: each says which version its move replaced, read with the move."""
    import re

    from jobs import commands
    from jobs.cli import main

    (tmp_path / "_registry").mkdir()
    shutil.copy(empty_registry_db, tmp_path / "_registry" / "mlflow.db")
    registered, register = threading.Barrier(2), Registry.register
    monkeypatch.setattr(Registry, "register", lambda self, *a, **k: (register(self, *a, **k), registered.wait(timeout=30))[0])
    said, other_said = [], threading.Event()

    def report_after_the_other(message, *args, **kwargs):  # the first to report does so once the other command has moved and reported
        said.append(" ".join(str(message).split()))
        if len(said) == 1:
            other_said.wait(timeout=30)
        else:
            other_said.set()
    monkeypatch.setattr(commands.console, "print", report_after_the_other)

    def register_weights(name: str) -> int:
        weights = weights_file(tmp_path / "weights", name, name.encode())
        return main(["register", "image_embedding", "--source", weights, "--param", f"weights_path={weights}", "--set", f"lakehouse={tmp_path}"])
    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(register_weights, ["a.pth", "b.pth"])) == [0, 0], said

    final = Registry(f"sqlite:///{tmp_path}/_registry/mlflow.db").aliases("image_embedding")["challenger"]
    assert [m for m in said if "is now 'challenger'" in m and f"version {final} " not in m] == []  # before: one said so of a version replaced
    moves = {}
    for message in said:
        made = re.search(r"version (\d+) \(.*\) became 'challenger' (?:in place of version (\d+)|\(it named no version before\))", message)
        assert made, message
        moves[made[1]] = made[2]
    first = next(v for v in moves if v != final)
    assert moves == {first: None, final: first}


def _ticket(registry: Registry, holder: dict) -> None:
    """A lock ticket as a mover that was killed holding it leaves it."""
    with alias_lock(registry.client):
        pass  # makes the lock's registered model
    registry.client.create_model_version(LOCK_MODEL, "content-signals:/alias-lock", tags={HOLDER_TAG: json.dumps(holder)}, await_creation_for=0)


def test_the_alias_lock_skips_a_killed_movers_ticket(registry, caplog):
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    _ticket(registry, {**this_process(), "pid": int(ended.stdout)})  # on this machine, no longer running: skipped at once
    started = time.monotonic()
    with alias_lock(registry.client, stale_after_s=60, wait_at_most_s=30):
        assert time.monotonic() - started < 30
    _ticket(registry, {"host": "elsewhere", "machine": "another-boot:1", "pid": os.getpid()})  # not known to be gone: waited for
    with pytest.raises(AliasConflict, match="elsewhere"):
        with alias_lock(registry.client, stale_after_s=60, wait_at_most_s=0.5):
            pass
    registry.client.create_model_version(LOCK_MODEL, "content-signals:/alias-lock", tags={HOLDER_TAG: "set by hand"}, await_creation_for=0)
    started = time.monotonic()
    with alias_lock(registry.client, stale_after_s=1.5, wait_at_most_s=30):  # each until seen holding it for stale_after_s
        assert 3 <= time.monotonic() - started < 30
    assert "waiting for the registry's alias lock" in caplog.text  # said once it had waited a while
    assert registry.client.search_model_versions(f"name = '{LOCK_MODEL}'") == []  # every ticket dropped


_PROMOTER = """
import json, pathlib, sys, time
from lake.registry import Registry
uri, go, me, rounds, ledger = sys.argv[1], pathlib.Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
registry = Registry(uri)
pathlib.Path(f"{go}.{me}").touch()  # ready: MLflow imported
while not go.exists():
    time.sleep(0.01)
moves = []
for i in range(rounds):
    version = str(1 + (me + i) % 3)
    before = registry.promote("m", version, ledger_root=ledger)
    if before != version:
        moves.append([before, version])
print(json.dumps(moves))
"""


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory, empty_registry_db) -> Iterator[str]:
    """A real MLflow tracking server on loopback, as a cluster profile's `registry.tracking_uri`."""
    folder = tmp_path_factory.mktemp("tracking-server")
    shutil.copy(empty_registry_db, folder / "mlflow.db")  # its migrations already run
    url = f"http://127.0.0.1:{free_port()}"
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
         "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", url.rsplit(":", 1)[1], "--workers", "1"],
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until_up(f"{url}/health", server)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and its uvicorn worker
        server.wait(timeout=60)


@pytest.mark.subprocess
def test_a_job_registers_and_moves_its_models_on_a_tracking_server(tracking_server, tmp_path):
    settings = load_settings("local", [f"lakehouse={tmp_path / 'lakehouse'}", f"registry.tracking_uri={tracking_server}"])
    signals = build_signals(settings)  # what every job does first: each signal's weights (a path), or its code, on first use
    registry = Registry(tracking_server)
    for name, built in signals.items():
        (version,) = registry.versions(name)
        assert built.config.model.version == version.version == "1"
        assert version.source == (built.weights_source() or f"code:{type(built).__module__}.{type(built).__qualname__}")
    assert registry.register("image_embedding", "laion2b_s34b_b79k", {}).version == "2"  # a hub tag
    assert registry.register("image_embedding", "laion2b_s34b_b79k", {}).version == "2"  # reused
    with pytest.raises(AliasMoved):
        registry.promote("image_embedding", "2", expected="2")
    assert registry.promote("image_embedding", "2", expected="1") == "1"
    assert registry.rollback("image_embedding") == "1"
    assert [(e["action"], e["from"], e["to"]) for e in registry.history("image_embedding")] == [
        ("promote", None, "1"), ("promote", "1", "2"), ("rollback", "2", "1")]
    assert registry.client.search_model_versions(f"name = '{LOCK_MODEL}'") == []
    report = tmp_path / "latest.html"
    report.write_text("<html>a comparison</html>")
    run_id = log_to_mlflow(tracking_server, report, {"image_embedding": {"psi": 0.01}}, "compare")  # compare's and train's run
    assert [a.path for a in registry.client.list_artifacts(run_id)] == ["latest.html"]
    assert registry.client.get_run(run_id).data.metrics == {"image_embedding.psi": 0.01}


@pytest.mark.subprocess
@pytest.mark.parametrize("store", ["sqlite", "tracking server"])
def test_promotes_at_once_lose_no_rollback_or_history_entry(store, request, tmp_path):
    registry = request.getfixturevalue("registry") if store == "sqlite" else Registry(request.getfixturevalue("tracking_server"))
    for i in (1, 2, 3):
        registry.register("m", weights_file(tmp_path, f"{i}.pt", bytes([i])), {})
    registry.promote("m", "1")
    go, movers, rounds = tmp_path / "go", 4, 8
    ledger = str(tmp_path / "runs")
    children = [subprocess.Popen([sys.executable, "-c", _PROMOTER, registry.tracking_uri, str(go), str(me), str(rounds), ledger],
                                 env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for me in range(movers)]
    while not all(Path(f"{go}.{me}").exists() or child.poll() is not None for me, child in enumerate(children)):
        time.sleep(0.05)
    go.touch()
    outputs = [child.communicate(timeout=300) for child in children]
    assert [child.returncode for child in children] == [0] * movers, [err for _, err in outputs]
    moves = sorted(tuple(move) for out, _ in outputs for move in json.loads(out.strip().splitlines()[-1]))
    history = [(e["from"], e["to"]) for e in registry.history("m")]
    assert history[0] == (None, "1") and sorted(history[1:]) == moves  # every move is in the history, once
    assert all(a[1] == b[0] for a, b in zip(history, history[1:]))  # each from where the one before left it
    assert registry._tag_list("m", registry_module.STACK_TAG, CHAMPION) == [before for before, _ in history[1:]]
    assert registry.aliases("m")[CHAMPION] == history[-1][1]
    assert sorted(tuple(message.split()[1::2]) for _, message, _ in ledger_moves(ledger)) == moves  # each in the ledger, once


def test_rollback_without_history_raises(registry, tmp_path):
    registry.register("m", weights_file(tmp_path, "1.pt", b"1"), {})
    with pytest.raises(RegistryError, match="no earlier version"):
        registry.rollback("m")  # no alias at all
    registry.promote("m", "1")
    with pytest.raises(RegistryError, match="no earlier version"):
        registry.rollback("m")  # champion was never anything else
    with pytest.raises(RegistryError):
        registry.promote("m", "9")  # no such version
    assert registry.aliases("m") == {CHAMPION: "1"}


_NETWORK_PROBE = """
import json, socket, sys, time
attempts = []
real_connect = socket.socket.connect
def connect(sock, address):
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        attempts.append(str(address))
        raise OSError("network disabled in this test")
    return real_connect(sock, address)
socket.socket.connect = connect
real_getaddrinfo = socket.getaddrinfo
def getaddrinfo(host, *args, **kwargs):
    attempts.append(f"dns {host}")
    raise OSError("network disabled in this test")
socket.getaddrinfo = getaddrinfo

import mlflow  # imported before lake.registry, as another module might: telemetry still on here
import mlflow.telemetry
before = mlflow.telemetry.get_telemetry_client() is not None
from lake.registry import Registry
after = mlflow.telemetry.get_telemetry_client() is not None
registry = Registry(sys.argv[1])
registry.register("clip", "laion2b_s34b_b79k", {})
registry.promote("clip", "1")
registry.resolve("clip", "champion")
time.sleep(1)
print(json.dumps({"before": before, "after": after, "attempts": attempts}))
"""


@pytest.mark.subprocess
def test_mlflow_never_tries_the_network(tmp_path, empty_registry_db):
    shutil.copy(empty_registry_db, tmp_path / "mlflow.db")
    quiet = {"PYTEST_CURRENT_TEST", "CI", "GITHUB_ACTIONS", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK"}
    env = {k: v for k, v in child_env().items() if k not in quiet}
    done = subprocess.run([sys.executable, "-c", _NETWORK_PROBE, local_store_uri(tmp_path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"before": True, "after": False, "attempts": []}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]  # no ./mlruns or artifacts beside it


_KILLED_MID_MIGRATION = """
import pathlib, sys, time
from alembic.runtime import migration
def update_to_step(self, step):  # the first migration ran, its revision is not stamped yet: the process dies here
    pathlib.Path(sys.argv[2]).touch()
    time.sleep(600)
migration.HeadMaintainer.update_to_step = update_to_step
from lake.registry import Registry
Registry(sys.argv[1])
"""


@pytest.mark.subprocess
def test_a_set_up_killed_mid_migration_leaves_a_registry_that_works(tmp_path):
    uri, dying = local_store_uri(tmp_path / "_registry"), tmp_path / "dying"
    child = subprocess.Popen([sys.executable, "-c", _KILLED_MID_MIGRATION, uri, str(dying)], env=child_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while not dying.exists():
            assert child.poll() is None, child.stdout.read()
            assert time.monotonic() < deadline, "the set-up never ran its first migration"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    registry = Registry(uri)  # the next command
    registry.register_first_use("clip", "laion2b_s34b_b79k", {})
    assert registry.resolve("clip", CHAMPION).version == "1"


_FIRST_RUN = """
import pathlib, sys, time
from lake.registry import Registry
go = pathlib.Path(sys.argv[2])
pathlib.Path(f"{go}.{sys.argv[3]}").touch()  # ready: MLflow imported
while not go.exists():
    time.sleep(0.01)
Registry(sys.argv[1]).register(sys.argv[3], "laion2b_s34b_b79k", {})
"""


@pytest.mark.subprocess
def test_two_first_runs_at_once_both_set_up_the_registry(tmp_path):
    uri, go = local_store_uri(tmp_path / "_registry"), tmp_path / "go"
    children = [subprocess.Popen([sys.executable, "-c", _FIRST_RUN, uri, str(go), name], env=child_env(),
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for name in ("a", "b")]
    while not all(Path(f"{go}.{name}").exists() or child.poll() is not None for name, child in zip("ab", children)):
        time.sleep(0.05)  # both import MLflow (seconds), then start the set-up within milliseconds of each other
    go.touch()
    outputs = [child.communicate(timeout=300)[0] for child in children]
    assert [child.returncode for child in children] == [0, 0], outputs
    registry = Registry(uri)
    assert [registry.resolve(name, "latest").version for name in ("a", "b")] == ["1", "1"]


def test_a_lakehouse_sharing_the_registry_writes_no_record_of_another_lakehouses_moves(registry, tmp_path):
    """Records owed by the history go to the ledger of the move that made them, not to whichever
    lakehouse (with one tracking server for several) moves the alias next."""
    ours, theirs = str(tmp_path / "ours" / "runs"), str(tmp_path / "theirs" / "runs")
    for i in (1, 2):
        registry.register("m", weights_file(tmp_path, f"{i}.pt", bytes([i])), {})
    registry.promote("m", "1")
    registry.promote("m", "2", ledger_root=theirs)
    registry.rollback("m", ledger_root=ours)
    assert ledger_moves(theirs) == [("promote", "champion 1 -> 2", "succeeded")]
    assert ledger_moves(ours) == [("rollback", "champion 2 -> 1", "succeeded")]
