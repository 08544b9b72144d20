"""Retrieval: recall@10 and query cost of the approximate index against exact search, on a
synthetic embeddings table.

    python -m benchmarks.index [--items 100000] [--dim 384] [--queries 1000] [--out benchmarks/results/index.json]

A seeded table of random clustered vectors (topics, clusters around them, items around those:
the neighbours of an item are mostly in its cluster, and clusters of one topic are near each
other) is written with delta-rs in the embeddings table's contract schema. The index is built as
`content-signals index` builds it (`retrieval.build.build_index`, the local profile's `index:`
settings: IVF-Flat at this size); the reference is an exact `IndexFlatIP` of the same vectors.
`--queries` more vectors from the same distribution, not in the table, are searched in both on
one thread (best of 3 rounds each), in one run: recall@10 of the index against the exact top 10,
seconds per query of each, and the vectors each compares per query. `make bench` stores the
report under "index".
"""
from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
from deltalake import write_deltalake

from benchmarks.report import index_line, write_json
from conf.settings import IndexSettings, load_settings
from retrieval import index_store
from retrieval.build import build_index, embeddings_root
from retrieval.quality import recall_at_k
from retrieval.vector_index import EXACT, IndexKind, VectorIndex
from signals.contracts import EMBEDDINGS, UTC_MICROS

SIGNAL, MODEL_VERSION, K, ROUNDS = "bench_embedding", "1", 10, 3
TARGETS = {"recall_at_10": 0.95, "query_cost_ratio": 10.0}  # the index's recall@10 at least, exact's seconds per query over the index's at least


def clustered_vectors(n: int, dim: int, seed: int, topics: int = 100, clusters: int = 2000, cluster_spread: float = 1.0,
                      item_spread: float = 1.5) -> np.ndarray:
    """n unit vectors: `clusters` centres spread around `topics` random directions, items spread
    around the centres (each spread is the norm of the Gaussian noise added to a unit vector)."""
    rng = np.random.default_rng(seed)

    def around(centres: np.ndarray, count: int, spread: float) -> np.ndarray:
        noise = rng.standard_normal((count, dim), dtype=np.float32) * (spread / np.sqrt(dim))
        points = centres[rng.integers(0, len(centres), count)] + noise
        return points / np.linalg.norm(points, axis=1, keepdims=True)

    directions = around(np.zeros((1, dim), np.float32), topics, 1.0)
    return around(around(directions, clusters, cluster_spread), n, item_spread).astype(np.float32)


def write_table(lakehouse: Path, vectors: np.ndarray) -> list[str]:
    """The vectors as ok rows of SIGNAL in an embeddings table, over 7 days; returns their ids."""
    n, dim = vectors.shape
    ids = [f"item-{i:07d}" for i in range(n)]
    columns = {
        "content_id": pa.array(ids), "signal": pa.array([SIGNAL] * n), "model_name": pa.array(["synthetic"] * n),
        "model_version": pa.array([MODEL_VERSION] * n), "input_hash": pa.array(ids),
        "vector": pa.ListArray.from_arrays(pa.array(np.arange(0, (n + 1) * dim, dim, dtype=np.int32)), pa.array(vectors.reshape(-1))),
        "dim": pa.array(np.full(n, dim, np.int32)), "status": pa.array(["ok"] * n), "error": pa.nulls(n, pa.string()),
        "run_id": pa.array(["bench"] * n), "computed_at": pa.array(np.zeros(n, "datetime64[us]"), UTC_MICROS),
        "ds": pa.array([f"2026-11-{14 + i % 7}" for i in range(n)]),
    }
    write_deltalake(embeddings_root(str(lakehouse)), pa.table(columns).cast(EMBEDDINGS.schema), partition_by=list(EMBEDDINGS.partition_by))
    return ids


def _fastest(search: Callable[[], list[list[tuple[str, float]]]]) -> tuple[float, list[list[str]]]:
    """The best of ROUNDS rounds' seconds, and the ids found."""
    best, found = float("inf"), []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        found = search()
        best = min(best, time.perf_counter() - start)
    return best, [[c for c, _ in row] for row in found]


def run(items: int = 100_000, dim: int = 384, queries: int = 1000, seed: int = 7, settings: IndexSettings | None = None,
        workdir: Path | None = None) -> dict[str, Any]:
    """Build the index of a synthetic table, then measure it against exact search in one run."""
    settings = settings or load_settings("local").index
    vectors = clustered_vectors(items + queries, dim, seed)
    table, asked = vectors[:items], vectors[items:]
    with tempfile.TemporaryDirectory(prefix="bench-index-", dir=workdir) as folder:
        lakehouse = Path(folder)
        start = time.perf_counter()
        ids = write_table(lakehouse, table)
        write_s = time.perf_counter() - start
        start = time.perf_counter()
        manifest = build_index(str(lakehouse), SIGNAL, MODEL_VERSION, settings).manifest
        build_s = time.perf_counter() - start
        _, index = index_store.load(str(lakehouse), SIGNAL)
    exact = VectorIndex.build(ids, table, IndexKind(EXACT))
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        exact_s, truth = _fastest(lambda: exact.search(asked, K))
        faiss.cvar.indexIVF_stats.reset()
        index_s, found = _fastest(lambda: index.search(asked, K))
        compared = faiss.cvar.indexIVF_stats.ndis / (ROUNDS * queries) + (manifest.kind.get("lists") or 0)  # list entries + centroids
    finally:
        faiss.omp_set_num_threads(threads)
    recall, ratio = recall_at_k(truth, found, K), exact_s / index_s
    return {
        "items": items, "dim": dim, "queries": queries, "seed": seed, "k": K, "index_kind": manifest.kind,
        "recall_at_10": round(recall, 4), "query_cost_ratio": round(ratio, 1),
        "ms_per_query": {"exact": round(1000 * exact_s / queries, 3), "index": round(1000 * index_s / queries, 3)},
        "vectors_compared_per_query": {"exact": items, "index": round(compared)},
        "seconds": {"write_table": round(write_s, 1), "build_index": round(build_s, 1)},
        "data": "clustered_vectors: 100 topics, 2000 clusters (spread 1.0), items (spread 1.5); queries: more of the same, not in the table",
        "timing": f"one faiss thread, best of {ROUNDS} rounds of all queries, exact and index in the same run",
        "targets_met": {"recall@10 >= 0.95": recall >= TARGETS["recall_at_10"],
                        "query cost >= 10x lower than exact": ratio >= TARGETS["query_cost_ratio"]},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.index", description=__doc__.split("\n")[0])
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=384, help="vector length (default 384: the text embedding's)")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path, default=None, help="also write the JSON report here")
    args = p.parse_args(argv)
    report = run(args.items, args.dim, args.queries, args.seed)
    print(index_line(report))
    if args.out:
        write_json(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
