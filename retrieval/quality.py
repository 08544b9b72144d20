"""How well an index retrieves: recall@k of the approximate index against exact search on the
same vectors, and, where the corpus says which items are copies of which, the share of an item's
copies among its k nearest neighbours (a copy of a picture should come back first).
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from conf.settings import IndexSettings
from retrieval.embedding_rows import Vectors
from retrieval.vector_index import EXACT, IndexKind, VectorIndex, approximate_kind, choose_kind


def nearest_others(index: VectorIndex, content_ids: Sequence[str], matrix: np.ndarray, k: int) -> list[list[str]]:
    """For each item of the index (its id and vector), the k nearest other items, nearest first."""
    found = index.search(matrix, k + 1)
    return [[c for c, _ in row if c != own][:k] for own, row in zip(content_ids, found)]


def recall_at_k(truth: Sequence[Sequence[str]], found: Sequence[Sequence[str]], k: int) -> float:
    """The mean share of each query's true k nearest that were found among its k results."""
    shares = [len(set(t[:k]) & set(f[:k])) / len(t[:k]) for t, f in zip(truth, found) if len(t)]
    return float(np.mean(shares)) if shares else 1.0


def copies_found(nearest: Mapping[str, Sequence[str]], groups: Mapping[str, str], k: int) -> dict[str, Any]:
    """For each item with copies among the items searched (`groups`: item -> its copy group), the
    share of them among its k nearest (of at most k copies): their mean, minimum and how often all."""
    members: dict[str, set[str]] = defaultdict(set)
    for content_id in nearest:
        if content_id in groups:
            members[groups[content_id]].add(content_id)
    shares = []
    for content_id, found in nearest.items():
        copies = members[groups[content_id]] - {content_id} if content_id in groups else set()
        if copies:
            shares.append(len(copies & set(found[:k])) / min(len(copies), k))
    return {"k": k, "items_with_copies": len(shares), "mean_share": float(np.mean(shares)) if shares else None,
            "min_share": float(min(shares)) if shares else None, "all_found": float(np.mean([s == 1 for s in shares])) if shares else None}


def retrieval_quality(vectors: Vectors, settings: IndexSettings, groups: Mapping[str, str] | None = None, k: int = 10) -> dict[str, Any]:
    """Recall@k of the approximate index (IVF-Flat with the configured parameters for this many
    items) against exact search, each item's k nearest others as queries; with `groups`, the
    share of copies found by the index the `index` command builds for this many items."""
    ids, n = vectors.content_ids, len(vectors.content_ids)
    exact = VectorIndex.build(ids, vectors.matrix, IndexKind(EXACT))
    approximate = VectorIndex.build(ids, vectors.matrix, approximate_kind(n, settings))
    truth, found = nearest_others(exact, ids, vectors.matrix, k), nearest_others(approximate, ids, vectors.matrix, k)
    kind = choose_kind(n, settings)
    result: dict[str, Any] = {"items": n, "model_version": vectors.model_version, "k": k, "index_kind": kind.name,
                              "recall_at_k_approximate": recall_at_k(truth, found, k), "approximate": approximate.kind.as_dict()}
    if groups is not None:
        result["copies"] = copies_found(dict(zip(ids, truth if kind.name == EXACT else found)), groups, k)
    return result
