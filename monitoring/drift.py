"""How far a day's signal values moved from a reference: pure computations on numpy arrays (no
Spark, no Delta), so each is tested against an independent formula in milliseconds.

- Scores: the population stability index and a two-sample Kolmogorov-Smirnov test, both on the
  fixed-bin histograms the statistics keep (every row counts, not a sample).
- Decisions: a two-proportion test of the decision rates; a small day's errors: a binomial test
  against the error rate allowed.
- Embeddings: a domain classifier told to say which vectors are the reference's (an L2-regularised
  logistic regression's first Newton step, in closed form), scored by its cross-validated ROC-AUC
  (0.5: the two sets cannot be told apart; 1.0: always). It works in any dimension on a few
  hundred vectors a side.
"""
from __future__ import annotations

import math

import numpy as np

from rollout.compare import psi_of_counts

AUC_FOLDS = 5
AUC_C = 0.1  # the domain classifier's inverse L2 strength: the logistic regression's C it was set on


def score_histogram(scores: np.ndarray, bins: int) -> np.ndarray:
    """Counts of scores on `bins` equal bins over [0, 1] (1.0 in the last bin; values outside are
    clipped), as the statistics job bins them in Spark."""
    index = np.clip(np.floor(np.asarray(scores, np.float64) * bins), 0, bins - 1).astype(np.int64)
    return np.bincount(index, minlength=bins)


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """PSI of the current histogram against the reference's (the same bins)."""
    return psi_of_counts(reference, current)


def binned_ks(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """(statistic, p-value) of the two-sample KS test on two histograms of the same bins.

    The statistic is the largest distance between the two empirical CDFs at the bins' edges: for
    values that sit inside distinct bins it equals the exact statistic, otherwise it is a lower
    bound (the test is conservative). The p-value is the asymptotic one of scipy's `ks_2samp`
    (Kolmogorov's distribution at the effective sample size n*m/(n+m))."""
    from scipy.stats import kstwo

    n, m = int(np.sum(reference)), int(np.sum(current))
    if n == 0 or m == 0:
        return math.nan, math.nan
    statistic = float(np.max(np.abs(np.cumsum(reference) / n - np.cumsum(current) / m)))
    return statistic, float(kstwo.sf(statistic, round(n * m / (n + m))))


def homogeneity_pvalue(reference: np.ndarray, current: np.ndarray) -> float:
    """p-value of Pearson's chi-square test that two count vectors over the same categories come
    from one distribution (1.0 when only one category has counts: nothing can differ)."""
    from scipy.stats import chi2_contingency

    table = np.stack([reference, current]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 1.0
    return float(chi2_contingency(table, correction=False).pvalue)


def two_proportion_pvalue(k_reference: int, n_reference: int, k_current: int, n_current: int) -> float:
    """Two-sided p-value of the pooled z-test that two rates (k of n) are equal."""
    from scipy.stats import norm

    if n_reference == 0 or n_current == 0:
        return math.nan
    pooled = (k_reference + k_current) / (n_reference + n_current)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n_reference + 1 / n_current))
    if spread == 0:
        return 1.0
    z = (k_current / n_current - k_reference / n_reference) / spread
    return float(2 * norm.sf(abs(z)))


def errors_above_rate_pvalue(errors: int, items: int, rate: float) -> float:
    """One-sided p-value of `errors` or more of `items` failing if each failed at `rate` (binomial):
    how sure a small day's errors are above the rate allowed (1.0 without items)."""
    from scipy.stats import binom

    return float(binom.sf(errors - 1, items, rate)) if items else 1.0


def domain_auc(reference: np.ndarray, current: np.ndarray, seed: int = 0) -> float:
    """Cross-validated ROC-AUC of a classifier telling current vectors from reference ones (rows
    are vectors, standardised): per fold, the first Newton step of a logistic regression (L2
    penalty 1/AUC_C, as sklearn's C) from its intercept-only fit, scoring only vectors it was not
    fitted on. A closed form, one solve per fold in the smaller of the n x n (dual) and d x d
    (primal) systems, because the iterative fits it replaces were most of a monitor's seconds
    (docs/history.md, forty-first session); BLAS runs on one thread, since beside Spark's busy
    cores threads made such products several times slower, limited through threadpoolctl's cached
    controller: a new one per call scanned the process's libraries each time."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import get_cached_controller

    x = np.vstack([reference, current]).astype(np.float64)
    y = np.r_[np.zeros(len(reference)), np.ones(len(current))]
    folds = min(AUC_FOLDS, len(reference), len(current))
    if folds < 2:
        return math.nan
    x = (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-12)  # unit-free: no dimension dominates
    scores = np.empty(len(y))
    with get_cached_controller().limit(limits=1):
        step = _DualStep(x) if x.shape[1] > len(x) else _PrimalStep(x)
        for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
            rate = y[train].mean()
            weight = rate * (1 - rate)  # the logistic loss's curvature at the intercept-only fit
            scores[test] = math.log(rate / (1 - rate)) + step.scores(train, test, (y[train] - rate) / weight, 1 / (AUC_C * weight))
    return float(roc_auc_score(y, scores))


class _DualStep:
    """The ridge solve of a Newton step on the vectors' n x n Gram matrix (wide vectors)."""

    def __init__(self, x: np.ndarray) -> None:
        self.gram = x @ x.T

    def scores(self, train: np.ndarray, test: np.ndarray, target: np.ndarray, ridge: float) -> np.ndarray:
        """The `test` rows' scores (less the intercept) of the ridge fit of `target` on the `train`
        rows, each centred on the train rows' mean."""
        inner = self.gram[np.ix_(train, train)]
        means = inner.mean(axis=1)
        centred = inner - means[:, None] - means[None, :] + means.mean()
        dual = _ridge_solve(centred, ridge, target)
        cross = self.gram[np.ix_(test, train)]
        return (cross - cross.mean(axis=1)[:, None] - means[None, :] + means.mean()) @ dual


class _PrimalStep:
    """The same solve on the d x d scatter matrix (narrow vectors, more of them than dimensions)."""

    def __init__(self, x: np.ndarray) -> None:
        self.x, self.scatter = x, x.T @ x

    def scores(self, train: np.ndarray, test: np.ndarray, target: np.ndarray, ridge: float) -> np.ndarray:
        """As _DualStep.scores."""
        mean = self.x[train].mean(axis=0)
        held = self.x[test]
        centred = self.scatter - held.T @ held - len(train) * np.outer(mean, mean)  # the train rows', centred
        weights = _ridge_solve(centred, ridge, self.x[train].T @ target)  # the target sums to 0: no centring needed
        return (held - mean) @ weights


def _ridge_solve(matrix: np.ndarray, ridge: float, b: np.ndarray) -> np.ndarray:
    """(matrix + ridge I)^-1 b for a symmetric positive semi-definite `matrix` (overwritten), by Cholesky."""
    from scipy.linalg import cho_factor, cho_solve

    matrix[np.diag_indices_from(matrix)] += ridge
    return cho_solve(cho_factor(matrix, overwrite_a=True, check_finite=False), b, check_finite=False)
