"""The dedup job's driver side without Spark: what a retried run does before anything is computed."""
from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pyarrow as pa
from conftest import clean_up_log, settings_for
from deltalake import DeltaTable

import jobs.dedup
from jobs.dedup import run_dedup
from lake import delta_io, ledger
from signals.contracts import DUPLICATES, RUNS


def test_a_retried_dedup_whose_commit_landed_computes_nothing(tmp_path: Path, monkeypatch) -> None:
    """A scheduler's retry (`--run-id`) of a dedup whose commit landed does nothing, as a
    backfill's or a refresh's does; before, it fingerprinted the whole corpus again, wrote a
    table's worth of files and only then found its commit in the log."""
    settings = settings_for(tmp_path / "lakehouse")
    root = settings.table_root(DUPLICATES.name)
    delta_io.ensure_table(root, DUPLICATES)
    version = delta_io.commit_files(root, DUPLICATES, [], "content-signals/dedup-retried", {"job": "dedup", "run_id": "dedup-retried"})

    def read_corpus(settings):
        raise AssertionError("the retry read the corpus")

    monkeypatch.setattr(jobs.dedup.CorpusSource, "of", read_corpus)
    result = run_dedup(None, settings, "dedup-retried")  # type: ignore[arg-type]  # no Spark session: nothing may be computed

    assert (result.status, result.table_versions) == ("skipped", {DUPLICATES.name: version})


def test_a_retry_whose_commit_landed_closes_the_killed_attempts_ledger_entry(tmp_path: Path) -> None:
    """Found in review: the retry of a run killed after its commit said "skipped" (exit 0) and left the killed
    attempt's entry `started` (the run shown as running) until another job's run reconciled the ledger."""
    settings = settings_for(tmp_path / "lakehouse")
    root, runs = settings.table_root(DUPLICATES.name), settings.table_root(RUNS.name)
    delta_io.ensure_table(root, DUPLICATES)
    at = dt.datetime(2026, 11, 20, 6, tzinfo=dt.UTC)
    row = pa.Table.from_pylist([{"content_id": "pin-1", "group_id": "pin-1", "group_size": 1, "is_canonical": True, "status": "ok",
                                 "run_id": "dedup-killed", "computed_at": at, "ds": "2026-11-20"}], schema=DUPLICATES.schema)
    version = delta_io.commit_files(root, DUPLICATES, delta_io.write_driver_rows(root, DUPLICATES, row, "part-dedup-killed"),
                                    "content-signals/dedup-killed", {"job": "dedup", "run_id": "dedup-killed"})
    dead = max(os.getpid() + 1_000_000, 4_000_000)  # the driver of the killed attempt: a pid not alive here
    ledger.record_runs(runs, [ledger.RunRecord("dedup-killed", jobs.dedup.JOB, jobs.dedup.JOB, "image_embedding", "1", None, None, None, None,
                                               None, ledger.STARTED, f"driver {os.uname().nodename}:{dead}", None, at, at)])
    assert run_dedup(None, settings, "dedup-killed").status == "skipped"  # type: ignore[arg-type]
    entries = [(r["status"], r["table_version"]) for r in delta_io.read_arrow(runs).to_pylist() if r["run_id"] == "dedup-killed"]
    assert sorted(entries) == [(ledger.STARTED, None), (ledger.SUCCEEDED, version)]



def test_a_retry_long_after_the_commit_skips_and_says_the_version_is_unknown(tmp_path: Path) -> None:
    """Found in review: a scheduler's retry of a run id after its commit's log entry was cleaned up
    behind a checkpoint (more than the log's retention later) raised LookupError from `version_of_commit`:
    the checkpoint keeps the run's app id, not its commit's record. The retry commits nothing, is
    "skipped", and says the version is no longer known."""
    settings = settings_for(tmp_path / "lakehouse")
    root = settings.table_root(DUPLICATES.name)
    delta_io.ensure_table(root, DUPLICATES)
    delta_io.commit_files(root, DUPLICATES, [], "content-signals/dedup-old", {"job": "dedup", "run_id": "dedup-old"})
    clean_up_log(root)
    before = DeltaTable(root).version()
    assert delta_io.committed(root, "content-signals/dedup-old") and len(DeltaTable(root).history()) == 1

    result = run_dedup(None, settings, "dedup-old")  # type: ignore[arg-type]  # no Spark session: nothing may be computed

    assert (result.status, result.table_versions) == ("skipped", {DUPLICATES.name: None})
    assert result.message and "no longer known" in result.message
    assert DeltaTable(root).version() == before
