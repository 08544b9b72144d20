"""Coverage, part of every promotion: a version becomes the champion only when it has a row for
every item and day the champion has one for, of the same input, and an ok row wherever the champion's is
ok, so readers of the champion never silently see fewer items or values (a canary on 10% promoted
at once used to leave them 50 vectors of 480; a version whose rows were all errors used to count
as complete; rows computed before the daily refresh recomputed the champion's for a changed input
used to count as current)."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from deltalake import DeltaTable

from lake import delta_io
from rollout.compare import item_days
from signals.contracts import EMBEDDINGS, ITEM_DAY, KEYFRAMES, LABELS, STATUS_OK, lakehouse_table

Key = tuple[str, str, str]  # (table, item, day): an item's rows of one day in one signal table


@dataclass(frozen=True)
class Coverage:
    """Which items two versions of a signal have rows for, in the signal tables."""

    signal: str
    champion: str
    candidate: str
    champion_items: int
    candidate_items: int
    missing: tuple[str, ...]  # items of the champion the candidate lacks, sorted
    missing_from: tuple[str, ...] = ()  # the tables those items lack the candidate's rows in, sorted
    in_error: tuple[str, ...] = ()  # items the champion has a value for and the candidate only an error row, sorted
    other_input: tuple[str, ...] = ()  # items whose candidate rows are of another input than the champion's, and older, sorted

    @property
    def complete(self) -> bool:
        return not self.missing and not self.in_error and not self.other_input

    def shortfalls(self, reference: str = "the champion") -> list[str]:
        """What the candidate lacks against `reference`, the version whose items it is judged by."""
        tables = f"in {' and '.join(self.missing_from)} " if self.missing_from else ""  # an item may lack its keyframes alone
        lacks = [f"lacks {len(self.missing)} of the {self.champion_items} items {reference} (version {self.champion}) covers "
                 f"{tables}(e.g. {', '.join(self.missing[:3])})"] if self.missing else []
        lacks += [f"has only an error row for {len(self.in_error)} items {reference} has a value for "
                  f"(e.g. {', '.join(self.in_error[:3])})"] if self.in_error else []
        lacks += [f"has rows of another input than {reference}'s for {len(self.other_input)} items, computed before their input "
                  f"changed (e.g. {', '.join(self.other_input[:3])})"] if self.other_input else []
        return lacks

    def message(self) -> str:
        return (f"{self.signal} version {self.candidate} has rows for {self.candidate_items} items and {' and '.join(self.shortfalls())}; "
                f"compute them first: point the challenger alias at version {self.candidate} and run `content-signals backfill --challenger` "
                f"(no --slice-pct) over the champion's days, then promote again")  # promote adds how to force it


def coverage(lakehouse: str, signal: str, champion: str, candidate: str) -> Coverage:
    """The items of `signal` at both versions, with their input hashes, read from the embeddings,
    labels and keyframes tables (only their partitions), each table on its own: a video's keyframes are
    covered by keyframes, not by its video-level row (found in review: keyframes were not read, so a
    version whose keyframes a killed canary had cut down to its slice, its other rows whole from a shadow
    run, was promoted and readers lost the other videos' keyframes). An item is judged on each day it has rows for: one
    ingested again on another day, with another input, has a row of each (found in review: one
    input kept per item, the last row read, made such an item "of another input" whenever the two
    versions' rows were read in another order). Rows of another input fall short where the candidate's were
    computed first (`computed_at`, its run's start: a later run read a later corpus): where the champion's were,
    its input changed after its last refresh and the candidate holds the newer (found in review: refused, with
    the advice to backfill the candidate again, which computed the same rows)."""
    inputs: dict[str, dict[Key, str | None]] = {champion: {}, candidate: {}}  # version -> (table, item, day) -> input hash
    computed: dict[str, dict[Key, datetime]] = {champion: {}, candidate: {}}  # version -> (table, item, day) -> its run's start
    ok: dict[str, set[Key]] = {champion: set(), candidate: set()}
    for name in (EMBEDDINGS.name, LABELS.name, KEYFRAMES.name):
        root = lakehouse_table(lakehouse, name)
        if not DeltaTable.is_deltatable(root):
            continue
        columns = ["model_version", "status", "input_hash", "computed_at"]
        rows = delta_io.read_arrow(root, where=[("signal", "=", signal), ("model_version", "in", [champion, candidate])], columns=[*ITEM_DAY, *columns])
        keys = [(name, *item_day) for item_day in item_days(rows)]
        for key, version, status, input_hash, computed_at in zip(keys, *(rows[c].to_pylist() for c in columns)):
            inputs[version][key] = input_hash
            computed[version][key] = computed_at
            if status == STATUS_OK:
                ok[version].add(key)
    theirs, mine = inputs[champion], inputs[candidate]
    missing = theirs.keys() - mine.keys()
    changed = {k for k in theirs.keys() & mine.keys() if theirs[k] != mine[k]}
    other_input = {k for k in changed if computed[candidate][k] <= computed[champion][k]}  # the candidate's the older: it falls short
    return Coverage(signal, champion, candidate, len(_items(theirs)), len(_items(mine)), missing=_items(missing),
                    missing_from=tuple(sorted({table for table, _, _ in missing})),
                    in_error=_items((ok[champion] & mine.keys()) - ok[candidate] - changed), other_input=_items(other_input))


def _items(keys: Iterable[Key]) -> tuple[str, ...]:
    """The items of (table, item, day) keys, sorted."""
    return tuple(sorted({content_id for _, content_id, _ in keys}))
