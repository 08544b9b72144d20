"""Analysts' entry point: every table of the lakehouse as Arrow, pandas or a Spark view.

    from lake.lakehouse import Lakehouse
    lh = Lakehouse.from_profile("local")
    lh.pandas("embeddings")                 # latest version
    lh.pandas("embeddings", version=0)      # time travel
    lh.register_views(spark)                # SELECT ... FROM embeddings, embeddings_champion
    lh.champion("embeddings")               # only the rows of each signal's champion version

Reads always go through the Delta log (lake.delta_io), never by listing folders.
"""
from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
from deltalake import DeltaTable

from conf.settings import Settings, UsageError, load_settings, local_registry_uri
from lake import delta_io, spark_io
from signals.contracts import EMBEDDINGS, KEYFRAMES, LABELS

SIGNAL_TABLES = {EMBEDDINGS.name: EMBEDDINGS, LABELS.name: LABELS, KEYFRAMES.name: KEYFRAMES}  # versions side by side: champion views

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


class Lakehouse:
    """The Delta tables under one root folder."""

    def __init__(self, root: str, registry_uri: str | None = None, pinned: Mapping[str, str] | None = None) -> None:
        self.root = root.rstrip("/")
        self._registry_uri = registry_uri  # None: the lakehouse's own, worked out when champions are first asked for
        self.pinned = dict(pinned or {})  # signal -> the model version a profile pins (`model.version`): its jobs run that one

    @property
    def registry_uri(self) -> str:
        """The MLflow registry that says which versions are champions (reading tables needs none)."""
        return self._registry_uri or local_registry_uri(self.root)

    @classmethod
    def from_profile(cls, profile: str = "local", overrides: tuple[str, ...] = ()) -> Lakehouse:
        return cls.of(load_settings(profile, overrides))

    @classmethod
    def of(cls, settings: Settings) -> Lakehouse:
        """The profile's lakehouse, its registry, and the model versions it pins."""
        return cls(settings.lakehouse_root, settings.registry_uri,
                   {name: s.model.version for name, s in settings.signals.items() if s.model.version is not None})

    def path(self, name: str) -> str:
        path = f"{self.root}/{name}"
        if not DeltaTable.is_deltatable(path):
            raise KeyError(f"no Delta table {name!r} in {self.root}; tables: {', '.join(self.tables()) or 'none'}")
        return path

    def tables(self) -> list[str]:
        """Names of the Delta tables under the root, listed through pyarrow's filesystems so that
        object storage (s3://, gs://, hdfs://) lists as a local folder does; a folder whose log holds
        no commit yet (a first commit under way) is not one yet, as `path` says."""
        filesystem, base = delta_io.filesystem_of(self.root)
        folders = [e for e in filesystem.get_file_info(pafs.FileSelector(base, allow_not_found=True)) if e.type == pafs.FileType.Directory]
        logs = filesystem.get_file_info([f"{e.path}/_delta_log" for e in folders])
        return sorted(folder.base_name for folder, log in zip(folders, logs)
                      if log.type == pafs.FileType.Directory and DeltaTable.is_deltatable(f"{self.root}/{folder.base_name}"))

    def version(self, name: str) -> int:
        return DeltaTable(self.path(name)).version()

    def history(self, name: str, limit: int | None = None) -> pd.DataFrame:
        """One row per commit, newest first, down to the log's first gap (`delta_io.newest_commits`)."""
        return pd.DataFrame(list(islice(delta_io.newest_commits(self.path(name)), limit)))

    def arrow(self, name: str, version: int | None = None, filters: Any = None, columns: Sequence[str] | None = None) -> pa.Table:
        """The table's rows (of `version`, those `filters` keeps, only `columns`: an embeddings table's vectors are most of it)."""
        return delta_io.read_arrow(self.path(name), self._version(name, version), filters, columns)

    def pandas(self, name: str, version: int | None = None, filters: Any = None, columns: Sequence[str] | None = None) -> pd.DataFrame:
        return self.arrow(name, version, filters, columns).to_pandas()

    def spark(self, spark: SparkSession, name: str, version: int | None = None) -> DataFrame:
        """The table (latest, or `version`) as a Spark DataFrame; an old version whose files a vacuum removed is
        refused as `arrow` refuses it, where Spark named a missing data file (as damage reads)."""
        from pyspark.errors import AnalysisException

        version = self._version(name, version)
        try:
            return spark_io.read_spark(spark, self.path(name), version)
        except AnalysisException:
            if version is None or version == self.version(name) or self.readable(name, version):
                raise  # the latest version missing a file is damage (jobs.failures says what to do), not a question of time
            raise delta_io.vacuumed(self.path(name), version) from None

    def readable(self, name: str, version: int) -> bool:
        """Whether `version` can still be read (its log entry kept, its data files not vacuumed): a maintained table's
        history lists versions whose files a vacuum removed, so time travel picks among those this says yes to."""
        try:
            self._version(name, version)
        except UsageError:
            return False
        return delta_io.all_exist(self.path(name), delta_io.live_files(self.path(name), version))

    def _version(self, name: str, version: int | None) -> int | None:
        """`version` when the table has it (None: the latest), else a UsageError naming those it has
        or saying its log entry expired (delta-rs's own errors are about log segments, and -1 overflows)."""
        if version is None:
            return None
        latest = delta_io.snapshot(self.path(name)).version()
        if not 0 <= version <= latest:
            raise UsageError(f"{name} has versions 0 to {latest}, not {version}")
        if delta_io.absent(self.path(name), [f"_delta_log/{version:020d}.json"]):
            raise UsageError(f"version {version} of {name} can no longer be read: its log entry expired after the table's log retention "
                             "(content-signals maintain keeps the versions something names past it: docs/design.md, Table upkeep); "
                             "read a named or later version")
        return version

    def champions(self, name: str, version: int | None = None) -> dict[str, str]:
        """signal -> the version its registry alias `champion` names now (the profile's pinned
        version, where it pins one, as the jobs run it), for the signals in `name` at `version` (latest if None: a
        signal first run after it has none there; a signal never registered and not pinned has none either)."""
        from lake.registry import Registry, registry_exists

        if "signal" not in delta_io.snapshot(self.path(name)).metadata().partition_columns:
            raise UsageError(f"{name} holds no versions of signals (embeddings, labels and keyframes do): read it whole")
        signals = {f.partition_values["signal"] for f in delta_io.live_files(self.path(name), version)}
        pinned = {signal: self.pinned[signal] for signal in signals if signal in self.pinned}
        if not registry_exists(self.registry_uri):
            return pinned  # no registry yet: nothing else is champion, and a read makes none
        registry = Registry(self.registry_uri)
        return {signal: version for signal in sorted(signals)
                if (version := pinned.get(signal) or registry.aliases_if_registered(signal).get("champion"))}

    def registered(self) -> set[str]:
        """The models the registry knows (none without a registry): a registered signal without a champion has rows
        that no consumer reads, where one never registered has only the version its jobs run."""
        from lake.registry import Registry, registry_exists

        return set(Registry(self.registry_uri).every_alias()) if registry_exists(self.registry_uri) else set()

    def champion(self, name: str) -> pa.Table:
        """Only the rows of each signal's champion version: consumers follow promotions and
        rollbacks without anything being recomputed."""
        champions = self.champions(name)
        rows = self.arrow(name, filters=pc.field("signal").isin(pa.array(list(champions), pa.string())))
        wanted = pa.array([champions[s] for s in rows["signal"].to_pylist()], pa.string())
        chosen = rows.filter(pc.equal(rows["model_version"], wanted))
        _warn_unheld(name, champions, set(zip(chosen["signal"].to_pylist(), chosen["model_version"].to_pylist())))
        return chosen

    def register_views(self, spark: SparkSession, versions: dict[str, int] | None = None) -> list[str]:
        """A temporary view per table, named after it: latest, or the version `versions` gives;
        and `<table>_champion` views of the signal tables (embeddings, labels, keyframes), holding champion rows only (warning of a champion
        without rows, as `champion` does). A view holds the snapshot and the champions of when it was
        registered: registering again follows a commit, a promote or a rollback.

        Registering starts no Spark job: a view reads its table when a query uses it (the
        snapshot's files are looked up on the driver: `spark_io.listed_on_driver`)."""
        from pyspark.sql import functions as F

        versions = versions or {}
        views = []
        for name in self.tables():
            frame = self.spark(spark, name, versions.get(name))
            frame.createOrReplaceTempView(name)
            views.append(name)
            if name in SIGNAL_TABLES:
                champions = self.champions(name, versions.get(name))
                _warn_unheld(f"{name}_champion", champions, {(f.partition_values["signal"], f.partition_values["model_version"])
                                                             for f in delta_io.live_files(self.path(name), versions.get(name))})
                pairs = [(F.col("signal") == s) & (F.col("model_version") == v) for s, v in champions.items()]
                frame.filter(functools.reduce(lambda a, b: a | b, pairs, F.lit(False))).createOrReplaceTempView(f"{name}_champion")
                views.append(f"{name}_champion")
        return views


def _warn_unheld(name: str, champions: Mapping[str, str], held: set[tuple[str, str]]) -> None:
    """Warn of the champions without rows in `held` (signal, model version): a version forced into place before it was
    computed would otherwise read as a signal without items."""
    if unheld := sorted(f"{s} (model version {v})" for s, v in champions.items() if (s, v) not in held):
        warnings.warn(f"{name}: no rows of the champion of {', '.join(unheld)}: a version promoted before it was computed "
                      "(promote --force) reads as no items; backfill it, or roll back", stacklevel=3)
