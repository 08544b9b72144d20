"""Coverage, part of every promotion: a version becomes the champion only when it has a row for
every item the champion has one for (ok or error), so readers of the champion never silently see
fewer items (a canary on 10% promoted at once used to leave them 50 vectors of 480)."""
from __future__ import annotations

from dataclasses import dataclass

from deltalake import DeltaTable

from lake import delta_io
from signals.contracts import EMBEDDINGS, LABELS


@dataclass(frozen=True)
class Coverage:
    """Which items two versions of a signal have rows for, in the signal tables."""

    signal: str
    champion: str
    candidate: str
    champion_items: int
    candidate_items: int
    missing: tuple[str, ...]  # items of the champion the candidate lacks, sorted

    @property
    def complete(self) -> bool:
        return not self.missing

    def message(self) -> str:
        examples = ", ".join(self.missing[:3])
        return (f"{self.signal} version {self.candidate} has rows for {self.candidate_items} items and lacks {len(self.missing)} of "
                f"the {self.champion_items} the champion (version {self.champion}) covers (e.g. {examples}); compute them first: "
                f"point the challenger alias at version {self.candidate} and run `content-signals backfill --challenger` "
                f"(no --slice-pct) over the champion's days, then promote again (or promote with --force)")


def coverage(lakehouse: str, signal: str, champion: str, candidate: str) -> Coverage:
    """The items of `signal` at both versions, read from the embeddings and labels tables (only their partitions)."""
    items: dict[str, set[str]] = {champion: set(), candidate: set()}
    for name in (EMBEDDINGS.name, LABELS.name):
        root = f"{lakehouse.rstrip('/')}/{name}"
        if not DeltaTable.is_deltatable(root):
            continue
        rows = delta_io.read_arrow(root, where=[("signal", "=", signal), ("model_version", "in", [champion, candidate])],
                                   columns=["content_id", "model_version"])
        for content_id, version in zip(rows["content_id"].to_pylist(), rows["model_version"].to_pylist()):
            items[version].add(content_id)
    missing = tuple(sorted(items[champion] - items[candidate]))
    return Coverage(signal, champion, candidate, len(items[champion]), len(items[candidate]), missing)
