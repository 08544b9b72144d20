"""rollout.compare on synthetic rows of one signal at two model versions: identical versions show
no differences, changed ones do; the HTML report is one self-contained file; the run lands in MLflow."""
from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from rollout.compare import (
    EXPERIMENT,
    build_comparison,
    compare_embeddings,
    compare_labels,
    flatten_metrics,
    log_to_mlflow,
    psi,
    report_metrics,
    sample_keys,
    throughput,
    write_report,
)
from signals.contracts import EMBEDDINGS, RUNS

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
LABELS = ("blurry", "low_res", "text_overlay")


def clustered_vectors(n: int = 240, dim: int = 32, seed: int = 0) -> np.ndarray:
    """Unit vectors in 12 tight clusters, so that nearest neighbours mean something."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, dim))
    v = centres[np.arange(n) % 12] + rng.normal(scale=0.3, size=(n, dim))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def embedding_rows(vectors: np.ndarray, version: str, errors: set[int] = frozenset(), ids: range | None = None,
                   signal: str = "image_embedding") -> pa.Table:
    rows = []
    for i in ids if ids is not None else range(len(vectors)):
        bad = i in errors
        rows.append({"content_id": f"pin-{i:05d}", "signal": signal, "model_name": "efficientnet-lite0",
                     "model_version": version, "input_hash": f"{i:064x}", "vector": None if bad else vectors[i].tolist(),
                     "dim": None if bad else vectors.shape[1], "status": "error" if bad else "ok",
                     "error": "image is corrupt or truncated" if bad else None, "run_id": f"run-{version}",
                     "computed_at": T0, "ds": "2026-11-19"})
    return pa.Table.from_pylist(rows, schema=EMBEDDINGS.schema)


def label_rows(version: str, n: int = 300, shift: float = 0.0, errors: set[int] = frozenset(),
               signal: str = "image_quality") -> pa.Table:
    rng = np.random.default_rng(1)
    base_scores = rng.beta(2, 5, size=(n, len(LABELS)))
    rows = []
    for i in range(n):
        common = {"content_id": f"pin-{i:05d}", "signal": signal, "detail": None, "model_name": "quality",
                  "model_version": version, "input_hash": f"{i:064x}", "run_id": f"run-{version}",
                  "computed_at": T0, "ds": "2026-11-19"}
        if i in errors:
            rows.append({**common, "label": None, "score": None, "threshold": None, "decision": None,
                         "status": "error", "error": "image is empty"})
            continue
        for j, label in enumerate(LABELS):
            score = float(np.clip(base_scores[i, j] + shift, 0.0, 1.0))
            rows.append({**common, "label": label, "score": score, "threshold": 0.4, "decision": score >= 0.4,
                         "status": "ok", "error": None})
    return pa.Table.from_pylist(rows)


def noised(vectors: np.ndarray, seed: int = 5) -> np.ndarray:
    """A different model: a third of the items permuted among themselves, everything noised."""
    rng = np.random.default_rng(seed)
    out = vectors.copy()
    moved = rng.choice(len(out), size=len(out) // 3, replace=False)
    out[moved] = out[rng.permutation(moved)]
    out = out + rng.normal(scale=0.2, size=out.shape).astype(np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_identical_embedding_versions_show_no_differences():
    v = clustered_vectors()
    a = embedding_rows(v, "1", errors={3, 50})
    b = embedding_rows(v, "2", errors={3, 50}).take(np.random.default_rng(0).permutation(len(v)))  # any row order
    m = compare_embeddings(a, b, k=10)
    assert m["items_compared"] == 240 and m["items_ok_both"] == 238
    assert m["nn_overlap_mean"] == m["nn_overlap_median"] == m["nn_overlap_min"] == 1.0
    assert m["status_agreement"] == 1.0 and m["error_rate_a"] == m["error_rate_b"] == pytest.approx(2 / 240)
    assert m["identical_vectors"] == 1.0 and m["cosine_min"] == pytest.approx(1.0, abs=1e-9)
    assert build_comparison("image_embedding", a, b).differences == []


def test_a_permuted_and_noised_challenger_shows_up():
    v = clustered_vectors()
    a = embedding_rows(v, "1", errors={3})
    b = embedding_rows(noised(v), "2", errors={3, 7, 11})
    m = compare_embeddings(a, b, k=10)
    assert m["nn_overlap_mean"] < 0.9 and m["nn_overlap_min"] < 0.5
    assert m["cosine_mean"] < 0.99 and m["identical_vectors"] == 0.0
    assert (m["error_rate_a"], m["error_rate_b"]) == (pytest.approx(1 / 240), pytest.approx(3 / 240))
    assert m["status_agreement"] == pytest.approx(238 / 240)
    found = build_comparison("image_embedding", a, b).differences
    assert any("nearest-neighbour overlap" in d for d in found) and any("error rate" in d for d in found)


def test_only_shared_items_are_compared_and_dimensions_may_differ():
    v = clustered_vectors()
    a = embedding_rows(v, "1", ids=range(0, 200))
    b = embedding_rows(clustered_vectors(dim=16), "2", ids=range(40, 240))
    m = compare_embeddings(a, b, k=5)
    assert (m["items_compared"], m["only_in_a"], m["only_in_b"]) == (160, 40, 40)
    assert (m["dim_a"], m["dim_b"], m["cosine_mean"], m["identical_vectors"]) == (32, 16, None, None)
    assert 0.0 <= m["nn_overlap_mean"] < 1.0
    assert any("dimension 32 -> 16" in d for d in build_comparison("s", a, b).differences)


def test_versions_with_no_item_in_common_are_not_reported_as_the_same():
    """A challenger run on other days than the champion's: nothing can be compared, which is not
    "no differences" (what the report and `compare` printed)."""
    v = clustered_vectors()
    a, b = embedding_rows(v, "1", ids=range(0, 100)), embedding_rows(clustered_vectors(dim=16), "2", ids=range(100, 240))
    labels_a = label_rows("1").filter(pa.compute.less(label_rows("1")["content_id"], "pin-00100"))
    labels_b = label_rows("2", shift=0.3).filter(pa.compute.greater_equal(label_rows("2")["content_id"], "pin-00100"))
    for x, y, shared in ((a, b, set()), (labels_a, labels_b, set())):
        assert set(x["content_id"].to_pylist()) & set(y["content_id"].to_pylist()) == shared  # independently: no item in common
        comparison = build_comparison("s", x, y)
        assert comparison.metrics["items_compared"] == 0
        assert comparison.differences, "versions compared on no item were reported as having no differences"
        assert any("no item" in d for d in comparison.differences)


def test_the_sample_is_capped_and_chosen_by_content_hash():
    ids = {(f"pin-{i:05d}", "2026-11-19") for i in range(1000)}
    chosen = sample_keys(ids, 100)
    assert len(chosen) == 100 and chosen == sample_keys(set(sorted(ids, reverse=True)), 100)
    assert chosen != sorted(ids)[:100]  # a hash slice, not the first ids
    days = ids | {(item, "2026-11-20") for item, _ in sorted(ids)[::2]}  # half the items on a second day too
    fewer = sample_keys(days, 100)
    items = {item for item, _ in fewer}
    assert len(fewer) == 100 and items < {item for item, _ in chosen}  # fewer items, of the smallest hashes still
    assert len([key for key in days if key[0] in items]) - len(fewer) <= 1  # an item's days together (the cut may split one)
    v = clustered_vectors(n=400)
    a, b = embedding_rows(v, "1"), embedding_rows(noised(v), "2")
    assert compare_embeddings(a, b, max_items=150)["items_compared"] == 150
    few = compare_embeddings(a, b, max_queries=60)  # neighbourhoods of 60 items, among all 400
    assert (few["items_compared"], few["nn_queries"]) == (400, 60) and 0 < few["nn_overlap_mean"] < 1
    assert compare_embeddings(a, a, max_queries=60)["nn_overlap_min"] == 1.0
    assert compare_embeddings(a, b, max_items=150) | {"distributions": None} == \
        compare_embeddings(a.take(np.arange(399, -1, -1)), b, max_items=150) | {"distributions": None}


def test_identical_label_versions_show_no_differences():
    a, b = label_rows("1", errors={4, 9}), label_rows("2", errors={4, 9})
    m = compare_labels(a, b)
    assert m["items_compared"] == 300 and m["labels_compared"] == 3
    assert m["decision_agreement"] == 1.0 and m["psi_max"] == 0.0 and m["ks_max"] == 0.0
    assert m["error_rate_a"] == m["error_rate_b"] == pytest.approx(2 / 300)
    for label in LABELS:
        lm = m["labels"][label]
        assert (lm["pairs"], lm["decision_agreement"], lm["psi"], lm["ks"]) == (298, 1.0, 0.0, 0.0)
        assert lm["mean_score_a"] == lm["mean_score_b"]
    assert build_comparison("image_quality", a, b).differences == []


def test_shifted_label_scores_show_psi_ks_and_disagreement():
    a, b = label_rows("1"), label_rows("2", shift=0.15, errors={5})
    m = compare_labels(a, b)
    for label in LABELS:
        lm = m["labels"][label]
        assert lm["psi"] > 0.1 and lm["ks"] > 0.1 and lm["decision_agreement"] < 1.0
        assert lm["mean_score_b"] > lm["mean_score_a"] and lm["positive_rate_b"] > lm["positive_rate_a"]
        assert lm["pairs"] == 299 and lm["unmatched_a"] == lm["unmatched_b"] == 0  # item 5 counts as an error
    assert m["error_rate_b"] == pytest.approx(1 / 300) and m["error_rate_a"] == 0.0
    found = build_comparison("image_quality", a, b).differences
    assert sum("PSI" in d for d in found) == 3


def test_psi_is_zero_only_for_equal_distributions():
    x = np.random.default_rng(2).uniform(size=1000)
    assert psi(x, x.copy()) == 0.0
    assert psi(x, np.clip(x + 0.2, 0, 1)) > 0.2


def _ledger_row(run_id: str, signal: str, version: str | None, rows_in: int | None, seconds: float, status: str = "succeeded",
                job: str = "backfill") -> dict:
    return {"run_id": run_id, "job": job, "signal": signal, "model_name": "m", "model_version": version,
            "window_start": None, "window_end": None, "rows_in": rows_in, "rows_ok": rows_in, "rows_error": 0,
            "status": status, "message": None, "table_version": 1, "started_at": T0,
            "finished_at": T0 + timedelta(seconds=seconds), "duration_s": seconds}


def test_throughput_from_the_ledger():
    ledger = pa.Table.from_pylist([
        _ledger_row("r1", "image_embedding", "1", 100, 10.0),
        _ledger_row("r2", "image_embedding", "1", 300, 10.0),
        _ledger_row("r3", "image_embedding", "1", 300, 0.0, status="started"),
        _ledger_row("r4", "image_embedding", "1", 50, 100.0, status="failed"),
        _ledger_row("r5", "image_embedding", "2", 100, 40.0),
        _ledger_row("r6", "text_embedding", "1", 1000, 1.0),
        _ledger_row("p1", "image_embedding", "1", None, 3.0, job="promote"),
    ], schema=RUNS.schema)
    assert throughput(ledger, "image_embedding", "1") == pytest.approx(20.0)
    assert throughput(ledger, "image_embedding", "2") == pytest.approx(2.5)
    assert throughput(ledger, "image_embedding", "3") is None


def comparisons() -> list:
    v = clustered_vectors()
    ledger = pa.Table.from_pylist([_ledger_row("r1", "image_embedding", "1", 240, 12.0),
                                   _ledger_row("r2", "image_embedding", "2", 240, 8.0)], schema=RUNS.schema)
    return [
        build_comparison("image_embedding", embedding_rows(v, "1"), embedding_rows(noised(v), "2"), ledger=ledger),
        build_comparison("text_embedding", embedding_rows(v, "1", signal="text_embedding"),
                         embedding_rows(v, "1", signal="text_embedding")),
        build_comparison("image_quality", label_rows("1"), label_rows("2", shift=0.1, errors={3})),
    ]


def test_the_report_is_one_self_contained_html_file(tmp_path):
    found = comparisons()
    assert found[0].metrics["throughput_a"] == pytest.approx(20.0) and found[0].metrics["throughput_b"] == pytest.approx(30.0)
    path = write_report(found, tmp_path / "reports" / "compare.html", "champion vs challenger")
    text = path.read_text()
    for name in ("image_embedding", "text_embedding", "image_quality", "blurry", "low_res", "text_overlay"):
        assert name in text
    assert "No differences between the two versions." in text  # text_embedding against itself
    assert text.count("nearest-neighbour overlap") >= 2
    images = re.findall(r'<img [^>]*src="data:image/png;base64,([^"]+)"', text)
    assert len(images) >= 6 and all(base64.b64decode(i).startswith(b"\x89PNG\r\n\x1a\n") for i in images)
    assert not re.search(r'(src|href)=["\']?(https?:|//)', text)  # no external assets
    assert "<script" not in text


def test_log_to_mlflow_creates_a_run_with_metrics_and_the_report(tmp_path):
    from mlflow import MlflowClient

    found = comparisons()
    report = write_report(found, tmp_path / "compare.html", "t")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    run_id = log_to_mlflow(uri, report, report_metrics(found), run_name="compare 1 vs 2")
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "compare 1 vs 2"
    assert client.get_experiment(run.info.experiment_id).name == EXPERIMENT
    metrics = run.data.metrics
    assert metrics["image_embedding.nn_overlap_mean"] == pytest.approx(found[0].metrics["nn_overlap_mean"])
    assert metrics["text_embedding.nn_overlap_mean"] == 1.0
    assert metrics["image_quality.labels.blurry.psi"] > 0
    assert not any(k.endswith("cosine_mean") and k.startswith("image_quality") for k in metrics)
    assert [a.path for a in client.list_artifacts(run_id)] == ["compare.html"]
    assert (tmp_path / "mlartifacts").is_dir()  # beside the database, not ./mlruns
    assert log_to_mlflow(uri, report, {}, run_name="again") != run_id


def test_reports_go_to_the_configured_artifact_location_on_the_store(tmp_path, s3_server, monkeypatch):
    from mlflow import MlflowClient
    from pyarrow import fs

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint_url)  # boto3, which MLflow uploads with, reads it
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    s3_server.put("reports", {})
    report = write_report(comparisons(), tmp_path / "compare.html", "t")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    run_id = log_to_mlflow(uri, report, {}, run_name="on the store", artifact_location="s3://reports/lakehouse/_reports")
    assert MlflowClient(tracking_uri=uri).get_run(run_id).info.artifact_uri.startswith("s3://reports/lakehouse/_reports/")
    store = fs.S3FileSystem(endpoint_override=s3_server.endpoint_url, scheme="http", region="us-east-1")
    uploaded = [i.path for i in store.get_file_info(fs.FileSelector("reports/lakehouse/_reports", recursive=True)) if i.is_file]
    assert [p.rsplit("/", 1)[-1] for p in uploaded] == ["compare.html"] and run_id in uploaded[0]
    assert not (tmp_path / "mlartifacts").exists()


def test_flatten_metrics_keeps_finite_numbers_only():
    flat = flatten_metrics({"s": {"a": 1, "b": None, "c": "x", "d": float("nan"), "e": True, "f": {"g h?": 2.5}}})
    assert flat == {"s.a": 1.0, "s.e": 1.0, "s.f.g h_": 2.5}


def test_compare_in_lakehouse_reads_both_versions_and_the_ledger(tmp_path):
    from deltalake import write_deltalake

    from lake.ledger import RunRecord, record_runs
    from rollout.compare import compare_in_lakehouse

    v = clustered_vectors()
    rows = pa.concat_tables([embedding_rows(v, "1"), embedding_rows(noised(v), "2"),
                             embedding_rows(v, "1", signal="text_embedding")])
    write_deltalake(str(tmp_path / "embeddings"), rows, partition_by=list(EMBEDDINGS.partition_by))
    record_runs(str(tmp_path / "runs"), [RunRecord(f"r{version}", "backfill", "image_embedding", "m", version, None, None,
                                                   240, 240, 0, "succeeded", None, 0, T0, T0 + timedelta(seconds=s))
                                         for version, s in (("1", 24.0), ("2", 12.0))])
    found = compare_in_lakehouse(str(tmp_path), "image_embedding", "1", "2")
    assert (found.kind, found.version_a, found.version_b, found.metrics["items_compared"]) == ("embedding", "1", "2", 240)
    assert found.metrics["nn_overlap_mean"] < 1 and found.metrics["throughput_b"] == pytest.approx(20.0)
    assert compare_in_lakehouse(str(tmp_path), "image_embedding", "1", "1").differences == []
    with pytest.raises(LookupError, match="version 3"):
        compare_in_lakehouse(str(tmp_path), "image_embedding", "1", "3")


def test_compare_with_no_names_takes_the_signals_with_a_challenger_and_skips_those_never_registered(tmp_path, empty_registry_db,
                                                                                                    monkeypatch, capsys):
    from deltalake import write_deltalake
    from embedding_tables import registry_in

    from jobs.cli import main

    registry = registry_in(tmp_path, empty_registry_db)  # image_embedding 1 (champion) and 2; text_embedding never registered
    registry.client.set_registered_model_alias("image_embedding", "challenger", "2")
    v = clustered_vectors()
    write_deltalake(str(tmp_path / "embeddings"), pa.concat_tables([embedding_rows(v, "1"), embedding_rows(noised(v), "2")]),
                    partition_by=list(EMBEDDINGS.partition_by))
    monkeypatch.chdir(tmp_path)  # the report lands under reports/
    assert main(["compare", "--set", f"lakehouse={tmp_path}"]) == 0
    assert "image_embedding 1 vs 2" in capsys.readouterr().out


def test_items_only_one_version_has_are_among_the_differences():
    """A canary on 10% against the champion: the items the canary did not score were counted in the
    metrics but not named in the differences, so a reader of `compare` could not see them."""
    v = clustered_vectors()
    champion = embedding_rows(v, "1")
    canary = embedding_rows(v, "2", ids=range(0, 24))  # the same model on a tenth of the items
    found = build_comparison("image_embedding", champion, canary).differences
    assert found == ["version 2 lacks 216 items that version 1 has (not compared)"]
    found = build_comparison("image_embedding", canary, champion).differences
    assert found == ["version 2 lacks 216 items that version 1 has (not compared)"]  # whichever side it is on
    labels_a, labels_b = label_rows("1"), label_rows("2")
    labels_b = labels_b.filter(pa.compute.less(labels_b["content_id"], "pin-00030"))
    assert build_comparison("image_quality", labels_a, labels_b).differences == \
        ["version 2 lacks 270 items that version 1 has (not compared)"]


def test_an_item_on_two_days_is_compared_day_by_day():
    """Found in review: compare lined up each item's first row, so an item in the corpus on two days
    with two inputs (ingested again, changed) made two identical versions differ whenever their rows
    came in another order ("vectors differ on 4.76% of items", cosine min 0.09), and the labels' join
    paired each day's scores with the other day's too."""
    v, other = clustered_vectors(n=21), clustered_vectors(n=21, seed=9)
    first = embedding_rows(v, "1").to_pylist()
    again = [dict(first[0], ds="2026-11-20", input_hash="f" * 64, vector=other[0].tolist())]
    a = pa.Table.from_pylist(first + again, schema=EMBEDDINGS.schema)
    b = pa.Table.from_pylist([dict(r, model_version="2") for r in again + first], schema=EMBEDDINGS.schema)  # another order
    m = compare_embeddings(a, b)
    assert (m["items_compared"], m["items_ok_both"], m["identical_vectors"], m["input_hash_agreement"]) == (22, 22, 1.0, 1.0)
    assert build_comparison("image_embedding", a, b).differences == []
    changed = pa.Table.from_pylist([dict(r, model_version="2", vector=v[1].tolist() if r["ds"] == "2026-11-20" else r["vector"])
                                    for r in again + first], schema=EMBEDDINGS.schema)  # the later day's vector alone changed
    m = compare_embeddings(a, changed)
    x, y = other[0].astype(np.float64), v[1].astype(np.float64)
    assert m["identical_vectors"] == pytest.approx(21 / 22)
    assert m["cosine_min"] == pytest.approx(x @ y / np.linalg.norm(x) / np.linalg.norm(y), abs=1e-6)
    labels = label_rows("1", n=20).to_pylist()
    again = [dict(r, ds="2026-11-20", input_hash="f" * 64, score=0.99, decision=True) for r in labels if r["content_id"] == "pin-00000"]
    la = pa.Table.from_pylist(labels + again)
    lb = pa.Table.from_pylist([dict(r, model_version="2") for r in again + labels])
    m = compare_labels(la, lb)
    assert m["items_compared"] == 21
    assert {label: (lm["pairs"], lm["unmatched_a"], lm["unmatched_b"], lm["decision_agreement"], lm["psi"])
            for label, lm in m["labels"].items()} == {label: (21, 0, 0, 1.0, 0.0) for label in LABELS}
    assert build_comparison("image_quality", la, lb).differences == []


def test_compare_in_lakehouse_reads_each_table_once_at_one_version_and_says_which(tmp_path, monkeypatch):
    """Found in review: the two versions' rows and the ledger were read one after the other, each at
    the table's latest version, so a refresh committing between the reads compared two snapshots
    (here: 20 items of version 2 that version 1's read never saw, and a run its throughput counted)."""
    from deltalake import DeltaTable, write_deltalake

    from lake import delta_io
    from lake.ledger import RunRecord, record_runs
    from rollout.compare import compare_in_lakehouse

    v = clustered_vectors(n=260)
    write_deltalake(str(tmp_path / "embeddings"), pa.concat_tables([embedding_rows(v, "1", ids=range(240)), embedding_rows(v, "2", ids=range(240))]),
                    partition_by=list(EMBEDDINGS.partition_by))

    def run(version: str, seconds: float) -> RunRecord:
        return RunRecord(f"r{version}-{seconds}", "backfill", "image_embedding", "m", version, None, None, 240, 240, 0, "succeeded",
                         None, 0, T0, T0 + timedelta(seconds=seconds))
    record_runs(str(tmp_path / "runs"), [run("2", 12.0)])
    before = {name: DeltaTable(str(tmp_path / name)).version() for name in ("embeddings", "runs")}
    read_arrow, reads = delta_io.read_arrow, []

    def read_then_a_refresh_commits(*args, **kwargs):
        reads.append(args[0])
        found = read_arrow(*args, **kwargs)
        if len(reads) == 1:  # a refresh commits between this read and the next
            write_deltalake(str(tmp_path / "embeddings"), embedding_rows(v, "2", ids=range(240, 260)), mode="append",
                            partition_by=list(EMBEDDINGS.partition_by))
            record_runs(str(tmp_path / "runs"), [run("2", 1.0)])
        return found
    monkeypatch.setattr(delta_io, "read_arrow", read_then_a_refresh_commits)

    found = compare_in_lakehouse(str(tmp_path), "image_embedding", "1", "2")

    assert found.differences == [] and found.metrics["only_in_b"] == 0
    assert found.metrics["throughput_b"] == pytest.approx(20.0)  # 240 rows in 12 s: the run committed after is not counted
    assert reads == [str(tmp_path / "embeddings"), str(tmp_path / "runs")]  # each table once
    assert found.read_versions == before
    report = write_report([found], tmp_path / "compare.html", "1 vs 2").read_text()
    assert f"embeddings version {before['embeddings']}, runs version {before['runs']}" in report


def test_compare_of_several_signals_reads_them_all_at_one_version_of_each_table_and_logs_and_prints_it(
        tmp_path, empty_registry_db, monkeypatch, capsys):
    """Found in review: `compare` of several signals pinned the tables when each signal was compared,
    so a refresh committing between two signals' comparisons compared them at two snapshots (here:
    the text embedding's 20 items a refresh added after the image embedding was read), and the
    versions read were in the HTML report only, not in the MLflow run's params or on the console."""
    from deltalake import DeltaTable, write_deltalake
    from embedding_tables import registry_in

    from jobs.cli import main
    from lake import delta_io
    from lake.ledger import RunRecord, record_runs

    registry = registry_in(tmp_path, empty_registry_db)  # image_embedding 1 (champion) and 2
    for n in (1, 2):
        registry.register("text_embedding", f"code:text-{n}", {"kind": "minilm_text"})
    registry.promote("text_embedding", "1")
    for signal in ("image_embedding", "text_embedding"):
        registry.client.set_registered_model_alias(signal, "challenger", "2")
    v = clustered_vectors(n=260)
    write_deltalake(str(tmp_path / "embeddings"), pa.concat_tables(
        [embedding_rows(v, version, ids=range(240), signal=s) for s in ("image_embedding", "text_embedding") for version in ("1", "2")]),
        partition_by=list(EMBEDDINGS.partition_by))
    record_runs(str(tmp_path / "runs"), [RunRecord("r2", "backfill", "text_embedding", "m", "2", None, None, 240, 240, 0, "succeeded",
                                                   None, 0, T0, T0 + timedelta(seconds=12.0))])
    before = {name: DeltaTable(str(tmp_path / name)).version() for name in ("embeddings", "runs")}
    read_arrow, reads = delta_io.read_arrow, []

    def read_then_a_refresh_commits(*args, **kwargs):
        reads.append(args[0])
        found = read_arrow(*args, **kwargs)
        if len(reads) == 2:  # the first signal's rows and ledger read: a refresh of the second commits before it is read
            write_deltalake(str(tmp_path / "embeddings"), embedding_rows(v, "2", ids=range(240, 260), signal="text_embedding"),
                            mode="append", partition_by=list(EMBEDDINGS.partition_by))
        return found
    monkeypatch.setattr(delta_io, "read_arrow", read_then_a_refresh_commits)
    monkeypatch.chdir(tmp_path)  # the report lands under reports/

    assert main(["compare", "image_embedding", "text_embedding", "--set", f"lakehouse={tmp_path}"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "text_embedding 1 vs 2: no differences" in out, out  # before: "version 1 lacks 20 items that version 2 has"
    said = f"embeddings version {before['embeddings']}, runs version {before['runs']}"
    assert f"read at {said}" in out, out
    assert f"Read at {said}." in (tmp_path / "reports" / "compare" / "latest.html").read_text()
    run_id = re.search(r"MLflow run (\w+)", out).group(1)
    params = registry.client.get_run(run_id).data.params
    assert params == {"embeddings_version": str(before["embeddings"]), "runs_version": str(before["runs"])}


def test_compare_without_signal_names_takes_a_version_number_or_latest_of_every_signal_that_has_one(
        tmp_path, empty_registry_db, monkeypatch, capsys):
    """Found in review: without signal names, compare chose the signals that had `--b` as an alias, so `--b 2` or
    `--b latest` (both documented) was refused with "no signal has a '2' version to compare; register one first"
    though image_embedding had a version 2: the signals are now those where `--b` names a version."""
    from deltalake import write_deltalake
    from embedding_tables import registry_in

    from jobs.cli import main

    registry = registry_in(tmp_path, empty_registry_db)  # image_embedding 1 (champion) and 2, no challenger
    registry.register("text_embedding", "code:text-1", {"kind": "minilm_text"})
    registry.promote("text_embedding", "1")  # a version 1 alone: no version 2, its latest its champion
    v = clustered_vectors(n=48)
    write_deltalake(str(tmp_path / "embeddings"), pa.concat_tables(
        [embedding_rows(v, "1", signal=s) for s in ("image_embedding", "text_embedding")] + [embedding_rows(v, "2")]),
        partition_by=list(EMBEDDINGS.partition_by))
    monkeypatch.chdir(tmp_path)  # the report lands under reports/
    for b, compared in (("2", {"image_embedding 1 vs 2"}), ("latest", {"image_embedding 1 vs 2", "text_embedding 1 vs 1"})):
        status = main(["compare", "--b", b, "--set", f"lakehouse={tmp_path}"])
        out = " ".join(capsys.readouterr().out.split())
        assert status == 0, out
        assert {f"{s} {a} vs {c}" for s, a, c in re.findall(r"(\w+_embedding) (\d+) vs (\d+):", out)} == compared, out
    assert main(["compare", "--b", "3", "--set", f"lakehouse={tmp_path}"]) == 2  # a version no signal has
    assert "no enabled signal has a version '3' to compare" in " ".join(capsys.readouterr().out.split())
