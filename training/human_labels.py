"""Human labels: a labeling tool's export read, every row checked, and imported whole or not at all,
because a half-imported batch would silently weigh some annotators' work and not the rest."""
from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

from conf.settings import UsageError
from lake import delta_io
from lake.corpus import CorpusTable
from signals.contracts import HUMAN_LABELS, lakehouse_table
from training.tasks import TASKS, Task, task_named

CSV_COLUMNS = ("content_id", "label", "annotator")  # required; `task` and `labelled_at` are optional
REPORT_LINES = 40  # problems printed before "... and N more"


@dataclass(frozen=True)
class LabelRow:
    """One judgement as the file gives it (any field may be missing), where it stands in the file,
    and why it could not be read, if it could not."""

    where: str
    content_id: str | None
    task: str | None
    label: str | None
    annotator: str | None
    labelled_at: dt.datetime | None
    unreadable: str | None = None


@dataclass(frozen=True)
class ImportOutcome:
    """What an import did: its batch, the rows it committed and the table version (None: already imported)."""

    batch: str
    rows: int
    version: int | None


class _Unreadable(ValueError):
    """A part of a label file that is not what its format says: reported on its row, never a traceback."""


def table_root(lakehouse: str) -> str:
    return lakehouse_table(lakehouse, HUMAN_LABELS.name)


def _text(value: Any, name: str) -> str | None:
    """A field as text (a number, as an id may be, becomes its digits); None when absent or blank."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _Unreadable(f"{name} {value!r} is not text")
    text = str(value).strip()
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate escape ("\ud800") in JSON: not text any table can hold
            raise _Unreadable(f"{name} is not valid Unicode text") from None
    return text or None


def _timestamp(text: Any) -> dt.datetime | None:
    """An ISO-8601 time as UTC (naive times are taken as UTC); None when absent."""
    if text in (None, ""):
        return None
    try:
        moment = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
        return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
    except ValueError:
        raise _Unreadable(f"labelled_at {text!r} is not an ISO-8601 time") from None
    except OverflowError:  # year 1 east of UTC, year 9999 west of it
        raise _Unreadable(f"labelled_at {text!r} is outside the years a time in UTC can have") from None


def canonical_annotator(name: str) -> str:
    """An annotator as stored, so that one person typed two ways is one annotator: in Unicode's
    composed form (NFC: an accent as its own code point or not), and an email address (a name
    holding `@`) in lower case throughout. Only the domain is case-insensitive by RFC 5321, but
    labeling tools and mail providers treat the local part so too, and one person's address typed
    `Ann@` and `ann@` counted twice in every vote; a name that is no email keeps its case. Gold
    (`training.gold.votes_of`) identifies annotators by it too, for rows stored before."""
    name = unicodedata.normalize("NFC", name)
    return name.lower() if "@" in name else name


def _annotator(value: Any, name: str) -> str | None:
    """An annotator's canonical name; Label Studio's `completed_by` is a user object (email, else
    id) or a user id."""
    if isinstance(value, dict):
        value = value.get("email") or value.get("id")
    text = _text(value, name)
    return canonical_annotator(text) if text else None


def _read_text(path: Path) -> str:
    """The file's text: UTF-8, with or without the byte-order mark spreadsheets write."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise UsageError(f"{path} is not UTF-8 text ({e}): export it as UTF-8") from None


def _object(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise _Unreadable(f"{what} is a {type(value).__name__}, not an object")
    return value


def _list(value: Any, what: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Unreadable(f"{what} is a {type(value).__name__}, not a list")
    return value


def _annotation_rows(where: str, item: Any, annotation: Any) -> list[LabelRow]:
    """The judgements of one Label Studio annotation: its `choices` results of the control named after
    a task (other controls, a confidence say, are left out when one is; otherwise they are reported as
    another task's); one row without a label when it has none."""
    data = _object(_object(item, "the task").get("data") or {}, "the task's data")
    content_id = _text(data.get("content_id"), "content_id")
    annotation = _object(annotation, "the annotation")
    if annotation.get("was_cancelled"):
        return []
    annotator, labelled_at = _annotator(annotation.get("completed_by"), "completed_by"), _timestamp(annotation.get("created_at"))
    choices = [_object(r, "a result") for r in _list(annotation.get("result"), "the annotation's result")]
    choices = [r for r in choices if r.get("type") == "choices"]
    chosen = [r for r in choices if isinstance(r.get("from_name"), str) and r["from_name"] in TASKS] or choices
    if not chosen:
        return [LabelRow(where, content_id, None, None, annotator, labelled_at)]
    rows = []
    for result in chosen:
        values = [_text(v, "a choice") for v in _list(_object(result.get("value") or {}, "a result's value").get("choices"), "choices")]
        rows.append(LabelRow(where, content_id, _text(result.get("from_name"), "from_name"), "|".join(filter(None, values)) or None,
                             annotator, labelled_at))
    return rows


def read_label_studio(path: Path) -> list[LabelRow]:
    """The `choices` results of a Label Studio JSON export: one row per task, annotation and result;
    skipped (cancelled) annotations are not judgements and are left out."""
    try:
        tasks = json.loads(_read_text(path))
    except (ValueError, RecursionError) as e:  # not JSON, nested past the parser's depth, an integer of thousands of digits
        raise UsageError(f"{path} is not JSON that can be read: {e}") from None
    if not isinstance(tasks, list):
        raise UsageError(f"{path}: a Label Studio JSON export is a list of tasks, not a {type(tasks).__name__}")
    if tasks and all(isinstance(t, dict) and "annotations" not in t and "annotator" in t for t in tasks):
        raise UsageError(f"{path} looks like Label Studio's JSON-MIN export (a row per annotation, no `annotations`): "
                         "export the project as JSON, the format this import reads")
    rows = []
    for n, item in enumerate(tasks, 1):
        try:
            annotations = _list(_object(item, "the task").get("annotations"), "the task's annotations")
        except _Unreadable as e:
            rows.append(LabelRow(f"task {n}", None, None, None, None, None, str(e)))
            continue
        for m, annotation in enumerate(annotations, 1):
            where = f"task {n} annotation {m}"
            try:
                rows += _annotation_rows(where, item, annotation)
            except _Unreadable as e:
                rows.append(LabelRow(where, None, None, None, None, None, str(e)))
    return rows


def _csv_row(where: str, cells: dict[str | None, Any]) -> LabelRow:
    if cells.get(None):  # DictReader files the cells beyond the header under None
        raise _Unreadable(f"{len(cells[None])} more cells than the header has columns (a comma inside an unquoted value?)")
    return LabelRow(where, _text(cells["content_id"], "content_id"), _text(cells.get("task"), "task"), _text(cells["label"], "label"),
                    _annotator(cells["annotator"], "annotator"), _timestamp(cells.get("labelled_at")))


def read_csv(path: Path) -> list[LabelRow]:
    """Rows of a CSV with a header: content_id, label, annotator, and optionally task and labelled_at."""
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
    header = list(reader.fieldnames or [])
    if missing := [c for c in CSV_COLUMNS if c not in header]:
        raise UsageError(f"{path}: the CSV has no column {', '.join(missing)} (its header: {reader.fieldnames})")
    if repeated := sorted({c for c in header if header.count(c) > 1}):
        raise UsageError(f"{path}: the CSV's header names {', '.join(repeated)} more than once: which cells are meant cannot be told")
    rows = []
    try:
        for cells in reader:
            where = f"line {reader.line_num}"  # where the row ends: a quoted value may hold line breaks
            try:
                rows.append(_csv_row(where, cells))
            except _Unreadable as e:
                rows.append(LabelRow(where, None, None, None, None, None, str(e)))
    except csv.Error as e:  # a value over the csv module's field limit (an unclosed quote takes the rest of the file)
        raise UsageError(f"{path}: line {reader.line_num}: {e}; nothing was imported") from None
    return rows


def read_export(path: Path) -> list[LabelRow]:
    """The rows of a label file, by its suffix: `.json` (Label Studio's export) or `.csv`."""
    if not path.is_file():
        raise UsageError(f"no label file at {path}")
    readers = {".json": read_label_studio, ".csv": read_csv}
    if path.suffix.lower() not in readers:
        raise UsageError(f"{path}: a label file is a Label Studio JSON export (.json) or a CSV (.csv)")
    return readers[path.suffix.lower()](path)


def labels_of(lakehouse: str, task: str, version: int | None = None) -> pa.Table:
    """The human labels of `task` (latest version, or `version`); empty when none were imported."""
    root = table_root(lakehouse)
    if not DeltaTable.is_deltatable(root):
        return HUMAN_LABELS.schema.empty_table()
    rows = delta_io.read_arrow(root, version, filters=pc.field("task") == task)
    return rows.select(HUMAN_LABELS.schema.names).cast(HUMAN_LABELS.schema)


def problems(rows: list[LabelRow], task: Task, corpus_ids: set[str], imported: set[tuple[str, str]]) -> list[str]:
    """One line per row that cannot be imported, saying why: a missing field, an id the corpus does
    not hold, a value the task does not have, another task's label, or a judgement the file repeats
    or the table already holds for that annotator."""
    found, seen = [], set()
    for row in rows:
        why = []
        if row.unreadable:
            why.append(row.unreadable)
        elif row.content_id is None or row.annotator is None or row.label is None:
            why.append("needs content_id, annotator and label")
        if row.task is not None and row.task != task.name:
            why.append(f"a label of task {row.task!r}" + ("" if row.task in TASKS else " (not a task)") + f", not {task.name!r}")
        elif row.label is not None and row.label not in task.values:
            why.append(f"value {row.label!r} is not one of {list(task.values)}")
        if row.content_id is not None and row.content_id not in corpus_ids:
            why.append("unknown content id (not in the corpus table)")
        key = (row.content_id, row.annotator)
        if row.content_id is not None and row.annotator is not None:
            if key in seen:
                why.append("a duplicate of an earlier row of the file (same item and annotator)")
            elif key in imported:
                why.append("already imported for this annotator")
            seen.add(key)
        if why:
            found.append(f"{row.where} ({row.content_id}, annotator {row.annotator}): {'; '.join(why)}")
    return found


def batch_of(rows: list[LabelRow], task: Task) -> str:
    """The import's batch: a digest of the task and its rows, so the same file imported again is
    recognised (and not imported twice) whatever its name. A row naming another task digests as
    such: that file is not one already imported, and is checked (and refused)."""
    fields = sorted(((r.content_id, r.annotator, r.label, str(r.labelled_at)) + ((r.task,) if r.task not in (None, task.name) else ())
                     for r in rows), key=lambda f: tuple(v or "" for v in f))
    text = json.dumps([task.name, *fields])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def import_labels(lakehouse: str, corpus: CorpusTable, path: Path, task_name: str, now: dt.datetime | None = None) -> ImportOutcome:
    """Import a label file for `task_name` in one commit, or refuse all of it with a per-row report
    (UsageError: exit 2) and import nothing; its ids are checked against the configured `corpus`.
    The same file again is a no-op."""
    task = task_named(task_name)
    rows = read_export(path)
    if not rows:
        raise UsageError(f"{path} holds no labels")
    batch = batch_of(rows, task)
    root, app_id = table_root(lakehouse), f"content-signals/human_labels/{batch}"
    if delta_io.committed(root, app_id):
        return ImportOutcome(batch, len(rows), None)
    corpus_ids = corpus.keyable_ids()
    read_version = DeltaTable(root).version() if DeltaTable.is_deltatable(root) else 0  # a new table's first version
    held = labels_of(lakehouse, task.name, read_version)
    imported = set(zip(held["content_id"].to_pylist(), map(canonical_annotator, held["annotator"].to_pylist())))  # rows stored before emails were lower-cased too
    if found := problems(rows, task, corpus_ids, imported):
        shown = found[:REPORT_LINES] + ([f"... and {len(found) - REPORT_LINES} more"] if len(found) > REPORT_LINES else [])
        raise UsageError(f"{path}: {len(found)} of {len(rows)} rows cannot be imported for task {task.name!r}; nothing was imported:\n  "
                         + "\n  ".join(shown))
    now = now or dt.datetime.now(dt.UTC)
    table = pa.Table.from_pylist([
        {"content_id": r.content_id, "task": task.name, "label": r.label, "annotator": r.annotator,
         "labelled_at": r.labelled_at or now, "batch": batch} for r in rows
    ], schema=HUMAN_LABELS.schema)
    files = delta_io.write_driver_rows(root, HUMAN_LABELS, table, f"part-{batch}")
    version = delta_io.commit_files(root, HUMAN_LABELS, files, app_id,
                                    {"job": "labels import", "batch": batch, "task": task.name, "source": path.name, "rows": str(len(rows))},
                                    read_version=read_version)  # an import of the task committed meanwhile: CommitConflict, run again
    return ImportOutcome(batch, len(rows), version)
