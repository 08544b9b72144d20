"""Gold labels and agreement: Dawid-Skene on a hand-checked example, kappa against sklearn, alpha
against Krippendorff's published example, and the simulated annotators' reliability recovered."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from sklearn.metrics import cohen_kappa_score

from training.aggregate import MISSING, cohen_kappa, dawid_skene, krippendorff_alpha, majority
from training.annotators import ANNOTATORS, TRUTH, simulate
from training.gold import votes_of
from training.tasks import task_named

M = MISSING


def test_majority_shares() -> None:
    votes = np.array([[1, 1, 0], [0, M, M], [M, M, M], [1, 0, M]])
    np.testing.assert_allclose(majority(votes)[:, 1], [2 / 3, 0, 0.5, 0.5])


def test_dawid_skene_hand_checked() -> None:
    """Three careful annotators (A, B, C), each wrong once on a different 'no' item, and two who
    always say yes (D, E). On those three items the majority says yes (A's error + D + E). Worked
    by hand: D and E say yes whatever the truth, so their votes weigh nothing in the posterior, and
    on each of those items two careful 'no' votes outweigh one careful 'yes': Dawid-Skene says no,
    and estimates D's and E's P(yes | no) near 1, the careful ones' near 1/8."""
    truth = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    careful = np.stack([truth] * 3, axis=1)
    for annotator, item in ((0, 4), (1, 5), (2, 6)):
        careful[item, annotator] = 1
    votes = np.concatenate([careful, np.ones((12, 2), int)], axis=1)
    assert (majority(votes)[[4, 5, 6], 1] > 0.5).all()  # majority is wrong there
    estimate = dawid_skene(votes)
    np.testing.assert_array_equal(estimate.posterior[:, 1] >= 0.5, truth.astype(bool))
    np.testing.assert_allclose(estimate.confusion[3:, 0, 1], 1.0, atol=0.01)
    np.testing.assert_allclose(estimate.confusion[:3, 0, 1], 1 / 8, atol=0.01)
    np.testing.assert_allclose(estimate.confusion[:, 1, 1], 1.0, atol=0.01)
    np.testing.assert_allclose(estimate.prior, [8 / 12, 4 / 12], atol=0.01)


def test_annotators_alone_on_their_items_keep_their_votes() -> None:
    """With no item judged twice, EM has nothing to weigh an annotator against and drifts every
    posterior towards the prior (one annotator's 'no' became gold 'yes'): such items keep their
    majority shares, while annotators who overlap are still estimated."""
    alone = np.array([[1], [1], [1], [0]])
    np.testing.assert_array_equal(dawid_skene(alone).posterior[:, 1], [1, 1, 1, 0])
    disjoint = np.array([[1, M], [0, M], [1, M], [M, 0], [M, 1], [M, 0]])
    np.testing.assert_array_equal(dawid_skene(disjoint).posterior[:, 1], [1, 0, 1, 0, 1, 0])
    truth = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    overlapping = np.stack([truth] * 3, axis=1)
    overlapping[4, 0] = 1
    with_loner = np.concatenate([np.concatenate([overlapping, np.full((12, 1), M)], axis=1), [[M, M, M, 0], [M, M, M, 1]]])
    estimate = dawid_skene(with_loner)
    np.testing.assert_allclose(estimate.posterior[:12], dawid_skene(overlapping).posterior)  # the loner changes nothing of the others
    np.testing.assert_array_equal(estimate.posterior[12:, 1], [0, 1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cohen_kappa_equals_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 3, 50), rng.integers(0, 3, 50)
    b[rng.random(50) < 0.5] = a[rng.random(50) < 0.5][0]
    a[:5] = M  # items only b judged: left out
    both = a != M
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a[both], b[both]))


def test_krippendorff_alpha_published_example() -> None:
    """Krippendorff (2011), 'Computing Krippendorff's alpha-reliability', the nominal example with
    four observers, twelve units and missing values: alpha = 0.743."""
    data = np.array([
        [1, 2, 3, 3, 2, 1, 4, 1, 2, M, M, M],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, M, 3],
        [M, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, M],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, M],
    ]).T
    assert krippendorff_alpha(data) == pytest.approx(0.743, abs=5e-4)


def test_simulated_annotators_reliability_recovered() -> None:
    """On simulated judgements of a known truth, Dawid-Skene's gold beats the majority's accuracy
    or equals it, and each annotator's estimated error rates are near the ones simulated."""
    rng = np.random.default_rng(5)
    flags = rng.random(3000) < 0.3
    truth = pa.table({"content_id": [f"pin-{i:06d}" for i in range(3000)], "has_text_overlay": flags})
    task = task_named("text_heavy")
    judged = [j for j in simulate(truth, task, seed=3) if j.label is not None]
    labels = pa.table({"content_id": [j.content_id for j in judged], "annotator": [j.annotator for j in judged],
                       "label": [j.label for j in judged], "labelled_at": [j.labelled_at for j in judged]})
    votes = votes_of(labels, task.positive)
    expected = np.array([TRUTH["text_heavy"]({"has_text_overlay": f}) for f in flags])[np.argsort([f"pin-{i:06d}" for i in range(3000)])]
    estimate = dawid_skene(votes.matrix)
    ds_accuracy = np.mean((estimate.posterior[:, 1] >= 0.5) == expected)
    majority_accuracy = np.mean((majority(votes.matrix)[:, 1] > 0.5) == expected)
    assert ds_accuracy >= majority_accuracy and ds_accuracy > 0.95
    for a in ANNOTATORS:
        column = votes.annotators.index(a.name)
        assert estimate.confusion[column, 0, 1] == pytest.approx(a.false_yes, abs=0.04)
        assert estimate.confusion[column, 1, 0] == pytest.approx(a.false_no, abs=0.06)


def test_dawid_skene_on_a_crowd_recovers_each_annotators_error_rates() -> None:
    """Found in review: 100,000 judgements by 102 annotators (three per item, each trio on its own
    thousand items) took 45 to 140 s (a busy 2-core machine), in `labels gold` and in `labels weak`:
    EM's einsums ran over a dense items x annotators array, mostly empty. It now works on the
    judgements alone (about 1 s, measured by hand: no timed test); on that crowd the simulated error
    rates are still recovered."""
    rng = np.random.default_rng(8)
    items = 33_334
    truth = rng.random(items) < 0.3
    votes = np.full((items, 102), M, dtype=np.int8)
    trio = 3 * (np.arange(items) // 1000)
    false_yes, false_no = np.array([0.05, 0.1, 0.2]), np.array([0.1, 0.2, 0.3])
    for k in range(3):
        flip = rng.random(items) < np.where(truth, false_no[k], false_yes[k])
        votes[np.arange(items), trio + k] = truth != flip
    estimate = dawid_skene(votes)
    assert np.mean((estimate.posterior[:, 1] >= 0.5) == truth) > 0.9
    for k in range(3):
        np.testing.assert_allclose(estimate.confusion[k::3, 0, 1].mean(), false_yes[k], atol=0.02)
        np.testing.assert_allclose(estimate.confusion[k::3, 1, 0].mean(), false_no[k], atol=0.03)
