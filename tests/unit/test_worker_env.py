"""The environment the profiles give Spark's Python workers does what conf/base.yaml says: with
it, this torch backs its large CPU tensors with transparent huge pages (a torch upgrade that
renames the variable fails here, not as a silent 2x slowdown of every CPU worker)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.config import load_settings

THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")
SMAPS = Path("/proc/self/smaps_rollup")

# allocate and touch a 256 MB tensor, print how much of the process is on huge pages (kB)
TOUCH_AND_MEASURE = """
import re, torch
x = torch.ones(64 * 2**20)
print(int(re.search(r"AnonHugePages:\\s+(\\d+) kB", open("/proc/self/smaps_rollup").read()).group(1)))
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
def test_the_worker_environment_puts_torch_tensors_on_huge_pages() -> None:
    with_env = _huge_pages_kb(load_settings("local").spark.worker_env)
    assert with_env >= 128 * 1024  # most of the 256 MB tensor
    if "[madvise]" in THP_MODE.read_text():  # only torch's madvise asks for them: none without it
        assert _huge_pages_kb({}) < 128 * 1024
