"""Statistics of what one run wrote, per signal, model version and day, as rows of the
`signal_stats` table: the summaries of the run's data files (monitoring.file_summary) merged on
the driver.

Per row: rows, items, error items and rate, the commonest error reasons; for labels, per label
the score quantiles, a fixed-bin histogram and the decision rate; for embeddings, the quantiles
of the vectors' norms, the mean and standard deviation of every dimension, and a seeded sample
of ok vectors (the ones whose hash of `content_id` is smallest) for the drift tests.

A backfill or refresh has each file summarised by the task that writes it and keeps its
statistics once its tables are committed (`keep_run_stats`), so the monitor reads them; for a
run without them (killed between its commits and its statistics, or `--recompute`),
`compute_stats` reads the run's files again in one Spark job, a task summarising each.
"""
from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import UTC, datetime
from urllib.parse import unquote

import pyarrow as pa
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from conf.settings import UsageError
from lake import delta_io, spark_io
from monitoring.file_summary import COLUMNS_READ, list_column, matrix_column, merged_stats, summarise_file
from signals.contracts import EMBEDDINGS, LABELS, SIGNAL_STATS, TableContract, lakehouse_table

VECTOR_COLUMNS = ("dim_mean", "dim_std", "sample")  # what merged_stats gives as numpy


def stats_table(summaries: Iterable[bytes], run_id: str, job: str | None, sample_size: int) -> pa.Table:
    """The `signal_stats` rows of a run (a run of `job`) from its files' summaries."""
    computed_at = datetime.now(UTC)
    rows = merged_stats(summaries, sample_size)
    for row in rows:
        if len(row.get("widths", ())) > 1:
            raise UsageError(f"{row['signal']} at model version {row['model_version']} on {row['ds']}: ok vectors of "
                             f"{' and '.join(map(str, row['widths']))} dimensions (another writer's?). One model version's "
                             "vectors have one width: rewrite that day's rows, or register the other model as a version of its own")
    table = pa.Table.from_pylist([{**{k: v for k, v in row.items() if k not in VECTOR_COLUMNS}, "run_id": run_id, "job": job,
                                   "computed_at": computed_at, "error_rate": row["error_items"] / row["items"] if row["items"] else None}
                                  for row in rows], schema=SIGNAL_STATS.schema)
    for name in VECTOR_COLUMNS:  # from numpy, not a Python float apiece
        field = SIGNAL_STATS.schema.field(name)
        column = (matrix_column if name == "sample" else list_column)([row.get(name) for row in rows], field.type)
        table = table.set_column(SIGNAL_STATS.schema.get_field_index(name), field, column)
    return table


def keep_run_stats(lakehouse_root: str, run_id: str, job: str, summaries: Iterable[bytes], sample_size: int) -> int | None:
    """Keep a run's statistics, from the summaries of the files it committed, in `signal_stats`
    in place of any it had (None: the run wrote no signal rows)."""
    stats = stats_table(summaries, run_id, job, sample_size)
    if not stats.num_rows:
        return None
    return delta_io.replace_run_rows(lakehouse_table(lakehouse_root, SIGNAL_STATS.name), SIGNAL_STATS, stats, run_id, {"job": job})


def require_columns(root: str, contract: TableContract, columns: Iterable[str]) -> None:
    """A UsageError naming the `columns` the table at `root` lacks, or holds as other than text where
    `contract` has text (a table another writer made: a `ds` of dates, say), before a job reads it and
    fails on the first, in a Spark task's traceback."""
    held = {f.name: f.type for f in pa.schema(DeltaTable(root).schema().to_arrow())}
    missing = [c for c in columns if c not in held]
    if missing:
        raise UsageError(f"the table at {root} has no column {', '.join(missing)}: the monitor reads a signal table of the "
                         "contract in docs/tables.md (written by another writer? add the columns)")
    texts = [c for c in columns if pa.types.is_string(contract.schema.field(c).type) and not pa.types.is_string(held[c])
             and not pa.types.is_large_string(held[c])]
    if texts:
        raise UsageError(f"the table at {root} holds {', '.join(f'{c} as {held[c]}' for c in texts)}, not as text: the monitor reads "
                         "a signal table of the contract in docs/tables.md (written by another writer? write them as strings)")


def compute_stats(spark: SparkSession, lakehouse_root: str, run_id: str, job: str | None, sample_size: int, seed: int) -> pa.Table:
    """The `signal_stats` rows of everything `run_id` (a run of `job`) wrote to the embeddings
    and labels tables, from its files read again (none: an empty table)."""
    summarise = functools.partial(summarise_file, run_id=run_id, sample_size=sample_size, seed=seed)
    summaries: list[bytes] = []
    tables: tuple[TableContract, ...] = (EMBEDDINGS, LABELS)
    for contract in tables:
        root = lakehouse_table(lakehouse_root, contract.name)
        files = delta_io.files_of_run(root, run_id) if DeltaTable.is_deltatable(root) else []
        if files:
            require_columns(root, contract, COLUMNS_READ[contract.name])
            summaries += spark_io.summarise_files(spark, root, {unquote(f.path) for f in files}, summarise)
    return stats_table(summaries, run_id, job, sample_size)
