"""What a day is compared with: the reference window's statistics, chosen and merged. Pure (rows
of the `signal_stats` table as dicts in, numpy out), so the choice is tested without Spark.

The window is the previous `reference_days` days that have statistics of the signal, or one
pinned day. Of each day, the row with the most items is taken (a backfill's rows describe the
whole day, a later refresh's only what changed; a run's row of a day none of whose rows are left
is no longer kept: monitoring/superseded.py), of the current model version where the window
has it, else of the versions it has (then the drift may be the model's: monitoring/attribution.py).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from conf.settings import MonitorSettings


@dataclass(frozen=True)
class LabelReference:
    """One label's reference values, summed over the window's days."""

    histogram: np.ndarray  # of its finite scores
    decided: int
    positives: int
    rows: int  # its ok rows, with a finite score or not (another writer's NaN): the label mix's counts


@dataclass(frozen=True)
class Reference:
    """A signal's reference window, merged: which days and model versions it holds, its items,
    its labels, and a sample of its ok vectors."""

    days: tuple[str, ...]
    versions: tuple[str, ...]
    items: int
    error_items: int
    days_with_values: int  # days whose row holds ok items: a day of only error rows adds nothing to compare with
    labels: dict[str, LabelReference] = field(default_factory=dict)
    sample: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))

    def describe(self) -> str:
        days = self.days[0] if len(self.days) == 1 else f"{self.days[0]}..{self.days[-1]} ({len(self.days)} days)"
        return f"{days} at model version {','.join(self.versions)}"


def reference_days(days_with_stats: Sequence[str], ds: str, settings: MonitorSettings) -> list[str]:
    """The days a day `ds` is compared with: the pinned day, or the latest `reference_days` days
    before `ds` that have statistics."""
    if settings.reference_day is not None:
        return [settings.reference_day] if settings.reference_day in days_with_stats else []
    return sorted(d for d in set(days_with_stats) if d < ds)[-settings.reference_days:]


def choose_rows(candidates: Sequence[dict], model_version: str, judged: tuple[str, str] | None = None) -> list[dict]:
    """Of the candidate statistics rows of one signal in the window: per day the row with the most
    items, of `model_version` where the window has it; never the `judged` (run id, day) row itself
    (a pinned reference day's), while the run's other days are fair (a backfill's day 14 is judged
    against its days 7 to 13)."""
    candidates = [r for r in candidates if (r["run_id"], r["ds"]) != judged]
    same = [r for r in candidates if r["model_version"] == model_version]
    chosen: dict[str, dict] = {}
    for row in same or candidates:
        best = chosen.get(row["ds"])
        if best is None or (row["items"], row["computed_at"]) > (best["items"], best["computed_at"]):
            chosen[row["ds"]] = row
    return [chosen[d] for d in sorted(chosen)]


def merge(rows: Sequence[dict], max_sample: int, seed: int) -> Reference:
    """The chosen rows as one reference: counts and histograms summed, samples pooled (at most
    `max_sample` vectors, drawn with `seed`)."""
    labels: dict[str, LabelReference] = {}
    for row in rows:
        for m in row.get("labels") or []:
            before = labels.get(m["label"])
            histogram = np.asarray(m["histogram"], np.int64)
            labels[m["label"]] = LabelReference(histogram, m["decided"], m["positives"], m["rows"]) if before is None else LabelReference(
                before.histogram + histogram, before.decided + m["decided"], before.positives + m["positives"], before.rows + m["rows"])
    vectors = [v for row in rows if row.get("sample") is not None for v in row["sample"]]
    dims = {len(v) for v in vectors}
    if len(dims) > 1:  # two model versions of different widths in one window: the latest days' width
        width = len(vectors[-1])
        vectors = [v for v in vectors if len(v) == width]
    sample = np.asarray(vectors, np.float32) if vectors else np.zeros((0, 0), np.float32)
    if len(sample) > max_sample:
        sample = sample[np.sort(np.random.default_rng(seed).choice(len(sample), max_sample, replace=False))]
    return Reference(
        days=tuple(r["ds"] for r in rows), versions=tuple(sorted({r["model_version"] for r in rows})),
        items=sum(r["items"] for r in rows), error_items=sum(r["error_items"] for r in rows),
        days_with_values=sum(r["items"] > r["error_items"] for r in rows), labels=labels, sample=sample,
    )
