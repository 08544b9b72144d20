"""A run's statistics from its files' summaries, merged on the driver, against numpy on all the
run's rows at once: counts and error reasons per day, per-dimension mean and std, norm quantiles
(by rank) and the sample for embeddings; per label the histogram, decisions and score quantiles.
Rows of another run in the same files count for nothing."""
from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from monitoring.file_summary import FileSummaries, merged_stats, reason_category, sample_keys
from monitoring.vector_summary import VectorSummary
from signals.contracts import EMBEDDINGS, HISTOGRAM_BINS, KEYFRAMES, LABELS, QUANTILES, STATUS_OK

DIM, RUN, DAYS = 16, "run-1", ("2026-11-14", "2026-11-15")
REASONS = ("decode failed: 12 bytes", "transient: timeout after 30 s", "decode failed: 7 bytes")


def _embedding_rows(n: int, seed: int, unusable: tuple = ()) -> pa.Table:
    """Rows of two days of one signal, a tenth of them errors; the vectors far from 0 with a small
    spread (a sum of squares would lose the spread there); a fifth of them another run's. Every
    seventh row's vector, if `unusable`, holds one of its values (None: no vector), as another writer's may."""
    rng = np.random.default_rng(seed)
    error = rng.random(n) < 0.1
    vectors = (100 + 0.01 * rng.standard_normal((n, DIM))).astype(np.float32)
    if unusable:
        for i in range(0, n, 7):
            vectors[i, i % DIM] = np.nan if unusable[i % len(unusable)] is None else unusable[i % len(unusable)]
    return pa.Table.from_pylist([{
        "content_id": f"c{i:05d}", "signal": "image_embedding", "model_version": "1", "ds": str(rng.choice(DAYS)),
        "run_id": "run-0" if rng.random() < 0.2 else RUN, "status": "error" if e else STATUS_OK, "error": REASONS[i % 3] if e else None,
        "dim": None if e else DIM,
        "vector": None if e or (unusable and i % 7 == 0 and unusable[i % len(unusable)] is None) else v.tolist(),
    } for i, (e, v) in enumerate(zip(error, vectors))], schema=EMBEDDINGS.schema)


def _label_rows(n: int, seed: int) -> pa.Table:
    """Two labels per ok item, one error row per failed item."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        common = {"content_id": f"c{i:05d}", "signal": "image_safety", "model_version": "2", "ds": str(rng.choice(DAYS)), "run_id": RUN}
        if rng.random() < 0.1:
            rows.append({**common, "status": "error", "error": REASONS[i % 3]})
            continue
        for label in ("nsfw", "sfw"):
            score = float(rng.random()) if rng.random() < 0.95 else 1.0
            rows.append({**common, "label": label, "status": STATUS_OK, "score": score, "threshold": 0.5,
                         "decision": None if label == "sfw" else score >= 0.5})
    return pa.Table.from_pylist(rows, schema=LABELS.schema)


def _summaries(rows: pa.Table, files: int, seed: int, contract=EMBEDDINGS) -> list[bytes]:
    """Each file's summary, an item's rows dealt to one file at random and added in small batches."""
    ids = sorted(set(rows["content_id"].to_pylist()))
    file_of = dict(zip(ids, np.random.default_rng(seed).integers(0, files, len(ids)).tolist()))
    per_file = np.array([file_of[c] for c in rows["content_id"].to_pylist()])
    out = []
    for f in range(files):
        summary = FileSummaries(RUN, sample_size=5, seed=3)(contract)
        for batch in rows.take(np.flatnonzero(per_file == f)).to_batches(max_chunksize=7):
            summary.add(pa.Table.from_batches([batch]))
        out += [b for b in [summary.to_bytes()] if b is not None]
    return out


@pytest.mark.parametrize("unusable", [(), (math.nan, math.inf, None)], ids=["vectors", "a-foreign-writers-nan-inf-and-null-vectors"])
def test_embedding_files_merged_are_numpys_statistics_of_the_runs_rows(unusable: tuple) -> None:
    """Ok rows without a finite vector (found in review: a NaN one stopped the monitor with a
    traceback in the drift test) are left out of the vectors' statistics, as a label's NaN score is."""
    rows = _embedding_rows(400, seed=1, unusable=unusable)
    stats = {r["ds"]: r for r in merged_stats(_summaries(rows, files=3, seed=2), sample_size=5)}
    mine = [r for r in rows.to_pylist() if r["run_id"] == RUN]
    assert set(stats) == set(DAYS)
    for ds, row in stats.items():
        day = [r for r in mine if r["ds"] == ds]
        failed = [r for r in day if r["status"] != STATUS_OK]
        assert (row["kind"], row["rows"], row["items"], row["error_items"]) == ("embedding", len(day), len(day), len(failed))
        counts = {}
        for r in failed:
            counts[reason_category(r["error"])] = counts.get(reason_category(r["error"]), 0) + 1
        assert {(r["reason"], r["count"]) for r in row["error_reasons"]} == set(counts.items())
        ok = [r for r in day if r["status"] == STATUS_OK and r["vector"] is not None and np.isfinite(r["vector"]).all()]
        vectors = np.array([r["vector"] for r in ok], np.float64)
        assert np.allclose(row["dim_mean"], vectors.mean(axis=0), rtol=0, atol=1e-12)
        assert np.allclose(row["dim_std"], vectors.std(axis=0, ddof=1), rtol=1e-9, atol=0)
        norms = np.sort(np.linalg.norm(vectors, axis=1))
        assert row["norm_quantiles"] == pytest.approx([norms[max(math.ceil(q * len(norms)) - 1, 0)] for q in QUANTILES], rel=1e-12)
        keys = sample_keys([r["content_id"] for r in ok], seed=3)
        smallest = sorted(zip(keys.tolist(), [r["content_id"] for r in ok], [r["vector"] for r in ok]))[:5]
        assert np.array_equal(row["sample"], np.array([v for _, _, v in smallest], np.float32))
        assert row["dim"] == DIM


@pytest.mark.parametrize("unscored", [(), (math.nan, math.inf, None)], ids=["scores", "a-foreign-writers-nan-inf-and-null-scores"])
def test_label_files_merged_are_numpys_statistics_of_the_runs_rows(unscored: tuple) -> None:
    """Scores that are not numbers (rows only another writer makes: ours refuses them) count as rows
    but stay out of the histogram and quantiles, instead of failing the summary."""
    rows = _label_rows(300, seed=4)
    if unscored:
        scores = [unscored[i % len(unscored)] if i % 13 == 0 else s for i, s in enumerate(rows["score"].to_pylist())]
        rows = rows.set_column(rows.schema.get_field_index("score"), "score", pa.array(scores, pa.float64()))
    stats = {r["ds"]: r for r in merged_stats(_summaries(rows, files=4, seed=5, contract=LABELS), sample_size=5)}
    every = rows.to_pylist()
    for ds, row in stats.items():
        day = [r for r in every if r["ds"] == ds]
        assert row["kind"] == "label" and row["rows"] == len(day)
        assert row["items"] == len({r["content_id"] for r in day})
        assert row["error_items"] == len({r["content_id"] for r in day if r["status"] != STATUS_OK})
        assert [m["label"] for m in row["labels"]] == ["nsfw", "sfw"]
        for m in row["labels"]:
            scores = np.array([r["score"] for r in day if r["label"] == m["label"] and r["score"] is not None and math.isfinite(r["score"])])
            expected, _ = np.histogram(scores, np.linspace(0, 1, HISTOGRAM_BINS + 1))
            assert m["histogram"] == expected.tolist()
            assert m["quantiles"] == np.quantile(scores, QUANTILES, method="inverted_cdf").tolist()
            decisions = [r["decision"] for r in day if r["label"] == m["label"] and r["decision"] is not None]
            assert (m["decided"], m["positives"]) == (len(decisions), sum(decisions))
            assert m["decision_rate"] == (sum(decisions) / len(decisions) if decisions else None)


def test_only_signal_tables_are_summarised_and_a_file_of_other_runs_has_no_summary() -> None:
    summaries = FileSummaries(RUN, sample_size=5, seed=3)
    assert summaries(KEYFRAMES) is None
    other = summaries(EMBEDDINGS)
    rows = _embedding_rows(20, seed=6)
    other.add(rows.filter(pa.compute.equal(rows["run_id"], "run-0")))
    assert other.to_bytes() is None


def test_reason_categories_drop_particulars_and_keys_do_not_depend_on_the_process() -> None:
    assert reason_category("transient: timeout after 30 s: url") == "transient: timeout after N s"
    assert reason_category("decode failed: 12 bytes") == "decode failed"
    assert reason_category(None) == ""
    assert sample_keys(["a", "b"], 1).tolist() == sample_keys(["a", "b"], 1).tolist() != sample_keys(["a", "b"], 2).tolist()
    assert (sample_keys(["a", "b", "c"], 0) >= 0).all()


def test_std_of_one_vector_is_zero_and_no_vectors_have_no_quantiles() -> None:
    one = VectorSummary.of(np.ones((1, DIM), np.float32), np.zeros(0), [], np.zeros((0, 0), np.float32))
    assert one.std().tolist() == [0.0] * DIM
    assert one.merged(VectorSummary.empty()) is one and VectorSummary.empty().merged(one) is one
    assert VectorSummary.empty().norm_quantiles() == [] and VectorSummary.empty().chosen_sample(5).size == 0


def test_norms_merged_batch_by_batch_stay_in_few_pieces_and_lose_none() -> None:
    rng = np.random.default_rng(7)
    batches = [rng.random((int(rng.integers(1, 9)), DIM)).astype(np.float32) for _ in range(500)]
    summary = VectorSummary.empty()
    for vectors in batches:
        summary = summary.merged(VectorSummary.of(vectors, np.zeros(0, np.int64), [], np.zeros((0, 0), np.float32)))
    every = np.concatenate(batches).astype(np.float64)
    assert np.allclose(np.sort(summary.norms), np.sort(np.linalg.norm(every, axis=1)), rtol=1e-12)
    assert len(summary.norm_chunks) <= math.log2(len(every)) + 1
    assert all(len(a) > len(b) for a, b in zip(summary.norm_chunks, summary.norm_chunks[1:]))  # largest first


@pytest.mark.parametrize("files", [1, 3], ids=["in-one-file", "across-files"])
def test_vectors_of_several_widths_in_one_signals_day_are_refused_naming_them(files: int) -> None:
    """Found in review: another writer's vectors of 16 and 8 dimensions under one model version were
    reshaped into rows of a width neither has (or a traceback), in one file; a traceback on the driver,
    across files. The statistics are refused instead, as retrieval refuses them."""
    from conf.settings import UsageError
    from monitoring.stats import stats_table

    rows = _embedding_rows(60, seed=1).to_pylist()
    for i, r in enumerate(rows):
        if r["vector"] is not None and i % 2:
            r["vector"], r["dim"] = r["vector"][:8], 8
    mixed = pa.Table.from_pylist(rows, schema=EMBEDDINGS.schema)
    with pytest.raises(UsageError, match=r"image_embedding at model version 1 on 2026-11-1\d: ok vectors of 8 and 16 dimensions"):
        stats_table(_summaries(mixed, files=files, seed=2), RUN, "backfill", sample_size=5)
