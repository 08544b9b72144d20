"""The command line as a scheduler runs it: a subprocess whose exit code is the command's."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from deltalake import DeltaTable

REPO = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.subprocess


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobs.cli", *args], cwd=REPO, env=dict(os.environ),
                          capture_output=True, text=True, timeout=300)


def test_bad_input_exits_2_with_the_reason_and_writes_nothing(tmp_path) -> None:
    done = _cli("make-corpus", "--n-items", "0", "--set", f"lakehouse={tmp_path}")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "at least one item" in done.stdout
    assert not DeltaTable.is_deltatable(str(tmp_path / "corpus"))


def test_a_command_that_worked_exits_0_after_printing_everything(tmp_path) -> None:
    done = _cli("make-corpus", "--n-items", "12", "--set", f"lakehouse={tmp_path}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "wrote a sample corpus of 12 items" in done.stdout  # flushed before the process left
    assert DeltaTable(str(tmp_path / "corpus")).to_pyarrow_table().num_rows == 12
