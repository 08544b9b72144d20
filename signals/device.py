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
    the next batch faults them in again, page by page: an image model's CPU worker spent much of
    its time in the kernel doing that (docs/history.md). With every allocation served from the
    heap and nothing given back at free, the next batch reuses the same pages; `HeapTrimmer`
    bounds what the heap may keep."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 1 << 30))


class HeapTrimmer:
    """Hand the C heap's free pages back to the OS (glibc `malloc_trim`) when a worker's
    resident memory grows past the level its batches settled at.

    A worker frees a batch's images and activations before the next batch, but glibc keeps
    freed pages (always, once `keep_freed_heap` ran; in per-thread arenas otherwise), and
    batches of other sizes leave holes the next ones do not fit: over a long partition the
    resident memory creeps up. Called after every batch. The peak RSS of `settle_batches`
    batches sets the level: the process's first batches (again after each model load: a new
    model legitimately takes more), and the batches right after each trim. A batch that leaves
    RSS more than `headroom` above the level trims the heap. The level is the process's, not
    the task's, so the next task starts on a warm heap and the peak grows with neither the
    partition nor the job. Settling again after a trim is what keeps trims rare: when the
    working set legitimately outgrows the first batches (a warm-up's or a refresh's small ones
    came first), one trim lifts the level to it; a fixed level trimmed after every batch, and
    each trim's page faults cost that batch a good part of its time (docs/history.md). A no-op
    without glibc or /proc.
    """

    _levels: ClassVar[dict[int, list[float]]] = {}  # models loaded -> [batches left to settle, level MB]

    def __init__(self, settle_batches: int = 3, headroom: float = 0.05) -> None:
        self.settle_batches = settle_batches
        self.headroom = headroom
        libc = _libc()
        self._trim = getattr(libc, "malloc_trim", None) if libc is not None else None

    @property
    def settled_mb(self) -> float:
        """The level this process's RSS settled at with the models it has loaded now (0 while settling)."""
        left, level = self._levels.get(model_cache.total_loads(), [self.settle_batches, 0.0])
        return level if left <= 0 else 0.0

    def __call__(self) -> bool:
        """After a batch: trim if RSS is past the settled level plus headroom; True if it trimmed."""
        rss = resident_mb() if self._trim is not None else None
        if rss is None:
            return False
        state = self._levels.setdefault(model_cache.total_loads(), [self.settle_batches, 0.0])
        if state[0] > 0:
            state[0] -= 1
            state[1] = max(state[1], rss)
            return False
        if rss <= state[1] * (1 + self.headroom):
            return False
        self._trim(0)
        state[:] = [self.settle_batches, 0.0]
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
