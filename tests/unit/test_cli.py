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


def test_help_loads_neither_torch_nor_spark_nor_mlflow() -> None:
    """`--help` and argument errors answer at once: the heavy libraries load only when a command runs."""
    probe = ("import sys, jobs.cli\ntry:\n    jobs.cli.main(['backfill', '--help'])\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in ('torch', 'pyspark', 'mlflow', 'deltalake') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=dict(os.environ), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--dry-run" in done.stdout and "--run-id" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_show_of_a_lakehouse_that_does_not_exist_exits_2(tmp_path) -> None:
    done = _cli("show", "--set", f"lakehouse={tmp_path / 'typo'}")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no Delta table" in done.stdout


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path) -> None:
    assert _cli("make-corpus", "--n-items", "12", "--set", f"lakehouse={tmp_path}").returncode == 0
    done = _cli("backfill", "--dry-run", "--start", "2026-11-18", "--set", f"lakehouse={tmp_path}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "window: 2026-11-18..end" in done.stdout and "corpus: version 0" in done.stdout
    assert "image_embedding (efficientnet-lite0) at model version champion: not registered yet" in done.stdout
    assert "spark.master=local[2]" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "corpus_truth"]  # no table, no registry


def test_every_option_of_every_command_says_what_it_is_in_its_help() -> None:
    """Found in review: `make-corpus --n-items` and `--seed`, `compare --a` and `--b`, `label-sample --n`
    were bare names in `--help`, their defaults unsaid."""
    import argparse

    from jobs.cli import _parser

    def commands(parser: argparse.ArgumentParser, path: str) -> list[tuple[str, argparse.ArgumentParser]]:
        found = [(path, parser)]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found += commands(sub, f"{path} {name}")
        return found

    bare = [f"{path} {action.option_strings or action.dest}" for path, parser in commands(_parser(), "content-signals")
            for action in parser._actions
            if action.option_strings and not isinstance(action, argparse._HelpAction) and not action.help]
    assert not bare
