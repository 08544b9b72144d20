"""Analysts' entry point: every table of the lakehouse as Arrow, pandas or a Spark view.

    from jobs.lakehouse import Lakehouse
    lh = Lakehouse.from_profile("local")
    lh.pandas("embeddings")                 # latest version
    lh.pandas("embeddings", version=0)      # time travel
    lh.register_views(spark)                # SELECT ... FROM embeddings

Reads always go through the Delta log (jobs.delta_io), never by listing folders.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
from deltalake import DeltaTable

from jobs import delta_io
from jobs.config import load_settings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


class Lakehouse:
    """The Delta tables under one root folder."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")

    @classmethod
    def from_profile(cls, profile: str = "local", overrides: tuple[str, ...] = ()) -> "Lakehouse":
        return cls(load_settings(profile, overrides).lakehouse_root)

    def path(self, name: str) -> str:
        path = f"{self.root}/{name}"
        if not DeltaTable.is_deltatable(path):
            raise KeyError(f"no Delta table {name!r} in {self.root}; tables: {', '.join(self.tables()) or 'none'}")
        return path

    def tables(self) -> list[str]:
        """Names of the Delta tables under the root (local roots only)."""
        root = Path(self.root)
        return sorted(p.parent.name for p in root.glob("*/_delta_log")) if root.exists() else []

    def version(self, name: str) -> int:
        return DeltaTable(self.path(name)).version()

    def history(self, name: str, limit: int | None = None) -> pd.DataFrame:
        return pd.DataFrame(DeltaTable(self.path(name)).history(limit))

    def arrow(self, name: str, version: int | None = None, filters: Any = None) -> pa.Table:
        return delta_io.read_arrow(self.path(name), version, filters)

    def pandas(self, name: str, version: int | None = None, filters: Any = None) -> pd.DataFrame:
        return self.arrow(name, version, filters).to_pandas()

    def spark(self, spark: "SparkSession", name: str, version: int | None = None) -> "DataFrame":
        return delta_io.read_spark(spark, self.path(name), version)

    def register_views(self, spark: "SparkSession", versions: dict[str, int] | None = None) -> list[str]:
        """A temporary view per table, named after it: latest, or the version `versions` gives."""
        versions = versions or {}
        for name in self.tables():
            self.spark(spark, name, versions.get(name)).createOrReplaceTempView(name)
        return self.tables()
