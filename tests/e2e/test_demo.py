"""The README's first command, end to end: `content-signals demo` in a fresh lakehouse, run as a
newcomer runs it (a subprocess, the default profile and corpus size), then the notebook on it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable
from nbclient import NotebookClient

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "jobs.cli"]


EMBEDDINGS_ONLY = [arg for name in ("image_safety", "text_safety", "language", "image_topics", "text_topics", "image_quality")
                   for arg in ("--set", f"signals.{name}.enabled=false")]


def _demo(lakehouse: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    return subprocess.run(
        [*CLI, "demo", "--set", f"lakehouse={lakehouse}", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=1800
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    lakehouse = tmp_path_factory.mktemp("demo") / "lakehouse"
    first = _demo(lakehouse)
    assert first.returncode == 0, first.stderr[-3000:]
    return lakehouse, first


def _rows(lakehouse: Path, name: str):
    return DeltaTable(str(lakehouse / name)).to_pyarrow_table()


def test_the_demo_writes_every_table_and_says_where(demo):
    lakehouse, run = demo
    for name in ("corpus", "corpus_truth", "video_truth", "embeddings", "labels", "duplicates", "runs", "keyframes"):
        assert DeltaTable.is_deltatable(str(lakehouse / name)), name
        assert str(lakehouse / name) in run.stdout
    assert "image_embedding" in run.stdout and "text_embedding" in run.stdout


def test_every_item_has_one_valid_row_per_enabled_signal(demo):
    lakehouse, _ = demo
    corpus_ids = set(_rows(lakehouse, "corpus")["content_id"].to_pylist())
    rows = _rows(lakehouse, "embeddings").to_pylist()
    dims = {"image_embedding": 1280, "text_embedding": 384}
    video_truth = _rows(lakehouse, "video_truth")  # the demo's sample videos, extra items of the corpus
    assert len(rows) == len(dims) * len(corpus_ids) and len(corpus_ids) == 480 + video_truth.num_rows
    assert {(r["content_id"], r["signal"]) for r in rows} == {(c, s) for c in corpus_ids for s in dims}
    for r in rows:
        if r["status"] == "ok":
            assert len(r["vector"]) == r["dim"] == dims[r["signal"]] and abs(np.linalg.norm(r["vector"]) - 1) < 1e-4
        else:
            assert r["status"] == "error" and r["error"]
    truth = _rows(lakehouse, "corpus_truth")
    bad = set(pc.filter(truth["content_id"], truth["is_bad_image"]).to_pylist()) | set(pc.filter(video_truth["content_id"], video_truth["bad"]).to_pylist())
    failed = {r["content_id"] for r in rows if r["signal"] == "image_embedding" and r["status"] == "error"}
    assert failed == bad
    keyframes = _rows(lakehouse, "keyframes")
    assert set(keyframes["content_id"].to_pylist()) == set(video_truth["content_id"].to_pylist())  # every video: keyframes or its error


def test_running_the_demo_again_over_a_day_changes_no_vector(demo):
    """The day's rows are computed again, equal to the first run's; their vectors to float rounding,
    not to the bit: one day's batches are not the whole run's, and a batch's shape moves the last bits."""
    lakehouse, _ = demo
    before = _rows(lakehouse, "embeddings").sort_by([("content_id", "ascending"), ("signal", "ascending")])
    corpus = _rows(lakehouse, "corpus")
    day = pc.filter(corpus["ds"], pc.is_in(corpus["content_id"], _rows(lakehouse, "video_truth")["content_id"]))[0].as_py()
    again = _demo(lakehouse, "--start", day, "--end", day, *EMBEDDINGS_ONLY)  # a day of photos and a video, backfilled again
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already" in again.stdout  # the corpus is not regenerated
    after = _rows(lakehouse, "embeddings").sort_by([("content_id", "ascending"), ("signal", "ascending")])
    for column in ("content_id", "signal", "status", "error", "input_hash"):
        assert after[column].equals(before[column]), column
    pairs = [(np.asarray(new), np.asarray(old)) for new, old in zip(after["vector"].to_pylist(), before["vector"].to_pylist()) if old is not None]
    assert pairs and max(float(np.abs(new - old).max()) for new, old in pairs) < 1e-5
    rewritten = {ds for ds, new, old in zip(after["ds"].to_pylist(), after["run_id"].to_pylist(), before["run_id"].to_pylist()) if new != old}
    assert rewritten == {day}  # that day's rows were computed again, no other day's
    operations = [h["operation"] for h in DeltaTable(str(lakehouse / "embeddings")).history()]
    assert len(operations) == 3  # create, first backfill, second backfill


def test_the_analyst_notebook_runs_on_the_demo_lakehouse(demo, monkeypatch):
    lakehouse, _ = demo
    monkeypatch.setenv("CONTENT_SIGNALS_LAKEHOUSE", str(lakehouse))
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
        outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
        assert not [o for o in outputs if o.output_type == "error"]
        assert any("image/png" in o.get("data", {}) for o in outputs), f"{path.name} drew no plot"
