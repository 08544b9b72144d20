"""The backfill job: compute the configured signals for a window of the corpus and replace
that slice of the embeddings table in one Delta commit.

    content-signals backfill --profile local --start 2026-11-14 --end 2026-11-20

Re-running the same window replaces the same slice with the same vectors: never duplicates.
Re-running with the same --run-id after its commit landed does nothing (the commit is
recognised by its application transaction id).
"""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from jobs import delta_io
from jobs.config import Settings
from jobs.engine import Run, RunResult, build_signals, recorded, run_outcomes, signal_rows, write_and_commit
from jobs.ledger import SUCCEEDED
from signals.contracts import CORPUS, EMBEDDINGS

JOB = "backfill"


@dataclass(frozen=True)
class Window:
    """An inclusive range of corpus date partitions (`ds`); an open end means unbounded."""

    start: str | None = None
    end: str | None = None

    def partition_filters(self) -> list[tuple[str, str, str]] | None:
        filters = [("ds", ">=", self.start)] if self.start else []
        filters += [("ds", "<=", self.end)] if self.end else []
        return filters or None

    def contains(self, ds: str | None) -> bool:
        return ds is not None and (self.start is None or ds >= self.start) and (self.end is None or ds <= self.end)


def corpus_root(settings: Settings) -> str:
    root = settings.table_root(CORPUS.name)
    if not DeltaTable.is_deltatable(root):
        raise FileNotFoundError(f"no corpus Delta table at {root}; create one with `content-signals make-corpus`")
    return root


def corpus_row_count(root: str, window: "Window") -> int:
    """Rows of the corpus in the window, from the Delta log's per-file statistics (no scan)."""
    return sum(f.num_records for f in delta_io.live_files(root, CORPUS) if window.contains(f.partition_values["ds"]))


def run_backfill(spark: SparkSession, settings: Settings, window: Window = Window(), run_id: str | None = None) -> RunResult:
    """Compute every enabled signal over the window and commit them as one table version.

    A run that fails is recorded in the ledger as failed (with the reason) and re-raised; the
    data files it wrote, if any, are never committed, so no reader sees them.
    """
    corpus = corpus_root(settings)
    run = Run.begin(JOB, run_id)
    root = settings.table_root(EMBEDDINGS.name)
    if delta_io.committed(root, run.app_id):
        return RunResult(run.run_id, "skipped", delta_io.version_of_commit(root, run.app_id))
    signals = build_signals(settings)
    with recorded(settings, run, signals, (window.start, window.end)) as finish:
        read_version = delta_io.ensure_table(root, EMBEDDINGS).version()
        rows_in = corpus_row_count(corpus, window)
        items = delta_io.read_spark(spark, corpus, partitions=window.partition_filters())
        versions = {name: s.config.model.version for name, s in signals.items()}
        version = write_and_commit(
            spark, settings, run,
            [signal_rows(items, s, settings, run) for s in signals.values()],
            expected_rows={name: rows_in for name in signals},
            remove=lambda live: versions.get(live.partition_values["signal"]) == live.partition_values["model_version"]
            and window.contains(live.partition_values["ds"]),
            read_version=read_version,
            metadata={"window": f"{window.start}..{window.end}", "model_versions": str(versions)},
        )
        result = RunResult(run.run_id, SUCCEEDED, version, run_outcomes(settings, run.run_id, signals))
        finish(result)
    return result
