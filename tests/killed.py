"""A command killed at one point: a child Python process in which one function ends the process at
once (`os._exit(137)`, as SIGKILL leaves it: no `finally`, no `atexit`, no flush) when called with
the arguments a test names, so that the test can run the next command or the retry on what it left."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KILLED = 137

_CHILD = """
import importlib, os, sys
module, attribute = sys.argv[1].split(":")
owner = importlib.import_module(module)
*path, name = attribute.split(".")
for part in path:
    owner = getattr(owner, part)
real, when = getattr(owner, name), eval("lambda a, k: " + sys.argv[2])
def dying(*a, **k):
    if when(a, k):
        os._exit(137)
    return real(*a, **k)
setattr(owner, name, dying)
exec(sys.argv[3], {"argv": sys.argv[4:]})
"""


def child_env() -> dict[str, str]:
    """The environment of a Python child process that imports this checkout."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def run_killed(target: str, when: str, code: str, *args: str) -> None:
    """Run `code` (Python; `argv` holds `args`) in a child in which `target` ("module:Class.attribute")
    exits the process with 137 when `when` (an expression of its positional args `a` and keyword args
    `k`) holds; fails unless the child died there."""
    child = subprocess.run([sys.executable, "-c", _CHILD, target, when, code, *args], env=child_env(), cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
    assert child.returncode == KILLED, f"not killed at {target} when {when} (exit {child.returncode}): {child.stdout}{child.stderr}"
