"""The drift measures against independent computations: scipy's KS test on raw values, PSI and
the two-proportion test by hand, numpy's histogram; the domain classifier on known shifts."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import ks_2samp

from monitoring import drift
from monitoring.drift import binned_ks, domain_auc, psi, score_histogram, two_proportion_pvalue
from signals.contracts import HISTOGRAM_BINS


def test_the_histogram_is_numpys_on_equal_bins_over_0_1() -> None:
    scores = np.random.default_rng(1).random(500)
    scores[:3] = [0.0, 1.0, 0.05]
    expected, _ = np.histogram(scores, np.linspace(0, 1, HISTOGRAM_BINS + 1))
    assert score_histogram(scores, HISTOGRAM_BINS).tolist() == expected.tolist()


def test_binned_ks_is_scipys_two_sample_test_when_values_sit_in_distinct_bins() -> None:
    rng = np.random.default_rng(2)
    a = (rng.integers(0, HISTOGRAM_BINS, 400) + 0.5) / HISTOGRAM_BINS
    b = (np.minimum(rng.integers(0, HISTOGRAM_BINS, 150) + rng.integers(2, 6, 150), HISTOGRAM_BINS - 1) + 0.5) / HISTOGRAM_BINS
    statistic, pvalue = binned_ks(score_histogram(a, HISTOGRAM_BINS), score_histogram(b, HISTOGRAM_BINS))
    expected = ks_2samp(a, b, method="asymp")
    assert statistic == pytest.approx(expected.statistic, abs=1e-12)
    assert pvalue == pytest.approx(expected.pvalue, rel=1e-9)
    assert pvalue < 0.01  # the shift is found


def test_binned_ks_of_an_empty_side_is_nan() -> None:
    assert all(math.isnan(v) for v in binned_ks(np.zeros(4), np.ones(4)))


def test_psi_is_the_textbook_sum() -> None:
    by_hand = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.75 - 0.5) * math.log(0.75 / 0.5)
    assert psi(np.array([50, 50]), np.array([25, 75])) == pytest.approx(by_hand)
    assert psi(np.array([50, 50]), np.array([5, 5])) == 0.0


def test_two_proportion_pvalue_is_the_pooled_z_test() -> None:
    pooled = 105 / 200
    z = (0.60 - 0.45) / math.sqrt(pooled * (1 - pooled) * (2 / 100))
    assert two_proportion_pvalue(45, 100, 60, 100) == pytest.approx(math.erfc(z / math.sqrt(2)))
    assert two_proportion_pvalue(0, 50, 0, 50) == 1.0


def test_the_domain_classifier_cannot_tell_one_distribution_from_itself_and_tells_a_shift() -> None:
    rng = np.random.default_rng(3)
    reference = rng.normal(size=(400, 256))
    same = rng.normal(size=(60, 256))
    shifted = rng.normal(size=(60, 256)) + 0.4  # every dimension moved by 0.4 standard deviations
    assert domain_auc(reference, same) < 0.7
    assert domain_auc(reference, shifted) > 0.95
    assert math.isnan(domain_auc(reference, shifted[:1]))


def _newton_step_auc(reference: np.ndarray, current: np.ndarray, seed: int) -> float:
    """The same classifier by its definition, in the primal: per fold, one Newton step of the
    penalised logistic loss (penalty |w|^2 / (2 C) on the weights, not the intercept) from its
    intercept-only minimum, solved as the full (d + 1) x (d + 1) system."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    x = np.vstack([reference, current]).astype(np.float64)
    y = np.r_[np.zeros(len(reference)), np.ones(len(current))]
    x = np.c_[(x - x.mean(axis=0)) / x.std(axis=0), np.ones(len(x))]  # the last column: the intercept
    scores = np.empty(len(y))
    for train, test in StratifiedKFold(5, shuffle=True, random_state=seed).split(x, y):
        rate = y[train].mean()
        start = np.r_[np.zeros(x.shape[1] - 1), math.log(rate / (1 - rate))]
        probability = 1 / (1 + np.exp(-x[train] @ start))
        penalty = np.diag(np.r_[np.full(x.shape[1] - 1, 1 / 0.1), 0.0])
        hessian = x[train].T @ (x[train] * (probability * (1 - probability))[:, None]) + penalty
        gradient = x[train].T @ (probability - y[train]) + penalty @ start
        scores[test] = x[test] @ (start - np.linalg.solve(hessian, gradient))
    return float(roc_auc_score(y, scores))


@pytest.mark.parametrize("width", [24, 300])
def test_the_domain_classifier_is_a_logistic_regressions_first_newton_step(width: int) -> None:
    rng = np.random.default_rng(4)
    reference = rng.normal(size=(160, width))
    current = rng.normal(size=(40, width)) + np.r_[0.3, np.zeros(width - 1)]  # one dimension moved
    assert domain_auc(reference, current, seed=2) == pytest.approx(_newton_step_auc(reference, current, 2), abs=1e-9)


def test_the_domain_classifier_limits_blas_without_scanning_the_libraries_on_every_call(monkeypatch) -> None:
    """Found profiling the bench's monitor: each call built a new threadpoolctl controller, which scans every library
    the process has loaded, once per embedding signal and day judged (8 in the bench, 730 in a
    year's backfill). BLAS still runs on one thread inside."""
    import threadpoolctl

    rng = np.random.default_rng(5)
    reference, current = rng.normal(size=(60, 8)), rng.normal(size=(30, 8))
    threads = []
    solve = drift._ridge_solve
    with monkeypatch.context() as patched:
        patched.setattr(drift, "_ridge_solve", lambda *a: threads.extend(i["num_threads"] for i in threadpoolctl.threadpool_info()
                                                                         if i["user_api"] == "blas") or solve(*a))
        first = domain_auc(reference, current)  # the first call may scan: the libraries it loads are new
    scans = []
    load = threadpoolctl.ThreadpoolController._load_libraries
    monkeypatch.setattr(threadpoolctl.ThreadpoolController, "_load_libraries", lambda self: scans.append(1) or load(self))

    values = [domain_auc(reference, current, seed) for seed in range(3)]

    assert scans == []
    assert threads and set(threads) == {1}
    assert values[0] == first


def test_the_small_days_error_test_is_the_binomial_tail_summed_by_hand() -> None:
    from math import comb

    from monitoring.drift import errors_above_rate_pvalue

    for errors, items, rate in ((19, 19, 0.25), (5, 8, 0.25), (0, 3, 0.25), (3, 10, 0.1)):
        by_hand = sum(comb(items, k) * rate ** k * (1 - rate) ** (items - k) for k in range(errors, items + 1))
        assert abs(errors_above_rate_pvalue(errors, items, rate) - by_hand) < 1e-12
    assert errors_above_rate_pvalue(0, 0, 0.25) == 1.0
