"""Per-signal resources without Spark: the configuration, where a signal is placed on a
cluster (udfs.resources), the grouping of a table's sources into one Spark action per resource
profile (lake.spark_io), and the report of which executors ran what (jobs.engine)."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import socket
from types import SimpleNamespace

import pyarrow as pa
import pytest
from pydantic import ValidationError
from pyspark import SparkConf

from conf.settings import ResourceSettings, SignalSettings, UsageError, load_settings
from jobs.engine import executor_uses
from lake.delta_io import DataFile
from lake.file_writer import FILE_METADATA_SCHEMA, REPORT_COLUMNS, make_file_writer
from lake.spark_io import WriteSource, by_resources, stage_profile
from signals import model_cache
from signals.contracts import EMBEDDINGS
from udfs.resources import Cluster, Placement, placement

GPU_CLUSTER = Cluster(task_profiles=True, executor_gpus=1, executor_cores=8, dynamic_allocation=False)
CPU_CLUSTER = Cluster(task_profiles=True, executor_gpus=0, executor_cores=None, dynamic_allocation=False)
LOCAL = Cluster(task_profiles=False, executor_gpus=0, executor_cores=None, dynamic_allocation=False)


def signal(device: str = "auto", **resources) -> SignalSettings:
    return SignalSettings(kind="minilm_text", model={"name": "m"}, device=device, resources=ResourceSettings(**resources))


def test_a_signal_asks_for_one_cpu_and_no_gpu_unless_configured() -> None:
    assert signal().resources == ResourceSettings(cpus=1, gpus=0, cpu_fallback=False)
    cluster = load_settings("cluster", ["lakehouse=/tmp/lake"])
    assert cluster.signals["image_embedding"].resources == ResourceSettings(cpus=4, gpus=1)
    assert cluster.signals["text_safety"].resources == ResourceSettings()
    assert "spark.task.resource.gpu.amount" not in cluster.spark.conf  # per signal now, not for the job


def test_resources_override_from_the_command_line() -> None:
    settings = load_settings("local", ["signals.image_embedding.resources.gpus=0.5", "signals.image_embedding.resources.cpu_fallback=true"])
    assert settings.signals["image_embedding"].resources == ResourceSettings(cpus=1, gpus=0.5, cpu_fallback=True)


@pytest.mark.parametrize("device, resources, error", [
    ("auto", {"gpus": 1.5}, "whole number"),
    ("auto", {"cpus": 0}, "greater than or equal to 1"),
    ("cpu", {"gpus": 1}, "must be 0"),
    ("cuda", {"gpus": 1, "cpu_fallback": True}, "needs device auto"),
    ("auto", {"memory": "4g"}, "Extra inputs"),
])
def test_resources_that_cannot_be_scheduled_are_refused_at_start_up(device, resources, error) -> None:
    with pytest.raises(ValidationError, match=error):
        SignalSettings(kind="k", model={"name": "m"}, device=device, resources=resources)


def test_a_local_master_attaches_no_profile_and_keeps_the_configured_device() -> None:
    assert placement("s", signal(cpus=4, gpus=1), LOCAL) == Placement((), "auto")
    assert placement("s", signal("cuda"), LOCAL) == Placement((), "cuda")


def test_a_gpu_signal_on_a_gpu_cluster_asks_for_its_gpu_and_cpus() -> None:
    placed = placement("s", signal(cpus=4, gpus=1), GPU_CLUSTER)
    assert placed == Placement((("cpus", 4.0), ("gpu", 1.0)), "auto") and placed.cpus == 4


def test_a_cpu_signal_on_a_gpu_cluster_holds_and_uses_no_gpu() -> None:
    assert placement("s", signal(cpus=2), GPU_CLUSTER) == Placement((("cpus", 2.0),), "cpu")


def test_a_gpu_signal_falls_back_to_its_cpus_on_a_cluster_without_gpus_where_allowed() -> None:
    assert placement("s", signal(cpus=4, gpus=1, cpu_fallback=True), CPU_CLUSTER) == Placement((("cpus", 4.0),), "cpu")


def test_a_gpu_signal_without_fallback_is_refused_on_a_cluster_without_gpus() -> None:
    with pytest.raises(UsageError, match=r"signals.s asks for 1 GPU per task but the executors have none .*cpu_fallback=true"):
        placement("s", signal(gpus=1), CPU_CLUSTER)


@pytest.mark.parametrize("settings, cluster, error", [
    (signal("cuda"), GPU_CLUSTER, "device is cuda but resources.gpus is 0"),
    (signal(cpus=16), GPU_CLUSTER, "executors have 8 cores"),
    (signal(gpus=2), GPU_CLUSTER, "executors have 1"),
    (signal(), Cluster(True, 0, None, dynamic_allocation=True), "dynamicAllocation"),
])
def test_placements_the_cluster_cannot_schedule_are_refused(settings, cluster, error) -> None:
    with pytest.raises(UsageError, match=error):
        placement("s", settings, cluster)


def test_the_cluster_is_read_from_the_spark_configuration() -> None:
    def sc(master: str, **conf: str) -> SimpleNamespace:
        return SimpleNamespace(master=master, getConf=lambda: SparkConf(loadDefaults=False).setAll(list(conf.items())))

    assert Cluster.of(sc("local[2]")) == LOCAL
    assert Cluster.of(sc("local")).task_profiles is False
    assert Cluster.of(sc("local-cluster[2,1,1024]")) == dataclasses.replace(CPU_CLUSTER, executor_cores=1)  # its executors' cores
    assert Cluster.of(sc("spark://m:7077", **{"spark.executor.resource.gpu.amount": "1", "spark.executor.cores": "8"})) == GPU_CLUSTER


def test_executor_cores_the_master_fixes_without_spark_executor_cores_refuse_a_signal_asking_for_more() -> None:
    """Unset, spark.executor.cores is still known where the master fixes it: the cores of a
    local-cluster's executors, 1 on YARN and Kubernetes (Spark's default there). A signal's tasks
    asking for more were never scheduled: the job waited forever (reproduced on local-cluster[1,1,512]
    with a 2-CPU task profile). A standalone executor takes its worker's cores: unknown here."""
    def sc(master: str) -> SimpleNamespace:
        return SimpleNamespace(master=master, getConf=lambda: SparkConf(loadDefaults=False))

    cores = {m: Cluster.of(sc(m)).executor_cores for m in ("local-cluster[2,1,1024]", "local-cluster[1, 3, 512]", "yarn",
                                                            "k8s://https://api:6443", "spark://m:7077")}
    assert cores == {"local-cluster[2,1,1024]": 1, "local-cluster[1, 3, 512]": 3, "yarn": 1, "k8s://https://api:6443": 1,
                     "spark://m:7077": None}
    image = load_settings("cluster", ["lakehouse=/lh"]).signals["image_embedding"].model_copy(
        update={"resources": ResourceSettings(cpus=4)})
    with pytest.raises(UsageError, match=r"resources.cpus is 4 but executors have 1 cores \(spark.executor.cores"):
        placement("image_embedding", image, Cluster.of(sc("yarn")))


def test_sources_are_grouped_by_the_resources_they_ask_for_in_order() -> None:
    gpu, cpu = (("cpus", 4.0), ("gpu", 1.0)), (("cpus", 1.0),)
    sources = [WriteSource(None, resources=gpu), WriteSource(None, resources=cpu), WriteSource(None), WriteSource(None, resources=gpu)]
    groups = by_resources(sources)
    assert list(groups) == [gpu, cpu, ()]
    assert groups[gpu] == [sources[0], sources[3]] and groups[()] == [sources[2]]
    assert list(by_resources([WriteSource(None), WriteSource(None)])) == [()]  # a local master: one action, as before


def test_a_stage_profile_asks_for_the_task_resources_only() -> None:
    assert stage_profile(()) is None
    profile = stage_profile((("cpus", 4.0), ("gpu", 0.5)))  # no JVM here: the Python-side profile
    assert {name: r.amount for name, r in profile.taskResources.items()} == {"cpus": 4, "gpu": 0.5}
    assert profile.executorResources == {}


def test_the_file_writer_reports_which_task_and_worker_wrote_each_file(tmp_path) -> None:
    rows = [{"content_id": f"c{i}", "signal": "s", "model_name": "m", "model_version": "1", "input_hash": "h", "vector": [1.0],
             "dim": 1, "status": "ok", "error": None, "run_id": "r", "computed_at": dt.datetime(2026, 11, 20, tzinfo=dt.UTC), "ds": f"2026-11-2{i % 2}"} for i in range(4)]
    report = {"host": "h1", "pid": 7, "parent_pid": 3, "cpus": 4, "gpus": "0", "device": "cuda:0", "load_s": 1.5}
    write = make_file_writer(str(tmp_path), EMBEDDINGS, "part", lambda: "s1-p00000-a0", report=lambda: report)
    out = pa.Table.from_batches(list(write(iter(pa.Table.from_pylist(rows, schema=EMBEDDINGS.schema).to_batches()))), schema=FILE_METADATA_SCHEMA)
    assert out.num_rows == 1  # one file per signal and model version, the days in its statistics
    assert all({"task": "s1-p00000-a0", **report}.items() <= r.items() for r in out.to_pylist())
    unreported = make_file_writer(str(tmp_path), EMBEDDINGS, "part", lambda: "t")(iter(pa.Table.from_pylist(rows, schema=EMBEDDINGS.schema).to_batches()))
    unreported_rows = pa.Table.from_batches(list(unreported)).to_pylist()
    assert all(r[c] is None for r in unreported_rows for c in REPORT_COLUMNS if c != "host")
    assert {r["host"] for r in unreported_rows} == {socket.gethostname()}  # every file's host: the driver tells unshared storage


def _file(signal: str, task: str, host: str, executor: int, items: int, load_s: float = 0.0, gpus: str = "", pid: int = 1) -> DataFile:
    return DataFile(f"{task}-{items}.parquet", 1, {"signal": signal}, items, items, items, "{}", 0,
                    task, host, pid, executor, 4 if gpus else 1, gpus, "cuda:0" if gpus else "cpu", load_s)


def test_executor_uses_count_workers_tasks_items_gpus_and_load_seconds_per_signal_and_executor() -> None:
    files = [
        _file("image", "s1-p0-a0", "h1", 10, 5, load_s=2.0, gpus="0"), _file("image", "s1-p0-a0", "h1", 10, 3, load_s=2.0, gpus="0"),
        _file("image", "s1-p1-a0", "h1", 10, 4, gpus="0", pid=2), _file("image", "s1-p2-a0", "h2", 20, 6, load_s=3.0, gpus="1"),
        _file("text", "s2-p0-a0", "h1", 11, 9), DataFile("kept.parquet", 1, {"signal": "text"}, 2, 2, 2, "{}", 0),
    ]
    uses = {(u.signal, u.host, u.executor_pid): u for u in executor_uses(files)}
    assert set(uses) == {("image", "h1", 10), ("image", "h2", 20), ("text", "h1", 11)}  # an unreported rewrite is left out
    first = uses[("image", "h1", 10)]
    assert (first.workers, first.tasks, first.items, first.gpus, first.load_s, first.cpus) == (2, 2, 12, "0", 2.0, 4)  # a task's load once
    assert uses[("text", "h1", 11)].describe() == "text on h1 executor pid 11: 1 workers, 1 tasks, 9 items, 1 cpus, GPU none (cpu), model load 0.0s"


def test_the_model_cache_counts_the_seconds_of_real_loads_only(empty_model_cache) -> None:
    before = model_cache.load_seconds()
    model_cache.get_or_load("k", lambda: json.loads("[1]"))
    loaded = model_cache.load_seconds()
    model_cache.get_or_load("k", lambda: pytest.fail("cached"))
    assert loaded > before and model_cache.load_seconds() == loaded


def test_a_signal_asking_more_cores_than_any_standalone_executor_has_is_refused_after_the_wait_not_waited_on(monkeypatch) -> None:
    """A standalone executor takes its worker's cores, which no setting says (spark.executor.cores
    unset): a signal asking for more was placed, and its stage waited forever with no error. The
    executors registered say their cores: a signal waits spark.executor_wait_s for one that can run
    its task, then is refused before anything is computed; one registering within the wait is enough."""
    import jobs.session
    from jobs.engine import placements

    registered = [[{"cpus": 2.0}]]
    monkeypatch.setattr(jobs.session, "_executors", lambda sc: registered[0] if len(registered) == 1 else registered.pop(0))
    spark = SimpleNamespace(sparkContext=SimpleNamespace(master="spark://m:7077", getConf=lambda: SparkConf(loadDefaults=False)))
    settings = load_settings("cluster-cpu", ["lakehouse=/lh", "spark.executor_wait_s=0.2", "signals.text_safety.resources.cpus=4"])
    assert settings.spark.conf.get("spark.executor.cores") is None
    with pytest.raises(UsageError, match=r"no executor that can run a task of signals.text_safety registered with spark://m:7077 "
                                         r"within 0.2s .*asks for 4 cpus \(signals.text_safety.resources\), executors registered: 2 cpus"):
        placements(spark, settings, {"language": None, "text_safety": None})
    registered[:] = [[{"cpus": 2.0}], [{"cpus": 2.0}, {"cpus": 8.0}]]  # a larger worker's executor registers during the wait
    placed = placements(spark, settings, {"language": None, "text_safety": None})
    assert {name: p.cpus for name, p in placed.items()} == {"language": 1, "text_safety": 4}
