"""Simulated annotators over the sample corpus's truth (a careful one, a noisy one, one that skips),
seeded, writing the exports a labeling tool would: the labelling loop can then be measured."""
from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from training.tasks import Task

# What each task's truth is in the sample corpus (sample_corpus.generate.TRUTH_SCHEMA).
TRUTH: dict[str, Callable[[Mapping[str, Any]], bool]] = {
    "low_quality": lambda t: t["is_blurred"] or t["is_low_res"],
    "text_heavy": lambda t: t["has_text_overlay"],
    "spam_text": lambda t: t["is_spam_text"],
}
LABELLED_FROM = dt.datetime(2026, 11, 23, 9, tzinfo=dt.UTC)  # when the simulated annotators start work


@dataclass(frozen=True)
class Annotator:
    """How one simulated annotator errs: P(yes | truth no), P(no | truth yes), and the share of items skipped."""

    name: str
    false_yes: float
    false_no: float
    skips: float = 0.0


ANNOTATORS = (
    Annotator("careful", 0.02, 0.05),
    Annotator("noisy", 0.2, 0.3),
    Annotator("skipper", 0.05, 0.1, skips=0.4),
)


def user(annotator: str) -> str:
    """How both exports name a simulated annotator (Label Studio identifies users by email)."""
    return f"{annotator}@example.com"


@dataclass(frozen=True)
class Judgement:
    content_id: str
    annotator: str
    label: str | None  # None: skipped
    labelled_at: dt.datetime


def simulate(truth: pa.Table, task: Task, seed: int, n_items: int | None = None,
             annotators: tuple[Annotator, ...] = ANNOTATORS) -> list[Judgement]:
    """Every annotator's judgement of `n_items` items drawn at random (all by default), in the
    drawn order; the same seed gives the same judgements."""
    rng = np.random.default_rng([seed, *task.name.encode()])
    rows = truth.to_pylist()
    chosen = rng.permutation(len(rows))[: len(rows) if n_items is None else n_items]
    judgements = []
    for step, i in enumerate(chosen):
        positive = TRUTH[task.name](rows[i])
        for a in annotators:
            flip, skip = rng.random() < (a.false_no if positive else a.false_yes), rng.random() < a.skips
            said = positive != flip
            judgements.append(Judgement(rows[i]["content_id"], a.name, None if skip else task.values[int(said)],
                                        LABELLED_FROM + dt.timedelta(seconds=30 * step)))
    return judgements


def label_studio_export(judgements: list[Judgement], task: Task) -> list[dict[str, Any]]:
    """Label Studio's JSON export of the judgements: a task per item, an annotation per annotator
    (a skipped one `was_cancelled`, with no result), the choice named after the task."""
    items: dict[str, list[Judgement]] = {}
    for j in judgements:
        items.setdefault(j.content_id, []).append(j)
    return [
        {"id": n, "data": {"content_id": content_id}, "annotations": [
            {"id": n * 10 + m, "completed_by": {"email": user(j.annotator)}, "was_cancelled": j.label is None,
             "created_at": j.labelled_at.isoformat().replace("+00:00", "Z"),
             "result": [] if j.label is None else [
                 {"from_name": task.name, "to_name": "image", "type": "choices", "value": {"choices": [j.label]}}]}
            for m, j in enumerate(annotations)]}
        for n, (content_id, annotations) in enumerate(items.items(), 1)
    ]


def write_exports(judgements: list[Judgement], task: Task, folder: Path) -> tuple[Path, Path]:
    """The judgements as `<task>-label-studio.json` and `<task>.csv` (skips left out) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = folder / f"{task.name}-label-studio.json", folder / f"{task.name}.csv"
    json_path.write_text(json.dumps(label_studio_export(judgements, task), indent=1), encoding="utf-8")
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["content_id", "task", "label", "annotator", "labelled_at"])
        writer.writerows([j.content_id, task.name, j.label, user(j.annotator), j.labelled_at.isoformat()] for j in judgements if j.label is not None)
    return json_path, csv_path
