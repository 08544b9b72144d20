"""Several annotators' judgements made one gold label per item (majority, and Dawid-Skene's EM with
each annotator's reliability), and how far annotators agree (Cohen's kappa, Krippendorff's alpha):
pure numpy on a votes matrix, so each is checked against an independent computation."""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

MISSING = -1  # a votes matrix holds class indices 0..k-1, and MISSING where an annotator did not judge the item


@dataclass(frozen=True)
class DawidSkene:
    """The EM estimate: posterior (items x classes), each annotator's confusion matrix
    (annotators x true class x said class, rows summing to 1) and the class prior."""

    posterior: np.ndarray
    confusion: np.ndarray
    prior: np.ndarray
    iterations: int


def majority(votes: np.ndarray, classes: int = 2) -> np.ndarray:
    """Each item's share of votes per class (items x classes); an item without votes gets uniform shares."""
    counts = np.stack([(votes == c).sum(axis=1) for c in range(classes)], axis=1).astype(float)
    totals = counts.sum(axis=1, keepdims=True)
    return np.where(totals > 0, counts / np.maximum(totals, 1), 1.0 / classes)


def overlapping(votes: np.ndarray) -> np.ndarray:
    """Per annotator (column): whether they judged an item someone else judged too. Only those
    annotators' reliability can be estimated; alone on their items, EM has nothing to weigh them against."""
    judged = votes != MISSING
    shared_items = judged.sum(axis=1) >= 2
    return (judged & shared_items[:, None]).any(axis=0)


def dawid_skene(votes: np.ndarray, classes: int = 2, max_iterations: int = 200, tolerance: float = 1e-8,
                smoothing: float = 0.01) -> DawidSkene:
    """Dawid & Skene (1979): EM over the true classes, started from the majority shares; `smoothing`
    pseudo-counts keep a confusion entry never seen from becoming a certain zero. The items of
    annotators who share none with anyone keep their majority shares (EM would drift them to the
    prior), and their confusion is read against those shares."""
    item, annotator = np.nonzero(votes != MISSING)  # one entry per judgement: EM's work grows with them, not items x annotators
    said = votes[item, annotator].astype(np.intp)
    estimated = overlapping(votes)
    items = (votes[:, estimated] != MISSING).any(axis=1)
    weighed = estimated[annotator]
    row = (np.cumsum(items) - 1)[item[weighed]]  # each weighed judgement's row among the weighed items
    posterior, judged = majority(votes, classes), (row, annotator[weighed], said[weighed])
    iterations = 0
    while estimated.any() and iterations < max_iterations:
        iterations += 1
        prior, confusion = _m_step(posterior[items], judged, votes.shape[1], smoothing)
        log_confusion = np.log(confusion)[judged[1], :, judged[2]]  # per judgement: log P(said | each true class)
        log_post = np.log(prior)[None, :] + np.stack([np.bincount(row, log_confusion[:, t], items.sum()) for t in range(classes)], axis=1)
        new = np.exp(log_post - log_post.max(axis=1, keepdims=True))
        new /= new.sum(axis=1, keepdims=True)
        done = np.abs(new - posterior[items]).max() < tolerance
        posterior[items] = new
        if done:
            break
    prior, confusion = _m_step(posterior, (item, annotator, said), votes.shape[1], smoothing)
    return DawidSkene(posterior, confusion, prior, iterations)


def _m_step(posterior: np.ndarray, judged: tuple[np.ndarray, np.ndarray, np.ndarray], annotators: int,
            smoothing: float) -> tuple[np.ndarray, np.ndarray]:
    """The class prior and each annotator's confusion matrix that the posterior implies; `judged` is
    (row of `posterior`, annotator, said class) per judgement."""
    classes = posterior.shape[1]
    prior = (posterior.sum(axis=0) + smoothing) / (len(posterior) + classes * smoothing)
    row, annotator, said = judged
    cells = annotator * classes + said
    counts = np.stack([np.bincount(cells, posterior[row, t], annotators * classes).reshape(annotators, classes) for t in range(classes)],
                      axis=1) + smoothing
    return prior, counts / counts.sum(axis=2, keepdims=True)


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's kappa of two annotators on the items both judged (NaN when they share none, or when
    chance agreement is certain)."""
    both = (a != MISSING) & (b != MISSING)
    a, b = a[both], b[both]
    if len(a) == 0:
        return float("nan")
    values = np.union1d(a, b)
    observed = float(np.mean(a == b))
    expected = float(sum(np.mean(a == v) * np.mean(b == v) for v in values))
    return float("nan") if expected == 1 else (observed - expected) / (1 - expected)


def pairwise_kappa(votes: np.ndarray) -> dict[tuple[int, int], float]:
    """Cohen's kappa of every pair of annotators (columns)."""
    return {(i, j): cohen_kappa(votes[:, i], votes[:, j]) for i, j in combinations(range(votes.shape[1]), 2)}


def krippendorff_alpha(votes: np.ndarray) -> float:
    """Krippendorff's alpha for nominal values, any number of annotators, missing judgements allowed:
    1 - observed / expected disagreement over the coincidence matrix of items judged at least twice."""
    values = np.unique(votes[votes != MISSING])
    coincidence = np.zeros((len(values), len(values)))
    for row in votes:
        judged = row[row != MISSING]
        if len(judged) < 2:
            continue
        counts = np.array([(judged == v).sum() for v in values], dtype=float)
        coincidence += (np.outer(counts, counts) - np.diag(counts)) / (len(judged) - 1)
    totals, n = coincidence.sum(axis=1), coincidence.sum()
    if n <= 1:
        return float("nan")
    observed = n - np.trace(coincidence)
    expected = (n * n - (totals * totals).sum()) / (n - 1)
    return float("nan") if expected == 0 else 1 - observed / expected
