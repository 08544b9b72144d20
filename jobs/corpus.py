"""The corpus a job reads: where its Delta table is, and the window of days a job covers."""
from __future__ import annotations

from dataclasses import dataclass

from deltalake import DeltaTable

from conf.settings import Settings
from lake import delta_io
from signals.contracts import CORPUS


@dataclass(frozen=True)
class Window:
    """An inclusive range of corpus date partitions (`ds`); an open end means unbounded."""

    start: str | None = None
    end: str | None = None

    def partition_filters(self) -> list[tuple[str, str, str]] | None:
        filters = [("ds", ">=", self.start)] if self.start else []
        filters += [("ds", "<=", self.end)] if self.end else []
        return filters or None

    def contains(self, ds: str | None) -> bool:
        return ds is not None and (self.start is None or ds >= self.start) and (self.end is None or ds <= self.end)


def corpus_root(settings: Settings) -> str:
    """The corpus table's root, or a FileNotFoundError saying how to make one."""
    root = settings.table_root(CORPUS.name)
    if not DeltaTable.is_deltatable(root):
        raise FileNotFoundError(f"no corpus Delta table at {root}; create one with `content-signals make-corpus`")
    return root


def corpus_row_count(root: str, window: Window = Window()) -> int:
    """Rows of the corpus in the window, from the Delta log's per-file statistics (no scan)."""
    return sum(f.num_records for f in delta_io.live_files(root, CORPUS) if window.contains(f.partition_values["ds"]))
