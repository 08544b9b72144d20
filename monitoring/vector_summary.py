"""A summary of one group of embedding vectors that the tasks reading the group compute in parts
and the driver merges exactly: count, per-dimension mean and squared deviations (merged by Chan
et al.'s pairwise update, stable where a sum of squares is not), the vectors' norms and the
sample's candidates. So a run's statistics take one pass over its vectors, in the tasks that
read them, with nothing shuffled, and only the small parts reach the driver. Pure numpy and
pyarrow (no Spark): the task's function is tested without a session, and a Python worker
imports no more than it needs.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from signals.contracts import QUANTILES, STATUS_OK

# the group a part belongs to: a signal's day at one model version, and the error reason (null:
# the ok rows, so that group holds vectors of one width)
GROUP = ["signal", "model_version", "ds", "reason"]
# what a task reads of each row: `key` places it in the seeded sample, `in_sample` says whether it
# is a candidate (its key is below its day's bound)
PART_INPUTS = [*GROUP, "content_id", "status", "dim", "vector", "key", "in_sample"]
# a task's part of one group: its counts and, of its ok rows, the summary's columns
PARTS_SCHEMA = pa.schema([
    pa.field("signal", pa.string()), pa.field("model_version", pa.string()), pa.field("ds", pa.string()),
    pa.field("reason", pa.string()), pa.field("rows", pa.int64()), pa.field("items", pa.int64()), pa.field("dim", pa.int32()),
    pa.field("count", pa.int64()), pa.field("mean", pa.list_(pa.float64())), pa.field("squared_deviations", pa.list_(pa.float64())),
    pa.field("norms", pa.list_(pa.float64())), pa.field("sample_keys", pa.list_(pa.int64())),
    pa.field("sample_ids", pa.list_(pa.string())), pa.field("sample", pa.list_(pa.list_(pa.float32()))),
])


@dataclass(frozen=True)
class VectorSummary:
    """Of a group's ok vectors: their count, per-dimension mean and sum of squared deviations
    from it, their L2 norms, and the sample's candidates (hash key, content id, vector)."""

    count: int
    mean: np.ndarray  # float64, per dimension; empty without vectors
    squared_deviations: np.ndarray  # float64, per dimension
    norms: np.ndarray  # float64, one per vector
    sample_keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    sample_ids: tuple[str, ...] = ()
    sample: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))

    @classmethod
    def of(cls, vectors: np.ndarray, sample_keys: np.ndarray, sample_ids: Sequence[str], sample: np.ndarray) -> VectorSummary:
        """The summary of `vectors` (rows of one width), with the sample's candidates among them."""
        if not len(vectors):
            return cls.empty()
        wide = vectors.astype(np.float64)
        mean = wide.mean(axis=0)
        return cls(len(wide), mean, ((wide - mean) ** 2).sum(axis=0), np.sqrt((wide * wide).sum(axis=1)),
                   np.asarray(sample_keys, np.int64), tuple(sample_ids), sample)

    @classmethod
    def empty(cls) -> VectorSummary:
        """The summary of no vectors."""
        return cls(0, np.zeros(0), np.zeros(0), np.zeros(0))

    @classmethod
    def of_part(cls, part: dict) -> VectorSummary:
        """The summary a task's part (a row of PARTS_SCHEMA, as a dict) carries."""
        return cls(part["count"], np.asarray(part["mean"], np.float64), np.asarray(part["squared_deviations"], np.float64),
                   np.asarray(part["norms"], np.float64), np.asarray(part["sample_keys"], np.int64), tuple(part["sample_ids"]),
                   np.asarray(part["sample"], np.float32) if part["sample"] else np.zeros((0, 0), np.float32))

    def merged(self, other: VectorSummary) -> VectorSummary:
        """One summary of the vectors of both."""
        if not other.count:
            return self
        if not self.count:
            return other
        count = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / count)
        deviations = self.squared_deviations + other.squared_deviations + delta ** 2 * (self.count * other.count / count)
        samples = [s for s in (self.sample, other.sample) if len(s)]
        return VectorSummary(count, mean, deviations, np.concatenate([self.norms, other.norms]),
                             np.concatenate([self.sample_keys, other.sample_keys]), self.sample_ids + other.sample_ids,
                             np.concatenate(samples) if samples else self.sample)

    def std(self) -> np.ndarray:
        """Per dimension, the sample standard deviation (n - 1 in the denominator; 0 for fewer
        than two vectors)."""
        if self.count < 2:
            return np.zeros_like(self.mean)
        return np.sqrt(self.squared_deviations / (self.count - 1))

    def norm_quantiles(self) -> list[float]:
        """The norms at QUANTILES: the smallest norm at or above each fraction of them."""
        return np.quantile(self.norms, QUANTILES, method="inverted_cdf").tolist() if len(self.norms) else []

    def chosen_sample(self, size: int) -> list[list[float]]:
        """The `size` candidates of smallest hash key (ties broken by content id)."""
        order = sorted(range(len(self.sample_keys)), key=lambda i: (self.sample_keys[i], self.sample_ids[i]))[:size]
        return self.sample[order].tolist() if order else []


def embedding_parts(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """A `mapInArrow` function: a task's embedding rows (PART_INPUTS) -> its part of each group
    they fall in, one row of PARTS_SCHEMA per group."""
    rows = pa.Table.from_batches(list(batches))
    if not rows.num_rows:
        return
    groups = rows.group_by(GROUP).aggregate([([], "count_all"), ("content_id", "count_distinct"), ("dim", "max")])
    parts = []
    for group in groups.to_pylist():
        mine = rows.filter(_in_group(group))
        ok = mine.filter(pc.field("vector").is_valid() & (pc.field("status") == STATUS_OK)) if group["reason"] is None else mine.slice(0, 0)
        chosen = ok.filter(pc.field("in_sample"))
        summary = VectorSummary.of(_matrix(ok["vector"]), chosen["key"].to_numpy(), chosen["content_id"].to_pylist(), _matrix(chosen["vector"]))
        parts.append({**{k: group[k] for k in GROUP}, "rows": group["count_all"], "items": group["content_id_count_distinct"],
                      "dim": group["dim_max"], "count": summary.count, "mean": summary.mean.tolist(),
                      "squared_deviations": summary.squared_deviations.tolist(), "norms": summary.norms.tolist(),
                      "sample_keys": summary.sample_keys.tolist(), "sample_ids": list(summary.sample_ids), "sample": summary.sample.tolist()})
    yield pa.RecordBatch.from_pylist(parts, schema=PARTS_SCHEMA)


def _in_group(group: dict) -> pc.Expression:
    """The rows of one group (reason null: the ok rows)."""
    condition = pc.field("reason").is_null() if group["reason"] is None else pc.field("reason") == group["reason"]
    for k in GROUP[:-1]:
        condition = condition & (pc.field(k) == group[k])
    return condition


def _matrix(vectors: pa.ChunkedArray) -> np.ndarray:
    """Vectors of one width as the rows of a float32 matrix."""
    if not len(vectors):
        return np.zeros((0, 0), np.float32)
    return pc.list_flatten(vectors).to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(len(vectors), -1)
