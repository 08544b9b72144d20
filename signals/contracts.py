"""The output contracts: the schema, key and partitioning of every table the job writes.

Consumers (retrieval, ranking, integrity, analysts) rely on these columns; a change here is a
change of contract and belongs in the README's table section too.
"""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

STATUS_OK = "ok"
STATUS_ERROR = "error"
# Error rows whose reason starts with one of these may pass on another try (a fetch that timed
# out, a server error, the model failing on a batch): the next refresh computes them again.
# Every other error (a corrupt image, a URI not found or not allowed) is final for its input.
TRANSIENT_PREFIX = "transient: "
MODEL_FAILED_PREFIX = "model failed: "
RETRIED_ERROR_PREFIXES = (TRANSIENT_PREFIX, MODEL_FAILED_PREFIX)
UTC_MICROS = pa.timestamp("us", tz="UTC")


def is_retried_error(reason: str | None) -> bool:
    """Whether an error row with this reason is computed again by the next refresh."""
    return reason is not None and reason.startswith(RETRIED_ERROR_PREFIXES)


@dataclass(frozen=True)
class TableContract:
    """A Delta table's name, Arrow schema, partition columns and row key."""

    name: str
    schema: pa.Schema
    partition_by: tuple[str, ...]
    key: tuple[str, ...]

    @property
    def data_columns(self) -> list[str]:
        """Columns stored inside the data files (partition values live in the Delta log)."""
        return [f.name for f in self.schema if f.name not in self.partition_by]


# Columns every signal table shares: which model computed a row from which inputs ...
_MODEL_FIELDS = [
    pa.field("model_name", pa.string(), nullable=False),
    pa.field("model_version", pa.string(), nullable=False),
    pa.field("input_hash", pa.string()),
]
# ... and how it went, in which run, for which corpus day.
_OUTCOME_FIELDS = [
    pa.field("status", pa.string(), nullable=False),
    pa.field("error", pa.string()),
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("computed_at", UTC_MICROS, nullable=False),
    pa.field("ds", pa.string(), nullable=False),
]

EMBEDDINGS = TableContract(
    name="embeddings",
    schema=pa.schema(
        [
            pa.field("content_id", pa.string(), nullable=False),
            pa.field("signal", pa.string(), nullable=False),
            *_MODEL_FIELDS,
            pa.field("vector", pa.list_(pa.field("element", pa.float32()))),
            pa.field("dim", pa.int32()),
            *_OUTCOME_FIELDS,
        ]
    ),
    partition_by=("signal", "model_version", "ds"),
    key=("content_id", "signal", "model_version"),
)

LABELS = TableContract(
    name="labels",
    schema=pa.schema(
        [
            pa.field("content_id", pa.string(), nullable=False),
            pa.field("signal", pa.string(), nullable=False),
            pa.field("label", pa.string()),
            pa.field("score", pa.float64()),
            pa.field("threshold", pa.float64()),
            pa.field("decision", pa.bool_()),
            pa.field("detail", pa.string()),
            *_MODEL_FIELDS,
            *_OUTCOME_FIELDS,
        ]
    ),
    partition_by=("signal", "model_version", "ds"),
    key=("content_id", "signal", "label", "model_version"),
)

DUPLICATES = TableContract(
    name="duplicates",
    schema=pa.schema(
        [
            pa.field("content_id", pa.string(), nullable=False),
            pa.field("group_id", pa.string(), nullable=False),
            pa.field("group_size", pa.int64(), nullable=False),
            pa.field("is_canonical", pa.bool_(), nullable=False),
            pa.field("matched_id", pa.string()),
            pa.field("match_method", pa.string()),
            pa.field("hamming", pa.int32()),
            pa.field("cosine", pa.float64()),
            pa.field("exact_hash", pa.string()),
            pa.field("phash", pa.int64()),
            *_OUTCOME_FIELDS,
        ]
    ),
    partition_by=("ds",),
    key=("content_id",),
)

RUNS = TableContract(
    name="runs",
    schema=pa.schema(
        [
            pa.field("run_id", pa.string(), nullable=False),
            pa.field("job", pa.string(), nullable=False),
            pa.field("signal", pa.string(), nullable=False),
            pa.field("model_name", pa.string()),
            pa.field("model_version", pa.string()),
            pa.field("window_start", pa.string()),
            pa.field("window_end", pa.string()),
            pa.field("rows_in", pa.int64()),
            pa.field("rows_ok", pa.int64()),
            pa.field("rows_error", pa.int64()),
            pa.field("status", pa.string(), nullable=False),
            pa.field("message", pa.string()),
            pa.field("table_version", pa.int64()),
            pa.field("started_at", UTC_MICROS, nullable=False),
            pa.field("finished_at", UTC_MICROS, nullable=False),
            pa.field("duration_s", pa.float64()),
        ]
    ),
    partition_by=(),
    key=("run_id", "signal"),
)

CORPUS = TableContract(
    name="corpus",
    schema=pa.schema(
        [
            pa.field("content_id", pa.string(), nullable=False),
            pa.field("image", pa.binary()),
            pa.field("title", pa.string()),
            pa.field("description", pa.string()),
            pa.field("created_at", UTC_MICROS),
            pa.field("updated_at", UTC_MICROS),
            pa.field("ds", pa.string(), nullable=False),
        ]
    ),
    partition_by=("ds",),
    key=("content_id",),
)
