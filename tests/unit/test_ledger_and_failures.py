"""The run ledger tells the truth after partial commits, and the failures an operator can act
on are explained (lake.ledger, jobs.failures, jobs.corpus.Window), on real delta-rs tables."""
from __future__ import annotations

import datetime as dt
import os
import re
import threading
from collections import Counter
from pathlib import Path

import pytest
from conftest import clean_up_log
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError, DeltaError
from test_delta_io import make_rows, write

from conf.settings import UsageError
from jobs.corpus import Window
from jobs.failures import BAD_INPUT, CONFLICT, DAMAGED, explain
from lake import delta_io, ledger
from lake.delta_io import CommitConflict
from lake.registry import AliasMoved
from lake.upkeep import COMPACTION, LOG_RETENTION, UPKEEP, UPKEEP_JOB
from signals.base import ModelRef
from signals.contracts import EMBEDDINGS

NOW = dt.datetime(2026, 11, 20, 6, tzinfo=dt.UTC)


def _started(run_id: str, signal: str, job: str = "backfill") -> ledger.RunRecord:
    """A `started` row of a run whose driver (a pid that is not alive here) died."""
    dead = max(os.getpid() + 1_000_000, 4_000_000)
    return ledger.RunRecord(run_id, job, signal, "m", "1", None, None, None, None, None, ledger.STARTED,
                            f"driver {os.uname().nodename}:{dead}", None, NOW, NOW)


def test_a_run_killed_after_its_embeddings_commit_is_succeeded_for_those_and_abandoned_for_its_labels(tmp_path: Path) -> None:
    embeddings, labels, runs = (str(tmp_path / name) for name in ("embeddings", "labels", "runs"))
    run_id = "backfill-killed"
    rows = make_rows(run_id=run_id, per_slice=3)
    version = delta_io.commit_files(embeddings, EMBEDDINGS, write(embeddings, rows), f"content-signals/{run_id}", {"run_id": run_id})
    ledger.record_runs(runs, [_started(run_id, "image_embedding"), _started(run_id, "image_safety")])
    closed = {r.signal: r for r in ledger.reconcile(runs, lambda _: [embeddings, labels])}
    assert closed["image_embedding"].status == ledger.SUCCEEDED
    assert closed["image_embedding"].rows_in == len({r["content_id"] for r in rows if r["signal"] == "image_embedding"})
    assert closed["image_embedding"].table_version == version
    assert closed["image_safety"].status == ledger.ABANDONED and closed["image_safety"].rows_in is None


def test_committed_outcome_counts_only_the_signals_own_rows(tmp_path: Path) -> None:
    root = str(tmp_path / "embeddings")
    rows = make_rows(run_id="r1", per_slice=4)
    committed = delta_io.commit_files(root, EMBEDDINGS, write(root, rows), "content-signals/r1", {})
    outcome, version = ledger.committed_outcome("r1", "text_embedding", ModelRef("m", "1"), [root])
    mine = [r for r in rows if r["signal"] == "text_embedding"]
    assert (outcome.rows_in, outcome.rows_ok, outcome.rows_error, version) == (
        len(mine), sum(r["status"] == "ok" for r in mine), sum(r["status"] == "error" for r in mine), committed)
    assert ledger.committed_outcome("r1", "image_safety", ModelRef("m", "1"), [root]) is None
    assert ledger.committed_outcome("r2", "text_embedding", ModelRef("m", "1"), [root]) is None


def test_a_refresh_that_only_dropped_takedowns_and_died_after_its_commit_succeeded(tmp_path: Path) -> None:
    embeddings, labels, runs = (str(tmp_path / name) for name in ("embeddings", "labels", "runs"))
    delta_io.commit_files(embeddings, EMBEDDINGS, write(embeddings, make_rows(run_id="backfill", per_slice=3)), "content-signals/backfill", {})
    taken_down = delta_io.live_files(embeddings)[0]
    version = delta_io.commit_files(embeddings, EMBEDDINGS, [], "content-signals/refresh-killed", {"run_id": "refresh-killed"},
                                    remove=lambda live: live.path == taken_down.path)
    ledger.record_runs(runs, [_started("refresh-killed", "text_embedding"), _started("refresh-killed", "image_safety")])
    closed = {r.signal: r for r in ledger.reconcile(runs, lambda _: [embeddings, labels])}
    assert (closed["text_embedding"].status, closed["text_embedding"].rows_in, closed["text_embedding"].table_version) == (ledger.SUCCEEDED, 0, version)
    assert closed["image_safety"].status == ledger.ABANDONED  # the embeddings table does not hold it


@pytest.mark.parametrize("start, end, reason", [
    ("2026/11/19", None, "not a day"), ("2026-11-31", None, "not a day"), (None, "yesterday", "not a day"),
    ("2026-11-20", "2026-11-19", "ends (2026-11-19) before it starts"),
])
def test_bad_windows_are_refused_before_any_work(start: str | None, end: str | None, reason: str) -> None:
    with pytest.raises(UsageError, match=re.escape(reason)):
        Window(start, end)
    assert explain(UsageError(reason)).status == BAD_INPUT


@pytest.mark.parametrize("conflict", [CommitConflict("embeddings changed in 1 of this run's partitions"),
                                      AliasMoved("m champion moved from version 1 to 2")])
def test_a_conflict_says_it_is_safe_to_retry(conflict: Exception) -> None:
    failure = explain(conflict)
    assert failure.status == CONFLICT and "safe to retry" in failure.message


def test_a_truncated_log_entry_is_a_damaged_lakehouse_with_what_to_do(tmp_path: Path) -> None:
    root = str(tmp_path / "embeddings")
    for n in (1, 2):
        delta_io.commit_files(root, EMBEDDINGS, write(root, make_rows(run_id=f"r{n}", per_slice=1)), f"app/{n}", {})
    entry = Path(root) / "_delta_log" / f"{2:020d}.json"
    entry.write_bytes(entry.read_bytes()[: len(entry.read_bytes()) // 2])
    with pytest.raises(DeltaError) as caught:
        DeltaTable(root).to_pyarrow_table()
    failure = explain(caught.value, str(tmp_path))
    assert failure is not None and failure.status == DAMAGED, caught.value
    assert str(entry) in failure.message and "restore" in failure.message


def test_a_deleted_data_file_is_healed_by_a_backfill_of_its_day(tmp_path: Path) -> None:
    root = str(tmp_path / "embeddings")
    delta_io.commit_files(root, EMBEDDINGS, write(root, [r for r in make_rows(per_slice=2) if r["ds"] == "2026-11-19"]), "app/0", {})
    files = write(root, [r for r in make_rows(per_slice=2) if r["ds"] == "2026-11-20"])
    delta_io.commit_files(root, EMBEDDINGS, files, "app/1", {})
    (Path(root) / files[0].path).unlink()  # a file of the day's rows: its statistics say which day
    with pytest.raises(Exception) as caught:  # noqa: PT011 - whichever reader error the store gives
        delta_io.read_arrow(root)
    failure = explain(caught.value)
    assert failure is not None and failure.status == DAMAGED, caught.value
    assert "backfill --start 2026-11-20 --end 2026-11-20" in failure.message


def test_a_data_file_an_executor_misses_but_the_driver_has_is_a_lakehouse_not_shared(tmp_path: Path) -> None:
    """Found in review: executors on other machines, reading a lakehouse folder on the driver's
    disk, were said to have found a damaged table (exit 4, "a backfill of that day writes it
    again"), though every file is there (tests/cluster/test_standalone.py reproduces it)."""
    root = str(tmp_path / "embeddings")
    files = write(root, [r for r in make_rows(per_slice=2) if r["ds"] == "2026-11-20"])
    delta_io.commit_files(root, EMBEDDINGS, files, "app/1", {})
    path = Path(root) / files[0].path
    # Spark's words for an executor's failed read (from the reproduction)
    error = RuntimeError(f"Task 0 in stage 0.0 failed 4 times\nCaused by: java.io.FileNotFoundException: File file:{path} does not exist")
    failure = explain(error)
    assert failure is not None and failure.status == BAD_INPUT, failure
    assert str(path) in failure.message and "storage the driver and every executor share" in failure.message
    path.unlink()  # gone for the driver too: damage, healed by a backfill of the day
    failure = explain(error)
    assert failure is not None and failure.status == DAMAGED and "backfill --start 2026-11-20 --end 2026-11-20" in failure.message


def test_weights_a_worker_misses_but_the_driver_has_are_a_setting_not_a_bug(tmp_path: Path) -> None:
    """Found in review: a checkpoint on the driver's disk, registered there, failed every task on
    executors of other machines and the run ended in a traceback, exit 1 (reproduced in
    tests/cluster/test_standalone.py)."""
    weights = tmp_path / "v2.pth"
    weights.write_bytes(b"weights")

    def worker_failed(path: Path) -> Exception:  # PySpark's words (from the reproduction)
        return RuntimeError("An exception was thrown from the Python worker: Traceback (most recent call last):\n"
                            f'  File "./content_signals-0.1.0.zip/signals/weights.py", line 34\nFileNotFoundError: no weights at {path}')

    failure = explain(worker_failed(weights))
    assert failure is not None and failure.status == BAD_INPUT, failure
    assert f"found no weights at {weights}, which the driver reads" in failure.message
    assert explain(worker_failed(tmp_path / "nowhere.pth")) is None  # missing for the driver too: not this case


@pytest.mark.parametrize("tag, why", [("laion2b_s34b_b79k", "cannot find the requested files in the local cache"),
                                      ("no_such_tag", "open_clip knows no such tag for ViT-B-32")])
def test_a_hub_tag_neither_reachable_nor_cached_is_one_line_naming_it_exit_2(tmp_path: Path, monkeypatch, tag: str, why: str) -> None:
    """Found in review: an open_clip `pretrained` hub tag offline and not in the hub cache (or one open_clip
    does not know) was open_clip's traceback, exit 1, on the driver (serve) as in a Spark worker."""
    import huggingface_hub.constants
    import torch

    from signals.embedders.openclip import load_open_clip
    from signals.weights import HubWeightsUnavailable

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))  # nothing cached; conftest: HF_HUB_OFFLINE
    with pytest.raises(HubWeightsUnavailable) as caught:
        load_open_clip("ViT-B-32", tag, None, torch.device("cpu"))
    in_a_worker = RuntimeError("An exception was thrown from the Python worker: Traceback (most recent call last):\n"
                               f'  File "/x/signals/embedders/openclip.py", line 60\nsignals.weights.HubWeightsUnavailable: {caught.value}\n')
    for failed in (caught.value, in_a_worker):
        failure = explain(failed)
        assert failure is not None and failure.status == BAD_INPUT, failed
        assert f"hub tag {tag!r}" in failure.message and why in failure.message and "\n" not in failure.message
        assert "checkpoint path on storage every worker reads" in failure.message


def test_a_minilm_hub_id_neither_reachable_nor_cached_is_one_line_naming_it_exit_2(tmp_path: Path, monkeypatch) -> None:
    """Found in review: a MiniLM `model_dir` given as a hub id, offline and not in the hub cache, was
    transformers' traceback (OSError, exit 1), where an open_clip tag is one line."""
    import huggingface_hub.constants
    import torch

    from signals.base import ModelRef, SignalConfig
    from signals.embedders.minilm import MiniLMTextEmbedder
    from signals.weights import HubWeightsUnavailable

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))  # nothing cached; conftest: HF_HUB_OFFLINE
    hub_id = "sentence-transformers/all-MiniLM-L6-v2"
    embedder = MiniLMTextEmbedder(SignalConfig("text_embedding", ModelRef("minilm", "1"), params={"model_dir": hub_id}))
    with pytest.raises(HubWeightsUnavailable) as caught:
        embedder.load_resources(torch.device("cpu"))
    failure = explain(caught.value)
    assert failure is not None and failure.status == BAD_INPUT
    assert f"hub tag {hub_id!r}" in failure.message and "\n" not in failure.message


def test_an_unexpected_error_is_left_to_its_traceback() -> None:
    assert explain(KeyError("signal")) is None
    assert explain(ValueError("bug")) is None


def test_a_missing_data_file_of_a_table_no_backfill_writes_is_not_healed_by_one() -> None:
    """Found in review: a pinned corpus version whose files were vacuumed was told to run a backfill
    of the day, which reads the corpus and writes nothing of it."""
    def missing(path: str) -> Exception:
        return FileNotFoundError(f"Object at location /data/{path} not found: No such file or directory")

    corpus = explain(missing("pins/ds=2026-11-20/part-0.parquet"))
    assert corpus is not None and corpus.status == DAMAGED and "backfill" not in corpus.message and "corpus.version" in corpus.message
    duplicates = explain(missing("lakehouse/duplicates/ds=2026-11-20/part-1.parquet"))
    assert duplicates is not None and "content-signals dedup" in duplicates.message
    labels = explain(missing("lakehouse/labels/signal=x/model_version=1/ds=2026-11-20/part-2.parquet"))
    assert labels is not None and "backfill --start 2026-11-20 --end 2026-11-20" in labels.message


def test_a_deleted_data_file_of_a_table_without_days_is_damage_with_how_to_heal(tmp_path: Path) -> None:
    """The runs ledger (and the tables by task) have no `ds` folder: a missing data file of one was bad input (exit 2)."""
    import pyarrow as pa
    from deltalake import write_deltalake

    root = tmp_path / "runs"
    for n in (1, 2):
        write_deltalake(str(root), pa.table({"run_id": [f"r{n}"]}), mode="append")
    sorted(root.glob("*.parquet"))[0].unlink()
    with pytest.raises(Exception) as caught:  # noqa: PT011 - whichever reader error the store gives
        delta_io.read_arrow(str(root))
    failure = explain(caught.value, str(tmp_path))
    assert failure is not None and failure.status == DAMAGED, caught.value
    assert f"a data file of the Delta table {root} is missing" in failure.message
    advice = re.search(r"python -c \"(.+?)\"", failure.message)[1]
    exec(advice)  # what the message says heals the table: its other rows read again
    assert delta_io.read_arrow(str(root))["run_id"].to_pylist() in (["r1"], ["r2"])


def test_two_runs_reconciling_a_dead_run_at_once_close_it_once(tmp_path: Path, monkeypatch) -> None:
    """Found in review: two jobs starting at once after a run died both read its entry open, and
    both appended its closing rows. Here the other job's reconciliation lands between this one's
    read of the ledger and its append."""
    embeddings, runs = str(tmp_path / "embeddings"), str(tmp_path / "runs")
    version = delta_io.commit_files(embeddings, EMBEDDINGS, write(embeddings, make_rows(run_id="killed", per_slice=2)),
                                    "content-signals/killed", {"run_id": "killed"})
    ledger.record_runs(runs, [_started("killed", "image_embedding"), _started("killed", "image_safety")])
    real, other = ledger.committed_outcome, {}

    def other_job_reconciles_first(*args, **kwargs):
        if "closed" not in other:
            other["closed"] = []  # the other job's own reads are not raced
            other["closed"] = ledger.reconcile(runs, lambda _: [embeddings])
        return real(*args, **kwargs)

    monkeypatch.setattr(ledger, "committed_outcome", other_job_reconciles_first)
    mine = ledger.reconcile(runs, lambda _: [embeddings])
    closing = sorted((r["signal"], r["status"], r["table_version"]) for r in delta_io.read_arrow(runs).to_pylist() if r["status"] != ledger.STARTED)
    assert closing == [("image_embedding", ledger.SUCCEEDED, version), ("image_safety", ledger.ABANDONED, None)]
    assert len(other["closed"]) == 2 and mine == []  # the other job closed them; this one, reading again, found nothing open


PROPERTY_COMMITS = 5  # maintain's log-retention commits made back to back: fewer than a commit's attempts (commit_files' max_attempts)


@pytest.mark.parametrize("writer", ["ledger", "job"])
def test_appends_racing_maintains_property_commits_all_land_once(tmp_path: Path, writer: str) -> None:
    """Found in review: an append to the ledger (`record_runs`) racing maintain's property commit on
    it (then a longer log retention, now `lake.upkeep.set_upkeep_properties`) failed with delta-rs's "Metadata changed since last commit". Here a
    thread makes that commit in a loop while this one appends; the jobs' commits to a signal table
    (`commit_files`) are raced the same way. Every append lands, once."""
    root = str(tmp_path / writer)
    rows_per_append = 1 if writer == "ledger" else len(make_rows(per_slice=1))

    def append(n: int) -> None:
        if writer == "ledger":
            ledger.record_runs(root, [_started(f"r{n}", "image_embedding")])
        else:
            delta_io.commit_files(root, EMBEDDINGS, write(root, make_rows(run_id=f"r{n}", per_slice=1), prefix=f"part-{n}"),
                                  f"content-signals/r{n}", {})

    def property_commits() -> None:
        for days in range(31, 31 + PROPERTY_COMMITS):
            try:
                DeltaTable(root).alter.set_table_properties({LOG_RETENTION: f"interval {days} days"})
            except CommitFailedError:
                pass  # an append won: maintain leaves it to the next run

    append(0)
    maintain, appended = threading.Thread(target=property_commits), 1
    maintain.start()
    try:
        while maintain.is_alive() or appended < 4:
            append(appended)
            appended += 1
    finally:
        maintain.join()
    assert Counter(delta_io.read_arrow(root, columns=["run_id"])["run_id"].to_pylist()) == {f"r{n}": rows_per_append for n in range(appended)}
    assert DeltaTable(root).metadata().configuration.get(LOG_RETENTION)  # the property commits landed too


@pytest.mark.parametrize("job", ["backfill", UPKEEP_JOB])
def test_a_dead_run_whose_commits_log_entry_was_cleaned_up_is_closed_succeeded(tmp_path: Path, job: str) -> None:
    """Found in review: reconciling a dead run's entry after its commit's log entry was cleaned up
    (log retention, behind a checkpoint) raised LookupError from `commit_of`, at the start of every
    job. The checkpoint still holds the run's app id: it committed, at a version no longer known
    (a backfill's counts are read from its rows; a maintain's commit is its compaction)."""
    embeddings, runs = str(tmp_path / "embeddings"), str(tmp_path / "runs")
    signal = "image_embedding" if job == "backfill" else EMBEDDINGS.name
    delta_io.commit_files(embeddings, EMBEDDINGS, write(embeddings, make_rows(run_id="before", per_slice=2), prefix="part-before"),
                          "content-signals/before", {})
    rows = make_rows(run_id="killed", per_slice=2)
    delta_io.commit_files(embeddings, EMBEDDINGS, write(embeddings, rows, prefix="part-killed"), "content-signals/killed",
                          {"run_id": "killed", **({UPKEEP: COMPACTION} if job == UPKEEP_JOB else {})})
    ledger.record_runs(runs, [_started("killed", signal, job)])
    clean_up_log(embeddings)
    assert delta_io.committed(embeddings, "content-signals/killed") and len(DeltaTable(embeddings).history()) == 1  # only the checkpointed version
    closed = ledger.reconcile(runs, lambda _: [embeddings])
    assert [(r.signal, r.status, r.table_version) for r in closed] == [(signal, ledger.SUCCEEDED, None)]
    if job == "backfill":
        assert closed[0].rows_in == len({r["content_id"] for r in rows if r["signal"] == signal})
