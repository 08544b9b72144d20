"""The monitoring dashboard: one static HTML page per monitored run, for the people who would
rather look than read a table of verdicts. Per signal: the trend over the days of its error rate,
its decision rates and its drift (alert days marked), the run's score histograms against the
reference window's (of its alert days, then its latest: HISTOGRAM_DAYS), and every alert with the rows behind it and the query that reads them all
(a row-count alert: the items missing).
Read from the `signal_stats`, `alerts` and signal tables with delta-rs (no Spark); no asset from
the network, so the page opens offline and travels as an MLflow artifact.

    write_dashboard(settings, result, Path("reports/monitor/<run>.html"))
"""
from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from deltalake import DeltaTable

from conf.settings import Settings
from lake import delta_io
from monitoring.monitor import SIGNAL_TABLES, Judged, MissingItems, MonitorResult, read_stats
from monitoring.reference import choose_rows
from monitoring.rules import DECISION_RATE, EMBEDDING_DRIFT, ERROR_RATE, ROW_COUNT, SCORE_DRIFT, Verdict
from rollout.html_report import agg_figure, figure_png, html_page, html_table, image_tag
from signals.contracts import ALERTS, HISTOGRAM_BINS, STATUS_ERROR

ROWS_SHOWN = 20  # rows (a row-count alert: items missing) listed under an alert; the query beside them reads them all
TREND_LABELS = 6  # decision-rate lines per signal: the labels that alerted first, then by name
HISTOGRAM_LABELS = 12
SCORE_TICKS = (0.0, 0.5, 1.0)
HISTOGRAM_DAYS = 7  # days per signal whose histograms are drawn (a figure each): those with an alert first, then the latest
TREND_TICKS = 14  # days named under a trend at most (every one of two weeks), the latest among them: a year's overprinted one another
HISTORY_COLUMNS = ["signal", "model_version", "run_id", "ds", "items", "error_items", "labels", "computed_at"]
_STYLE = ".alert{color:#b00020;font-weight:600}pre{background:#f6f6f6;padding:.5em;overflow-x:auto}"


def write_dashboard(settings: Settings, result: MonitorResult, path: Path) -> Path:
    """The run's page at `path`: a summary, its alerts (each linked to the rows behind it), and a
    section per signal with its trends and today's histograms against the reference."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    history = read_stats(settings, columns=HISTORY_COLUMNS).to_pylist()
    verdicts = _all_verdicts(settings)
    fired = result.fired
    parts = [f"<p>{len(fired)} alert(s) on run <code>{html.escape(result.run_id)}</code>, lakehouse "
             f"<code>{html.escape(settings.lakehouse_root)}</code>.</p>",
             html_table([[j.signal, j.model_version, j.ds, sum(v.fired for v in j.verdicts), j.reference] for j in result.judged],
                        ["signal", "model version", "day", "alerts", "compared with"]),
             "<h2 id='alerts'>Alerts</h2>"]
    if fired:
        parts.append("<table><thead><tr><th>signal</th><th>day</th><th>rule</th><th>label</th><th>value</th><th>threshold</th>"
                     "<th>cause</th><th>what</th><th>rows</th></tr></thead><tbody>")
        parts += [_alert_row(i, j, v) for i, (j, v) in enumerate(fired)]
        parts.append("</tbody></table>")
    else:
        parts.append("<p class='same'>No alert fired.</p>")
    for signal in sorted({j.signal for j in result.judged}):
        judged = [j for j in result.judged if j.signal == signal]
        parts.append(f"<h2 id='signal-{html.escape(signal)}'>{html.escape(signal)}</h2>")
        mine = [r for r in history if r["signal"] == signal]
        chosen = choose_rows(mine, judged[-1].model_version)
        drawn = {(r["ds"], r["model_version"], r["run_id"]) for r in chosen}  # a day's verdicts on the row drawn: not a challenger's
        # beside it, nor a later refresh's of a few of its items
        parts.append(image_tag(f"{signal}: trends", _trend_figure(signal, judged[-1].kind, chosen, [
            v for v in verdicts if v["signal"] == signal and (v["ds"], v["model_version"], v["run_id"]) in drawn])))
        todays = [(j, today) for j in judged if j.window is not None and j.window.labels
                  and (today := next((r for r in mine if r["run_id"] == result.run_id and r["ds"] == j.ds
                                      and r["model_version"] == j.model_version), None)) and today["labels"]]
        drawn_days = _histogram_days(todays)
        parts += [image_tag(f"{signal} {j.ds}: scores against the reference", _histogram_figure(j, today)) for j, today in drawn_days]
        if len(todays) > len(drawn_days):
            parts.append(f"<p>Score histograms of {len(todays) - len(drawn_days)} other day(s) not drawn (those of the days with "
                         f"an alert first, then the latest, {HISTOGRAM_DAYS} at most): their verdicts are in the table above.</p>")
    for i, (j, v) in enumerate(fired):
        parts.append(_items_missing(i, j, v, result.missing.get((j.signal, j.model_version, j.ds))) if v.rule == ROW_COUNT
                     else _rows_behind(settings, result.run_id, i, j, v))
    path.write_text(html_page(f"Monitoring: run {result.run_id}", parts, _STYLE), encoding="utf-8")
    return path


def _histogram_days(todays: Sequence[tuple[Judged, dict]]) -> list[tuple[Judged, dict]]:
    """The judged days whose histograms are drawn, in day order: a figure per day made a year's
    backfill a page of tens of megabytes per signal, drawn for minutes."""
    ranked = sorted(todays, key=lambda pair: (any(v.fired for v in pair[0].verdicts), pair[0].ds), reverse=True)
    return sorted(ranked[:HISTOGRAM_DAYS], key=lambda pair: pair[0].ds)


def _all_verdicts(settings: Settings) -> list[dict]:
    """Every kept verdict, the latest per (signal, model version, day, run, rule, label): the trend's points are those
    on the statistics row it draws of each day."""
    root = settings.table_root(ALERTS.name)
    if not DeltaTable.is_deltatable(root):
        return []
    latest: dict[tuple, dict] = {}
    for row in delta_io.read_arrow(root).to_pylist():
        key = (row["signal"], row["model_version"], row["ds"], row["run_id"], row["rule"], row["label"])
        if key not in latest or row["evaluated_at"] > latest[key]["evaluated_at"]:
            latest[key] = row
    return list(latest.values())


def _alert_row(index: int, j: Judged, v: Verdict) -> str:
    cells = [j.signal, j.ds, v.rule, v.label or "", _number(v.value), _number(v.threshold), v.cause or "", v.message]
    return ("<tr class='alert'>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells)
            + f"<td><a href='#rows-{index}'>rows</a></td></tr>")


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def _trend_figure(signal: str, kind: str, days: Sequence[dict], verdicts: Sequence[dict]) -> bytes:
    """Error rate, decision rates and drift per day, the days where a rule fired marked in red."""
    names = [r["ds"] for r in days]
    x = list(range(len(names)))
    panels = 2 if kind == "embedding" else 3  # embeddings decide nothing: no decision-rate panel
    fig = agg_figure(figsize=(3.7 * panels, 3))
    axes = list(fig.subplots(1, panels))
    error_ax, drift_ax = axes[0], axes[-1]
    error_ax.plot(x, [r["error_items"] / r["items"] if r["items"] else math.nan for r in days], marker="o")
    error_ax.set_title("error rate")
    _mark_fired(error_ax, names, [v for v in verdicts if v["rule"] == ERROR_RATE and v["fired"]])
    if kind != "embedding":
        _decision_rates(axes[1], x, days, verdicts)
    drift_rule = EMBEDDING_DRIFT if kind == "embedding" else SCORE_DRIFT
    drift = [v for v in verdicts if v["rule"] == drift_rule and v["value"] is not None]
    by_day = {d: max(v["value"] for v in drift if v["ds"] == d) for d in {v["ds"] for v in drift}}
    drift_ax.plot(x, [by_day.get(d, math.nan) for d in names], marker="o", color="tab:purple")
    thresholds = [v["threshold"] for v in drift if v["threshold"] is not None]
    if thresholds:
        drift_ax.axhline(thresholds[-1], color="tab:red", linestyle="--", linewidth=1)
    title = "drift: domain classifier ROC-AUC" if drift_rule == EMBEDDING_DRIFT else "drift: largest score PSI"
    drift_ax.set_title(title if by_day else f"{title}\n(no day judged: too few rows or no reference)", fontsize=9 if not by_day else None)
    _mark_fired(drift_ax, names, [v for v in drift if v["fired"]])
    named = x[::-1][::math.ceil(len(x) / TREND_TICKS) or 1][::-1]  # every step-th day back from the latest
    for ax in axes:
        ax.set_xlim(-0.5, len(names) - 0.5)
        ax.set_xticks(named, labels=[names[i] for i in named], rotation=60, fontsize=7)
    fig.suptitle(_plain(signal))
    fig.tight_layout()
    return figure_png(fig, crop=False)  # laid out: drawn once


def _decision_rates(ax: Any, x: Sequence[int], days: Sequence[dict], verdicts: Sequence[dict]) -> None:
    """Each label's decision rate per day: the labels that alerted first, then by name, TREND_LABELS of them."""
    alerted = sorted({v["label"] for v in verdicts if v["rule"] in (DECISION_RATE, SCORE_DRIFT) and v["fired"] and v["label"]})
    labels = sorted({m["label"] for r in days for m in r["labels"] or [] if m["decided"]}, key=lambda label: (label not in alerted, label))
    for label in labels[:TREND_LABELS]:
        rates = [next((m["positives"] / m["decided"] for m in r["labels"] or [] if m["label"] == label and m["decided"]), math.nan)
                 for r in days]
        ax.plot(x, rates, marker=".", label=_plain(label))
    ax.set_title("decision rate" if labels else "decision rate (no decisions)")
    if labels:
        ax.legend(fontsize=7)


def _plain(text: str) -> str:
    """Text as matplotlib draws it literally: `$` would start mathtext (a bad formula raises) and a
    leading `_` drops a line from its legend."""
    text = text.replace("$", r"\$")
    return "\u200b" + text if text.startswith("_") else text


def _mark_fired(ax: Any, days: Sequence[str], fired: Sequence[dict]) -> None:
    for day in sorted({v["ds"] for v in fired} & set(days)):
        ax.axvline(days.index(day), color="tab:red", alpha=0.3, linewidth=6)


def _histogram_figure(j: Judged, today: dict) -> bytes:
    """Each label's score histogram on the day against the reference window's, as shares of rows."""
    from matplotlib.ticker import MaxNLocator

    fired = {v.label for v in j.verdicts if v.fired and v.label}
    labels = sorted((m for m in today["labels"] if m["label"] in j.window.labels and sum(m["histogram"])),
                    key=lambda m: (m["label"] not in fired, m["label"]))[:HISTOGRAM_LABELS]
    cols = max(1, min(4, len(labels)))
    rows = max(1, math.ceil(len(labels) / cols))
    fig = agg_figure(figsize=(3.2 * cols, 2.4 * rows))
    edges = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
    for i, m in enumerate(labels):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.set_xticks(SCORE_TICKS, labels=[f"{t:g}" for t in SCORE_TICKS] if i >= len(labels) - cols else [])  # shared: named under the last row
        ax.yaxis.set_major_locator(MaxNLocator(3))
        reference = j.window.labels[m["label"]].histogram
        for counts, name, colour in ((reference, "reference", "tab:blue"), (np.asarray(m["histogram"]), j.ds, "tab:orange")):
            ax.stairs(counts / max(1, counts.sum()), edges, fill=True, alpha=0.5, label=name, color=colour)
        ax.set_title(_plain(m["label"]) + (" (alert)" if m["label"] in fired else ""), fontsize=9, color="tab:red" if m["label"] in fired else "black")
        if i == 0:
            ax.legend(fontsize=7)
    fig.suptitle(_plain(f"{j.signal} {j.ds}: scores against {j.reference}"), fontsize=10)
    fig.tight_layout()
    return figure_png(fig, crop=False)  # laid out: drawn once


def _items_missing(index: int, j: Judged, v: Verdict, missing: MissingItems | None) -> str:
    """What a row-count alert is about: the corpus items of its day that its signal has no row of
    (not the rows it has), as `jobs.monitor.missing_items` found them."""
    heading = f"<h3 id='rows-{index}'>Items missing: {html.escape(j.signal)} {html.escape(j.ds)} {html.escape(v.rule)}</h3>"
    back = "<p><a href='#alerts'>back to the alerts</a></p>"
    if missing is None:
        return heading + f"<p>{html.escape(v.message)}; <code>content-signals monitor</code> lists them.</p>" + back
    return (heading + f"<p>{missing.count} corpus item(s) of {html.escape(j.ds)} without a row of {html.escape(j.signal)} at model "
            f"version {html.escape(j.model_version)}; the first {len(missing.first)}:</p>"
            + html_table([[content_id] for content_id in missing.first], ["content_id"])
            + "<p><code>content-signals refresh</code> computes them.</p>" + back)


def _rows_behind(settings: Settings, run_id: str, index: int, j: Judged, v: Verdict) -> str:
    """The rows an alert is about (the run's error rows for an error rate, its rows of the label
    by score for a label's drift, its rows for a drift of its vectors), ROWS_SHOWN of them, and the
    query that reads them all. Only the columns shown are read (never an embedding's vectors), of the
    files whose partition values and statistics may hold the alert's rows."""
    table = SIGNAL_TABLES[j.kind]
    where = [("signal", j.signal), ("model_version", j.model_version), ("ds", j.ds), ("run_id", run_id)]
    if v.rule == ERROR_RATE:
        where.append(("status", STATUS_ERROR))
    if v.label and "label" in table.schema.names:
        where.append(("label", v.label))
    columns = [c for c in ("content_id", "label", "score", "decision", "status", "error") if c in table.schema.names]
    rows = delta_io.read_arrow(settings.table_root(table.name), columns=columns, where=[(c, "=", val) for c, val in where])
    if "score" in columns and v.rule != ERROR_RATE:
        rows = rows.sort_by([("score", "descending")])
    query = (f"import pyarrow.compute as pc\nfrom lake.lakehouse import Lakehouse\n\nrows = Lakehouse({settings.lakehouse_root!r}).pandas(\n"
             f"    {table.name!r}, filters=" + " & ".join(f"(pc.field({c!r}) == {val!r})" for c, val in where) + ")")
    return (f"<h3 id='rows-{index}'>Rows behind: {html.escape(j.signal)} {html.escape(j.ds)} {html.escape(v.rule)}"
            f"{' ' + html.escape(v.label) if v.label else ''}</h3><p>{rows.num_rows} row(s); the first {min(ROWS_SHOWN, rows.num_rows)}:</p>"
            + html_table([list(r.values()) for r in rows.slice(0, ROWS_SHOWN).to_pylist()], columns)
            + f"<p>All of them:</p><pre>{html.escape(query)}</pre><p><a href='#alerts'>back to the alerts</a></p>")

