"""The backfill job: compute the configured signals for a window of the corpus and replace
that slice of the embeddings table in one Delta commit.

    content-signals backfill --profile local --start 2026-11-14 --end 2026-11-20

Re-running the same window replaces the same slice with the same vectors: never duplicates.
Re-running with the same --run-id after its commit landed does nothing (the commit is
recognised by its application transaction id).
"""
from __future__ import annotations

from dataclasses import dataclass

from deltalake import DeltaTable
from pyspark.sql import SparkSession

from jobs import delta_io
from jobs.config import Settings
from jobs.engine import Run, RunResult, already_committed, build_signals, by_output, recorded, run_outcomes, signal_rows, write_and_commit
from jobs.ledger import SUCCEEDED
from jobs.models import CHAMPION
from signals.contracts import CORPUS
from udfs.columns import in_slice

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


def run_backfill(
    spark: SparkSession, settings: Settings, window: Window = Window(), run_id: str | None = None,
    role: str = CHAMPION, slice_percent: int = 100,
) -> RunResult:
    """Compute every enabled signal over the window and replace that slice of each output table
    in one commit per table.

    With `role="challenger"` the signals run at their challenger versions, on the stable
    `slice_percent` of items (a shadow run at 100, a canary below): the rows land in the
    challenger's own partitions and champion rows are never touched.

    A run that fails is recorded in the ledger as failed (with the reason) and re-raised; the
    data files it wrote, if any, are never committed, so no reader sees them.
    """
    if not 0 < slice_percent <= 100:
        raise ValueError(f"slice_percent must be in (0, 100], got {slice_percent}")
    corpus = corpus_root(settings)
    run = Run.begin(JOB if role == CHAMPION else f"{JOB}-{role}", run_id)
    signals = build_signals(settings, role)
    done = already_committed(settings, run, signals)
    if done:
        return done
    with recorded(settings, run, signals, (window.start, window.end)) as finish:
        items = delta_io.read_spark(spark, corpus, partitions=window.partition_filters())
        if slice_percent < 100:
            items = items.filter(in_slice(slice_percent))
        rows_in = corpus_row_count(corpus, window) if slice_percent == 100 else items.count()
        versions = {}
        for contract, mine in by_output(signals).items():
            models = {name: s.config.model.version for name, s in mine.items()}
            versions[contract.name] = write_and_commit(
                spark, settings, run, contract,
                [signal_rows(items, s, settings, run, rows_in) for s in mine.values()],
                expected_items={name: rows_in for name in mine},
                remove=lambda live, models=models: models.get(live.partition_values["signal"]) == live.partition_values["model_version"]
                and window.contains(live.partition_values["ds"]),
                read_version=delta_io.ensure_table(settings.table_root(contract.name), contract).version(),
                metadata={"window": f"{window.start}..{window.end}", "model_versions": str(models), "role": role,
                          "slice_percent": str(slice_percent)},
            )
        result = RunResult(run.run_id, SUCCEEDED, versions, run_outcomes(settings, run.run_id, signals))
        finish(result)
    return result
