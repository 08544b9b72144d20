"""What a signal's tasks ask Spark for, and on which device its model runs: the signal's
`resources` from configuration (CPUs and GPUs per task, Spark's stage-level scheduling), placed
on what the driver knows of the executors before any task runs. Decided on the driver, for
every signal before anything is computed, so a job that cannot run refuses at once
(docs/design.md, Per-signal resources)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from pyspark import SparkContext

from conf.settings import SignalSettings, UsageError

GPU = "gpu"  # Spark's resource name for GPUs (spark.executor.resource.gpu.amount)


@dataclass(frozen=True)
class Cluster:
    """What the driver knows of its executors from the Spark configuration, before any registers."""

    task_profiles: bool  # stage-level task resource profiles: every master but local[N]
    executor_gpus: float  # spark.executor.resource.gpu.amount: 0 when unset, a cluster without GPUs
    executor_cores: int | None  # spark.executor.cores, where set or the master fixes it (`executor_cores`)
    dynamic_allocation: bool

    @classmethod
    def of(cls, sc: SparkContext) -> Cluster:
        conf = sc.getConf()
        return cls(
            task_profiles=not (sc.master == "local" or sc.master.startswith("local[")),
            executor_gpus=float(conf.get(f"spark.executor.resource.{GPU}.amount", "0")),
            executor_cores=executor_cores(sc.master, conf.get("spark.executor.cores")),
            dynamic_allocation=conf.get("spark.dynamicAllocation.enabled", "false").lower() == "true",
        )


def executor_cores(master: str, configured: str | None) -> int | None:
    """An executor's cores: `spark.executor.cores` where set, else what the master gives one (a
    local-cluster's second number; Spark's default of 1 on YARN and Kubernetes); None on a
    standalone master, whose executors take their worker's cores, unknown to the configuration
    (jobs.engine.placements then looks at the executors that register)."""
    if configured:
        return int(configured)
    local_cluster = re.fullmatch(r"local-cluster\[\s*\d+\s*,\s*(\d+)\s*,\s*\d+\s*\]", master)
    if local_cluster:
        return int(local_cluster[1])
    return 1 if master == "yarn" or master.startswith("k8s://") else None


@dataclass(frozen=True)
class Placement:
    """Where one signal's tasks run: what each asks Spark for (empty: no resource profile, the
    job's `spark.task.*` defaults) and the device preference its model is loaded with."""

    resources: tuple[tuple[str, float], ...]
    device: str

    @property
    def cpus(self) -> int | None:
        """CPUs each task holds, where the placement sets them."""
        return next((int(amount) for name, amount in self.resources if name == "cpus"), None)


def placement(name: str, signal: SignalSettings, cluster: Cluster) -> Placement:
    """Where `signal`'s tasks run on `cluster`: on a local[N] master as configured, without a
    profile (Spark refuses task resource profiles there); elsewhere with its CPUs and GPUs per
    task, on its CPUs alone (device cpu) where it asks for no GPU or falls back to the CPU on
    executors without one. Raises UsageError where the cluster cannot run it."""
    wanted = signal.resources
    if not cluster.task_profiles:
        return Placement((), signal.device)
    where = f"signals.{name}"
    if cluster.dynamic_allocation:
        raise UsageError(f"{where}: per-signal task resources need spark.dynamicAllocation.enabled=false "
                         "(Spark supports task resource profiles only with dynamic allocation off)")
    if cluster.executor_cores is not None and wanted.cpus > cluster.executor_cores:
        raise UsageError(f"{where}.resources.cpus is {wanted.cpus} but executors have {cluster.executor_cores} cores "
                         "(spark.executor.cores): its tasks would never be scheduled")
    cpus = (("cpus", float(wanted.cpus)),)
    if not wanted.gpus:
        if signal.device == "cuda":
            raise UsageError(f"{where}.device is cuda but resources.gpus is 0: its tasks would use a GPU Spark did not give them")
        return Placement(cpus, "cpu")  # never an executor's GPU that Spark gave to another task
    if not cluster.executor_gpus:
        if wanted.cpu_fallback:
            return Placement(cpus, "cpu")
        raise UsageError(f"{where} asks for {wanted.gpus:g} GPU per task but the executors have none "
                         f"(spark.executor.resource.{GPU}.amount is not set); nothing was computed. Run it on CPUs with "
                         f"--set {where}.resources.cpu_fallback=true (device auto), or on a cluster with GPUs")
    if wanted.gpus > cluster.executor_gpus:
        raise UsageError(f"{where} asks for {wanted.gpus:g} GPUs per task but executors have {cluster.executor_gpus:g} "
                         f"(spark.executor.resource.{GPU}.amount): its tasks would never be scheduled")
    return Placement((*cpus, (GPU, float(wanted.gpus))), signal.device)
