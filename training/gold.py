"""Gold labels of a task from a `human_labels` version (the latest unless pinned): Dawid-Skene's posterior over every
annotator's judgements, with the agreement figures that say how far to trust them."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from conf.settings import UsageError
from training.aggregate import MISSING, DawidSkene, dawid_skene, krippendorff_alpha, majority, overlapping, pairwise_kappa
from training.human_labels import canonical_annotator, labels_of
from training.tasks import task_named

NO_ITEM_IN_COMMON = "no item judged by both"  # why a pair's kappa is not a number, where they share no item


@dataclass(frozen=True)
class Votes:
    """A task's judgements as a matrix: items (rows, sorted ids) x annotators (columns, sorted names),
    holding 1 for the positive value, 0 for the other, MISSING where not judged."""

    content_ids: list[str]
    annotators: list[str]
    matrix: np.ndarray


@dataclass(frozen=True)
class Agreement:
    """What `labels gold` prints: the estimate, each pair's kappa, alpha, and where majority differs."""

    task: str
    votes: Votes
    estimate: DawidSkene
    kappa: dict[tuple[str, str], float]
    alpha: float
    majority_disagrees: int  # items whose majority label (ties: neither) differs from Dawid-Skene's

    @property
    def estimated(self) -> np.ndarray:
        """Per annotator (sorted names): whether Dawid-Skene could weigh them, having judged an item someone else judged."""
        return overlapping(self.votes.matrix)

    def alpha_missing(self) -> str | None:
        """Why alpha is not a number (None when it is): no item judged twice, or a single value said throughout."""
        if not np.isnan(self.alpha):
            return None
        return "no item judged twice" if not ((self.votes.matrix != MISSING).sum(axis=1) >= 2).any() else "one value said throughout"

    def kappa_missing(self, a: str, b: str) -> str | None:
        """Why the kappa of annotators `a` and `b` is not a number (None when it is): no item judged by both, or one value said by both throughout."""
        if not np.isnan(self.kappa[(a, b)]):
            return None
        i, j = self.votes.annotators.index(a), self.votes.annotators.index(b)
        shared = ((self.votes.matrix[:, i] != MISSING) & (self.votes.matrix[:, j] != MISSING)).any()
        return "one value said by both throughout" if shared else NO_ITEM_IN_COMMON


def votes_of(labels: pa.Table, positive: str) -> Votes:
    """The votes matrix of a task's human label rows, each annotator identified as import identifies
    them (`canonical_annotator`): a table written before holds one person typed two ways (an email in
    two letter cases), who is one vote, not two. Of their two judgements of one item, the first
    labelled counts, as import keeps the judgement stored first and refuses a later one."""
    rows = sorted(labels.select(["content_id", "annotator", "label", "labelled_at"]).to_pylist(), key=lambda r: (r["labelled_at"], r["label"]))
    for r in rows:
        r["annotator"] = canonical_annotator(r["annotator"])
    ids, names = sorted({r["content_id"] for r in rows}), sorted({r["annotator"] for r in rows})
    matrix = np.full((len(ids), len(names)), MISSING, dtype=np.int8)
    row, column = {c: i for i, c in enumerate(ids)}, {a: j for j, a in enumerate(names)}
    for r in rows:
        cell = row[r["content_id"]], column[r["annotator"]]
        if matrix[cell] == MISSING:
            matrix[cell] = int(r["label"] == positive)
    return Votes(ids, names, matrix)


def task_votes(lakehouse: str, task: str, version: int | None = None) -> Votes:
    """The votes of `task` in the human_labels table at `version` (default: the latest)."""
    return votes_of(labels_of(lakehouse, task_named(task).name, version), task_named(task).positive)


def gold_labels(lakehouse: str, task: str, version: int | None = None) -> pd.DataFrame:
    """content_id, p_positive (Dawid-Skene posterior of the positive value), label (0/1) and
    n_annotators of every item with a human label of `task`, from human_labels at `version` (default: the latest)."""
    votes = task_votes(lakehouse, task, version)
    if not votes.content_ids:
        return pd.DataFrame({"content_id": pd.Series(dtype=str), "p_positive": pd.Series(dtype=float),
                             "label": pd.Series(dtype=int), "n_annotators": pd.Series(dtype=int)})
    p = dawid_skene(votes.matrix).posterior[:, 1]
    return pd.DataFrame({"content_id": votes.content_ids, "p_positive": p, "label": (p >= 0.5).astype(int),
                         "n_annotators": (votes.matrix != MISSING).sum(axis=1).astype(int)})


def agreement(lakehouse: str, task: str) -> Agreement:
    """The task's Dawid-Skene estimate (annotators' reliability), pairwise kappa and alpha."""
    votes = task_votes(lakehouse, task)
    if not votes.content_ids:
        raise UsageError(f"no human labels of {task} in {lakehouse}: import some first (content-signals labels import FILE --task {task})")
    estimate = dawid_skene(votes.matrix)
    shares = majority(votes.matrix)
    decided = shares[:, 1] != 0.5
    differs = int(np.sum(decided & ((shares[:, 1] > 0.5) != (estimate.posterior[:, 1] >= 0.5))))
    kappa = {(votes.annotators[i], votes.annotators[j]): k for (i, j), k in pairwise_kappa(votes.matrix).items()}
    return Agreement(task, votes, estimate, kappa, krippendorff_alpha(votes.matrix), differs)
