"""A signal's life inside one Spark Python worker: the GPU Spark assigned to the task, the
worker's cached model (loaded once per Python worker, reused by every later task), the torch
threads and heap settings of the worker, then `signals.runner.run_signal` over the task's rows.
Both Spark entry points (`udfs.rows` for the jobs, `udfs.columns` for ad-hoc UDFs) run signals here.
"""
from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Sequence
from typing import Any

import pandas as pd
from pyspark import TaskContext

from signals import model_cache
from signals.base import Signal
from signals.device import configure_threads, keep_freed_heap
from signals.runner import run_signal


def task_gpu_addresses() -> tuple[str, ...]:
    """The GPU addresses Spark's resource scheduler gave this task (empty without GPUs)."""
    context = TaskContext.get()
    resources = context.resources() if context is not None else {}
    return tuple(resources["gpu"].addresses) if "gpu" in resources else ()


_attached: dict[str, Any] = {}  # what the current task of this process attached (worker_report)


def attach_worker(signal: Signal, torch_threads: int) -> None:
    """What a task does in its Python worker before the first batch: cap torch's threads, load
    the signal (the worker's cached model) on the GPU Spark assigned, if any, and on a CPU
    worker make the C heap keep freed memory (signals.device.keep_freed_heap: the next batch
    reuses the pages the last one freed instead of faulting them in again). Not for a signal
    that pads each batch to its longest text: its activations change size every batch, and a
    heap that keeps them fragments and the worker's peak grows with the corpus (docs/history.md)."""
    configure_threads(torch_threads)
    gpus = task_gpu_addresses()
    loading = model_cache.load_seconds()
    signal.load(gpus)
    _attached.update(gpus=",".join(gpus), device=str(signal.device), load_s=model_cache.load_seconds() - loading)
    if keeps_freed_heap(signal):
        keep_freed_heap()


def worker_report() -> dict[str, Any]:
    """Which worker ran the current task, for the driver's report of which executors ran what:
    host, process and its parent (the executor's Python daemon, one per executor, that forks its
    workers; the executor itself where there is no daemon), the task's CPUs and GPUs, the device
    its model ran on and the seconds the task spent loading the model (0 when the worker had it
    cached). Read after `attach_worker`."""
    context = TaskContext.get()
    return {"host": socket.gethostname(), "pid": os.getpid(), "parent_pid": os.getppid(), "cpus": context.cpus() if context else None,
            **_attached}


def keeps_freed_heap(signal: Signal) -> bool:
    """Whether a worker running `signal` (loaded) keeps its C heap: on a CPU, batches of fixed shapes."""
    return signal.device is not None and signal.device.type == "cpu" and not signal.pads_batches


def batches_ahead(signal: Signal, prefetch: int) -> int:
    """Batches a task prepares ahead on a background thread: `prefetch` where the model runs on
    a GPU (the CPU decodes while the GPU computes) or the signal `fetches` (rows wait on the
    network while the model runs), none otherwise on a CPU. There each task's model already
    keeps its cores busy (`torch_threads` per task slot), and a preparing thread only takes
    turns with it for the cores and the GIL: inline was ahead in every paired round
    (docs/history.md)."""
    return prefetch if signal.fetches or (signal.device is not None and signal.device.type == "cuda") else 0


def run_in_worker(signal: Signal, frames: Iterator[pd.DataFrame], prefetch: int, torch_threads: int,
                  carry: Sequence[str] = ()) -> Iterator[pd.DataFrame]:
    """A task's result frames for `frames`: the worker attached (`attach_worker`) when the first
    one is asked for, then `run_signal` (carrying `carry`) with the prefetch depth the worker's device wants."""
    attach_worker(signal, torch_threads)
    yield from run_signal(signal, frames, batches_ahead(signal, prefetch), carry)
