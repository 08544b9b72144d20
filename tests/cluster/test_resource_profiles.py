"""Per-signal resources on a `local-cluster` master (two executor JVMs, as on a cluster, where
Spark honours task resource profiles): two signals asking for different task CPUs run in stages
of different resource profiles, their rows equal those of a local[2] run without profiles, and
the driver reports which executor processes ran each signal."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import lakehouse_with_corpus
from deltalake import DeltaTable

from jobs.backfill import run_backfill

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
STABLE = ["content_id", "signal", "label", "score", "decision", "model_version", "input_hash", "status", "error", "ds"]
# two cheap labelers, one per CPU request; no embeddings: the labels table alone, in two stages
SIGNALS = (*(f"signals.{n}.enabled=false" for n in ("image_embedding", "text_embedding", "image_safety", "language", "image_topics", "text_topics")),
           "signals.image_quality.resources.cpus=2")


def _labels(settings) -> list[dict]:
    table = DeltaTable(settings.table_root("labels")).to_pyarrow_table().select(STABLE)
    return table.sort_by([(c, "ascending") for c in ("content_id", "signal", "label")]).to_pylist()


def _stage_cpus(event_dir: Path) -> dict[int, int]:
    """Stage id -> task CPUs of its resource profile, from the application's event log."""
    events = [json.loads(line) for f in event_dir.rglob("events*") for line in f.read_text().splitlines() if line.strip()]
    profile_cpus = {e["Resource Profile Id"]: int(e["Task Resource Requests"]["cpus"]["Amount"])
                    for e in events if e["Event"] == "SparkListenerResourceProfileAdded"}
    return {e["Stage Info"]["Stage ID"]: profile_cpus[e["Stage Info"]["Resource Profile Id"]]
            for e in events if e["Event"] == "SparkListenerStageSubmitted"}


def test_signals_asking_for_different_cpus_run_in_stages_of_their_own_profiles(tmp_path, corpus_lakehouse, spark):
    settings = lakehouse_with_corpus(corpus_lakehouse, tmp_path / "profiles", *SIGNALS)
    events = tmp_path / "events"
    events.mkdir()
    spark_conf = {"spark.master": "local-cluster[2,2,1024]", "spark.conf[spark.eventLog.enabled]": "true",
                  "spark.conf[spark.eventLog.dir]": events.as_uri(), "spark.conf[spark.eventLog.compress]": "false"}
    job = subprocess.Popen(
        [sys.executable, "-m", "jobs.cli", "backfill", "--set", f"lakehouse={settings.lakehouse}",
         *[arg for override in (*SIGNALS, *(f"{k}={v}" for k, v in spark_conf.items())) for arg in ("--set", override)]],
        cwd=REPO, env={**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        reference = lakehouse_with_corpus(corpus_lakehouse, tmp_path / "reference", *SIGNALS)
        run_backfill(spark, reference)  # local[2]: no profiles, one action for the table (while the cluster starts)
        output, _ = job.communicate(timeout=600)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, 9)
    assert job.returncode == 0, output[-4000:]

    assert _labels(settings) == _labels(reference)
    assert set(_stage_cpus(events).values()) >= {1, 2}  # the signals' stages: task profiles of 1 and 2 CPUs

    reports = re.findall(r"^(\w+) on \S+ executor pid (\d+): \d+ workers, (\d+) tasks, (\d+) items, (\d+) cpus", output, re.M)
    cpus = {signal: {int(c) for s, _, _, _, c in reports if s == signal} for signal, *_ in reports}
    assert cpus == {"text_safety": {1}, "image_quality": {2}}, output[-3000:]
    for signal in cpus:
        mine = [r for r in reports if r[0] == signal]
        assert sum(int(r[3]) for r in mine) == len({row["content_id"] for row in _labels(settings)})  # every item, once
        assert job.pid not in {int(r[1]) for r in mine}  # computed in executors, not the driver
