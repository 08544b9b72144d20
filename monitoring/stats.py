"""Statistics of what one run wrote, per signal, model version and day: computed in Spark from
the run's rows of the signal tables (one Spark action per table over the files the run committed;
only the small results reach the driver), as rows of the `signal_stats` table.

Per row: rows, items, error items and rate, the commonest error reasons; for labels, per label
the score quantiles, a fixed-bin histogram and the decision rate; for embeddings, the quantiles
of the vectors' norms, the mean and standard deviation of every dimension, and a seeded sample
of ok vectors (the ones whose hash of `content_id` is smallest) for the drift tests.
"""
from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, datetime
from urllib.parse import unquote

import pyarrow as pa
from deltalake import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from lake import delta_io, spark_io
from monitoring.vector_summary import GROUP, PART_INPUTS, PARTS_SCHEMA, VectorSummary, embedding_parts
from signals.contracts import EMBEDDINGS, HISTOGRAM_BINS, LABELS, QUANTILES, SIGNAL_STATS, STATUS_OK, TableContract

KEYS = GROUP[:3]  # a signal's day at one model version
TOP_REASONS = 5
PERCENTILE_ACCURACY = 10_000  # percentile_approx: relative error of about 1/10000 of the rows
_HASH_RANGE = 1 << 20


def reason_category(error: Column) -> Column:
    """What an error row's reason says, without its particulars: the text before its first colon
    (after a retried error's prefix), numbers as N, at most 80 characters."""
    category = F.regexp_extract(error, r"^((transient: |model failed: )?[^:]*)", 1)
    return F.substring(F.regexp_replace(category, r"[0-9]+", "N"), 1, 80)


def _sample_key(seed: int) -> Column:
    """A row's place in the seeded sample: a hash of its content id, in [0, _HASH_RANGE)."""
    return F.pmod(F.xxhash64(F.col("content_id"), F.lit(seed)), F.lit(_HASH_RANGE))


def run_rows(spark: SparkSession, root: str, run_id: str) -> tuple[DataFrame, dict[tuple[str, ...], int]] | None:
    """The rows `run_id` wrote to the table at `root` (reading only the files that may hold them,
    by their statistics), and the rows per (signal, model version, day) of those files; None
    when the run has none there."""
    files = delta_io.files_of_run(root, run_id)
    if not files:
        return None
    upper: dict[tuple[str, ...], int] = defaultdict(int)
    for f in files:
        upper[tuple(f.partition_values[k] for k in KEYS)] += f.num_records
    frame = spark_io.read_spark(spark, root, only={unquote(f.path) for f in files}).filter(F.col("run_id") == run_id)
    return _in_few_tasks(frame, sum(f.size for f in files)), dict(upper)


_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "t": 1 << 40, "tb": 1 << 40}


def size_bytes(text: str) -> int:
    """Bytes of a Spark size setting ("8m", "512k", "134217728b", "1g"; a bare number is bytes)."""
    match = re.fullmatch(r"\s*(\d+)\s*([a-z]*)\s*", text.lower())
    if match is None or match.group(2) not in _UNITS:
        raise ValueError(f"not a size: {text!r}")
    return int(match.group(1)) * _UNITS[match.group(2)]


def _in_few_tasks(frame: DataFrame, size: int) -> DataFrame:
    """`frame` (files of `size` bytes) in no more tasks than its bytes fill at the scan's task
    size, and at least one per task slot: Spark splits a small read into more tasks than slots
    (its bytes spread over the cores, each file counted at its open cost), and each task of the
    statistics is a round trip to a Python worker. Coalesced: nothing is shuffled, and a read in
    fewer tasks keeps them (a coalesce never adds one), so the read's plan is not made to count them."""
    spark = frame.sparkSession
    task_bytes = size_bytes(spark.conf.get("spark.sql.files.maxPartitionBytes", "128m"))
    return frame.coalesce(max(spark.sparkContext.defaultParallelism, -(-size // task_bytes)))


def _label_stats(frame: DataFrame) -> list[dict]:
    """Per (signal, model version, day): item counts and error reasons; per label: score
    quantiles, histogram and decisions. One pass: grouping sets at the day and the label level."""
    ok = F.col("status") == STATUS_OK
    score_bin = F.least(F.greatest(F.floor(F.col("score") * HISTOGRAM_BINS), F.lit(0)), F.lit(HISTOGRAM_BINS - 1))
    frame = frame.withColumn("reason", F.when(~ok, reason_category(F.col("error")))).withColumn("bin", score_bin)
    rows = frame.groupingSets([[*KEYS, "label", "reason"], KEYS], *KEYS, "label", "reason").agg(
        F.grouping_id().alias("level"),
        F.count("*").alias("rows"),
        F.count_distinct("content_id").alias("items"),
        F.count_distinct(F.when(~ok, F.col("content_id"))).alias("error_items"),
        F.count("decision").alias("decided"),
        F.count(F.when(F.col("decision"), 1)).alias("positives"),
        F.percentile_approx(F.when(ok, F.col("score")), list(QUANTILES), PERCENTILE_ACCURACY).alias("quantiles"),
        F.array(*[F.count(F.when(ok & (F.col("bin") == i), 1)) for i in range(HISTOGRAM_BINS)]).alias("histogram"),
    ).collect()
    days: dict[tuple, dict] = {}
    for r in (r for r in rows if r["level"] != 0):
        days[tuple(r[k] for k in KEYS)] = {**_base(r, "label"), "labels": [], "error_reasons": []}
    for r in (r for r in rows if r["level"] == 0):
        day = days[tuple(r[k] for k in KEYS)]
        if r["reason"] is not None:
            day["error_reasons"].append({"reason": r["reason"], "count": r["rows"]})
        elif r["label"] is not None:
            day["labels"].append({
                "label": r["label"], "rows": r["rows"], "decided": r["decided"], "positives": r["positives"],
                "decision_rate": r["positives"] / r["decided"] if r["decided"] else None,
                "quantiles": list(r["quantiles"] or []), "histogram": list(r["histogram"]),
            })
    for day in days.values():
        day["labels"].sort(key=lambda m: m["label"])
        day["error_reasons"] = _top(day["error_reasons"])
    return list(days.values())


def _embedding_stats(frame: DataFrame, upper: dict[tuple[str, ...], int], sample_size: int, seed: int) -> list[dict]:
    """Per (signal, model version, day): counts, error reasons, norm quantiles, per-dimension
    mean and std, and the seeded sample. One Spark job without a shuffle: each task summarises
    its rows per day and error reason (null for ok rows, so the ok group holds only vectors of
    one dimension), the driver merges the tasks' parts (items: the tasks' distinct content ids
    added up, as a run writes one row per content id, signal and model version, the table's key)."""
    ok = F.col("status") == STATUS_OK
    # the sample: rows whose hash key falls below a bound that keeps about twice the sample of
    # each day's rows (known from the files' statistics); the driver keeps the smallest keys
    bounds = F.create_map(*[v for key, n in upper.items() for v in (F.lit("|".join(key)), F.lit(min(_HASH_RANGE, 2 * sample_size * _HASH_RANGE // max(n, 1))))])
    frame = frame.withColumn("reason", F.when(~ok, reason_category(F.col("error")))).withColumn("key", _sample_key(seed))
    frame = frame.withColumn("in_sample", F.coalesce(ok & (F.col("key") < F.element_at(bounds, F.concat_ws("|", *KEYS))), F.lit(False)))
    inputs = frame.select(*PART_INPUTS)
    merged: dict[tuple, dict] = {}
    for p in inputs.mapInArrow(embedding_parts, from_arrow_schema(PARTS_SCHEMA)).toArrow().to_pylist():
        group = merged.setdefault(tuple(p[k] for k in GROUP), {**{k: p[k] for k in GROUP}, "rows": 0, "items": 0, "dim": p["dim"],
                                                              "summary": VectorSummary.empty()})
        group["rows"] += p["rows"]
        group["items"] += p["items"]
        group["dim"] = max((d for d in (group["dim"], p["dim"]) if d is not None), default=None)
        group["summary"] = group["summary"].merged(VectorSummary.of_part(p))
    days: dict[tuple, dict] = {}
    for r in merged.values():
        day = days.setdefault(tuple(r[k] for k in KEYS), {**_base(r, "embedding"), "rows": 0, "items": 0, "error_items": 0, "error_reasons": []})
        day["rows"] += r["rows"]
        day["items"] += r["items"]
        if r["reason"] is not None:
            day["error_items"] += r["items"]
            day["error_reasons"].append({"reason": r["reason"], "count": r["rows"]})
            continue
        summary = r["summary"]
        day.update(dim=r["dim"], norm_quantiles=summary.norm_quantiles(), dim_mean=summary.mean.tolist(), dim_std=summary.std().tolist(),
                   sample=summary.chosen_sample(sample_size))
    for day in days.values():
        day["error_reasons"] = _top(day["error_reasons"])
    return list(days.values())


def _base(r: object, kind: str) -> dict:
    return {"signal": r["signal"], "model_version": r["model_version"], "ds": r["ds"], "kind": kind,
            "rows": r["rows"], "items": r["items"], "error_items": r["error_items"] if kind == "label" else 0}


def _top(reasons: list[dict]) -> list[dict]:
    return sorted(reasons, key=lambda r: (-r["count"], r["reason"]))[:TOP_REASONS]


def compute_stats(spark: SparkSession, lakehouse_root: str, run_id: str, job: str | None, sample_size: int, seed: int) -> pa.Table:
    """The `signal_stats` rows of everything `run_id` (a run of `job`) wrote to the embeddings
    and labels tables (none: an empty table)."""
    computed_at = datetime.now(UTC)
    out: list[dict] = []
    tables: tuple[TableContract, ...] = (EMBEDDINGS, LABELS)
    for contract in tables:
        root = f"{lakehouse_root.rstrip('/')}/{contract.name}"
        found = run_rows(spark, root, run_id) if DeltaTable.is_deltatable(root) else None
        if found is None:
            continue
        frame, upper = found
        days = _embedding_stats(frame, upper, sample_size, seed) if contract is EMBEDDINGS else _label_stats(frame)
        out += [{**d, "run_id": run_id, "job": job, "computed_at": computed_at} for d in days]
    for row in out:
        row["error_rate"] = row["error_items"] / row["items"] if row["items"] else None
    return pa.Table.from_pylist(out, schema=SIGNAL_STATS.schema)
