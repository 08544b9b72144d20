"""Small embeddings tables for the retrieval tests, written with delta-rs in the table's contract
schema (no Spark), and the numpy brute force their indexes are checked against."""
from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import DeltaTable, write_deltalake

from lake import delta_io
from lake.registry import Registry
from retrieval import index_store
from retrieval.build import embeddings_root
from signals.contracts import EMBEDDINGS

SIGNAL, DIM = "image_embedding", 16
T0 = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)


def rows(ids: list[str], vectors: np.ndarray | None, signal: str = SIGNAL, model_version: str = "1", ds: str = "2026-11-19") -> pa.Table:
    """Rows of EMBEDDINGS: ok rows with `vectors`, or error rows where `vectors` is None."""
    return pa.Table.from_pylist([
        {"content_id": c, "signal": signal, "model_name": "m", "model_version": model_version, "input_hash": f"hash-{c}",
         "vector": None if vectors is None else vectors[i].tolist(), "dim": None if vectors is None else vectors.shape[1],
         "status": "error" if vectors is None else "ok", "error": "image is corrupt or truncated" if vectors is None else None,
         "run_id": "run", "computed_at": T0, "ds": ds}
        for i, c in enumerate(ids)
    ], schema=EMBEDDINGS.schema)


def append(lakehouse: Path | str, table: pa.Table) -> int:
    write_deltalake(embeddings_root(str(lakehouse)), table, partition_by=list(EMBEDDINGS.partition_by), mode="append")
    return DeltaTable(embeddings_root(str(lakehouse))).version()


def delete(lakehouse: Path | str, *content_ids: str) -> int:
    table = DeltaTable(embeddings_root(str(lakehouse)))
    table.delete(" OR ".join(f"content_id = '{c}'" for c in content_ids))
    return table.version()


def random_vectors(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def brute_force(lakehouse: Path | str, version: int, query: np.ndarray, k: int, model_version: str = "1") -> list[tuple[str, float]]:
    """The k nearest ok rows of SIGNAL at the version, computed with numpy over the table as read."""
    table = delta_io.read_arrow(embeddings_root(str(lakehouse)), version).to_pylist()
    ok = [r for r in table if r["signal"] == SIGNAL and r["model_version"] == model_version and r["status"] == "ok"]
    matrix = np.array([r["vector"] for r in ok], dtype=np.float64)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    scores = matrix @ (query / np.linalg.norm(query))
    order = np.argsort(-scores, kind="stable")[:k]
    return [(ok[i]["content_id"], float(scores[i])) for i in order]


def assert_same(found: list[tuple[str, float]], expected: list[tuple[str, float]]) -> None:
    assert [c for c, _ in found] == [c for c, _ in expected]
    np.testing.assert_allclose([s for _, s in found], [s for _, s in expected], atol=1e-5)


def registry_in(lakehouse: Path, empty_registry_db: Path, versions: int = 2) -> Registry:
    """The lakehouse's own registry (a copy of an empty one), with `versions` versions of SIGNAL
    and version 1 its champion."""
    (lakehouse / "_registry").mkdir()
    shutil.copy(empty_registry_db, lakehouse / "_registry" / "mlflow.db")
    registry = Registry(f"sqlite:///{lakehouse}/_registry/mlflow.db")
    for n in range(versions):
        registry.register(SIGNAL, f"code:version-{n + 1}", {"kind": "efficientnet_lite0_image"})
    registry.promote(SIGNAL, "1")
    return registry


def shift_faiss_ids(lakehouse: Path | str) -> None:
    """Damage the current index of SIGNAL: its ids file names each faiss id plus one (as many ids,
    the lowest of the index's named by none, one the index does not hold named instead)."""
    manifest = index_store.read_manifest(str(lakehouse), SIGNAL)
    path = Path(index_store.signal_folder(str(lakehouse), SIGNAL)) / manifest.ids_file
    ids = pq.read_table(path)
    pq.write_table(ids.set_column(1, "faiss_id", pc.add(ids["faiss_id"], 1)), path)
