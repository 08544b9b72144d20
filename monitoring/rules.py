"""The alert rules of `monitor:` in the configuration, judged on one signal's statistics of one
day against its reference: pure (dicts and numpy in, verdicts out), tested without Spark.

Rules: `error_rate` (error items / items above `max_error_rate`; on a day of fewer than `min_rows` items, only where a
binomial test is `max_error_pvalue` sure of it), `row_count` (fewer items in
the table than in the corpus that day), `score_drift` (a label's score PSI above `max_psi` with
a KS p-value below `max_ks_pvalue`), `decision_rate` (a label's decision rate outside the
reference's +- `max_decision_rate_change`, with a two-proportion p-value below
`max_decision_pvalue`), `label_mix` (an open label set's, language's, shares of its labels: PSI
above `max_psi` with a chi-square p-value below `max_ks_pvalue`), `embedding_drift` (a domain
classifier's ROC-AUC above `max_domain_auc`). A drift or decision rate of fewer than `min_rows` values on either side is
not judged: the verdict says so, and does not fire.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from conf.settings import MonitorSettings
from monitoring.drift import binned_ks, domain_auc, errors_above_rate_pvalue, homogeneity_pvalue, psi, two_proportion_pvalue
from monitoring.reference import Reference

ERROR_RATE, ROW_COUNT, SCORE_DRIFT, DECISION_RATE, LABEL_MIX, EMBEDDING_DRIFT, REFERENCE = (
    "error_rate", "row_count", "score_drift", "decision_rate", "label_mix", "embedding_drift", "reference")
DRIFT_RULES = (SCORE_DRIFT, DECISION_RATE, LABEL_MIX, EMBEDDING_DRIFT)


@dataclass(frozen=True)
class Verdict:
    """One rule judged on one signal's day: whether it fired, on what value, and why, in words."""

    rule: str
    fired: bool
    message: str
    label: str | None = None
    value: float | None = None
    threshold: float | None = None
    cause: str | None = None  # drift: "corpus", "model" or "unknown" (monitoring/attribution.py)


def _few(n: int, settings: MonitorSettings) -> bool:
    return n < settings.min_rows


def error_rate(stats: dict, settings: MonitorSettings) -> Verdict:
    items, errors = stats["items"], stats["error_items"]
    rate = errors / items if items else 0.0
    reasons = "; ".join(f"{r['reason']} ({r['count']})" for r in stats.get("error_reasons") or [])
    if _few(items, settings):  # a small day alerts only where its errors cannot be chance: every item of 19 failing is no noise
        p = errors_above_rate_pvalue(errors, items, settings.max_error_rate)
        fired = p < settings.max_error_pvalue
        allowed = f"{settings.max_error_rate * 100:g}%"
        if fired:
            said = f"{rate:.1%}; fewer than {settings.min_rows} items, yet a binomial test is sure (p={p:.2g}) the rate is above {allowed}"
        else:
            said = f"too few items to judge; binomial p={p:.2g} against a rate of at most {allowed}"
        return Verdict(ERROR_RATE, fired, f"{errors} of {items} items are errors ({said})" + (f": {reasons}" if reasons and fired else ""),
                       value=rate, threshold=settings.max_error_rate)
    fired = rate > settings.max_error_rate
    return Verdict(ERROR_RATE, fired, f"{errors} of {items} items are errors ({rate:.1%}; alert above {settings.max_error_rate * 100:g}%)"
                   + (f": {reasons}" if reasons and fired else ""), value=rate, threshold=settings.max_error_rate)


def row_count(table_items: int, corpus_items: int) -> Verdict:
    fired = table_items < corpus_items
    return Verdict(ROW_COUNT, fired, f"{table_items} items in the table for {corpus_items} in the corpus"
                   + (f": {corpus_items - table_items} missing" if fired else ""), value=float(table_items), threshold=float(corpus_items))


def label_rules(stats: dict, reference: Reference, settings: MonitorSettings, cause: str) -> list[Verdict]:
    """score_drift and decision_rate of each label the day and its reference both have."""
    verdicts = []
    for m in stats.get("labels") or []:
        ref = reference.labels.get(m["label"])
        if ref is None:
            verdicts.append(Verdict(SCORE_DRIFT, False, "a label the reference does not have: not judged", label=m["label"]))
            continue
        current = np.asarray(m["histogram"], np.int64)
        n, n_ref = int(current.sum()), int(ref.histogram.sum())
        if _few(n, settings) or _few(n_ref, settings):
            verdicts.append(Verdict(SCORE_DRIFT, False, f"{n} scores against {n_ref}: too few to judge", label=m["label"]))
        else:
            value = psi(ref.histogram, current)
            ks, p = binned_ks(ref.histogram, current)
            fired = value > settings.max_psi and p < settings.max_ks_pvalue
            verdicts.append(Verdict(SCORE_DRIFT, fired, f"score PSI {value:.3f} (alert above {settings.max_psi}), KS {ks:.3f} "
                                    f"p={p:.2g} on {n} scores against {n_ref}", m["label"], value, settings.max_psi, cause if fired else None))
        if m["decided"] == 0 and ref.decided == 0:
            continue  # an open label set (language) has no decisions
        if _few(m["decided"], settings) or _few(ref.decided, settings):
            verdicts.append(Verdict(DECISION_RATE, False, f"{m['decided']} decisions against {ref.decided}: too few to judge", label=m["label"]))
            continue
        rate, ref_rate = m["positives"] / m["decided"], ref.positives / ref.decided
        p = two_proportion_pvalue(ref.positives, ref.decided, m["positives"], m["decided"])
        fired = abs(rate - ref_rate) > settings.max_decision_rate_change and p < settings.max_decision_pvalue
        verdicts.append(Verdict(DECISION_RATE, fired, f"decision rate {rate:.1%} against {ref_rate:.1%} "
                                f"(band +-{settings.max_decision_rate_change * 100:g}%, p={p:.2g})", m["label"], abs(rate - ref_rate),
                                settings.max_decision_rate_change, cause if fired else None))  # value and threshold: both a change
    mix = label_mix(stats, reference, settings, cause)
    return verdicts if mix is None else [*verdicts, mix]


def label_mix(stats: dict, reference: Reference, settings: MonitorSettings, cause: str) -> Verdict | None:
    """An open label set's (language's: no decisions) shares of its labels against the reference's,
    labels new to the day or gone from it included; None for a set with decisions (decision_rate
    judges each of its labels). Counted in rows, not finite scores: a row another writer left a NaN
    score still carries its label."""
    day = {m["label"]: m["rows"] for m in stats.get("labels") or [] if not m["decided"]}
    if len(day) < len(stats.get("labels") or []) or any(r.decided for r in reference.labels.values()):
        return None
    labels = sorted(day.keys() | reference.labels.keys())
    before = np.array([reference.labels[label].rows if label in reference.labels else 0 for label in labels])
    now = np.array([day.get(label, 0) for label in labels])
    if _few(int(now.sum()), settings) or _few(int(before.sum()), settings):
        return Verdict(LABEL_MIX, False, f"{now.sum()} labelled rows against {before.sum()}: too few to judge")
    value, p = psi(before, now), homogeneity_pvalue(before, now)
    fired = value > settings.max_psi and p < settings.max_ks_pvalue
    moved = int(np.argmax(np.abs(now / now.sum() - before / before.sum())))
    return Verdict(LABEL_MIX, fired, f"label shares PSI {value:.3f} (alert above {settings.max_psi}), chi-square p={p:.2g}; most moved: "
                   f"{labels[moved]} {before[moved] / before.sum():.0%} -> {now[moved] / now.sum():.0%}", value=value,
                   threshold=settings.max_psi, cause=cause if fired else None)


def embedding_rule(sample: np.ndarray, reference: Reference, settings: MonitorSettings, cause: str) -> Verdict:
    n, n_ref = len(sample), len(reference.sample)
    if _few(n, settings) or _few(n_ref, settings):
        return Verdict(EMBEDDING_DRIFT, False, f"{n} vectors against {n_ref}: too few to judge")
    if sample.shape[1] != reference.sample.shape[1]:
        return Verdict(EMBEDDING_DRIFT, True, f"vectors of {sample.shape[1]} dimensions against {reference.sample.shape[1]}",
                       value=1.0, threshold=settings.max_domain_auc, cause=cause)
    auc = domain_auc(reference.sample, sample, settings.seed)
    fired = not math.isnan(auc) and auc > settings.max_domain_auc
    return Verdict(EMBEDDING_DRIFT, fired, f"a classifier tells the day's vectors from the reference's with ROC-AUC {auc:.3f} "
                   f"(alert above {settings.max_domain_auc}; {n} vectors against {n_ref})", value=auc, threshold=settings.max_domain_auc,
                   cause=cause if fired else None)


def judge(stats: dict, reference: Reference | None, settings: MonitorSettings, cause: str = "corpus",
          completeness: tuple[int, int] | None = None) -> list[Verdict]:
    """Every rule on one signal's statistics of one day (`stats`: a `signal_stats` row), against
    its reference (None: the window holds no statistics), the table's and the corpus's items of
    that day where known (`completeness`), and the drift's cause where versions differ."""
    verdicts = [error_rate(stats, settings)]
    if completeness is not None:
        verdicts.append(row_count(*completeness))
    if reference is None:
        return [*verdicts, Verdict(REFERENCE, False, "no statistics in the reference window: drift not judged")]
    if stats["items"] == stats["error_items"]:
        return [*verdicts, Verdict(REFERENCE, False, "only error rows: no values to compare with the reference")]
    if not reference.days_with_values:
        return [*verdicts, Verdict(REFERENCE, False, f"the reference ({reference.describe()}) holds only error rows: drift not judged")]
    if settings.reference_day is None and reference.days_with_values < settings.min_reference_days:
        return [*verdicts, Verdict(REFERENCE, False, f"the reference holds {reference.days_with_values} day(s) with values "
                                                     f"({reference.describe()}), fewer than monitor.min_reference_days "
                                                     f"{settings.min_reference_days}: drift not judged")]
    if stats["kind"] == "embedding":
        sample = np.asarray([] if stats.get("sample") is None else stats["sample"], np.float32)
        if not sample.size:  # ok items without a sample: another writer's (or an older version's) row, not reshaped into a traceback
            return [*verdicts, Verdict(EMBEDDING_DRIFT, False, f"the day's statistics hold no sampled vectors of its "
                                                               f"{stats['items'] - stats['error_items']} ok items: drift not judged")]
        return [*verdicts, embedding_rule(sample.reshape(len(sample), -1), reference, settings, cause)]
    return [*verdicts, *label_rules(stats, reference, settings, cause)]
