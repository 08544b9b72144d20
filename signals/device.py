"""Where a model runs: the GPU a Spark task was given, any visible GPU, or the CPU."""
from __future__ import annotations

import time
from collections.abc import Sequence

import torch


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


def configure_worker(threads: int) -> None:
    """Set up a process that runs models: torch's intra-op threads capped (so concurrent Spark
    tasks do not fight over the cores) and freed memory kept for the next batch."""
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    keep_freed_memory()


_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8  # glibc mallopt parameters


def keep_freed_memory() -> bool:
    """Have glibc keep freed memory for reuse instead of returning it to the OS at once.

    A model batch allocates and frees activations of tens of MB. By default glibc serves those
    with mmap and unmaps them at free, so every batch faults its memory in again: on a CPU,
    EfficientNet-Lite0 spent twice as long in the kernel as in the model (3x slower forward,
    measured). With mmap off and automatic trimming off, the next batch reuses the same pages;
    one arena serves every thread (the prefetch thread's frees are reused by the model's), so
    the worker's memory stays that of its largest batch, and HeapTrimmer gives it back now and
    then. True if set; a no-op (False) where the C library is not glibc."""
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return False
    return all(mallopt(param, value) for param, value in ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**30), (_M_ARENA_MAX, 1)))


class HeapTrimmer:
    """Give the C heap's free pages back to the OS now and then (glibc `malloc_trim`).

    A worker allocates images and tensors on the prefetch thread and frees them on the model's
    thread; glibc keeps the freed pages in per-thread arenas, so a long partition's RSS creeps
    up and varies by hundreds of MB from run to run though nothing is held. Trimming after a
    batch, at most every `interval_s` seconds, keeps the worker's peak flat whatever the
    partition's size. Not more often: the next batch faults the returned pages in again (see
    keep_freed_memory). A no-op where the C library is not glibc.
    """

    def __init__(self, interval_s: float = 30.0) -> None:
        self.interval_s = interval_s
        self._last = time.monotonic()
        self._trim = _libc_function("malloc_trim")

    def __call__(self, force: bool = False) -> bool:
        """Trim if the interval has passed (or `force`); True if it trimmed."""
        if self._trim is None or (not force and time.monotonic() - self._last < self.interval_s):
            return False
        self._trim(0)
        self._last = time.monotonic()
        return True


def _libc_function(name: str):
    try:
        import ctypes

        return getattr(ctypes.CDLL("libc.so.6"), name)
    except (OSError, AttributeError):
        return None
