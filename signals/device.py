"""Where a model runs: the GPU a Spark task was given, any visible GPU, or the CPU."""
from __future__ import annotations

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
