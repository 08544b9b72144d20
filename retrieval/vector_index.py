"""A faiss index of one signal's vectors and the content ids they belong to: built, changed in
place (items added, replaced, removed) and searched by inner product, which on the tables'
L2-normalised vectors is cosine similarity.

Two kinds, chosen by the number of items (`choose_kind`): exact search (`IndexFlatIP` inside an
`IndexIDMap2`) below `index.exact_below`, IVF-Flat from there (k-means lists, `ivf_probes` of
them searched per query). Both take removals in place, so an update never rebuilds them; faiss's
HNSW does not (docs/design.md, Retrieval indexes). faiss ids are int64s this class hands out in
order; the content id of each is kept beside the index (`ids`), never inside it.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import faiss
import numpy as np

from conf.settings import IndexSettings

EXACT, IVF_FLAT = "flat", "ivf_flat"
MIN_TRAIN_PER_LIST = 39  # k-means points per centroid below which faiss warns that lists are unreliable
KMEANS_SEED = 1234  # the same vectors train the same lists


@dataclass(frozen=True)
class IndexKind:
    """Which faiss index, with its parameters (recorded in the manifest)."""

    name: str
    lists: int | None = None
    probes: int | None = None
    train_per_list: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def approximate_kind(items: int, settings: IndexSettings) -> IndexKind:
    """The IVF-Flat index for `items` vectors: `ivf_lists` lists (default 4 x sqrt(items)), never
    so many that a list has fewer than 39 training points, `ivf_probes` of them searched."""
    lists = settings.ivf_lists or round(4 * math.sqrt(items))
    lists = max(1, min(lists, items // MIN_TRAIN_PER_LIST))
    return probed(IndexKind(IVF_FLAT, lists, None, settings.train_per_list), settings)


def probed(kind: IndexKind, settings: IndexSettings) -> IndexKind:
    """`kind` searching `ivf_probes` of its lists (at most all): a query's setting, so an update of
    an index takes it without training the lists again (exact search has no lists to probe)."""
    return kind if kind.lists is None else replace(kind, probes=min(settings.ivf_probes, kind.lists))


def choose_kind(items: int, settings: IndexSettings) -> IndexKind:
    """Exact search below `exact_below` items (it costs items x dim per query), IVF-Flat above."""
    return IndexKind(EXACT) if items < settings.exact_below else approximate_kind(items, settings)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows as a C-contiguous float32 matrix of unit length (inner product = cosine)."""
    matrix = np.ascontiguousarray(vectors, dtype=np.float32).copy()
    if len(matrix):
        faiss.normalize_L2(matrix)
    return matrix


class VectorIndex:
    """A faiss index and the content id of each of its vectors."""

    def __init__(self, index: faiss.Index, kind: IndexKind, ids: dict[str, int], next_id: int) -> None:
        self.index = index
        self.kind = kind
        self.ids = ids  # content id -> faiss id
        self.content = {faiss_id: content_id for content_id, faiss_id in ids.items()}
        self.next_id = next_id
        if kind.probes is not None:
            faiss.extract_index_ivf(index).nprobe = kind.probes

    @classmethod
    def build(cls, content_ids: Sequence[str], vectors: np.ndarray, kind: IndexKind) -> VectorIndex:
        """A new index of `vectors` (one row per content id), trained on them if it is IVF."""
        if len(set(content_ids)) != len(content_ids):
            raise ValueError("an index holds each content id once")
        matrix = unit_rows(vectors)
        dim = matrix.shape[1]
        if kind.name == EXACT:
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        elif kind.name == IVF_FLAT:
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, kind.lists, faiss.METRIC_INNER_PRODUCT)
            index.cp.max_points_per_centroid = kind.train_per_list
            index.cp.seed = KMEANS_SEED
            index.train(matrix)
        else:
            raise ValueError(f"unknown index kind {kind.name!r}")
        built = cls(index, kind, {}, 0)
        built.add(content_ids, matrix)
        return built

    @property
    def dim(self) -> int:
        return self.index.d

    def __len__(self) -> int:
        return self.index.ntotal

    def add(self, content_ids: Sequence[str], vectors: np.ndarray) -> None:
        """Add items; an item already in the index has its vector replaced."""
        if not len(content_ids):
            return
        if len(set(content_ids)) != len(content_ids):
            raise ValueError("an index holds each content id once")
        matrix = unit_rows(vectors)
        if matrix.shape[1] != self.dim:
            raise ValueError(f"vectors of {matrix.shape[1]} dimensions cannot join an index of {self.dim}")
        self.remove(content_ids)
        faiss_ids = np.arange(self.next_id, self.next_id + len(content_ids), dtype=np.int64)
        self.index.add_with_ids(matrix, faiss_ids)
        self.next_id += len(content_ids)
        for content_id, faiss_id in zip(content_ids, faiss_ids.tolist()):
            self.ids[content_id] = faiss_id
            self.content[faiss_id] = content_id

    def remove(self, content_ids: Iterable[str]) -> int:
        """Remove the items that are in the index; returns how many were."""
        faiss_ids = np.array([self.ids.pop(c) for c in set(content_ids) if c in self.ids], dtype=np.int64)
        if len(faiss_ids):
            self.index.remove_ids(faiss_ids)
            for faiss_id in faiss_ids.tolist():
                del self.content[faiss_id]
        return len(faiss_ids)

    def search(self, vectors: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """The k nearest items of each query row, nearest first, as (content id, cosine); a ValueError
        for k below 1 (faiss's own refusal is a bare AssertionError)."""
        if k < 1:
            raise ValueError(f"k is {k}: a search returns at least 1 neighbour")
        matrix = unit_rows(np.atleast_2d(vectors))
        if matrix.shape[1] != self.dim:
            raise ValueError(f"a query of {matrix.shape[1]} dimensions for an index of {self.dim}")
        if not len(self):
            return [[] for _ in matrix]
        scores, found = self.index.search(matrix, min(k, len(self)))
        return [[(self.content[int(i)], float(s)) for i, s in zip(row_ids, row_scores) if i >= 0]
                for row_ids, row_scores in zip(found, scores)]

    def faiss_ids(self) -> list[int]:
        """The faiss ids the index holds, in no order: read back, they must be the ids file's (a
        search that finds one it does not name fails)."""
        if hasattr(self.index, "id_map"):  # exact search: IndexIDMap2
            return faiss.vector_to_array(self.index.id_map).tolist()
        lists = faiss.extract_index_ivf(self.index).invlists  # a RuntimeError for an index of neither kind
        return [i for n in range(lists.nlist) if (size := lists.list_size(n)) for i in faiss.rev_swig_ptr(lists.get_ids(n), size).tolist()]

    def to_bytes(self) -> bytes:
        return faiss.serialize_index(self.index).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, kind: IndexKind, ids: dict[str, int], next_id: int) -> VectorIndex:
        return cls(faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8)), kind, ids, next_id)


def neighbours(index: VectorIndex, vector: np.ndarray | Sequence[float], k: int) -> list[tuple[str, float]]:
    """The k items of `index` nearest to `vector`, nearest first, as (content id, cosine)."""
    return index.search(np.asarray(vector, dtype=np.float32)[None, :], k)[0]
