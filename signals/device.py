"""Where a model runs: the GPU a Spark task was given, any visible GPU, or the CPU."""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import ClassVar

import torch

from signals import model_cache


def select_device(preference: str = "auto", gpu_addresses: Sequence[str] = ()) -> torch.device:
    """Pick the device for this worker.

    `preference` is "auto", "cpu" or "cuda". With "auto", a GPU address assigned to the task by
    Spark's resource scheduling wins, then the first visible GPU, then the CPU.
    """
    if preference == "cpu" or not torch.cuda.is_available():
        if preference == "cuda":
            raise RuntimeError("device 'cuda' was requested but torch sees no GPU")
        return torch.device("cpu")
    if gpu_addresses:
        return torch.device(f"cuda:{int(gpu_addresses[0])}")
    return torch.device("cuda:0")


def configure_threads(threads: int) -> None:
    """Cap torch's intra-op threads so concurrent Spark tasks do not fight over the cores."""
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


M_TRIM_THRESHOLD = -1  # glibc mallopt parameters (malloc.h)
M_MMAP_MAX = -4


def keep_freed_heap() -> bool:
    """Make this process's C heap keep the memory it frees (glibc; False elsewhere).

    By default glibc maps each allocation above a few MB on its own and unmaps it at free, and
    gives the heap's top back early: a CPU forward pass frees its activations every batch and
    the next batch faults them in again, page by page. Measured on EfficientNet-Lite0 (one
    thread, batches of 32), that was a third of the worker's CPU time in the kernel and 1.4x the
    time per image. With every allocation served from the heap and nothing given back at free,
    the next batch reuses the same pages; `HeapTrimmer` bounds what the heap may keep."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 1 << 30))


class HeapTrimmer:
    """Hand the C heap's free pages back to the OS (glibc `malloc_trim`) when a worker's
    resident memory grows past what its first batches settled at.

    A worker frees a batch's images and activations before the next batch, but glibc keeps
    freed pages (always, once `keep_freed_heap` ran; in per-thread arenas otherwise), and
    batches of other sizes leave holes the next ones do not fit: over a long partition the
    resident memory creeps up. Called after every batch, this records the peak RSS after the
    first `settle_batches` batches of the process (again after each model load: a new model
    legitimately takes more) and trims whenever RSS exceeds it by `headroom`. The settled
    level is the process's, not the task's, so the next task starts on a warm heap and cannot
    settle higher on what the last one left: the peak does not grow with the partition's or
    the job's size, and a trim (1 to 30 ms, then one batch of page faults) is paid only when
    the heap has really grown. The settled level itself depends on the first batches and varies
    from one worker process to the next (peaks 1954 to 2300 MB across the benchmark's runs). A no-op
    without glibc or /proc.
    """

    _settled: ClassVar[dict[int, list[float]]] = {}  # models loaded -> [batches seen, peak RSS MB]

    def __init__(self, settle_batches: int = 3, headroom: float = 0.05) -> None:
        self.settle_batches = settle_batches
        self.headroom = headroom
        libc = _libc()
        self._trim = getattr(libc, "malloc_trim", None) if libc is not None else None

    @property
    def settled_mb(self) -> float:
        """The RSS this process settled at with the models it has loaded now (0 before)."""
        return self._settled.get(model_cache.total_loads(), [0, 0.0])[1]

    def __call__(self) -> bool:
        """After a batch: trim if RSS is past the settled level plus headroom; True if it trimmed."""
        rss = resident_mb() if self._trim is not None else None
        if rss is None:
            return False
        seen = self._settled.setdefault(model_cache.total_loads(), [0, 0.0])
        if seen[0] < self.settle_batches:
            seen[0] += 1
            seen[1] = max(seen[1], rss)
            return False
        if rss <= seen[1] * (1 + self.headroom):
            return False
        self._trim(0)
        return True


def resident_mb() -> float | None:
    """This process's resident memory in MB (Linux /proc; None elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * _PAGE_BYTES / 2**20
    except (OSError, ValueError, IndexError):
        return None


_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _libc():
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None
