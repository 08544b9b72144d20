"""The index and the retrieval evaluation on real rows: the sample corpus's backfill (its registry
named the champions), copied so the index can be written beside it."""
from __future__ import annotations

import shutil
from collections import defaultdict

import numpy as np
import pytest

from conf.settings import load_settings
from jobs.cli import main
from lake import delta_io
from rollout.evaluate import evaluate_retrieval
from sample_corpus.generate import TRUTH_TABLE

pytestmark = pytest.mark.spark


def champion_vectors(lakehouse: str) -> tuple[list[str], np.ndarray]:
    """image_embedding's ok rows (its only model version here), as unit vectors."""
    rows = [r for r in delta_io.read_arrow(f"{lakehouse}/embeddings").to_pylist() if r["signal"] == "image_embedding" and r["status"] == "ok"]
    assert len({r["model_version"] for r in rows}) == 1
    matrix = np.array([r["vector"] for r in rows], np.float64)
    return [r["content_id"] for r in rows], matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def test_index_neighbours_and_copies_found_on_the_backfilled_sample(backfilled, tmp_path, capsys) -> None:
    lakehouse = tmp_path / "lakehouse"
    for name in ("embeddings", "_registry", TRUTH_TABLE):
        shutil.copytree(f"{backfilled.settings.lakehouse_root}/{name}", lakehouse / name)
    assert main(["index", "image_embedding", "--set", f"lakehouse={lakehouse}"]) == 0
    ids, matrix = champion_vectors(str(lakehouse))
    query = ids[0]
    assert main(["neighbours", "image_embedding", query, "-k", "5", "--set", f"lakehouse={lakehouse}"]) == 0
    printed = [line.split("│")[2].strip() for line in capsys.readouterr().out.splitlines() if line.startswith("│")]
    scores = matrix @ matrix[0]
    assert printed == [ids[i] for i in np.argsort(-scores, kind="stable") if ids[i] != query][:5]

    truth = {r["content_id"]: r for r in delta_io.read_arrow(str(lakehouse / TRUTH_TABLE)).to_pylist()}
    result = evaluate_retrieval(load_settings("local", [f"lakehouse={lakehouse}"]), truth)["image_embedding"]
    groups = defaultdict(set)
    for content_id in ids:
        groups[truth[content_id]["dup_group"]].add(content_id)
    shares = []
    for i, content_id in enumerate(ids):  # each item's copies among its 10 nearest others, by numpy
        copies = groups[truth[content_id]["dup_group"]] - {content_id}
        if copies:
            nearest = [ids[j] for j in np.argsort(-(matrix @ matrix[i]), kind="stable") if j != i][:10]
            shares.append(len(copies & set(nearest)) / min(len(copies), 10))
    assert result["items"] == len(ids) and result["copies"]["items_with_copies"] == len(shares) > 0
    assert result["copies"]["mean_share"] == pytest.approx(np.mean(shares))
    assert 0 < result["recall_at_k_approximate"] <= 1
