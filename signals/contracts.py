"""The output contracts: the schema, key and partitioning of every table the job writes.

Consumers (retrieval, ranking, integrity, analysts) rely on these columns; a change here is a
change of contract and belongs in the README's table section too.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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
# The operations of Delta commits that add or drop no row (maintain's vacuums and log-retention property, a
# schema change): a reader after the last commit that changed rows (a refresh's, the demo corpus's) passes them.
KEEPS_ROWS = ("VACUUM", "SET TBLPROPERTIES", "ADD COLUMN", "CREATE TABLE", "OPTIMIZE")


def lakehouse_table(lakehouse_root: str, name: str) -> str:
    """Where the table `name` lives in the lakehouse at `lakehouse_root` (a folder or an object store URI): one rule for every writer and reader."""
    return f"{lakehouse_root.rstrip('/')}/{name}"


def keeps_rows(commit: Mapping[str, Any]) -> bool:
    """Whether a log entry (`DeltaTable.history`) is a commit that adds or drops no row, so that no reader takes it for a write."""
    return str(commit.get("operation", "")).startswith(KEEPS_ROWS)


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
    partition_by=("signal", "model_version"),
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
    partition_by=("signal", "model_version"),
    key=("content_id", "signal", "label", "model_version"),
)
# What two versions' rows of a signal are lined up by (rollout.coverage, rollout.compare): an item
# and its corpus day. An item ingested again on another day, with another input, can have a row of
# each at one version; lined up by item alone, one version's row of a day met the other's of the
# other day (found in review).
ITEM_DAY = ("content_id", "ds")

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

# A fixed-bin histogram of a label's scores: HISTOGRAM_BINS equal bins over [0, 1] (a score of 1
# falls in the last one), and the quantiles stored with it.
HISTOGRAM_BINS = 20
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
_COUNT = pa.field("count", pa.int64(), nullable=False)

SIGNAL_STATS = TableContract(
    name="signal_stats",
    schema=pa.schema(
        [
            pa.field("signal", pa.string(), nullable=False),
            pa.field("model_version", pa.string(), nullable=False),
            pa.field("run_id", pa.string(), nullable=False),
            pa.field("job", pa.string()),
            pa.field("kind", pa.string(), nullable=False),  # "embedding" or "label"
            pa.field("rows", pa.int64(), nullable=False),
            pa.field("items", pa.int64(), nullable=False),
            pa.field("error_items", pa.int64(), nullable=False),
            pa.field("error_rate", pa.float64()),
            pa.field("error_reasons", pa.list_(pa.struct([pa.field("reason", pa.string()), _COUNT]))),
            pa.field("labels", pa.list_(pa.struct([
                pa.field("label", pa.string()),
                pa.field("rows", pa.int64()),
                pa.field("decided", pa.int64()),  # rows with a decision (closed label sets)
                pa.field("positives", pa.int64()),
                pa.field("decision_rate", pa.float64()),
                pa.field("quantiles", pa.list_(pa.float64())),  # at QUANTILES
                pa.field("histogram", pa.list_(pa.int64())),  # HISTOGRAM_BINS counts
            ]))),
            pa.field("dim", pa.int32()),
            pa.field("norm_quantiles", pa.list_(pa.float64())),  # of the stored vectors, at QUANTILES
            pa.field("dim_mean", pa.list_(pa.float64())),
            pa.field("dim_std", pa.list_(pa.float64())),
            pa.field("sample", pa.list_(pa.list_(pa.float32()))),  # a seeded sample of ok vectors (by a hash of content_id)
            pa.field("computed_at", UTC_MICROS, nullable=False),
            pa.field("ds", pa.string(), nullable=False),
        ]
    ),
    partition_by=("ds",),
    key=("signal", "model_version", "ds", "run_id"),
)

ALERTS = TableContract(
    name="alerts",
    schema=pa.schema(
        [
            pa.field("run_id", pa.string(), nullable=False),
            pa.field("signal", pa.string(), nullable=False),
            pa.field("model_version", pa.string(), nullable=False),
            pa.field("rule", pa.string(), nullable=False),  # error_rate, row_count, score_drift, decision_rate, label_mix, embedding_drift, reference (monitoring.rules)
            pa.field("label", pa.string()),  # the label a label rule is about; null otherwise
            pa.field("fired", pa.bool_(), nullable=False),
            pa.field("value", pa.float64()),
            pa.field("threshold", pa.float64()),
            pa.field("cause", pa.string()),  # drift: "corpus", "model" or "unknown" (model versions compared on the same items: monitoring/attribution.py)
            pa.field("reference", pa.string()),  # the days and model versions compared with
            pa.field("message", pa.string(), nullable=False),
            pa.field("evaluated_at", UTC_MICROS, nullable=False),
            pa.field("ds", pa.string(), nullable=False),
        ]
    ),
    partition_by=("ds",),
    key=("run_id", "signal", "model_version", "ds", "rule", "label"),
)

# Human judgements for the training tasks (training/, docs/design.md, Training our own signals):
# one row per (content_id, task, annotator), each import ONE commit tagged with its batch.
HUMAN_LABELS = TableContract(
    name="human_labels",
    schema=pa.schema(
        [
            pa.field("content_id", pa.string(), nullable=False),
            pa.field("task", pa.string(), nullable=False),
            pa.field("label", pa.string(), nullable=False),  # one of the task's values (training.tasks)
            pa.field("annotator", pa.string(), nullable=False),
            pa.field("labelled_at", UTC_MICROS, nullable=False),
            pa.field("batch", pa.string(), nullable=False),  # the import: a digest of the task and the rows imported
        ]
    ),
    partition_by=("task",),
    key=("content_id", "task", "annotator"),
)

# The label model's probabilistic labels, one row per (content_id, task); each run of `labels weak`
# replaces its task's rows in one commit.
WEAK_LABELS = TableContract(
    name="weak_labels",
    schema=pa.schema(
        [
            pa.field("content_id", pa.string(), nullable=False),
            pa.field("task", pa.string(), nullable=False),
            pa.field("p_positive", pa.float64(), nullable=False),  # the label model's probability of the positive value
            pa.field("votes", pa.int32(), nullable=False),  # labeling functions that did not abstain
            pa.field("majority_p", pa.float64()),  # their majority vote: the share of positive votes; null where all abstained
            pa.field("label_model", pa.string(), nullable=False),
            pa.field("run_id", pa.string(), nullable=False),
            pa.field("computed_at", UTC_MICROS, nullable=False),
        ]
    ),
    partition_by=("task",),
    key=("content_id", "task"),
)

# A video's keyframes (signals/video/): the image signals' values on each keyframe, embeddings and
# labels in one table (a keyframe row holds a vector or a label's score), keyed by the keyframe's
# index in its video; start_s/end_s are the span the keyframe stands for (its shot, or a part of a
# long shot), time_s the keyframe's own time, phash its pHash (the video's fingerprint in dedup,
# jobs/dedup.py). A video that gives no keyframes (a bad video) has one
# error row per signal with keyframe_index -1 and null times. The video-level values (pooled
# embedding, labels' maximum over keyframes) are the video's rows in `embeddings` and `labels`.
KEYFRAMES = TableContract(
    name="keyframes",
    schema=pa.schema(
        [
            pa.field("content_id", pa.string(), nullable=False),
            pa.field("keyframe_index", pa.int32(), nullable=False),
            pa.field("shot_index", pa.int32()),
            pa.field("start_s", pa.float64()),
            pa.field("end_s", pa.float64()),
            pa.field("time_s", pa.float64()),
            pa.field("phash", pa.int64()),  # null for a flat keyframe (its hash would link anything)
            pa.field("signal", pa.string(), nullable=False),
            pa.field("label", pa.string()),
            pa.field("vector", pa.list_(pa.field("element", pa.float32()))),
            pa.field("dim", pa.int32()),
            pa.field("score", pa.float64()),
            pa.field("threshold", pa.float64()),
            pa.field("decision", pa.bool_()),
            pa.field("detail", pa.string()),
            *_MODEL_FIELDS,
            *_OUTCOME_FIELDS,
        ]
    ),
    partition_by=("signal", "model_version"),
    key=("content_id", "keyframe_index", "signal", "label", "model_version"),
)
