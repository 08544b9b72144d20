"""What the command line says when a command fails: one message and a distinct exit status for
the failures a user or a scheduler can act on; a traceback for anything else, which is a bug.
The statuses and what each means: jobs/exit_statuses.py (the top-level `--help` lists them).
"""
from __future__ import annotations

import importlib.util
import json
import re
import reprlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from deltalake.exceptions import DeltaError
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from conf.settings import UsageError
from jobs.exit_statuses import ALERTED, BAD_INPUT, CONFLICT, DAMAGED
from jobs.maintain import UpkeepFailed
from lake import delta_io
from lake.alias_lock import AliasConflict
from lake.delta_io import SHARED_STORAGE, CommitConflict
from lake.registry import RegistryDamaged, RegistryError
from monitoring.monitor import AlertsFired
from signals.contracts import DUPLICATES, EMBEDDINGS, KEYFRAMES, LABELS
from signals.weights import NO_HUB_WEIGHTS, NO_WEIGHTS

BACKFILLED_TABLES = {c.name for c in (EMBEDDINGS, LABELS, KEYFRAMES)}  # a backfill of a day writes that day's files again
_DATA_FILE = re.compile(r"(?P<table>[A-Za-z0-9_]+)/(?:[a-z_]+=[^/\s]+/)*?ds=(?P<ds>\d{4}-\d{2}-\d{2})/[^\s'\"]+\.parquet")
_LOG_ERROR = re.compile(r"json|parse|truncated|invalid log", re.IGNORECASE)
_PARQUET_PATH = re.compile(r"(/[^\s'\"]+?\.parquet)")
_WORKER_FAILED = "exception was thrown from the Python worker"  # PySpark's words for a task's Python error
_NO_WEIGHTS = re.compile(rf"FileNotFoundError: {re.escape(NO_WEIGHTS)} (\S+)")
_NO_HUB_WEIGHTS = re.compile(rf"HubWeightsUnavailable: ({re.escape(NO_HUB_WEIGHTS)} [^\n]+)")
_NO_MODULE = re.compile(r"ModuleNotFoundError: No module named '([^']+)'")
# PySpark's words when a worker's Python minor version is not the driver's (pyspark/worker_util.py)
_OTHER_PYTHON = re.compile(r"\[PYTHON_VERSION_MISMATCH\] Python in worker has different version:? (?P<worker>[\d.]+) than that in driver:? (?P<driver>[\d.]+)")


@dataclass(frozen=True)
class Failure:
    """A failure explained: the exit status and what to tell the user."""

    status: int
    message: str


def explain(exc: BaseException, lakehouse_root: str | None = None) -> Failure | None:
    """The failure as the user should see it, or None for an unexpected error (a bug)."""
    if isinstance(exc, UpkeepFailed):  # explained as its first table's failure is, with what was done for the others
        first = explain(next(iter(exc.failed.values())), lakehouse_root)
        return Failure(first.status, f"{first.message}\n{exc}") if first else None
    text = f"{type(exc).__name__}: {exc}"
    if _says_missing(text) and (there := _there_for_the_driver(text)):
        return Failure(BAD_INPUT, f"the executors found no {there}, which is there for the driver: {SHARED_STORAGE}")
    data_file = _DATA_FILE.search(text) if _says_missing(text) else None
    if data_file:
        table, day = data_file["table"], data_file["ds"]
        missing = f"a data file of table {table!r} for day {day} is missing ({data_file[0]})"
        if table in BACKFILLED_TABLES:
            return Failure(DAMAGED, f"{missing}. A backfill of that day writes it again: content-signals backfill --start {day} --end {day}")
        if table == DUPLICATES.name:
            return Failure(DAMAGED, f"{missing}. A dedup run writes the table again: content-signals dedup")
        return Failure(DAMAGED, f"{missing}: it was deleted or vacuumed. If it is the corpus's, with corpus.version pinned, pin a "
                                "version whose files are there (a later one, or none for the latest); otherwise restore it from a backup")
    if _says_missing(text) and (missing := _missing_table_file(text)):  # a table with no day folders (signal tables, the runs ledger, the tables by task)
        table, path = missing
        days = _days_of(table, path) if Path(table).name in BACKFILLED_TABLES else None
        if days is not None:
            return Failure(DAMAGED, f"a data file of table {Path(table).name!r} with rows of days {days[0]}..{days[1]} is missing ({path}). "
                                    f"A backfill of those days writes them again: content-signals backfill --start {days[0]} --end {days[1]}")
        return Failure(DAMAGED, f"a data file of the Delta table {table} is missing ({path}). Restore it from a backup, or "
                                f"drop it from the table, losing its rows: python -c \"from deltalake import DeltaTable; "
                                f"DeltaTable('{table}').repair()\"")
    if (module := _executors_lack(text)) is not None:
        return Failure(BAD_INPUT, f"the executors' Python cannot import {module!r}, which the driver's can: give the executors this "
                                  "package's code (spark-submit --py-files dist/content_signals-<version>.zip, from make dist) and "
                                  "requirements.txt's packages in the Python spark.pyspark.python names, or ship the whole environment "
                                  "(make dist-env; README, Running on a cluster)")
    if (weights := _weights_the_driver_alone_reads(text)) is not None:
        return Failure(BAD_INPUT, f"the executors' Python workers found {NO_WEIGHTS} {weights}, which the driver reads (and registered): "
                                  "a signal's weights must be at a path every executor reads too (storage mounted at the same path on "
                                  "every machine, s3://, hdfs://) or a hub tag they reach (README, Running on a cluster)")
    if _WORKER_FAILED in text and (hub := _NO_HUB_WEIGHTS.findall(text)):  # the worker's own words, its traceback's last line
        return Failure(BAD_INPUT, hub[-1])
    if (versions := _OTHER_PYTHON.search(text)) is not None:
        return Failure(BAD_INPUT, f"the executors' Python is {versions['worker']} and the driver's {versions['driver']}: PySpark runs "
                                  f"tasks only in the driver's minor version. Name a Python {versions['driver']} with requirements.txt's "
                                  "packages in spark.pyspark.python, or ship the driver's environment (make dist-env; README, "
                                  "Running on a cluster)")
    if isinstance(exc, ValidationError):
        return Failure(BAD_INPUT, settings_errors(exc))
    if isinstance(exc, UsageError | FileNotFoundError | NotADirectoryError | RegistryError):
        return Failure(BAD_INPUT, str(exc))
    if isinstance(exc, RegistryDamaged):
        return Failure(DAMAGED, str(exc))
    if isinstance(exc, AlertsFired):
        return Failure(ALERTED, f"{exc} (exit {ALERTED})")
    if isinstance(exc, CommitConflict | AliasConflict):
        return Failure(CONFLICT, f"{exc} (exit {CONFLICT}: safe to retry)")
    if isinstance(exc, DeltaError) and _LOG_ERROR.search(text):
        broken = unreadable_log_entries(lakehouse_root) if lakehouse_root else []
        where = ", ".join(broken) if broken else "a table of the lakehouse"
        return Failure(DAMAGED, f"the Delta log of {where} cannot be read ({_first_line(exc)}). A commit file was truncated "
                                "or edited: restore it from a backup, or, if it is a table's newest entry and its run is not "
                                "recorded as succeeded in the runs table, remove it; then run the command again.")
    return None


def settings_errors(exc: ValidationError) -> str:
    """The settings pydantic refused, on one line: each one's key path, what is wrong and the value
    given (pydantic's own text is a paragraph per error, with a link to its documentation)."""
    return "; ".join(_setting_error(error) for error in exc.errors())


def _setting_error(error: ErrorDetails) -> str:
    where = ".".join(str(key) for key in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{where}: no such setting"
    what = error["msg"].removeprefix("Value error, ")  # our validators' words, which name the value
    shown = error["type"] not in ("missing", "value_error") and not isinstance(error["input"], dict)
    given = f" (given {reprlib.repr(error['input'])})" if shown else ""
    return f"{where}: {what}{given}" if where else what


def _executors_lack(text: str) -> str | None:
    """The module a task's Python worker could not import where the driver can (the executors'
    Python lacks our code or a dependency), from the failure's text; None for anything else,
    and for a module the driver lacks too (a bug)."""
    found = _NO_MODULE.findall(text) if _WORKER_FAILED in text else []
    if not found:
        return None
    module = found[-1]  # the worker's own failure is its traceback's last line
    try:
        return module if importlib.util.find_spec(module) is not None else None
    except (ImportError, ValueError):  # a parent package the driver lacks
        return None


def _weights_the_driver_alone_reads(text: str) -> str | None:
    """The weights path a task's Python worker found missing (signals.weights) that the driver
    finds: the executors, on other machines, do not see the driver's disk; None for anything else."""
    found = _NO_WEIGHTS.findall(text) if _WORKER_FAILED in text else []
    return next((path for path in found if Path(path).exists()), None)


def _says_missing(text: str) -> bool:
    """Whether an error's text says a file was not found (each store says it its own way)."""
    return "FileNotFound" in text or "No such file" in text or "not found" in text.lower()


def _there_for_the_driver(text: str) -> str | None:
    """A data file of a local Delta table that a task found missing but the driver finds (the
    executors, on other machines, do not see the driver's folder), from the error's text; None if
    the error names none."""
    return next((path for _, path in _named_table_files(text) if Path(path).is_file()), None)


def _missing_table_file(text: str) -> tuple[str, str] | None:
    """The local Delta table, and the data file of it, that a reader found missing; None if the error names none."""
    return next(((table, path) for table, path in _named_table_files(text) if not Path(path).exists()), None)


def _days_of(table: str, path: str) -> tuple[str, str] | None:
    """The first and last day of the rows of a data file of the table's latest snapshot, by its statistics (None: not found)."""
    relative = Path(path).relative_to(table).as_posix()
    return next((f.days for f in delta_io.live_files(table) if unquote(f.path) == relative), None)


def _named_table_files(text: str) -> Iterator[tuple[str, str]]:
    """The data files of local Delta tables an error's text names, each with its table's folder."""
    for match in _PARQUET_PATH.finditer(text):
        table = next((folder for folder in Path(match[1]).parents if (folder / "_delta_log").is_dir()), None)
        if table is not None:
            yield str(table), match[1]


def unreadable_log_entries(lakehouse_root: str) -> list[str]:
    """The commit files of the lakehouse's tables that are not JSON lines (local lakehouses only)."""
    broken = []
    for entry in sorted(Path(lakehouse_root).glob("*/_delta_log/*.json")):
        try:
            for line in entry.read_text().splitlines():
                if line.strip():
                    json.loads(line)
        except (ValueError, UnicodeDecodeError):
            broken.append(str(entry))
    return broken


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
