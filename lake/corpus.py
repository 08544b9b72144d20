"""The configured corpus (`corpus:` in the profile) read without Spark: where it is, its Delta
version, its schema and how its columns map onto the ones the jobs read (`CorpusTable`;
docs/design.md, "Where the corpus comes from"), and which of an id's rows the jobs keep
(`latest_rows`; "Corpus rows"). The jobs read it in Spark through jobs/corpus.py's
`CorpusSource`, built on this; training reads it here, with delta-rs and pyarrow, through the
same mapping, filter and version.
"""
from __future__ import annotations

import difflib
import functools
import json
import tempfile
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Self

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, QueryBuilder, write_deltalake
from deltalake.exceptions import DeltaError

from conf.settings import CorpusColumns, CorpusSettings, Settings, UsageError
from lake import delta_io
from lake.spark_hash import spark_xxhash64
from signals.contracts import CORPUS

# A calendar day written YYYY-MM-DD, as `datetime.date.fromisoformat` reads one (2026-02-30 and year 0000 are not), in the
# syntax Python's `re`, Spark's (Java's) `rlike` and Arrow's RE2 read alike: the corpus rule and the command line refuse the same days
# (Python's and Java's `$` also match before a trailing newline: their callers match the whole value).
_YEAR = "(?:[0-9]{3}[1-9]|[0-9]{2}[1-9]0|[0-9][1-9]00|[1-9]000)"
_MONTH_DAY = "(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))"
_LEAP_YEAR = "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
DAY_PATTERN = f"^(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)$"
CANONICAL = (("content_id", "string"), ("image", "binary"), ("image_uri", "string"), ("title", "string"),
             ("description", "string"), ("created_at", "timestamp"), ("updated_at", "timestamp"), ("ds", "string"),
             ("video", "binary"))
OPTIONAL = {"image", "image_uri", "title", "description", "created_at", "updated_at", "video"}  # a job can do without them
# the Spark types each mapped column may have in the source (anything else is a mapping error)
ACCEPTED_TYPES = {"content_id": ("string", "bigint", "int"), "image": ("binary",), "image_uri": ("string",),
                  "title": ("string",), "description": ("string",), "created_at": ("timestamp", "timestamp_ntz", "date"),
                  "updated_at": ("timestamp", "timestamp_ntz", "date"), "ds": ("string", "date"),
                  "day_from": ("timestamp", "timestamp_ntz", "date"), "video": ("binary",)}
HASHED = ("image", "image_uri", "title", "description")  # the inputs whose xxhash64 breaks a tie between two rows of an id
# corpus rows up to which `count_items` counts items per day on the driver: `latest_rows` took 0.17 s on 10k keys and 0.9 s
# on 100k (a loaded 2-core machine), where the Spark job it spares took 0.5-1 s
KEYS_WITHOUT_SPARK = 50_000
_ARROW_TYPES = {"string": pa.string(), "binary": pa.binary(), "timestamp": pa.timestamp("us", tz="UTC")}


def _spark_type(arrow_type: pa.DataType, from_arrow_type: Callable[[pa.DataType], Any]) -> str:
    """The Spark type of an Arrow column as the job reads it (nanosecond timestamps as bigint:
    jobs.session.BASE_CONF), "unsupported" where pyspark's conversion has none (an unmapped uint64 is read
    by Spark all the same; a mapped one is refused by its type)."""
    if pa.types.is_timestamp(arrow_type) and arrow_type.unit == "ns":
        return "bigint"
    try:
        return from_arrow_type(arrow_type).simpleString()
    except (TypeError, ValueError, NotImplementedError) as exc:
        return f"unsupported ({type(exc).__name__})"


@dataclass(frozen=True)
class CorpusTable:
    """The corpus as configured: a Delta table or parquet dataset at a path or URI, or a Spark
    catalog table, whose columns are mapped onto the ones the jobs read (`CANONICAL`)."""

    settings: CorpusSettings
    location: str

    @classmethod
    def of(cls, settings: Settings) -> Self:
        """The profile's corpus, or a FileNotFoundError saying how to make one."""
        conf = settings.corpus
        location = conf.table or conf.path or settings.table_root(CORPUS.name)
        if conf.format == "delta" and not DeltaTable.is_deltatable(location):
            hint = "create one with `content-signals make-corpus`" if conf.path is None else "check corpus.path"
            raise FileNotFoundError(f"no corpus Delta table at {location}; {hint}")
        return cls(conf, location)

    @property
    def is_delta(self) -> bool:
        return self.settings.format == "delta"

    def mapping_id(self) -> str:
        """What the jobs read as the corpus, but for its version: its location, format, filter and
        column mapping (a refresh compares only the files changed since a read of the same)."""
        return json.dumps({"location": self.location, **self.settings.model_dump(exclude={"path", "table", "version"})}, sort_keys=True)

    def version(self) -> int | None:
        """The Delta version a run reads (the pinned one, else the latest); None for other formats."""
        if not self.is_delta:
            return None
        latest, pinned = delta_io.snapshot(self.location).version(), self.settings.version
        if pinned is not None and not 0 <= pinned <= latest:
            raise UsageError(f"corpus.version {pinned}: the corpus at {self.location} has versions 0 to {latest}")
        if pinned is not None and pinned < latest:
            _loadable(self.location, pinned)
        version = latest if pinned is None else pinned
        _readable(self.location, version)
        return version

    def arrow_schema(self) -> pa.Schema | None:
        """The source's schema read without Spark: a Delta table's from its log, a parquet
        dataset's from its files; None for a catalog table, which only Spark can read."""
        if self.is_delta:
            return pa.schema(delta_io.snapshot(self.location, self.version()).schema().to_arrow())
        if self.settings.format != "parquet":
            return None
        return self._parquet_dataset().schema

    def _parquet_dataset(self) -> Any:
        try:
            return delta_io.parquet_dataset(self.location)
        except FileNotFoundError:
            raise UsageError(f"no parquet corpus at {self.location}: check corpus.path") from None

    def check_schema(self) -> bool:
        """`check_mapping` on `arrow_schema` (for `--dry-run`, which starts no Spark), its types as
        Spark reads them; False when the source has no schema to read without Spark."""
        schema = self.arrow_schema()
        if schema is not None:
            self.check_mapping(spark_types(schema))
        return schema is not None

    def filter_problem(self) -> str | None:
        """Why DataFusion cannot evaluate `corpus.filter` on the source's columns (None: it can, or
        there is no filter or no schema to read without Spark), judged on no rows: for `--dry-run`,
        which starts no Spark. A run's Spark judges the filter itself; training's reads use DataFusion."""
        schema = self.arrow_schema()
        condition = self.settings.filter
        if not condition or schema is None:
            return None
        try:
            _matching(schema.empty_table().select(_named(schema, condition)), condition, schema.names)
        except UsageError as exc:
            return str(exc)
        return None

    def check_mapping(self, types: dict[str, str]) -> CorpusColumns:
        """The mapping as it applies to a source of these columns (name -> Spark type; optional
        columns left at their default names and absent are unmapped, but not one the source has in
        other letter cases: `Title` was read as no title), or a UsageError naming every column that
        is missing or of the wrong type (with the source's columns, and the nearest name)."""
        mapping = self.settings.columns
        defaults = CorpusColumns().model_dump()
        folded = {n.lower() for n in types}
        absent = {name for name, column in mapping.model_dump().items() if column is not None and column not in types
                  and column.lower() not in folded and name in OPTIONAL and column == defaults[name]}
        images = [n for n in ("image", "image_uri") if getattr(mapping, n) is not None and n not in absent]
        if not images and mapping.video not in types:  # no picture at all: a column left unmapped, not an error row per item
            absent -= {"image", "image_uri"}
        mapping = mapping.model_copy(update=dict.fromkeys(absent))
        problems = []
        for name, column in mapping.model_dump().items():
            if column is None:
                continue
            if column not in types:
                near = difflib.get_close_matches(column, list(types), n=1)
                problems.append(f"{name} -> {column!r} is not a column" + (f" (did you mean {near[0]!r}?)" if near else ""))
            elif types[column] not in ACCEPTED_TYPES[name]:
                nanos = types[column] == "bigint" and "timestamp" in ACCEPTED_TYPES[name]
                problems.append(f"{name} -> {column!r} is {types[column]}, not {' or '.join(ACCEPTED_TYPES[name])}"
                                + (" (nanosecond timestamps, as pandas writes them, are read as bigint: write them in microseconds, "
                                   "e.g. to_parquet(..., coerce_timestamps='us'))" if nanos else ""))
        if problems:
            raise UsageError(f"the corpus at {self.location} does not match corpus.columns: {'; '.join(problems)}. "
                             f"Its columns: {', '.join(f'{n} {t}' for n, t in types.items())}")
        return mapping

    def rows(self, columns: Sequence[str], version: int | None = None, ids: Collection[str] | None = None,
             files: Sequence[delta_io.LiveFile] | None = None) -> pa.Table:
        """The corpus rows as the jobs read them, without Spark: the source at `version` (Delta;
        default `version()`), `corpus.filter` applied, mapped onto the jobs' `columns` (of
        `CANONICAL`); only those of `ids` when given, only those of the Delta data `files` when given. The filter, a condition on the source's own
        columns, is evaluated by DataFusion (deltalake's QueryBuilder): SQL that Spark and DataFusion
        read alike (comparisons, AND/OR, IN, IS NULL, backquoted names)."""
        schema = self.arrow_schema()
        if schema is None:
            raise UsageError(f"the corpus is the catalog table {self.location}, which only Spark reads: "
                             "point corpus.path at its Delta table or parquet files for training")
        mapping = self.check_mapping(spark_types(schema))
        wanted = {name: getattr(mapping, name) for name in columns}
        if "ds" in wanted and wanted["ds"] is None:
            wanted["ds"] = mapping.day_from
        condition = self.settings.filter
        named = _named(schema, condition) if condition else []
        read = list(dict.fromkeys([c for c in wanted.values() if c is not None] + named))
        where = None if ids is None else self._id_key(schema, mapping).isin(list(ids))
        version = self.version() if version is None else version
        if files is not None:
            source = delta_io.read_files(self.location, version, files, read)
            source = source if where is None else source.filter(where)
        elif self.is_delta:
            source = delta_io.read_arrow(self.location, version, filters=where, columns=read)
        else:
            source = self._parquet_dataset().to_table(filter=where, columns=read)
        if condition and len(source):
            source = source.take(_matching(source.select(named), condition, schema.names))
        return pa.table({name: _canonical(source, name, column, day_from=name == "ds" and mapping.ds is None)
                         for name, column in wanted.items()})

    @staticmethod
    def _id_key(schema: pa.Schema, mapping: CorpusColumns) -> pc.Expression:
        """The source's id column as the jobs' string content_id, for a filter on ids."""
        key = pc.field(mapping.content_id)
        return key if pa.types.is_string(schema.field(mapping.content_id).type) else key.cast(pa.string())

    def files_holding(self, ids: Collection[str], version: int) -> set[str]:
        """The Delta corpus's data files (unescaped relative paths) holding a row of one of `ids`
        at `version`: a scan of its id column alone."""
        schema = self.arrow_schema()
        mapping = self.check_mapping(spark_types(schema))
        found = delta_io.read_arrow(self.location, version, filters=self._id_key(schema, mapping).isin(list(ids)), columns=[delta_io.FILE_COLUMN])
        return set(found[delta_io.FILE_COLUMN].to_pylist())

    def kept(self, columns: Sequence[str], version: int | None = None, ids: Sequence[str] | None = None) -> pa.Table:
        """`rows`, one per content id: the row the jobs keep of it (`latest_rows`), its strings as
        stored (`undecodable` tells those that are not UTF-8)."""
        compared = ("content_id", "ds", "updated_at", *HASHED)
        return latest_rows(self.rows(list(dict.fromkeys([*compared, *columns])), version, ids)).select(list(columns))

    def latest(self, columns: Sequence[str], version: int | None = None, ids: Sequence[str] | None = None) -> pa.Table:
        """`kept`, its text readable by Python (`readable_text`: a title that is not UTF-8 failed
        training's conversion of every row)."""
        return readable_text(self.kept(columns, version, ids))

    def keyable_ids(self) -> set[str]:
        """The content ids of every corpus row that the jobs can key (present, valid UTF-8: `valid_utf8`)."""
        ids = self.rows(["content_id"])["content_id"]
        return set(ids.filter(valid_utf8(ids)).to_pylist())

    def count_items(self, days: Sequence[str], version: int | None = None) -> dict[str, int] | None:
        """How many items the jobs keep on each of `days` (jobs/corpus.py `items_by_day`), counted
        from the key columns without Spark (`latest_rows`); None where that count could differ from
        Spark's or cost more than its job: a source other than a Delta table, a `corpus.filter` (read
        by DataFusion here, by Spark there), more than KEYS_WITHOUT_SPARK rows by the log (or rows
        it does not count)."""
        if not self.is_delta or self.settings.filter:
            return None
        version = self.version() if version is None else version
        logged = delta_io.rows_per_partition(self.location, [], version)  # no partition column: the table's rows
        if logged is None or sum(logged.values()) > KEYS_WITHOUT_SPARK:
            return None
        kept = latest_rows(self.rows(["content_id", "ds", "updated_at"], version))["ds"]
        counted = pc.value_counts(kept.filter(pc.is_in(kept, pa.array(list(days), pa.string())))).to_pylist()
        return {c["values"]: c["counts"] for c in counted}


@functools.cache  # a version once loaded is not looked up again by every read of a run
def _loadable(location: str, version: int) -> None:
    """Nothing if the Delta log still holds `version` of the corpus at `location`, else a UsageError
    saying so (its entries are cleaned up after the log retention, 30 days by default)."""
    try:
        delta_io.snapshot(location, version)
    except DeltaError as exc:
        raise UsageError(f"corpus.version {version} of the corpus at {location} can no longer be read ({_first_line(exc)}): its log entries "
                         "were cleaned up after the table's log retention; pin a later version, or none for the latest") from None


@functools.cache  # a version's protocol and settings never change
def _readable(location: str, version: int) -> None:
    """Nothing if every row of the corpus at `version` is read as it is by reading its files'
    columns by name (Spark's reads, jobs/corpus.py) and by delta-rs (training's), else a UsageError
    naming what the table does otherwise: column mapping (every column was read as null) or
    deletion vectors (Spark's reads brought deleted rows back; delta-rs's refused the table)."""
    reasons = []
    if delta_io.maps_columns(location, version):
        reasons.append("its files name their columns otherwise (delta.columnMapping.mode), so every column would be read as null")
    if delta_io.has_deletion_vectors(location, version):
        reasons.append("it may delete rows with deletion vectors (delta.enableDeletionVectors), which would be read back")
    if reasons:
        raise UsageError(f"the corpus at {location} (version {version}) cannot be read: {'; '.join(reasons)}. Point corpus.path at "
                         "a copy without them (e.g. Delta or parquet written from a query of the table), or turn them off "
                         "and rewrite it (for deletion vectors: REORG TABLE ... APPLY (PURGE))")


def _first_line(exc: BaseException) -> str:
    """An error's message in one line (its first), for a UsageError quoting it."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def spark_types(schema: pa.Schema) -> dict[str, str]:
    """Each column's Spark type as a job reads it (what `check_mapping` judges)."""
    from pyspark.sql.pandas.types import from_arrow_type  # a type conversion only: no session is started

    return {f.name: _spark_type(f.type, from_arrow_type) for f in schema}


def _named(schema: pa.Schema, condition: str) -> list[str]:
    """The source columns a filter may read: those whose names it contains (a superset)."""
    return [c for c in schema.names if c.lower() in condition.lower()]


def _matching(columns: pa.Table, condition: str, source_columns: Sequence[str]) -> pa.Array:
    """The positions of the rows of `columns` where `condition` (SQL) holds, by DataFusion; an
    error names `source_columns`, all the corpus has (DataFusion knows only those read for it)."""
    with tempfile.TemporaryDirectory(prefix="corpus-filter-") as folder:
        write_deltalake(folder, columns.append_column("_row", pa.array(range(len(columns)), pa.int64())))
        try:
            found = QueryBuilder().register("corpus", DeltaTable(folder)).execute(f"SELECT _row FROM corpus WHERE ({condition})")
        except Exception as exc:  # DataFusion's errors are of its own kinds: a condition it cannot read, said in one line
            raise UsageError(f"corpus.filter {condition!r} cannot be evaluated without Spark: {_first_line(exc)} "
                             f"(the corpus's columns: {', '.join(source_columns)})") from None
        return pa.table(found)["_row"].combine_chunks().sort()  # in the order read


def _canonical(source: pa.Table, name: str, column: str | None, day_from: bool) -> pa.Array:
    """One of the jobs' columns from the source's `column` (nulls where the source has none), as
    jobs/corpus.py's Spark mapping makes it: cast to the jobs' type; `ds` from a timestamp its UTC day."""
    arrow_type = _ARROW_TYPES[dict(CANONICAL)[name]]
    if column is None:
        return pa.nulls(len(source), arrow_type)
    values = source[column].combine_chunks()
    if day_from:
        return pc.strftime(values.cast(pa.timestamp("us", tz="UTC")) if not pa.types.is_date(values.type) else values, "%Y-%m-%d")
    return values.cast(arrow_type)


def _all_utf8(values: pa.ChunkedArray) -> bool:
    """Whether every string is valid UTF-8 (the usual case, checked in one pass): delta-rs and pyarrow
    read a string column's bytes as stored, unchecked, and Python cannot decode such a value."""
    try:
        values.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def valid_utf8(values: pa.ChunkedArray) -> pa.Array:
    """Whether each string is present and valid UTF-8, as Spark's `is_valid_utf8` judges it."""
    if _all_utf8(values):
        return pc.is_valid(values)
    return pa.array([v is not None and _decodes(v) for v in values.cast(pa.binary()).to_pylist()], pa.bool_())


def undecodable(values: pa.ChunkedArray) -> pa.Array:
    """Whether each string is present and not valid UTF-8: a value `readable_text` replaces, which a
    caller showing it may need to count, or not show at all (a URI)."""
    return pc.and_(pc.is_valid(values), pc.invert(valid_utf8(values)))


def readable_text(rows: pa.Table) -> pa.Table:
    """`rows` with each string that is not valid UTF-8 decoded as Python's `errors="replace"` does
    (U+FFFD for each sequence that is not UTF-8), the rest as stored: the item is kept, as the jobs
    keep it (its image computed, its text that row's error), and its text shown so."""
    for i, field in enumerate(rows.schema):
        if pa.types.is_string(field.type) and not _all_utf8(rows[i]):
            text = [None if v is None else v.decode(errors="replace") for v in rows[i].cast(pa.binary()).to_pylist()]
            rows = rows.set_column(i, field, pa.array(text, pa.string()))
    return rows


def _decodes(value: bytes) -> bool:
    try:
        value.decode()
    except UnicodeDecodeError:
        return False
    return True


def keyable_rows(rows: pa.Table) -> pa.Array:
    """Whether each corpus row can key a table row (jobs/corpus.py `_keyable`): an id that is valid UTF-8, a `ds` that is a day."""
    return pc.and_(pc.fill_null(pc.match_substring_regex(rows["ds"], DAY_PATTERN), False), valid_utf8(rows["content_id"]))


def latest_rows(rows: pa.Table) -> pa.Table:
    """One row per content id among corpus `rows` (in the jobs' columns), the one the jobs keep
    (jobs/corpus.py `one_row_per_id`): keyable rows only (an id that is valid UTF-8, a `ds` that is
    a day), then each id's latest by `updated_at` (null oldest), then `ds`, then Spark's xxhash64 of
    `HASHED` (their bytes, as Spark hashes a string, UTF-8 or not)."""
    keyable = rows.filter(keyable_rows(rows))
    keys = list(zip(*(keyable[c].to_pylist() for c in ("content_id", "updated_at", "ds"))))
    tied = Counter(keys)  # only rows tied on the rest are hashed (the hash reads whole images)
    hashed = [keyable[c].cast(pa.binary()) if c in keyable.column_names else pa.nulls(len(keyable)) for c in HASHED]
    ranked = keyable.append_column("_hash", pa.array(
        [spark_xxhash64(v.as_py() for v in values) if tied[key] > 1 else 0 for key, *values in zip(keys, *hashed)], pa.int64()))
    order = [("content_id", "ascending", "at_end"), ("updated_at", "descending", "at_end"), ("ds", "descending", "at_end"),
             ("_hash", "descending", "at_end")]  # a null updated_at the oldest
    ranked = ranked.take(pc.sort_indices(ranked, sort_keys=order))
    ids = ranked["content_id"].combine_chunks()
    first = pc.not_equal(ids[1:], ids[:-1]) if len(ids) > 1 else pa.array([], pa.bool_())
    return ranked.filter(pa.concat_arrays([pa.array([True] * min(len(ids), 1), pa.bool_()), first])).drop_columns(["_hash"])
