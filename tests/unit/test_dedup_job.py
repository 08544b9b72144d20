"""The dedup job's driver side without Spark: what a retried run does before anything is computed."""
from __future__ import annotations

from pathlib import Path

from conftest import settings_for

import jobs.dedup
from jobs.dedup import run_dedup
from lake import delta_io
from signals.contracts import DUPLICATES


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
