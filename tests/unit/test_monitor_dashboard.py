"""The dashboard's parts that need no browser: the rows behind an alert are read without the
columns and files the page does not show."""
from __future__ import annotations

import os
from datetime import UTC, datetime
from urllib.parse import unquote

import numpy as np
import pyarrow as pa
import pytest
from embedding_tables import SIGNAL, append, random_vectors, rows

from conf.settings import load_settings
from lake import delta_io
from monitoring import dashboard
from monitoring.monitor import Judged, MonitorResult
from monitoring.rules import EMBEDDING_DRIFT, SCORE_DRIFT, Verdict
from signals.contracts import ALERTS, EMBEDDINGS, SIGNAL_STATS

DAY = "2026-11-04"


def _run_rows(run_id: str, n: int, ds: str = DAY, seed: int = 0) -> pa.Table:
    table = rows([f"{run_id}-{i}" for i in range(n)], random_vectors(n, seed), ds=ds)
    return table.set_column(table.schema.get_field_index("run_id"), "run_id", pa.array([run_id] * n))


def test_the_rows_behind_an_embedding_alert_read_only_the_columns_shown_and_only_the_runs_files(tmp_path, monkeypatch) -> None:
    settings = load_settings("local", [f"lakehouse={tmp_path}"])
    root = settings.table_root(EMBEDDINGS.name)
    append(tmp_path, _run_rows("run-1", 30))
    append(tmp_path, _run_rows("run-0", 7, seed=1))  # the same day, another run: its own file
    append(tmp_path, _run_rows("run-1", 5, ds="2026-11-03", seed=2))  # the run's other day
    for f in delta_io.live_files(root):  # a file the read would open raises FileNotFoundError
        if f.days != (DAY, DAY) or f.num_records == 7:
            os.remove(os.path.join(root, unquote(f.path)))
    with pytest.raises(FileNotFoundError):
        delta_io.read_arrow(root, columns=["content_id"])
    reads: list[pa.Table] = []
    read_arrow = delta_io.read_arrow
    monkeypatch.setattr(delta_io, "read_arrow", lambda *a, **k: reads.append(read_arrow(*a, **k)) or reads[-1])

    page = dashboard._rows_behind(settings, "run-1", 0, Judged(SIGNAL, "1", DAY, "x", [], "embedding", None),
                                  Verdict(EMBEDDING_DRIFT, True, "drift"))

    assert "30 row(s); the first 20:" in page and page.count("<td>run-1-") == 20
    assert [t.column_names for t in reads] == [["content_id", "status", "error"]]  # no vector decoded


def test_label_names_are_drawn_as_written_in_the_decision_rate_legend() -> None:
    """A `$` would start matplotlib's mathtext (an unclosed formula raised when drawn) and a leading
    `_` dropped the label's line from the legend."""
    from matplotlib.figure import Figure

    from rollout.html_report import figure_png

    names = ["$x^$", "_private", "cat"]
    days = [{"ds": d, "labels": [{"label": n, "decided": 10, "positives": i} for i, n in enumerate(names)]} for d in ("a", "b")]
    fig = Figure()
    ax = fig.subplots()
    dashboard._decision_rates(ax, [0, 1], days, [])
    assert figure_png(fig).startswith(b"\x89PNG")  # drawn, mathtext not parsed
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert [t.replace("\\$", "$").lstrip("\u200b") for t in legend] == sorted(names)


TREND_DAYS = [f"2026-11-0{d}" for d in range(1, 7)]
AT = datetime(2026, 11, 7, tzinfo=UTC)


def _topic_stats(run: str, version: str, ds: str, items: int) -> dict:
    return {"signal": "text_topics", "model_version": version, "ds": ds, "run_id": run, "job": "backfill", "kind": "label",
            "rows": items, "items": items, "error_items": 0, "computed_at": AT,
            "labels": [{"label": "food", "rows": items, "decided": items, "positives": 3, "histogram": [items] + [0] * 19}]}


def _topic_verdict(run: str, version: str, ds: str, fired: bool, value: float | None, minute: int) -> dict:
    return {"run_id": run, "signal": "text_topics", "model_version": version, "ds": ds, "rule": SCORE_DRIFT, "label": "food",
            "fired": fired, "value": value, "threshold": 0.25, "message": "", "evaluated_at": AT.replace(minute=minute)}


def _drawn_trend(tmp_path, monkeypatch, stats: list[dict], verdicts: list[dict], judged_run: str, judged_day: str) -> tuple[list, list]:
    """The statistics rows and verdicts the page of `judged_run` draws text_topics' trend from, these kept."""
    settings = load_settings("local", [f"lakehouse={tmp_path}"])
    for contract, rows_ in ((SIGNAL_STATS, stats), (ALERTS, verdicts)):
        for run in sorted({r["run_id"] for r in rows_}):
            delta_io.replace_run_rows(settings.table_root(contract.name), contract,
                                      pa.Table.from_pylist([r for r in rows_ if r["run_id"] == run], schema=contract.schema), run, {})
    drawn: list = []
    monkeypatch.setattr(dashboard, "_trend_figure", lambda signal, kind, chosen, verdicts: drawn.append((chosen, verdicts)) or b"")
    monkeypatch.setattr(dashboard, "image_tag", lambda *a: "")
    result = MonitorResult(judged_run, [Judged("text_topics", "1", judged_day, "x", [], "label", None)], None)
    dashboard.write_dashboard(settings, result, tmp_path / "page.html")
    return drawn[0]


def test_a_signals_trend_shows_the_verdicts_of_its_own_model_version(tmp_path, monkeypatch) -> None:
    """Found in review: the trend took the latest verdict per day, rule and label whatever its model
    version, so a challenger's model drift on a day drew its PSI and an alert mark on the champion's
    trend, where the champion's own verdict that day had not fired."""
    days = TREND_DAYS
    stats = [_topic_stats(run, version, d, 30) for run, version, these in
             (("backfill-1", "1", days[:5]), ("backfill-2", "1", days[5:]), ("challenger-1", "2", days[4:5])) for d in these]
    verdicts = [_topic_verdict("backfill-1", "1", days[4], False, 0.05, 1), _topic_verdict("challenger-1", "2", days[4], True, 3.0, 2)]

    chosen, verdicts = _drawn_trend(tmp_path, monkeypatch, stats, verdicts, "backfill-2", days[5])

    assert [r["model_version"] for r in chosen] == ["1"] * 6
    assert [(v["model_version"], v["value"], v["fired"]) for v in verdicts] == [("1", 0.05, False)]


def test_a_days_trend_point_is_the_verdict_on_the_row_drawn_not_a_later_small_refreshs(tmp_path, monkeypatch) -> None:
    """Found in review: the trend took the latest verdict per day, rule and label whatever its run,
    so a refresh of a few of a day's items monitored after the backfill (its drift "too few to
    judge", no value) erased the backfill's drift alert of that day from the trend, which still
    drew the backfill's row of the day (the day's most items) for its error and decision rates."""
    days = TREND_DAYS
    stats = [_topic_stats("backfill-1", "1", d, 30) for d in days] + [_topic_stats("refresh-1", "1", days[5], 3)]
    verdicts = [_topic_verdict("backfill-1", "1", days[5], True, 0.9, 1), _topic_verdict("refresh-1", "1", days[5], False, None, 2)]

    chosen, verdicts = _drawn_trend(tmp_path, monkeypatch, stats, verdicts, "refresh-1", days[5])

    assert [r["run_id"] for r in chosen] == ["backfill-1"] * 6
    assert [(v["run_id"], v["value"], v["fired"]) for v in verdicts] == [("backfill-1", 0.9, True)]


def _days(n: int) -> list[str]:
    from datetime import date, timedelta

    return [(date(2025, 12, 1) + timedelta(i)).isoformat() for i in range(n)]


@pytest.mark.parametrize("n", [14, 365])
def test_a_trend_names_its_days_far_enough_apart_to_read_and_the_latest_among_them(monkeypatch, n) -> None:
    """Found in review: a year's trend named every day under its axes, 365 dates overprinted into a black band."""
    names = _days(n)
    days = [{"ds": d, "items": 100, "error_items": i % 7, "labels": [{"label": "spam", "decided": 100, "positives": i % 5}]}
            for i, d in enumerate(names)]
    figures: list = []
    figure_png = dashboard.figure_png
    monkeypatch.setattr(dashboard, "figure_png", lambda fig, **kw: figures.append(fig) or figure_png(fig, **kw))

    dashboard._trend_figure("text_safety", "label", days, [])

    fig = figures[0]
    font_px = 7 * fig.dpi / 72  # the tick labels' size, in the figure's pixels
    for ax in fig.axes:
        named = [(tick, label.get_text()) for tick, label in zip(ax.get_xticks(), ax.get_xticklabels())]
        assert [text for _, text in named] == [names[int(tick)] for tick, _ in named] and named[-1][1] == names[-1]
        spots = [ax.transData.transform((tick, 0))[0] for tick, _ in named]
        assert min(b - a for a, b in zip(spots, spots[1:])) >= 1.5 * font_px  # rotated 60°, a line's height apart at least
    if n == 14:
        assert [label.get_text() for label in fig.axes[0].get_xticklabels()] == names  # two weeks: every day named, as before


def test_a_long_runs_page_draws_the_histograms_of_its_alert_days_and_its_latest_only(tmp_path, monkeypatch) -> None:
    """Found in review: a figure of score histograms per judged day made a year's backfill a page of about 12 MB per
    label signal (30 days: 1 MB and 31 images), drawn for minutes."""
    from datetime import UTC, datetime

    from monitoring.monitor import MonitorResult
    from monitoring.reference import LabelReference, Reference
    from monitoring.rules import SCORE_DRIFT
    from signals.contracts import SIGNAL_STATS

    settings = load_settings("local", [f"lakehouse={tmp_path}"])
    days = _days(30)
    histogram = [5] * 20
    stats = [{"signal": "text_safety", "model_version": "1", "ds": d, "run_id": "bf", "job": "backfill", "kind": "label", "rows": 100,
              "items": 100, "error_items": 0, "computed_at": datetime(2026, 1, 1, tzinfo=UTC),
              "labels": [{"label": "spam", "rows": 100, "decided": 100, "positives": 3, "histogram": histogram}]} for d in days]
    delta_io.replace_run_rows(settings.table_root(SIGNAL_STATS.name), SIGNAL_STATS, pa.Table.from_pylist(stats, schema=SIGNAL_STATS.schema), "bf", {})
    window = Reference(("x",), ("1",), 100, 0, 1, {"spam": LabelReference(np.array(histogram), 100, 3, 100)})
    alert_days = {days[2], days[9]}
    judged = [Judged("text_safety", "1", d, "x", [Verdict(SCORE_DRIFT, d in alert_days, "", label="spam")], "label", window) for d in days]
    drawn: list[str] = []
    monkeypatch.setattr(dashboard, "_histogram_figure", lambda j, today: drawn.append(j.ds) or b"")
    monkeypatch.setattr(dashboard, "_rows_behind", lambda *a: "")  # no labels table here: the alerts' rows are not the question

    page = dashboard.write_dashboard(settings, MonitorResult("bf", judged, None), tmp_path / "page.html").read_text()

    assert drawn == sorted(alert_days) + days[-(dashboard.HISTOGRAM_DAYS - 2):]
    assert f"Score histograms of {30 - dashboard.HISTOGRAM_DAYS} other day(s) not drawn" in page


@pytest.mark.parametrize("kind", ["embedding", "label"])
def test_a_dashboard_figure_is_drawn_once(monkeypatch, kind) -> None:
    """A trend laid out (tight_layout) and then saved cropped to its content was drawn twice, most of the dashboard's
    seconds and as many as the monitor's own on the bench's 960-item backfill (benchmarks/README.md)."""
    from matplotlib.figure import Figure

    draws: list = []
    draw = Figure.draw
    monkeypatch.setattr(Figure, "draw", lambda fig, renderer: draws.append(fig) or draw(fig, renderer))
    days = [{"ds": d, "items": 100, "error_items": i % 7, "labels": [{"label": "spam", "decided": 100, "positives": i % 5}]}
            for i, d in enumerate(_days(14))]

    assert dashboard._trend_figure("a_signal", kind, days, []).startswith(b"\x89PNG")
    assert len(draws) == 1


def test_a_dashboard_figure_measures_each_text_once(monkeypatch) -> None:
    """A trend laid out on a default canvas at 100 dpi and drawn on another at the page's 90 measured every text twice
    (57 measurements of its 31 texts, on two renderers), a cost of every `monitor` run's dashboard."""
    from collections import Counter

    from matplotlib.backends.backend_agg import RendererAgg

    measured: Counter = Counter()
    measure = RendererAgg.get_text_width_height_descent
    monkeypatch.setattr(RendererAgg, "get_text_width_height_descent",
                        lambda renderer, s, prop, ismath: measured.update([(s, id(renderer))]) or measure(renderer, s, prop, ismath))
    days = [{"ds": d, "items": 100, "error_items": i % 7, "labels": [{"label": "spam", "decided": 100, "positives": i % 5}]}
            for i, d in enumerate(_days(14))]

    assert dashboard._trend_figure("a_signal", "label", days, []).startswith(b"\x89PNG")
    assert len({renderer for _, renderer in measured}) == 1
    assert set(measured.values()) == {1}
