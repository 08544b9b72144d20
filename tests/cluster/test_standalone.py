"""A real Spark standalone cluster on loopback: a master and two workers started from the
installed pyspark as separate processes, one of whose Python has the dependencies but not this
package. The jobs are submitted with spark-submit as the README's "Running on a cluster" says
(the code as a --py-files archive built by `make dist`, the cluster-cpu profile), and their
tables must equal those of the same corpus computed in local[2], also when a worker is killed
mid-job."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyspark
import pytest
from conftest import CHEAP_SIGNALS, lakehouse_with_corpus

from conf.settings import Settings, load_settings
from jobs.backfill import run_backfill
from jobs.corpus import Window
from jobs.dedup import run_dedup
from lake.lakehouse import Lakehouse
from tests.loopback import free_port

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
SPARK_HOME = Path(pyspark.__file__).parent
PROFILE = "cluster-cpu"
FIRST_DAYS = Window("2026-11-14", "2026-11-16")  # the backfill's window; the refresh computes the other days
STARTUP_S = 90
JOB_S = 400  # a job's limit: about a minute on two idle cores
# Columns that differ between two computations of the same rows.
RUN_COLUMNS = {"run_id", "computed_at"}
SORT_KEYS = {"embeddings": ["content_id", "signal"], "labels": ["content_id", "signal", "label"], "duplicates": ["content_id"]}


def _json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without what would hand a Spark process our checkout or our interpreter."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")}
    return {**env, "SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": "127.0.0.1", **extra}


def _path_with(python_bin: Path) -> str:
    return f"{python_bin}{os.pathsep}{os.environ['PATH']}"


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """The --py-files archive, built by `make dist` from this checkout."""
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(["make", "-s", "-C", str(REPO), "dist", f"DIST={dist}", f"PY={sys.executable}"], check=True, capture_output=True, timeout=300)
    [zipped] = dist.glob("content_signals-*.zip")
    return zipped


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> Path:
    """The bin folder of a venv that has the dependencies but not this package: its site-packages
    adds ours as a plain path (.pth files inside that folder, such as an editable install's
    finder, are then not run)."""
    venv = tmp_path_factory.mktemp("bare-venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"])
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    check = "import importlib.util as u, pyspark, torch; print(u.find_spec('jobs') is None and u.find_spec('conf') is None)"
    done = subprocess.run([str(venv / "bin" / "python"), "-c", check], env=_clean_env(), cwd=venv, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "True", done.stdout + done.stderr
    return venv / "bin"


@dataclass
class Cluster:
    master: str  # spark://127.0.0.1:port
    web: str  # the master's web UI
    workers: dict[str, subprocess.Popen]  # "full" (our venv's python3 on its PATH), "bare" (without this package)
    worker_webs: dict[str, int]  # worker -> its web UI port
    driver_path: str  # PATH of the spark-submit processes: python3 is the bare venv's
    started: list[subprocess.Popen]  # every process the fixture stops, drivers included

    def submit(self, archive: Path, lakehouse: Path, *args: str, profile: str = PROFILE, events: Path | None = None,
               launcher: Sequence[str] = ()) -> subprocess.Popen:
        """The README's spark-submit line, with the test's cheap signals (and an event log to read),
        started through `launcher` if given."""
        command = [*launcher, str(SPARK_HOME / "bin" / "spark-submit"), "--master", self.master, "--py-files", str(archive),
                   "--conf", "spark.pyspark.python=python3"]
        if events:
            command += ["--conf", "spark.eventLog.enabled=true", "--conf", "spark.eventLog.compress=false", "--conf", f"spark.eventLog.dir={events}"]
        command += [str(REPO / "jobs" / "cli.py"), *args, "--profile", profile, *[a for o in CHEAP_SIGNALS for a in ("--set", o)]]
        env = _clean_env(PATH=self.driver_path, CONTENT_SIGNALS_LAKEHOUSE=str(lakehouse), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        driver = subprocess.Popen(command, cwd=lakehouse.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  start_new_session=True)
        self.started.append(driver)
        return driver


def _start(command: list[str], log: Path, env: dict[str, str], started: list[subprocess.Popen]) -> subprocess.Popen:
    process = subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    started.append(process)
    return process


def _stop(process: subprocess.Popen) -> None:
    """SIGKILL the process's group: the JVM, and for a worker its executors and their Python workers."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, bare_python) -> Iterator[Cluster]:
    """A master and two one-core workers on loopback; everything started is stopped, also on failure."""
    home = tmp_path_factory.mktemp("standalone")
    port, web = free_port(), free_port()
    spark_class = str(SPARK_HOME / "bin" / "spark-class")
    started: list[subprocess.Popen] = []
    try:
        _start([spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(web)],
               home / "master.log", _clean_env(), started)
        workers, webs = {}, {}
        for name, python_bin in (("full", Path(sys.executable).parent), ("bare", bare_python)):
            webs[name] = free_port()
            workers[name] = _start([spark_class, "org.apache.spark.deploy.worker.Worker", f"spark://127.0.0.1:{port}", "--host", "127.0.0.1",
                                    "--cores", "1", "--memory", "2g", "--webui-port", str(webs[name]), "--work-dir", str(home / name)],
                                   home / f"{name}.log", _clean_env(PATH=_path_with(python_bin)), started)
        deadline = time.monotonic() + STARTUP_S
        while True:
            try:
                if sum(w["state"] == "ALIVE" for w in _json(f"http://127.0.0.1:{web}/json/")["workers"]) == 2:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, (home / "master.log").read_text()[-3000:]
            time.sleep(0.5)
        yield Cluster(f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{web}", workers, webs, _path_with(bare_python), started)
    finally:
        for process in reversed(started):
            _stop(process)


def _finish(job: subprocess.Popen, timeout_s: float = JOB_S) -> str:
    out, _ = job.communicate(timeout=timeout_s)
    return out


def _tasks_per_worker(events: Path, cluster: Cluster) -> dict[str, dict[str, int]]:
    """worker -> task outcome -> count, from the application's Spark event log (an executor's log
    URLs name its worker's web UI)."""
    worker_of, counts = {}, defaultdict(lambda: defaultdict(int))
    by_port = {f":{p}/": name for name, p in cluster.worker_webs.items()}
    lines = [line for log in sorted(events.rglob("events_*")) for line in log.read_text().splitlines()]  # Spark 4's rolling event log
    assert lines, f"no event log under {events}"
    for line in lines:
        event = json.loads(line)
        if event["Event"] == "SparkListenerExecutorAdded":
            url = event["Executor Info"]["Log Urls"]["stdout"]
            worker_of[event["Executor ID"]] = next(name for port, name in by_port.items() if port in url)
        elif event["Event"] == "SparkListenerTaskEnd":
            counts[worker_of[event["Task Info"]["Executor ID"]]][event["Task End Reason"]["Reason"]] += 1
    return {k: dict(v) for k, v in counts.items()}


def _table(settings: Settings, name: str) -> pa.Table:
    table = Lakehouse(settings.lakehouse_root).arrow(name)
    return table.select([c for c in table.column_names if c not in RUN_COLUMNS]).sort_by([(k, "ascending") for k in SORT_KEYS[name]])


def _assert_same_tables(got: Settings, want: Settings) -> None:
    """Same keys and values in every table; vectors and scores within 1e-5."""
    for name in SORT_KEYS:
        a, b = _table(got, name), _table(want, name)
        assert a.num_rows == b.num_rows > 0, name
        for column in a.column_names:
            if column in ("vector", "score", "cosine"):
                for x, y in zip(a[column].to_pylist(), b[column].to_pylist()):
                    assert (x is None) == (y is None) and (x is None or np.allclose(x, y, rtol=0, atol=1e-5)), (name, column)
            else:
                assert a[column].equals(b[column]), (name, column)


@pytest.fixture(scope="module")
def reference(corpus_lakehouse, spark, tmp_path_factory) -> Settings:
    """The whole sample corpus backfilled and deduplicated in local[2], with the cluster's settings."""
    root = tmp_path_factory.mktemp("reference") / "lakehouse"
    lakehouse_with_corpus(corpus_lakehouse, root)
    settings = load_settings(PROFILE, [f"lakehouse={root}", *CHEAP_SIGNALS])
    run_backfill(spark, settings)
    run_dedup(spark, settings)
    return settings


def test_spark_submit_master_wins_and_gpus_the_workers_lack_fail_fast(cluster, archive, corpus_lakehouse, tmp_path) -> None:
    """The local profile (master local[2]) asking for a GPU per task: the job must reach the
    cluster (spark-submit's --master wins) and stop there at once, since no worker has a GPU."""
    lakehouse = tmp_path / "lakehouse"
    lakehouse_with_corpus(corpus_lakehouse, lakehouse)
    gpus = [a for key in ("executor", "task") for a in ("--set", f"spark.conf[spark.{key}.resource.gpu.amount]=1")]
    job = cluster.submit(archive, lakehouse, "backfill", *gpus, "--set", "spark.executor_wait_s=5", profile="local")
    out = _finish(job)
    assert job.returncode == 2, out[-3000:]
    assert f"no executor that can run a task registered with {cluster.master}" in out and "1 gpu" in out, out[-3000:]


def _on_the_drivers_disk(disk: Path, folder: Path) -> list[str]:
    """A launcher running its command in a mount namespace of its own where `folder` is `disk`:
    the driver's local folder, which the workers (outside it) see empty, as another machine would."""
    if subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode != 0:
        pytest.skip("no mount namespace can be made here (unshare --mount needs root or user namespaces)")
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", 'mount --bind "$1" "$2" && shift 2 && exec "$@"', "sh",
            str(disk), str(folder)]


def test_a_lakehouse_on_the_drivers_own_disk_is_refused_as_a_setting_not_called_damaged(cluster, archive, corpus_lakehouse, tmp_path) -> None:
    """Executors on other machines find no file of a lakehouse folder on the driver's disk: that is
    the lakehouse setting (exit 2), not a damaged table that a backfill would write again (exit 4)."""
    disk, lakehouse = tmp_path / "driver-disk", tmp_path / "lakehouse"
    lakehouse_with_corpus(corpus_lakehouse, disk)
    lakehouse.mkdir()
    job = cluster.submit(archive, lakehouse, "backfill", "--start", FIRST_DAYS.start, "--end", FIRST_DAYS.end,
                         launcher=_on_the_drivers_disk(disk, lakehouse))
    out = _finish(job)
    assert job.returncode == 2, out[-5000:]
    assert "storage the driver and every executor share" in " ".join(out.split()), out[-5000:]  # as the console wraps it
    assert not any(lakehouse.iterdir())  # nothing reached the folder the workers see


def test_weights_only_the_driver_can_read_are_refused_as_a_setting(cluster, archive, corpus_lakehouse, tmp_path) -> None:
    """A checkpoint path on the driver's disk (registered there, shipped as a path): the executors'
    workers cannot load it, which is the weights setting (exit 2), not a bug's traceback."""
    from signals.embedders.efficientnet import default_weights_path

    lakehouse, disk, weights = tmp_path / "lakehouse", tmp_path / "driver-disk", tmp_path / "weights"
    lakehouse_with_corpus(corpus_lakehouse, lakehouse)
    disk.mkdir()
    weights.mkdir()
    shutil.copy(default_weights_path(), disk / "lite0.pth")
    job = cluster.submit(archive, lakehouse, "backfill", "--start", FIRST_DAYS.start, "--end", FIRST_DAYS.end,
                         "--set", f"signals.image_embedding.params.weights_path={weights / 'lite0.pth'}",
                         "--set", "spark.conf[spark.task.maxFailures]=1",  # each task's retries would fail the same way
                         launcher=_on_the_drivers_disk(disk, weights))
    out = _finish(job)
    assert job.returncode == 2, out[-5000:]
    assert f"found no weights at {weights / 'lite0.pth'}, which the driver reads" in " ".join(out.split()), out[-5000:]


def test_backfill_refresh_dedup_on_two_workers_equal_local_even_when_a_worker_dies(cluster, archive, corpus_lakehouse, reference, tmp_path) -> None:
    lakehouse = tmp_path / "lakehouse"
    lakehouse_with_corpus(corpus_lakehouse, lakehouse)
    settings = load_settings(PROFILE, [f"lakehouse={lakehouse}", *CHEAP_SIGNALS])

    events = tmp_path / "events"
    events.mkdir()
    backfill = cluster.submit(archive, lakehouse, "backfill", "--start", FIRST_DAYS.start, "--end", FIRST_DAYS.end, events=events)
    out = _finish(backfill)
    assert backfill.returncode == 0, out[-5000:]
    tasks = _tasks_per_worker(events, cluster)
    assert set(tasks) == {"full", "bare"} and all(t.get("Success", 0) > 0 for t in tasks.values()), tasks
    assert all(set(t) == {"Success"} for t in tasks.values()), tasks  # no task failed, on either worker
    apps = _json(f"{cluster.web}/json/")
    assert {w["state"] for w in apps["workers"]} == {"ALIVE"} and len(apps["completedapps"]) >= 1

    refresh = cluster.submit(archive, lakehouse, "refresh", "--run-id", "refresh-on-one-worker")
    deadline = time.monotonic() + JOB_S
    while not any(lakehouse.glob("embeddings/signal=*/model_version=*/part-refresh-on-one-worker*.parquet")):
        assert refresh.poll() is None, refresh.stdout.read()[-5000:]
        assert time.monotonic() < deadline, "the refresh wrote no data file"
        time.sleep(0.2)
    _stop(cluster.workers["bare"])  # the worker, its executor and their Python workers, mid-job
    out = _finish(refresh)
    assert refresh.returncode == 0, out[-5000:]

    dedup = cluster.submit(archive, lakehouse, "dedup")
    out = _finish(dedup)
    assert dedup.returncode == 0, out[-5000:]
    _assert_same_tables(settings, reference)
