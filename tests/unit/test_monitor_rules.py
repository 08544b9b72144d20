"""The reference window and the alert rules on statistics rows made here (numpy, no Spark): each
rule fires on the change it is for, and stays quiet on a day drawn like its reference."""
from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from conf.settings import MonitorSettings
from monitoring.drift import score_histogram
from monitoring.reference import choose_rows, merge, reference_days
from monitoring.rules import DECISION_RATE, EMBEDDING_DRIFT, ERROR_RATE, LABEL_MIX, REFERENCE, ROW_COUNT, SCORE_DRIFT, judge
from signals.contracts import HISTOGRAM_BINS

SETTINGS = MonitorSettings(min_reference_days=1)  # the rules against one day's reference; the warm-up is tested apart
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def label_stats(scores: np.ndarray, threshold: float = 0.5, errors: int = 0, ds: str = "2026-11-10", version: str = "1",
                run_id: str = "r", label: str = "blurry") -> dict:
    decided = scores >= threshold
    return {"signal": "image_quality", "model_version": version, "ds": ds, "run_id": run_id, "kind": "label", "job": "backfill",
            "items": len(scores) + errors, "error_items": errors, "rows": len(scores) + errors, "computed_at": T0,
            "error_reasons": [{"reason": "image is corrupt or truncated", "count": errors}] if errors else [],
            "labels": [{"label": label, "rows": len(scores), "decided": len(scores), "positives": int(decided.sum()),
                        "decision_rate": float(decided.mean()) if len(scores) else None, "quantiles": [], "histogram": score_histogram(scores, HISTOGRAM_BINS).tolist()}]}


def embedding_stats(vectors: np.ndarray, ds: str = "2026-11-10", run_id: str = "r") -> dict:
    return {"signal": "image_embedding", "model_version": "1", "ds": ds, "run_id": run_id, "kind": "embedding", "job": "backfill",
            "items": len(vectors), "error_items": 0, "rows": len(vectors), "computed_at": T0, "error_reasons": [],
            "labels": [], "sample": vectors.tolist()}


def reference_of(rows: list[dict]) -> object:
    return merge(rows, SETTINGS.max_reference_sample, SETTINGS.seed)


def by_rule(verdicts: list) -> dict:
    return {(v.rule, v.label): v for v in verdicts}


def test_the_window_is_the_previous_days_with_statistics_or_the_pinned_day() -> None:
    days = ["2026-11-01", "2026-11-03", "2026-11-04", "2026-11-08", "2026-11-09"]
    assert reference_days(days, "2026-11-09", MonitorSettings(reference_days=3)) == ["2026-11-03", "2026-11-04", "2026-11-08"]
    assert reference_days(days, "2026-11-01", SETTINGS) == []
    assert reference_days(days, "2026-11-09", MonitorSettings(reference_day="2026-11-01")) == ["2026-11-01"]
    assert reference_days(days, "2026-11-09", MonitorSettings(reference_day="2026-10-01")) == []


def test_of_each_day_the_fullest_row_of_the_same_version_is_chosen_and_never_the_day_judged() -> None:
    rng = np.random.default_rng(0)
    backfill = label_stats(rng.random(60), ds="2026-11-05", run_id="backfill")
    refresh = label_stats(rng.random(5), ds="2026-11-05", run_id="refresh")
    other_version = label_stats(rng.random(90), ds="2026-11-05", run_id="challenger", version="2")
    judged = label_stats(rng.random(80), ds="2026-11-05", run_id="judged")
    assert [r["run_id"] for r in choose_rows([backfill, refresh, other_version, judged], "1", ("judged", "2026-11-05"))] == ["backfill"]
    assert [r["run_id"] for r in choose_rows([backfill, refresh], "3")] == ["backfill"]  # no version 3: the others
    earlier_day = label_stats(rng.random(80), ds="2026-11-04", run_id="judged")  # the judged run's other days count
    chosen = choose_rows([backfill, earlier_day, judged], "1", ("judged", "2026-11-05"))
    assert [(r["run_id"], r["ds"]) for r in chosen] == [("judged", "2026-11-04"), ("backfill", "2026-11-05")]


def test_merging_sums_histograms_and_decisions_and_caps_the_pooled_sample() -> None:
    rng = np.random.default_rng(1)
    a, b = label_stats(rng.random(50), ds="2026-11-01"), label_stats(rng.random(70), ds="2026-11-02")
    merged = reference_of([a, b])
    expected = np.add(a["labels"][0]["histogram"], b["labels"][0]["histogram"])
    assert merged.labels["blurry"].histogram.tolist() == expected.tolist()
    assert merged.labels["blurry"].decided == 120 and merged.days == ("2026-11-01", "2026-11-02")
    vectors = [embedding_stats(rng.normal(size=(700, 4)), ds=d) for d in ("2026-11-01", "2026-11-02")]
    assert merge(vectors, 1000, 0).sample.shape == (1000, 4)


def test_a_day_like_its_reference_raises_nothing() -> None:
    rng = np.random.default_rng(2)
    reference = reference_of([label_stats(rng.beta(2, 5, 400), errors=10, ds="2026-11-01")])
    day = label_stats(rng.beta(2, 5, 80), errors=3)
    verdicts = judge(day, reference, SETTINGS, completeness=(83, 83))
    assert {v.rule for v in verdicts} == {ERROR_RATE, ROW_COUNT, SCORE_DRIFT, DECISION_RATE}
    assert not [v for v in verdicts if v.fired], verdicts


def test_shifted_scores_raise_score_drift_and_a_decision_rate_outside_the_band() -> None:
    rng = np.random.default_rng(3)
    before, day = label_stats(rng.beta(2, 5, 400), ds="2026-11-01"), label_stats(rng.beta(5, 2, 80))
    verdicts = by_rule(judge(day, reference_of([before]), SETTINGS))
    assert verdicts[(SCORE_DRIFT, "blurry")].fired and verdicts[(SCORE_DRIFT, "blurry")].cause == "corpus"
    assert verdicts[(SCORE_DRIFT, "blurry")].value > SETTINGS.max_psi
    rate, ref_rate = (s["labels"][0]["decision_rate"] for s in (day, before))
    decision = verdicts[(DECISION_RATE, "blurry")]  # its value is the change, as its threshold is
    assert decision.fired and decision.value == pytest.approx(abs(rate - ref_rate)) and decision.threshold == SETTINGS.max_decision_rate_change


def test_errors_above_the_rate_fire_with_their_reasons_and_few_items_are_not_judged() -> None:
    rng = np.random.default_rng(4)
    reference = reference_of([label_stats(rng.random(100), ds="2026-11-01")])
    fired = by_rule(judge(label_stats(rng.random(30), errors=30), reference, SETTINGS))[(ERROR_RATE, None)]
    assert fired.fired and fired.value == 0.5 and "image is corrupt or truncated (30)" in fired.message
    few = by_rule(judge(label_stats(rng.random(3), errors=5), reference, SETTINGS))[(ERROR_RATE, None)]
    assert not few.fired and "too few" in few.message


def test_fewer_items_in_the_table_than_in_the_corpus_fire_row_count() -> None:
    verdict = by_rule(judge(label_stats(np.full(30, 0.1)), None, SETTINGS, completeness=(30, 32)))[(ROW_COUNT, None)]
    assert verdict.fired and "2 missing" in verdict.message


def test_no_reference_or_only_error_rows_say_so_and_fire_nothing_but_the_error_rate() -> None:
    rng = np.random.default_rng(5)
    alone = by_rule(judge(label_stats(rng.random(40)), None, SETTINGS))
    assert not alone[(REFERENCE, None)].fired and "no statistics in the reference window" in alone[(REFERENCE, None)].message
    only_errors = label_stats(np.zeros(0), errors=40)
    verdicts = by_rule(judge(only_errors, reference_of([label_stats(rng.random(100), ds="2026-11-01")]), SETTINGS))
    assert verdicts[(ERROR_RATE, None)].fired and "only error rows" in verdicts[(REFERENCE, None)].message
    broken_reference = reference_of([label_stats(np.zeros(0), errors=50, ds="2026-11-01")])
    assert "holds only error rows" in by_rule(judge(label_stats(rng.random(40)), broken_reference, SETTINGS))[(REFERENCE, None)].message


def test_vectors_from_another_distribution_raise_embedding_drift() -> None:
    rng = np.random.default_rng(6)
    reference = reference_of([embedding_stats(rng.normal(size=(300, 64)), ds="2026-11-01")])
    same = by_rule(judge(embedding_stats(rng.normal(size=(60, 64))), reference, SETTINGS))[(EMBEDDING_DRIFT, None)]
    moved = by_rule(judge(embedding_stats(rng.normal(size=(60, 64)) + 0.6), reference, SETTINGS, cause="model"))[(EMBEDDING_DRIFT, None)]
    assert not same.fired and moved.fired and moved.cause == "model" and moved.value > SETTINGS.max_domain_auc


def test_a_rolling_reference_of_too_few_days_judges_no_drift() -> None:
    """A new signal's first days: against one day, a day's mix of content is no baseline. A pinned day is one on purpose."""
    rng = np.random.default_rng(9)
    shifted = label_stats(rng.beta(5, 2, 80))
    one_day = reference_of([label_stats(rng.beta(2, 5, 400), ds="2026-11-01")])
    verdicts = by_rule(judge(shifted, one_day, MonitorSettings(min_reference_days=2)))
    assert not verdicts[(REFERENCE, None)].fired and "fewer than monitor.min_reference_days 2" in verdicts[(REFERENCE, None)].message
    assert (SCORE_DRIFT, "blurry") not in verdicts
    two_days = reference_of([label_stats(rng.beta(2, 5, 200), ds=d) for d in ("2026-11-01", "2026-11-02")])
    assert by_rule(judge(shifted, two_days, MonitorSettings(min_reference_days=2)))[(SCORE_DRIFT, "blurry")].fired
    pinned = MonitorSettings(min_reference_days=2, reference_day="2026-11-01")
    assert by_rule(judge(shifted, one_day, pinned))[(SCORE_DRIFT, "blurry")].fired


def test_days_of_only_error_rows_do_not_count_towards_the_reference_days() -> None:
    """Found in review: a window of one ordinary day and two days the signal wrote only error rows
    (its fetches failing) held three days, so a day was judged against the one day's values alone
    (score drift, PSI 2.6, and a decision rate compared) where a one-day window judges none."""
    rng = np.random.default_rng(9)
    broken = [{**label_stats(np.zeros(0), errors=40, ds=d), "labels": []} for d in ("2026-11-02", "2026-11-03")]
    window = reference_of([label_stats(rng.beta(2, 5, 400), ds="2026-11-01"), *broken])
    verdicts = by_rule(judge(label_stats(rng.beta(5, 2, 80)), window, MonitorSettings()))
    assert set(verdicts) == {(ERROR_RATE, None), (REFERENCE, None)}
    assert "1 day(s) with values" in verdicts[(REFERENCE, None)].message and "fewer than monitor.min_reference_days 3" in verdicts[(REFERENCE, None)].message
    valued = reference_of([label_stats(rng.beta(2, 5, 200), ds=d) for d in ("2026-11-01", "2026-11-04", "2026-11-05")] + broken)
    assert by_rule(judge(label_stats(rng.beta(5, 2, 80)), valued, MonitorSettings()))[(SCORE_DRIFT, "blurry")].fired


def language_stats(counts: dict[str, int], ds: str = "2026-11-10") -> dict:
    """A day of an open label set (language): each label's confidences, no decisions."""
    rng = np.random.default_rng(len(counts))
    labels = [{"label": label, "rows": n, "decided": 0, "positives": 0, "decision_rate": None, "quantiles": [],
               "histogram": score_histogram(rng.uniform(0.6, 1.0, n), HISTOGRAM_BINS).tolist()} for label, n in counts.items()]
    items = sum(counts.values())
    return {"signal": "language", "model_version": "1", "ds": ds, "run_id": "r", "kind": "label", "job": "backfill", "items": items,
            "error_items": 0, "rows": items, "computed_at": T0, "error_reasons": [], "labels": labels}


def test_an_open_label_sets_mix_of_labels_is_judged() -> None:
    """Language has no decisions: a day all in a language the reference never saw, or one gone from
    the day, moves no label's own scores, and only the mix shows it. Checked against scipy's chi-square."""
    from scipy.stats import chi2_contingency

    reference = reference_of([language_stats({"en": 150, "fr": 60}, ds="2026-11-01")])
    verdicts = by_rule(judge(language_stats({"de": 80}), reference, SETTINGS))
    mix = verdicts[(LABEL_MIX, None)]
    assert mix.fired and "de 0% -> 100%" in mix.message
    expected = chi2_contingency([[150, 60, 0], [0, 0, 80]], correction=False).pvalue
    assert f"p={expected:.2g}" in mix.message
    alike = by_rule(judge(language_stats({"en": 57, "fr": 23}), reference, SETTINGS))[(LABEL_MIX, None)]
    assert not alike.fired and alike.value < SETTINGS.max_psi
    assert (LABEL_MIX, None) not in by_rule(judge(label_stats(np.random.default_rng(0).random(80)),
                                                  reference_of([label_stats(np.random.default_rng(1).random(80), ds="2026-11-01")]), SETTINGS))


def test_the_label_mix_counts_each_labels_rows_not_only_its_finite_scores() -> None:
    """Rows another writer left without a finite score (NaN) still carry their label: a statistics
    row counts them in the label's `rows`, not in its histogram (monitoring.file_summary). A day of
    the reference's mix whose English rows mostly have NaN scores is the same mix; counted from
    the histograms it read as a shift to French and fired."""
    from monitoring.drift import psi

    reference = reference_of([language_stats({"en": 150, "fr": 60}, ds="2026-11-01")])
    day = language_stats({"en": 175, "fr": 70})
    english = next(m for m in day["labels"] if m["label"] == "en")
    english["histogram"] = score_histogram(np.random.default_rng(7).uniform(0.6, 1.0, 35), HISTOGRAM_BINS).tolist()  # 140 NaN scores
    mix = by_rule(judge(day, reference, SETTINGS))[(LABEL_MIX, None)]
    assert not mix.fired, mix.message
    assert mix.value == pytest.approx(psi(np.array([150, 60]), np.array([175, 70])))


def test_the_messages_state_the_thresholds_as_configured_not_rounded_to_a_whole_percent() -> None:
    rng = np.random.default_rng(5)
    settings = MonitorSettings(min_reference_days=1, max_error_rate=0.025, max_decision_rate_change=0.125)
    before = label_stats(rng.beta(2, 5, 400), ds="2026-11-01")
    verdicts = by_rule(judge(label_stats(rng.beta(5, 2, 97), errors=3), reference_of([before]), settings))
    assert verdicts[(ERROR_RATE, None)].fired and "(3.0%; alert above 2.5%)" in verdicts[(ERROR_RATE, None)].message
    assert verdicts[(DECISION_RATE, "blurry")].fired and "band +-12.5%," in verdicts[(DECISION_RATE, "blurry")].message


def test_the_verdicts_are_printed_as_the_tables_hold_them_not_as_markup(capsys) -> None:
    """Found in review: an error reason or label written by another writer went to the console as Rich
    markup: "[nsfw]" vanished, and a "[/]" stopped `monitor` with a traceback before its exit status 5."""
    from jobs.show import print_monitor
    from monitoring.monitor import Judged, MonitorResult
    from monitoring.rules import Verdict

    verdicts = [Verdict("error_rate", True, "30 of 40 items are errors (75.0%; alert above 25%): [/]oops (30)"),
                Verdict("score_drift", False, "a label the reference does not have: not judged", label="[nsfw]")]
    print_monitor(MonitorResult("run", [Judged("labels[x]", "1", "2026-11-01", "none", verdicts, "label", None)], None), every=True)
    out = capsys.readouterr().out
    assert "[/]oops (30)" in out and "[nsfw]" in out and "labels[x] 2026-11-01 compared with none" in out


def test_the_monitor_prints_its_alerts_and_counts_the_rest_unless_asked_for_every_verdict(capsys) -> None:
    """Found in review: a 16-item backfill's monitor printed hundreds of ok rows, where an alert is
    one red row among them; and its "compared with" lines stopped at 20 without a word."""
    from jobs.show import SHOWN_REFERENCES, print_monitor
    from monitoring.monitor import Judged, MonitorResult
    from monitoring.rules import Verdict

    def day(ds: str, fired: bool) -> Judged:
        verdicts = [Verdict("error_rate", fired, f"error rate on {ds}"), Verdict("row_count", False, f"rows on {ds}")]
        return Judged("image_embedding", "1", ds, f"days before {ds}", verdicts, "embedding", None)

    days = [f"2026-10-{d:02d}" for d in range(1, SHOWN_REFERENCES + 4)]
    result = MonitorResult("run", [day(ds, fired=ds == days[-1]) for ds in days], None)
    print_monitor(result)
    out = " ".join(capsys.readouterr().out.split())
    assert f"error rate on {days[-1]}" in out and "ALERT" in out
    assert not any(f"rows on {ds}" in out or f"error rate on {ds}" in out for ds in days[:-1])
    assert f"{2 * len(days) - 1} more verdicts ok or not judged, on {len(days)} signal days" in out
    assert "and 3 more signal days" in out
    print_monitor(result, every=True)
    out = " ".join(capsys.readouterr().out.split())
    assert all(f"rows on {ds}" in out for ds in days) and "more verdicts" not in out


def test_the_days_drift_was_judged_on_leave_out_days_without_a_reference_or_rows() -> None:
    """Found in review: `make eval` said "no alert on 14 ordinary days" where drift could be judged
    on at most 10 of them (the first lack reference days, a small one too few rows)."""
    from monitoring.monitor import Judged, MonitorResult
    from monitoring.rules import EMBEDDING_DRIFT, REFERENCE, SCORE_DRIFT, Verdict

    def day(ds: str, *verdicts: Verdict) -> Judged:
        return Judged("image_embedding", "1", ds, "x", list(verdicts), "embedding", None)

    result = MonitorResult("run", [
        day("2026-11-01", Verdict(REFERENCE, False, "no statistics in the reference window: drift not judged")),
        day("2026-11-02", Verdict(EMBEDDING_DRIFT, False, "12 vectors against 40: too few to judge")),
        day("2026-11-03", Verdict(EMBEDDING_DRIFT, False, "ROC-AUC 0.51", value=0.51, threshold=0.75)),
        day("2026-11-04", Verdict(SCORE_DRIFT, False, "a label the reference does not have: not judged", label="x"),
            Verdict(SCORE_DRIFT, False, "score PSI 0.01", "y", 0.01, 0.2)),
    ], None)
    assert result.drift_judged_days == ["2026-11-03", "2026-11-04"]


@pytest.mark.parametrize("sample", [np.zeros((0, 0), np.float32), None], ids=["empty", "null"])
def test_a_day_of_ok_items_whose_statistics_hold_no_sample_judges_no_drift_saying_why(sample) -> None:
    """Found by reading: a statistics row of ok items with an empty (or null) sample, which another
    writer or an older version could leave, stopped `judge` at numpy's reshape of an empty array."""
    rng = np.random.default_rng(7)
    reference = reference_of([embedding_stats(rng.normal(size=(300, 64)), ds="2026-11-01")])
    day = {**embedding_stats(rng.normal(size=(40, 64))), "sample": sample}  # as `stats_rows` reads it: 40 ok items, no vectors
    verdicts = by_rule(judge(day, reference, SETTINGS))
    assert set(verdicts) == {(ERROR_RATE, None), (EMBEDDING_DRIFT, None)}
    drift = verdicts[(EMBEDDING_DRIFT, None)]
    assert not drift.fired and drift.value is None and "no sampled vectors of its 40 ok items" in drift.message


def test_a_small_day_of_only_error_rows_fires_the_error_rate_where_it_cannot_be_chance() -> None:
    """Found in review: a day of fewer than `min_rows` items was never judged, so a signal failing on
    every one of its 19 items of the day (a small feed, a refresh's new items) said "too few items to
    judge" and exited 0. Below `min_rows` the rate alerts where a binomial test is `max_error_pvalue`
    sure it is above `max_error_rate`: 19 of 19 (p = 0.25^19) does; 2 of 2 (p = 0.0625), 5 of 8 do not."""
    rng = np.random.default_rng(5)
    reference = reference_of([label_stats(rng.random(100), ds="2026-11-01")])
    broken = by_rule(judge(label_stats(np.zeros(0), errors=19), reference, SETTINGS))[(ERROR_RATE, None)]
    assert broken.fired and broken.value == 1.0 and "image is corrupt or truncated (19)" in broken.message
    assert "19 of 19 items are errors" in broken.message and "p=" in broken.message
    for ok, errors in ((0, 2), (3, 5), (19, 0)):
        quiet = by_rule(judge(label_stats(rng.random(ok), errors=errors), reference, SETTINGS))[(ERROR_RATE, None)]
        assert not quiet.fired and "too few" in quiet.message, (ok, errors)
