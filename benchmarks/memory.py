"""Peak resident memory of Spark's Python workers, polled while a job runs.

The workers are the descendants of this driver's JVM whose command line runs pyspark.daemon or
pyspark.worker (the daemon forks one worker per concurrent Python evaluation). Other Spark
applications on the machine are not descendants, so they are never counted. A process's own
peak can be restarted after a warm-up (`restart_peak_rss`).
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil


def restart_peak_rss() -> int:
    """This process's RSS now, from which its high-water mark (VmHWM) counts again (Linux's
    `clear_refs` 5): a peak measured after a warm-up is then over what the process holds, where
    the warm-up's own peak hid any lower one."""
    Path("/proc/self/clear_refs").write_text("5")
    return int(Path("/proc/self/status").read_text().split("VmRSS:")[1].split()[0]) * 1024  # kilobytes


def _is_python_worker(proc: psutil.Process) -> bool:
    try:
        cmdline = " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return "pyspark.daemon" in cmdline or "pyspark.worker" in cmdline or "pyspark/daemon.py" in cmdline


def python_workers(root_pid: int | None = None) -> list[psutil.Process]:
    """Spark Python worker processes below `root_pid` (default: this process)."""
    try:
        children = psutil.Process(root_pid or os.getpid()).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [p for p in children if _is_python_worker(p)]


@dataclass
class RssPeaks:
    """What one polling window saw."""

    peak_worker_mb: float = 0.0  # the largest RSS of any one worker at any sample
    peak_total_mb: float = 0.0  # the largest sum of the workers' RSS at one sample
    per_worker_mb: dict[int, float] = field(default_factory=dict)  # pid -> its peak
    samples: int = 0

    @property
    def workers_seen(self) -> int:
        return len(self.per_worker_mb)

    def as_dict(self) -> dict[str, Any]:
        return {"peak_worker_mb": round(self.peak_worker_mb, 1), "peak_total_mb": round(self.peak_total_mb, 1),
                "workers_seen": self.workers_seen, "per_worker_peak_mb": sorted(round(v) for v in self.per_worker_mb.values()),
                "samples": self.samples}


class RssPoller:
    """Poll the Python workers' RSS every `interval` seconds on a background thread.

        with RssPoller() as poll:
            run_the_job()
        poll.peaks.peak_worker_mb
    """

    def __init__(self, interval: float = 0.05, root_pid: int | None = None) -> None:
        self.interval = interval
        self.root_pid = root_pid
        self.peaks = RssPeaks()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-poller", daemon=True)

    def sample(self) -> None:
        total = 0.0
        for proc in python_workers(self.root_pid):
            try:
                rss = proc.memory_info().rss / 2**20
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            self.peaks.per_worker_mb[proc.pid] = max(self.peaks.per_worker_mb.get(proc.pid, 0.0), rss)
            self.peaks.peak_worker_mb = max(self.peaks.peak_worker_mb, rss)
            total += rss
        self.peaks.peak_total_mb = max(self.peaks.peak_total_mb, total)
        self.peaks.samples += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> RssPoller:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def _cpu_seconds() -> tuple[float, float]:
    """(this process, this process and its descendants) from one reading of this process, so the
    first can never exceed the second."""
    me = psutil.Process()
    t = me.cpu_times()
    own = t.user + t.system
    tree = own + t.children_user + t.children_system
    for proc in me.children(recursive=True):
        try:
            c = proc.cpu_times()
            tree += c.user + c.system + c.children_user + c.children_system
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return own, tree


class CpuShare:
    """CPU seconds the whole machine and this benchmark's process tree (driver, JVM, workers)
    used during a block: what others used meanwhile is the contention the numbers suffered.
    This process's own share is apart: a driver waiting on its Spark job uses little, so more is
    what else ran in it (benchmarks.uri's loopback servers).

        with CpuShare() as cpu:
            run()
        cpu.as_dict()
    """

    def __enter__(self) -> CpuShare:
        self._start = time.perf_counter()
        self._machine = self._busy()
        self._own, self._mine = _cpu_seconds()
        return self

    @staticmethod
    def _busy() -> float:
        t = psutil.cpu_times()
        return t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._start
        self.machine = self._busy() - self._machine
        own, mine = _cpu_seconds()
        self.own, self.mine = own - self._own, mine - self._mine

    def as_dict(self) -> dict[str, float]:
        cores = psutil.cpu_count() or 1
        return {"wall_s": round(self.wall, 2), "cpu_s_all_processes": round(self.machine, 2), "cpu_s_this_benchmark": round(self.mine, 2),
                "cpu_s_driver_process": round(self.own, 2),
                "cpu_s_others": round(max(0.0, self.machine - self.mine), 2),
                "others_share_of_machine": round(max(0.0, self.machine - self.mine) / (cores * self.wall), 3) if self.wall else None}
