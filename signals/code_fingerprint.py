"""The fingerprint of a signal's code: what a version of a signal whose logic is all code (a rule: its word lists
and thresholds are constants of its module) records in place of its weights' sha256, so that a run whose code is
no longer its version's is refused (rollout.models.check_code), as other weights are.

It is the sha256 of the syntax tree of the module that defines the signal's class, docstrings dropped (the parser
drops comments; line numbers are not dumped): a reworded docstring, a comment or a line broken otherwise computes
what the version computed, and is not a new version. The whole module, not the class alone: a rule reads the
module's constants and functions. Code the module imports from elsewhere (a shared base, a package) is not in it.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import sys

_DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


@functools.cache
def code_sha256(cls: type) -> str:
    """sha256 of the docstring-free syntax tree of the module defining `cls`, read from its source once per class (a job
    asks on its driver as it starts)."""
    tree = ast.parse(inspect.getsource(sys.modules[cls.__module__]))
    for node in ast.walk(tree):
        if isinstance(node, _DOCUMENTED) and node.body and _is_docstring(node.body[0]):
            node.body = node.body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()


def _is_docstring(statement: ast.stmt) -> bool:
    return isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant) and isinstance(statement.value.value, str)
