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


def configure_threads(threads: int) -> None:
    """Cap torch's intra-op threads so concurrent Spark tasks do not fight over the cores."""
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


class HeapTrimmer:
    """Give the C heap's free pages back to the OS now and then (glibc `malloc_trim`).

    A worker allocates images and tensors on the prefetch thread and frees them on the model's
    thread; glibc keeps the freed pages in per-thread arenas, so a long partition's RSS creeps
    up and varies by hundreds of MB from run to run though nothing is held. Trimming after a
    batch, at most every `interval_s` seconds (it costs 1 to 30 ms), keeps the worker's peak flat
    whatever the partition's size. Every second was not enough once torch's large blocks moved
    to huge pages (conf/base.yaml): the 4x-corpus run then peaked up to 17% above the 1x run in
    short bursts; after every CPU batch (0.25 s) it stayed within about 5% (+3.0% and +5.1% in
    two runs), its cost lost in the noise.
    A no-op where the C library is not glibc.
    """

    def __init__(self, interval_s: float = 0.25) -> None:
        self.interval_s = interval_s
        self._last = time.monotonic()
        self._trim = _malloc_trim()

    def __call__(self, force: bool = False) -> bool:
        """Trim if the interval has passed (or `force`); True if it trimmed."""
        if self._trim is None or (not force and time.monotonic() - self._last < self.interval_s):
            return False
        self._trim(0)
        self._last = time.monotonic()
        return True


def _malloc_trim():
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None
