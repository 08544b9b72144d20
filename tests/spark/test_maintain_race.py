"""Maintain beside a refresh: a compaction that lands between a refresh's read and its commit,
in partitions the refresh writes, makes the refresh stop with a CommitConflict (exit 3, nothing
committed), and its re-run ends where a lakehouse never maintained ends."""
from __future__ import annotations

import pytest
from conftest import CHEAP_SIGNALS, lakehouse_with_corpus
from deltalake import DeltaTable
from test_refresh import _assert_same_rows

from jobs.failures import CONFLICT, explain
from jobs.maintain import run_maintain
from jobs.refresh import run_refresh
from lake import delta_io, spark_io

pytestmark = pytest.mark.spark

TEXT_ONLY = (*CHEAP_SIGNALS, "signals.image_embedding.enabled=false", "signals.image_quality.enabled=false")


def _retitle(settings, nth: int) -> None:
    """Edit the titles of a few items of the corpus's first day, in place (as a daily pipeline does)."""
    root = settings.table_root("corpus")
    corpus = DeltaTable(root).to_pyarrow_table(columns=["content_id", "ds"]).sort_by("content_id").to_pylist()
    first_day = min(r["ds"] for r in corpus)
    ids = [r["content_id"] for r in corpus if r["ds"] == first_day][nth * 2 : nth * 2 + 2]
    DeltaTable(root).update(updates={"title": f"'edited {nth}'"}, predicate=" OR ".join(f"content_id = '{i}'" for i in ids))


def test_a_refresh_racing_a_compaction_conflicts_cleanly_and_its_rerun_is_exact(spark, fresh_lakehouse, corpus_lakehouse, tmp_path, monkeypatch):
    settings = fresh_lakehouse(*TEXT_ONLY, "maintain.min_small_files=1")
    reference = lakehouse_with_corpus(corpus_lakehouse, tmp_path / "reference", *TEXT_ONLY)
    run_refresh(spark, settings)
    _retitle(settings, 0)
    run_refresh(spark, settings)  # the first day's partitions now hold the rewritten file and the recomputed rows' file
    _retitle(settings, 1)
    for nth in (0, 1):  # the reference: the same corpus, one refresh, never maintained
        _retitle(reference, nth)
    run_refresh(spark, reference)

    real, compacted = spark_io.write_files, []

    def write_then_maintain(*args, **kwargs):
        files = real(*args, **kwargs)
        if not compacted:  # once, between the refresh's read and its first commit
            compacted.append(run_maintain(settings))
        return files

    monkeypatch.setattr(spark_io, "write_files", write_then_maintain)
    before = DeltaTable(settings.table_root("embeddings")).version()
    with pytest.raises(delta_io.CommitConflict) as conflict:
        run_refresh(spark, settings)
    monkeypatch.undo()
    upkeep = {u.table: u for u in compacted[0].tables}
    assert upkeep["embeddings"].compaction_version == before + 2  # the compaction landed in between (after the upkeep properties) ...
    assert DeltaTable(settings.table_root("embeddings")).version() == upkeep["embeddings"].version  # ... and the refresh committed nothing
    assert explain(conflict.value).status == CONFLICT

    run_refresh(spark, settings)  # the re-run
    _assert_same_rows(settings, reference)
