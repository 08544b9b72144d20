"""Real processes killed in the middle of a job: an executor of a `local-cluster` master (two
separate executor JVMs, as on a cluster), and the whole driver of a refresh. In both cases the
final tables must be exactly those of a run that was never interrupted."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import CHEAP_SIGNALS, lakehouse_with_corpus
from deltalake import DeltaTable

from jobs.refresh import run_refresh
from lake import ledger

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
STABLE = ["content_id", "signal", "model_version", "input_hash", "status", "error", "ds"]


def _cli(settings, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    return subprocess.Popen(
        [sys.executable, "-m", "jobs.cli", *args, "--set", f"lakehouse={settings.lakehouse}",
         *[arg for override in CHEAP_SIGNALS for arg in ("--set", override)],
         "--set", "signals.image_embedding.batch_size=4", "--set", "spark.conf[spark.sql.files.maxPartitionBytes]=512k"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )


def _wait_for_data_files(settings, process: subprocess.Popen, timeout_s: float = 240) -> None:
    """Block until some task has written a data file (compute is under way)."""
    deadline = time.monotonic() + timeout_s
    root = Path(settings.table_root("embeddings"))
    while time.monotonic() < deadline:
        if any(root.glob("signal=*/model_version=*/*.parquet")):
            return
        assert process.poll() is None, process.stdout.read()[-3000:]
        time.sleep(0.2)
    raise TimeoutError("no data file appeared")


def _executor_pids(driver: subprocess.Popen) -> list[int]:
    """The executor JVMs of `driver`'s application: those in its session (started in a new one), not
    every executor on the machine (another application's, whose kill would fail someone else's run)."""
    out = subprocess.run(["pgrep", "-s", str(driver.pid), "-f", "CoarseGrainedExecutorBackend"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _assert_exact(settings, reference) -> None:
    got = DeltaTable(settings.table_root("embeddings")).to_pyarrow_table().sort_by([("content_id", "ascending"), ("signal", "ascending")])
    want = DeltaTable(reference.table_root("embeddings")).to_pyarrow_table().sort_by([("content_id", "ascending"), ("signal", "ascending")])
    keys = list(zip(got["content_id"].to_pylist(), got["signal"].to_pylist()))
    assert len(keys) == len(set(keys)) and got.num_rows == want.num_rows
    for column in STABLE:
        assert got[column].equals(want[column]), column
    for a, b in zip(got["vector"].to_pylist(), want["vector"].to_pylist()):
        assert (a is None and b is None) or np.max(np.abs(np.subtract(a, b))) <= 1e-5


@pytest.fixture
def lakehouses(tmp_path, corpus_lakehouse, cheap_backfilled):
    """(a lakehouse for the interrupted run, a reference lakehouse backfilled without interruption)."""
    return lakehouse_with_corpus(corpus_lakehouse, tmp_path / "interrupted", *CHEAP_SIGNALS), cheap_backfilled


def test_losing_an_executor_mid_job_still_gives_exact_tables(lakehouses):
    settings, reference = lakehouses
    job = _cli(settings, "backfill", "--set", "spark.master=local-cluster[2,1,1024]")
    _wait_for_data_files(settings, job)
    executors = _executor_pids(job)
    assert len(executors) == 2, "local-cluster should run two executor processes"
    os.kill(executors[0], signal.SIGKILL)
    output, _ = job.communicate(timeout=600)
    assert job.returncode == 0, output[-4000:]
    _assert_exact(settings, reference)


def test_a_refresh_whose_driver_is_killed_mid_compute_is_finished_by_the_next(lakehouses, spark):
    settings, reference = lakehouses
    job = _cli(settings, "refresh")
    _wait_for_data_files(settings, job)
    os.killpg(job.pid, signal.SIGKILL)  # the driver and its Spark, at once
    job.wait(timeout=60)
    assert DeltaTable(settings.table_root("embeddings")).to_pyarrow_table().num_rows == 0  # nothing visible
    result = run_refresh(spark, settings)
    assert result.status == ledger.SUCCEEDED
    _assert_exact(settings, reference)
    runs = DeltaTable(settings.table_root("runs")).to_pyarrow_table().to_pylist()
    assert {r["status"] for r in runs if r["run_id"] != result.run_id} == {ledger.STARTED, ledger.ABANDONED}
