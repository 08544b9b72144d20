"""A summary of one group of embedding vectors that is computed in parts (a data file's rows, as
they are written or read again) and merged exactly on the driver: count, per-dimension mean and
squared deviations (merged by Chan et al.'s pairwise update, stable where a sum of squares is
not), the vectors' norms and the sample's candidates. Pure numpy and pyarrow (no Spark): a
Python worker imports no more than it needs.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from signals.contracts import QUANTILES


@dataclass(frozen=True)
class VectorSummary:
    """Of a group's ok vectors: their count, per-dimension mean and sum of squared deviations
    from it, their L2 norms, and the sample's candidates (hash key, content id, vector)."""

    count: int
    mean: np.ndarray  # float64, per dimension; empty without vectors
    squared_deviations: np.ndarray  # float64, per dimension
    norm_chunks: tuple[np.ndarray, ...]  # float64, one per vector, in pieces of decreasing size (_stacked), joined when read
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
        return cls(len(wide), mean, ((wide - mean) ** 2).sum(axis=0), (np.sqrt((wide * wide).sum(axis=1)),),
                   np.asarray(sample_keys, np.int64), tuple(sample_ids), sample)

    @classmethod
    def empty(cls) -> VectorSummary:
        """The summary of no vectors."""
        return cls(0, np.zeros(0), np.zeros(0), ())

    @classmethod
    def of_part(cls, part: dict) -> VectorSummary:
        """The summary a file's part carries (monitoring.file_summary.PART_SCHEMA, arrays as numpy;
        the sample's vectors one after the other)."""
        keys = np.asarray(part["sample_keys"], np.int64)
        sample = np.asarray(part["sample"], np.float32)
        return cls(part["count"], np.asarray(part["mean"], np.float64), np.asarray(part["squared_deviations"], np.float64),
                   (np.asarray(part["norms"], np.float64),), keys, tuple(part["sample_ids"]),
                   sample.reshape(len(keys), -1) if len(keys) else np.zeros((0, 0), np.float32))

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
        return VectorSummary(count, mean, deviations, _stacked(self.norm_chunks, other.norm_chunks),
                             np.concatenate([self.sample_keys, other.sample_keys]), self.sample_ids + other.sample_ids,
                             np.concatenate(samples) if samples else self.sample)

    def trimmed(self, size: int) -> VectorSummary:
        """The same summary with only the `size` sample candidates of smallest hash key: no
        other can be among the `size` chosen from a merge with it."""
        if len(self.sample_keys) <= size:
            return self
        order = self._sample_order()[:size]
        return VectorSummary(self.count, self.mean, self.squared_deviations, self.norm_chunks, self.sample_keys[order],
                             tuple(self.sample_ids[i] for i in order), self.sample[order])

    def _sample_order(self) -> list[int]:
        """The sample candidates by hash key, ties broken by content id."""
        return sorted(range(len(self.sample_keys)), key=lambda i: (self.sample_keys[i], self.sample_ids[i]))

    @property
    def norms(self) -> np.ndarray:
        """The vectors' L2 norms."""
        return np.concatenate(self.norm_chunks) if self.norm_chunks else np.zeros(0)

    def std(self) -> np.ndarray:
        """Per dimension, the sample standard deviation (n - 1 in the denominator; 0 for fewer
        than two vectors)."""
        if self.count < 2:
            return np.zeros_like(self.mean)
        return np.sqrt(self.squared_deviations / (self.count - 1))

    def norm_quantiles(self) -> list[float]:
        """The norms at QUANTILES: the smallest norm at or above each fraction of them."""
        norms = self.norms
        return np.quantile(norms, QUANTILES, method="inverted_cdf").tolist() if len(norms) else []

    def chosen_sample(self, size: int) -> np.ndarray:
        """The vectors of the `size` candidates of smallest hash key (ties broken by content id)."""
        order = self._sample_order()[:size]
        return self.sample[order] if order else np.zeros((0, self.mean.size), np.float32)


def _stacked(chunks: tuple[np.ndarray, ...], more: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """`chunks` (largest first) with `more` pushed on, a chunk joined to the one below it while it
    is no smaller: each norm is copied about log2(n) times however many merges bring it in, where
    joining at every merge copies the norms so far each time."""
    out = list(chunks)
    for chunk in more:
        out.append(chunk)
        while len(out) > 1 and len(out[-1]) >= len(out[-2]):
            top = out.pop()
            out[-1] = np.concatenate([out[-1], top])
    return tuple(out)


def vector_matrix(vectors: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Vectors of one width as the rows of a float32 matrix."""
    if not len(vectors):
        return np.zeros((0, 0), np.float32)
    return pc.list_flatten(vectors).to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(len(vectors), -1)
