"""Build the SparkSession the jobs run on: the profile's spark settings, under whatever
spark-submit set (its --master, --conf, --py-files and spark-defaults.conf win), and check that
the cluster can run a task at all before any work is planned."""
from __future__ import annotations

import math
import os
import sys
import time
import warnings

from pyspark import SparkConf, SparkContext
from pyspark.sql import SparkSession

from conf.settings import SparkSettings, UsageError

BASE_CONF = {
    "spark.ui.showConsoleProgress": "false",  # jobs.progress draws its own bar
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.python.worker.reuse": "true",  # keeps models resident across tasks
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    # pandas writes timestamps in nanoseconds, which Spark's parquet reader refuses outright, mapped or
    # not: read as bigint, an unmapped one is carried along and a mapped one is refused by its type
    "spark.sql.legacy.parquet.nanosAsLong": "true",
    # compiled query code kept for reuse: a refresh's plans need about 140 classes, past the default
    # 100, so every daily run compiled all of them again (docs/design.md, Refresh)
    "spark.sql.codegen.cache.maxEntries": "1000",
}
EXECUTOR_POLL_S = 0.5
# Settings of the driver's JVM as it is launched: under spark-submit it runs before the profile is read.
DRIVER_JVM = frozenset({"spark.driver.memory", "spark.driver.extraJavaOptions", "spark.driver.extraClassPath",
                        "spark.driver.extraLibraryPath"})
# Where the object store is, not who may use it: passed on to executors when set on the driver.
# Credentials are not (Spark settings show in its UI and event logs): executors take theirs from
# their own environment (an instance role, a secret mounted by the cluster).
STORAGE_ENV = ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ALLOW_HTTP")


def launched_conf() -> dict[str, str]:
    """The settings spark-submit gave this driver; empty when this Python process starts Spark itself.

    spark-submit starts the driver's JVM first and tells Python where it is (PYSPARK_GATEWAY_PORT);
    its settings are then the JVM's system properties, which a JVM-backed SparkConf loads."""
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        return {}
    SparkContext._ensure_initialized()
    return dict(SparkConf().getAll())


def storage_env(environ: dict[str, str]) -> dict[str, str]:
    """The driver's object-store location settings (`STORAGE_ENV`), as executor environment settings."""
    return {f"spark.executorEnv.{name}": environ[name] for name in STORAGE_ENV if name in environ}


def unapplied_driver_settings(settings: SparkSettings, launched: dict[str, str]) -> dict[str, str]:
    """The profile's settings of the driver's own JVM (`DRIVER_JVM`) that cannot apply because
    spark-submit started that JVM already (`launched` non-empty), where spark-submit did not give them."""
    if not launched:
        return {}
    return {key: value for key, value in settings.conf.items() if key in DRIVER_JVM and key not in launched and value is not None}


def session_conf(settings: SparkSettings, launched: dict[str, str]) -> dict[str, str]:
    """The session's settings: the jobs' base settings, the driver's object-store location for the
    executors, then the profile's, then spark-submit's, which win; without the profile's settings
    of a driver JVM spark-submit started (`unapplied_driver_settings`), which would only show, or
    those it leaves to the cluster (null: spark-defaults.conf's, else Spark's default)."""
    unapplied = unapplied_driver_settings(settings, launched)
    profile = {
        **BASE_CONF,
        **storage_env(dict(os.environ)),
        "spark.app.name": settings.app_name,
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(settings.arrow_batch_rows),
        **({"spark.master": settings.master} if settings.master else {}),
        **{key: value for key, value in settings.conf.items() if key not in unapplied and value is not None},
    }
    return {**profile, **launched}


def runs_tasks_in_driver(master: str) -> bool:
    """Whether the driver's process runs the tasks (`local`, `local[N]`): no executor ever registers."""
    return master == "local" or master.startswith("local[")


def build_session(settings: SparkSettings) -> SparkSession:
    """A session on the master spark-submit set (else the profile's), whose Python workers run
    `spark.pyspark.python` where it is set, this interpreter on a master on this machine, and
    otherwise the executors' own `python3`."""
    launched = launched_conf()
    conf = session_conf(settings, launched)
    for key, value in unapplied_driver_settings(settings, launched).items():
        warnings.warn(f"{key}={value} from the profile does not apply: spark-submit started the driver's JVM before the profile "
                      f"was read; give it to spark-submit (--conf {key}={value})", stacklevel=2)
    master = conf.get("spark.master")
    if not master:
        raise UsageError("no Spark master: the profile leaves it to spark-submit (spark-submit --master ...), "
                         "or give one with --set spark.master=...")
    if "spark.pyspark.python" in conf:  # PySpark reads the workers' interpreter from the environment only
        os.environ["PYSPARK_PYTHON"] = conf["spark.pyspark.python"]
    elif master.startswith("local"):  # local, local-cluster: the workers are on this machine
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    if not runs_tasks_in_driver(master) and not starts_without_executors(conf):
        try:
            await_executor(spark.sparkContext, settings.executor_wait_s)
        except UsageError:
            spark.stop()
            raise
    return spark


def starts_without_executors(conf: dict[str, str]) -> bool:
    """Whether the application asks for no executor until it has tasks (dynamic allocation with no
    initial, minimum or fixed number of executors): none registers before the job's first stage."""
    if conf.get("spark.dynamicAllocation.enabled", "false").lower() != "true":
        return False
    return not any(int(conf.get(key, "0")) for key in ("spark.dynamicAllocation.minExecutors", "spark.dynamicAllocation.initialExecutors",
                                                      "spark.executor.instances"))


def task_needs(conf: SparkConf) -> dict[str, float]:
    """What one task asks of an executor: `cpus` and each `spark.task.resource.<name>.amount`."""
    prefix, suffix = "spark.task.resource.", ".amount"
    needs = {"cpus": float(conf.get("spark.task.cpus", "1"))}
    needs.update({k[len(prefix):-len(suffix)]: float(v) for k, v in conf.getAll() if k.startswith(prefix) and k.endswith(suffix)})
    return needs


def _executors(sc: SparkContext) -> list[dict[str, float]]:
    """Each registered executor's cores and resource addresses, from the driver's status store."""
    summaries = sc._jsc.sc().statusStore().executorList(True)
    executors = []
    for i in range(summaries.size()):
        summary = summaries.apply(i)
        if summary.id() == "driver":
            continue
        resources = summary.resources()
        names = resources.keys().toList()
        offer = {"cpus": float(summary.totalCores())}
        offer.update({names.apply(j): float(len(resources.apply(names.apply(j)).addresses())) for j in range(names.size())})
        executors.append(offer)
    return executors


def can_run_a_task(offer: dict[str, float], needs: dict[str, float]) -> bool:
    """Whether an executor with these cores and resources can run one task (fractional resources
    share one address)."""
    return all(offer.get(name, 0.0) >= math.ceil(amount) for name, amount in needs.items())


def await_executor(sc: SparkContext, timeout_s: float, needs: dict[str, float] | None = None,
                   asker: str = "a task", asked_by: str = "spark.task.cpus, spark.task.resource.*") -> None:
    """Return once an executor that can run `asker` (what `needs` say, the job's `task_needs` by
    default) has registered; else fail saying what it asks for and what registered. A cluster that
    cannot grant a request (GPUs on CPU-only workers, more task cpus than an executor has) otherwise
    leaves the job waiting forever."""
    needs = task_needs(sc.getConf()) if needs is None else needs
    deadline = time.monotonic() + timeout_s
    while True:
        executors = _executors(sc)
        if any(can_run_a_task(e, needs) for e in executors):
            return
        if time.monotonic() > deadline:
            break
        time.sleep(EXECUTOR_POLL_S)
    asked = ", ".join(f"{amount:g} {name}" for name, amount in needs.items())
    seen = "; ".join(", ".join(f"{v:g} {k}" for k, v in e.items()) for e in executors) or "none"
    raise UsageError(
        f"no executor that can run {asker} registered with {sc.master} within {timeout_s:g}s (spark.executor_wait_s): a task asks for "
        f"{asked} ({asked_by}), executors registered: {seen}. A cluster without GPUs never grants "
        "one: use --profile cluster-cpu, or ask for what the workers have.")
