"""The promotion gate of a head (training/gate.py) and the evaluation metrics it reads (training/evaluate.py)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from conf.settings import GateSettings
from training.evaluate import (
    auc_difference,
    expected_calibration_error,
    image_format,
    leads,
    precision_at_recall,
    text_length,
    weighted_aucs,
)
from training.gate import gate_failures

GATE = GateSettings(min_auc_margin=0.02, max_slice_drop=0.05, max_ece=0.1)


def summary(head_auc: float, rule_auc: float, ece: float = 0.05, head_slice: float = 0.9, rule_slice: float = 0.8) -> dict:
    return {"task": "low_quality", "metrics": {"head": {"roc_auc": head_auc, "ece": ece}, "rule": {"roc_auc": rule_auc, "ece": 0.2},
                        "majority_vote": {"roc_auc": None, "ece": 0.3}},
            "slices": {"head": {"language": {"en": head_slice}}, "rule": {"language": {"en": rule_slice}}}}


def test_a_head_better_everywhere_passes():
    assert gate_failures(summary(0.9, 0.8), GATE) == []


@pytest.mark.parametrize(("case", "needle"), [
    (summary(0.81, 0.8), "min_auc_margin"),
    (summary(0.9, 0.8, ece=0.2), "max_ece"),
    (summary(0.9, 0.8, head_slice=0.7, rule_slice=0.8), "slice language=en"),
])
def test_each_failed_condition_is_named(case, needle):
    failures = gate_failures(case, GATE)
    assert len(failures) == 1 and needle in failures[0]


def test_a_figure_exactly_at_its_bound_meets_it():
    """In floats 0.80 + 0.02 is above 0.82 and 0.53 - 0.05 above 0.48: the ties must not fail on rounding."""
    assert gate_failures(summary(0.82, 0.80, ece=0.1, head_slice=0.48, rule_slice=0.53), GATE) == []


@pytest.mark.parametrize(("case", "figure"), [
    (summary(float("nan"), 0.95), "head's roc_auc"), (summary(0.6, float("nan")), "rule's roc_auc"), (summary(0.9, 0.8, ece=float("nan")), "head's ece"),
])
def test_an_evaluation_with_a_figure_that_is_not_a_number_cannot_pass(case, figure):
    """Every comparison with NaN is false, so each condition passed a NaN (the registry's JSON keeps one)."""
    failures = gate_failures(case, GATE)
    assert len(failures) == 1 and figure in failures[0] and "cannot be judged" in failures[0]


def test_a_refusal_says_how_many_held_out_items_and_positives_it_judged_on():
    small = summary(0.55, 0.9)
    small["metrics"]["head"].update(items=19.0, positives=1.0)  # as training.evaluate.score_metrics records them
    assert gate_failures(small, GATE.model_copy(update={"min_class_items": 1})) == [
        "ROC-AUC 0.550 is not above rule's 0.900 by training.gate.min_auc_margin 0.02 (judged on 19 held-out gold items, 1 positive)"]


def test_a_margin_refusal_on_the_items_every_scorer_scored_says_of_how_many_held_out_items():
    """Found in review: the margin refusal said "judged on 20 held-out gold items" where 80 were held
    out and a baseline left 60 out, beside a too-few refusal giving the 80: the two read as two counts of the same items."""
    cut = summary(0.81, 0.8)
    cut["metrics"]["head"].update(items=20.0, positives=4.0)
    cut["held_out"] = {"items": 80, "positives": 30, "left_out": {"rule": 60}}
    failures = gate_failures(cut, GATE)
    assert failures[0].startswith("the held-out gold holds 4 positive and 16 negative items") and "of the 80 held-out gold items" in failures[0]
    assert failures[1:] == ["ROC-AUC 0.810 is not above rule's 0.800 by training.gate.min_auc_margin 0.02 "
                            "(judged on the 20 of the 80 held-out gold items every scorer scored, 4 positive)"]


@pytest.mark.parametrize(("positives", "refused"), [(4, True), (10, False), (90, False), (96, True)])
def test_a_verdict_on_fewer_held_out_items_of_a_class_than_the_gate_asks_for_is_refused(positives, refused):
    judged = summary(0.9, 0.8)
    judged["metrics"]["head"].update(items=100.0, positives=float(positives))
    failures = gate_failures(judged, GATE)
    assert failures == ([f"the held-out gold holds {positives} positive and {100 - positives} negative items, fewer than "
                         "training.gate.min_class_items 10 of a class: a ROC-AUC on so few is mostly which items were held out; "
                         "label more (content-signals label-sample low_quality) and train again"] if refused else [])


@pytest.mark.parametrize(("held_positives", "advice"), [
    (30, "the gold is enough, rule and majority_vote's coverage is not: have rule and majority_vote score them and train again"),
    (8, "label more (content-signals label-sample low_quality) and have rule and majority_vote score them, then train again")])
def test_a_refusal_for_too_few_items_names_the_baselines_that_left_held_out_items_out(held_positives, advice):
    """Judged on the items every scorer scored, a head's too few items may be a baseline's doing: the
    refusal says how many were held out and who left how many out, and asks for labels only where the
    held-out gold itself is short of a class. The verdict is the same refusal either way."""
    judged = summary(0.9, 0.8)
    judged["metrics"]["head"].update(items=20.0, positives=4.0)
    judged["held_out"] = {"items": 80, "positives": held_positives, "left_out": {"rule": 55, "majority_vote": 12}}
    assert gate_failures(judged, GATE) == [
        "the held-out gold holds 4 positive and 16 negative items, fewer than training.gate.min_class_items 10 of a class: "
        f"of the 80 held-out gold items ({held_positives} positive) every scorer scored 20, rule left out 55, majority_vote left out 12: {advice}"]
    judged["held_out"]["left_out"] = {}  # every scorer scored every held-out item: labels are what is short
    assert "a ROC-AUC on so few is mostly which items were held out; label more" in gate_failures(judged, GATE)[0]


def test_a_lead_whose_interval_reaches_zero_passes_only_a_gate_that_does_not_ask_for_more():
    strict = GATE.model_copy(update={"lead_beyond_noise": True})
    lead = summary(0.9, 0.8)
    lead["leads"] = {"rule": {"difference": 0.1, "ci95_low": -0.01, "ci95_high": 0.2}, "majority_vote": None}
    assert gate_failures(lead, GATE) == []
    assert gate_failures(lead, strict) == ["the ROC-AUC lead over rule (+0.100, 95% interval [-0.010, +0.200]) is not above zero "
                                           "across its 95% interval (training.gate.lead_beyond_noise): label more held-out gold items"]
    lead["leads"]["rule"]["ci95_low"] = 0.01  # majority vote scored no item: no baseline of the gate, not judged
    assert gate_failures(lead, strict) == []
    del lead["leads"]  # kept by a training run before the intervals were
    assert "train it again" in gate_failures(lead, strict)[0]


def test_a_slice_trailing_both_baselines_is_one_refusal_naming_both():
    trailing = summary(0.9, 0.8, head_slice=0.7, rule_slice=0.8)
    trailing["metrics"]["majority_vote"]["roc_auc"] = 0.85
    trailing["slices"]["majority_vote"] = {"language": {"en": 0.9}}
    assert gate_failures(trailing, GATE) == ["slice language=en: ROC-AUC 0.700 is below rule's 0.800 and majority_vote's 0.900 "
                                             "by more than training.gate.max_slice_drop 0.05"]


def test_a_slice_smaller_than_the_gate_in_force_asks_for_is_not_judged():
    small = {**summary(0.9, 0.8, head_slice=0.7, rule_slice=0.8), "slice_items": {"language": {"en": 30}}}
    assert "slice language=en" in gate_failures(small, GATE)[0]  # the gate's min_slice_items (20 by default) keeps it
    assert gate_failures(small, GATE.model_copy(update={"min_slice_items": 100})) == []


def test_a_head_with_no_baseline_to_beat_does_not_pass():
    alone = summary(0.51, 0.8)
    alone["metrics"]["rule"]["roc_auc"] = None  # e.g. the rule signal off: the held-out items have no rule score
    assert "no baseline" in gate_failures(alone, GATE)[0]


def test_one_class_on_the_items_every_scorer_scored_names_the_baseline_that_left_the_others_out():
    """Found in review: where the held-out gold held both classes but a baseline scored only positives,
    the items every scorer scored held one class, and the refusal said to label more items: the
    baseline's coverage was the cause, as the too-few refusal says for few items of a class."""
    cut = summary(None, 0.8)
    cut["metrics"]["head"].update(items=6.0, positives=6.0)
    cut["held_out"] = {"items": 80, "positives": 30, "left_out": {"rule": 74}}
    assert gate_failures(cut, GATE) == [
        "the held-out gold holds 6 positive and 0 negative items, fewer than training.gate.min_class_items 10 of a class: "
        "of the 80 held-out gold items (30 positive) every scorer scored 6, rule left out 74: the gold is enough, rule's coverage "
        "is not: have rule score them and train again"]
    cut["held_out"]["left_out"] = {}  # the held-out gold itself of one class: labels are what is short
    assert gate_failures(cut, GATE) == ["the held-out gold items hold one class only: no ROC-AUC to judge; label more items"]


def test_one_class_only_cannot_pass():
    assert "one class only" in gate_failures(summary(None, 0.8), GATE)[0]


def test_ece_equals_a_loop_over_the_bins():
    rng = np.random.default_rng(0)
    scores = rng.random(500)
    labels = (rng.random(500) < scores ** 2).astype(float)
    expected = 0.0
    for low in np.arange(10) / 10:
        inside = (scores >= low) & (scores < low + 0.1)
        if inside.any():
            expected += inside.mean() * abs(labels[inside].mean() - scores[inside].mean())
    assert expected_calibration_error(labels, scores) == pytest.approx(expected)
    assert expected_calibration_error(np.array([0.0, 1.0]), np.array([0.0, 1.0])) == 0


def test_precision_at_recall_is_the_best_threshold_keeping_that_recall():
    rng = np.random.default_rng(1)
    labels = rng.random(300) < 0.3
    scores = labels * 0.3 + rng.random(300)
    best = max(labels[scores >= t].mean() for t in scores if labels[scores >= t].sum() >= 0.8 * labels.sum())
    assert precision_at_recall(labels.astype(int), scores, 0.8) == pytest.approx(best)


def test_slices_read_the_format_from_the_bytes_and_bucket_the_text():
    assert [image_format(b) for b in (b"\xff\xd8\xff\xe0..", b"\x89PNG\r\n", b"RIFF\0\0\0\0WEBPVP8", b"GIF89a", b"xx", None)] == [
        "jpeg", "png", "webp", "gif", "other", "none"]
    assert [text_length("a" * n, None) for n in (0, 39, 40, 119, 120)] == ["short", "short", "medium", "medium", "long"]


def test_an_item_with_two_rule_rows_is_a_usage_error_naming_it(tmp_path):
    """Found in review: an item with ok rows of the rule on two days (left by backfills before they dropped
    the older day's) stopped the evaluation with pandas' "cannot reindex on an axis with duplicate labels"."""
    import datetime as dt

    import pyarrow as pa
    from deltalake import write_deltalake

    from conf.settings import UsageError
    from signals.contracts import LABELS
    from training.evaluate import rule_scores

    def row(content_id: str, score: float, ds: str) -> dict:
        return {"content_id": content_id, "signal": "text_safety", "label": "spam", "score": score, "threshold": 0.5, "decision": score >= 0.5,
                "detail": None, "model_name": "m", "model_version": "1", "input_hash": "h", "status": "ok", "error": None, "run_id": "run",
                "computed_at": dt.datetime(2026, 11, 20, tzinfo=dt.UTC), "ds": ds}

    rows = [row("a", 0.9, "2026-11-20"), row("b", 0.2, "2026-11-20")]
    write_deltalake(tmp_path / "labels", pa.Table.from_pylist(rows, schema=LABELS.schema), partition_by=list(LABELS.partition_by))
    assert rule_scores(str(tmp_path), "spam_text", "1", ["b", "a", "c"], None).tolist()[:2] == [0.2, 0.9]
    write_deltalake(tmp_path / "labels", pa.Table.from_pylist([row("a", 0.1, "2026-11-19")], schema=LABELS.schema), mode="append")
    with pytest.raises(UsageError, match="'a' has more than one ok row of text_safety"):
        rule_scores(str(tmp_path), "spam_text", "1", ["a", "b"], None)


def test_an_item_with_language_rows_of_two_days_naming_two_languages_is_a_usage_error_naming_it(tmp_path):
    """Found in review: the check above compared (item, label), so an item whose language rows of two days
    name two languages passed it, and the language slices stopped with pandas' "cannot reindex on an axis
    with duplicate labels". Both reads refuse an item's ok rows of a signal on two days (`one_day_each`)."""
    import datetime as dt

    import pyarrow as pa
    from deltalake import write_deltalake

    from conf.settings import CorpusSettings, UsageError
    from lake.corpus import CorpusTable
    from signals.contracts import CORPUS, LABELS
    from training.evaluate import item_slices

    def row(content_id: str, language: str, ds: str) -> dict:
        return {"content_id": content_id, "signal": "language", "label": language, "score": 0.9, "threshold": 0.5, "decision": None,
                "detail": None, "model_name": "m", "model_version": "1", "input_hash": "h", "status": "ok", "error": None, "run_id": "run",
                "computed_at": dt.datetime(2026, 11, 20, tzinfo=dt.UTC), "ds": ds}

    write_deltalake(tmp_path / "corpus", pa.table({"content_id": ["a", "b"], "image": [None, None], "title": ["t", "u"], "description": [None, None],
                                                   "created_at": [None] * 2, "updated_at": [None] * 2, "ds": ["2026-11-20"] * 2},
                                                  schema=CORPUS.schema), partition_by=["ds"])
    corpus = CorpusTable(CorpusSettings(), str(tmp_path / "corpus"))
    write_deltalake(tmp_path / "labels", pa.Table.from_pylist([row("a", "en", "2026-11-20"), row("b", "de", "2026-11-20")], schema=LABELS.schema),
                    partition_by=list(LABELS.partition_by))
    assert item_slices(str(tmp_path), corpus, ["b", "a"], "1", None, None)["language"].tolist() == ["de", "en"]
    write_deltalake(tmp_path / "labels", pa.Table.from_pylist([row("a", "fr", "2026-11-21")], schema=LABELS.schema), mode="append")
    with pytest.raises(UsageError, match="'a' has more than one ok row of language model version 1"):
        item_slices(str(tmp_path), corpus, ["a", "b"], "1", None, None)


def delong_sd(labels: np.ndarray, first: np.ndarray, second: np.ndarray) -> float:
    """DeLong's standard deviation of the difference of two correlated ROC-AUCs: an analytic
    estimate, independent of the bootstrap."""
    def components(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pos, neg = scores[labels == 1][:, None], scores[labels == 0][None, :]
        psi = (pos > neg) + 0.5 * (pos == neg)
        return psi.mean(axis=1), psi.mean(axis=0)  # per positive, per negative
    (p1, n1), (p2, n2) = components(first), components(second)
    return float(np.sqrt(np.var(p1 - p2, ddof=1) / len(p1) + np.var(n1 - n2, ddof=1) / len(n1)))


def test_an_auc_difference_interval_is_as_wide_as_delongs_and_says_when_a_scorer_is_better():
    rng = np.random.default_rng(3)
    labels = (rng.random(600) < 0.15).astype(int)
    signal = labels + rng.normal(0, 1.0, 600)
    close, other = signal + rng.normal(0, 0.3, 600), signal + rng.normal(0, 0.3, 600)  # as good as each other
    tied = auc_difference(labels, close, other)
    assert tied.difference == pytest.approx(roc_auc_score(labels, close) - roc_auc_score(labels, other))
    assert tied.low < 0 < tied.high and not tied.beyond_noise
    assert (tied.high - tied.low) == pytest.approx(2 * 1.96 * delong_sd(labels, close, other), rel=0.15)
    sharp = labels + rng.normal(0, 0.4, 600)
    better = auc_difference(labels, sharp, signal)
    assert better.beyond_noise and better.low < better.difference < better.high
    assert (better.high - better.low) == pytest.approx(2 * 1.96 * delong_sd(labels, sharp, signal), rel=0.15)
    same = auc_difference(labels, close, close)
    assert (same.difference, same.low, same.high) == (0, 0, 0)


def test_weighted_aucs_equal_sklearns_with_sample_weights_ties_included():
    rng = np.random.default_rng(4)
    labels = (rng.random(300) < 0.2).astype(int)
    scores = np.round(labels + rng.normal(0, 1, 300), 1)  # many ties
    weights = rng.integers(0, 3, (5, 300)).astype(float)
    expected = [roc_auc_score(labels, scores, sample_weight=w) for w in weights]
    np.testing.assert_allclose(weighted_aucs(labels, scores, weights), expected, atol=1e-12)
    assert np.isnan(weighted_aucs(labels, scores, np.where(labels == 1, 0.0, 1.0)[None, :])).all()  # no positive drawn


def test_copies_of_the_items_do_not_narrow_an_interval_drawn_by_group():
    """Each item three times over, as a group: the interval drawn by group is the single items'
    width; drawn by item it would claim a third of the noise (1/sqrt(3) as wide)."""
    rng = np.random.default_rng(5)
    labels = (rng.random(400) < 0.2).astype(int)
    signal = labels + rng.normal(0, 1.0, 400)
    first, second = signal + rng.normal(0, 0.3, 400), signal + rng.normal(0, 0.3, 400)
    single = auc_difference(labels, first, second)
    copied = [np.tile(x, 3) for x in (labels, first, second)]
    by_group = auc_difference(*copied, groups=np.tile(np.arange(400), 3))
    by_item = auc_difference(*copied)
    width = single.high - single.low
    assert by_group.difference == pytest.approx(single.difference)
    assert by_group.high - by_group.low == pytest.approx(width, rel=0.15)
    assert by_item.high - by_item.low == pytest.approx(width / np.sqrt(3), rel=0.15)


def test_an_evaluations_leads_are_drawn_by_the_frames_near_duplicate_groups():
    rng = np.random.default_rng(6)
    labels = np.tile((rng.random(100) < 0.3).astype(int), 2)
    frame = pd.DataFrame({"content_id": [f"pin-{i}" for i in range(200)], "label": labels, "group_id": np.tile(np.arange(100), 2),
                          "head": labels + rng.normal(0, 0.5, 200), "rule": labels + rng.normal(0, 1.0, 200)})
    found = leads(frame, "head", ["rule", "majority_vote"])
    grouped = auc_difference(labels, frame["head"].to_numpy(), frame["rule"].to_numpy(), groups=frame["group_id"].to_numpy())
    assert found == {"rule": grouped.as_dict(), "majority_vote": None}  # a baseline that scored nothing has no lead
    assert found["rule"] != leads(frame.drop(columns="group_id"), "head", ["rule"])["rule"]  # by item, another draw
