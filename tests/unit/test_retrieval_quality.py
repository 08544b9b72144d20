"""Retrieval quality (retrieval/quality.py, `make eval`) and its benchmark (benchmarks/index.py), without Spark."""
from __future__ import annotations

import numpy as np
import pytest
from embedding_tables import SIGNAL, append, registry_in, rows

from benchmarks import index as index_bench
from conf.settings import IndexSettings, load_settings
from retrieval.embedding_rows import Vectors
from retrieval.quality import copies_found, recall_at_k, retrieval_quality
from rollout.evaluate import evaluate_retrieval


def test_recall_counts_the_true_neighbours_found() -> None:
    truth = [["a", "b", "c"], ["d", "e", "f"]]
    assert recall_at_k(truth, truth, 3) == 1.0
    assert recall_at_k(truth, [["c", "x", "a"], ["y", "z", "w"]], 3) == pytest.approx((2 / 3 + 0) / 2)
    assert recall_at_k(truth, [["a", "x", "b"], ["d", "e", "f"]], 2) == pytest.approx((1 / 2 + 1) / 2)  # only the top 2 count


def test_copies_found_is_the_share_of_each_items_copies_among_its_nearest() -> None:
    groups = {"a": "g", "b": "g", "c": "g", "d": "d", "e": "e"}
    nearest = {"a": ["b", "d"], "b": ["e", "d"], "c": ["a", "b"], "d": ["a", "b"], "e": ["d", "a"]}
    found = copies_found(nearest, groups, 2)
    # a finds one of its two copies, b none, c both; d and e have no copies
    assert found == {"k": 2, "items_with_copies": 3, "mean_share": pytest.approx(0.5), "min_share": 0.0, "all_found": pytest.approx(1 / 3)}
    assert copies_found({"a": ["b"], "b": ["a"]}, {"a": "g", "b": "g", "c": "g"}, 1)["mean_share"] == 1.0  # c is not indexed: no copy of theirs


def copies_of(originals: np.ndarray, copies: int, noise: float, seed: int) -> tuple[Vectors, dict[str, str]]:
    """Each original and `copies` slightly moved copies of it, with their copy groups."""
    rng = np.random.default_rng(seed)
    ids, vectors, groups = [], [], {}
    for i, vector in enumerate(originals):
        for c in range(copies + 1):
            ids.append(f"o{i:04d}-{c}")
            vectors.append(vector + (noise * rng.standard_normal(len(vector)) if c else 0))
            groups[ids[-1]] = f"o{i:04d}"
    return Vectors(ids, np.asarray(vectors, np.float32), "1"), groups


def test_retrieval_quality_measures_the_approximate_index_and_the_copies() -> None:
    vectors, groups = copies_of(index_bench.clustered_vectors(400, 32, seed=3), copies=2, noise=0.01, seed=4)
    every_list = retrieval_quality(vectors, IndexSettings(ivf_lists=8, ivf_probes=8), groups)
    assert every_list["recall_at_k_approximate"] == 1.0 and every_list["approximate"]["lists"] == 8  # all lists searched: exact
    assert every_list["index_kind"] == "flat" and every_list["items"] == 1200
    assert every_list["copies"]["items_with_copies"] == 1200 and every_list["copies"]["mean_share"] == 1.0
    one_list = retrieval_quality(vectors, IndexSettings(ivf_lists=30, ivf_probes=1), groups)
    assert 0 < one_list["recall_at_k_approximate"] < 1
    shuffled = dict(zip(groups, np.random.default_rng(5).permutation(list(groups.values()))))
    assert retrieval_quality(vectors, IndexSettings(), shuffled)["copies"]["mean_share"] < 0.1  # wrong truth: copies not found


def test_make_eval_reports_retrieval_of_each_champion(tmp_path, empty_registry_db) -> None:
    registry_in(tmp_path, empty_registry_db)
    vectors, groups = copies_of(index_bench.clustered_vectors(30, 16, seed=6), copies=1, noise=0.01, seed=7)
    append(tmp_path, rows(vectors.content_ids, vectors.matrix))
    append(tmp_path, rows(["x-1", "x-2"], None))
    append(tmp_path, rows(vectors.content_ids, vectors.matrix[::-1].copy(), model_version="2"))  # not the champion: left out
    truth = {c: {"dup_group": g} for c, g in groups.items()}
    result = evaluate_retrieval(load_settings("local", [f"lakehouse={tmp_path}"]), truth)
    assert list(result) == [SIGNAL]
    assert result[SIGNAL]["items"] == 60 and result[SIGNAL]["model_version"] == "1" and result[SIGNAL]["table_version"] == 2
    assert result[SIGNAL]["copies"]["mean_share"] == 1.0 and result[SIGNAL]["copies"]["items_with_copies"] == 60


def test_the_index_benchmark_measures_the_index_against_exact_search() -> None:
    report = index_bench.run(items=3000, dim=32, queries=50, settings=IndexSettings(exact_below=1000, ivf_probes=2))
    assert report["index_kind"]["name"] == "ivf_flat" and report["vectors_compared_per_query"]["exact"] == 3000
    assert 0 < report["vectors_compared_per_query"]["index"] < 3000
    assert 0 <= report["recall_at_10"] <= 1 and report["query_cost_ratio"] > 0
    assert report["targets_met"]["recall@10 >= 0.95"] == (report["recall_at_10"] >= 0.95)
