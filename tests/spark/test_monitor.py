"""Monitoring on the 60-item sample corpus: a backfill's statistics against the rows it wrote
(computed apart, with pyarrow and numpy: counts, histograms, per-dimension mean and std, norm
quantiles, the sample), then, in a copy of that lakehouse per scenario, a refresh of an appended
scenario day. Truncated images: the image signals raise error-rate alerts on that day only, the
command's exit status is 5, the alerts table keeps the verdicts, and monitoring the run again
replaces them; the run's dashboard is rendered in a real headless browser. Thumbnails and
another language: the image, or text, embedding's drift alert on that day, put down to the
corpus. A new model version of the text topics with a flatter softmax, computed beside the
champion on the last day: its scores' drift alert, put down to the model. A day backfilled
again by a new run: the first run's verdicts on it are dropped, monitored or not."""
from __future__ import annotations

import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest
from conftest import CHEAP_SIGNALS, copy_lakehouse, settings_for
from deltalake import DeltaTable

from conf.settings import UsageError
from jobs.backfill import run_backfill
from jobs.failures import ALERTED, explain
from jobs.monitor import raise_on_alerts, run_monitor
from jobs.refresh import run_refresh
from lake import delta_io
from monitoring.dashboard import ROWS_SHOWN, write_dashboard
from monitoring.monitor import AlertsFired, read_stats, stats_of_run
from sample_corpus.scenarios import append_scenario_day
from signals.contracts import ALERTS, EMBEDDINGS, HISTOGRAM_BINS, LABELS, QUANTILES

pytestmark = pytest.mark.spark


def _check_stats_against_the_rows(settings, run_id: str) -> None:
    stats = {(r["signal"], r["ds"]): r for r in read_stats(settings, pc.field("run_id") == run_id).to_pylist()}
    embeddings = delta_io.read_arrow(settings.table_root(EMBEDDINGS.name), filters=pc.field("run_id") == run_id).to_pylist()
    labels = delta_io.read_arrow(settings.table_root(LABELS.name), filters=pc.field("run_id") == run_id).to_pylist()
    assert {(r["signal"], r["ds"]) for r in embeddings + labels} == set(stats)
    for (signal, ds), row in stats.items():
        if row["kind"] == "embedding":
            mine = [r for r in embeddings if (r["signal"], r["ds"]) == (signal, ds)]
            ok = np.array([r["vector"] for r in mine if r["status"] == "ok"], np.float64)
            assert (row["items"], row["error_items"]) == (len(mine), len(mine) - len(ok))
            if len(ok):
                assert np.allclose(row["dim_mean"], ok.mean(axis=0), atol=1e-6)
                assert np.allclose(row["dim_std"], ok.std(axis=0, ddof=1) if len(ok) > 1 else 0.0, atol=1e-6)
                norms = np.sort(np.linalg.norm(ok, axis=1))  # at each quantile the smallest norm at or above it
                assert np.allclose(row["norm_quantiles"], [norms[max(math.ceil(q * len(norms)) - 1, 0)] for q in QUANTILES], atol=1e-6)
                assert len(row["sample"]) == min(len(ok), 256)
                assert {tuple(np.float32(v)) for v in row["sample"]} <= {tuple(np.float32(v)) for v in ok}
            continue
        mine = [r for r in labels if (r["signal"], r["ds"]) == (signal, ds)]
        assert row["items"] == len({r["content_id"] for r in mine})
        assert row["error_items"] == len({r["content_id"] for r in mine if r["status"] == "error"})
        for m in row["labels"]:
            scores = [r["score"] for r in mine if r["label"] == m["label"] and r["status"] == "ok"]
            expected, _ = np.histogram(scores, np.linspace(0, 1, HISTOGRAM_BINS + 1))
            assert m["histogram"] == expected.tolist(), (signal, ds, m["label"])
            decisions = [r["decision"] for r in mine if r["label"] == m["label"] and r["decision"] is not None]
            assert (m["decided"], m["positives"]) == (len(decisions), sum(decisions))


def _check_same_stats(kept, recomputed) -> None:
    """The statistics a run kept as it wrote equal those of its files read again (floats merged
    in another order: to 1e-9)."""
    def rows(table):
        return sorted(({k: v for k, v in r.items() if k != "computed_at"} for r in table.to_pylist()), key=lambda r: (r["signal"], r["ds"]))
    kept_rows, again = rows(kept), rows(recomputed)
    assert [(r["signal"], r["ds"]) for r in kept_rows] == [(r["signal"], r["ds"]) for r in again] and kept_rows
    for a, b in zip(kept_rows, again):
        close = ("dim_mean", "dim_std", "norm_quantiles")
        assert {k: v for k, v in a.items() if k not in close} == {k: v for k, v in b.items() if k not in close}
        for k in close:
            assert (a[k] is None and b[k] is None) or np.allclose(a[k], b[k], rtol=0, atol=1e-9), k


BROWSER = "chromium-headless-shell"  # Debian's; `make install` installs it
# Run in the page once it has loaded: every image's decoded width, so a broken PNG shows as 0.
IMAGE_WIDTHS = ("<script>addEventListener('load', () => document.body.dataset.widths = "
                "[...document.images].map(i => i.naturalWidth).join(','))</script>")


def _rendered(page: Path) -> str:
    """The page's DOM as a headless Chromium has it after loading (scripts run, images decoded)."""
    if shutil.which(BROWSER) is None:
        pytest.skip(f"{BROWSER} is not installed (make install installs it with apt where it can)")
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text().replace("</body>", IMAGE_WIDTHS + "</body>"))
    done = subprocess.run([BROWSER, "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                          capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


def _check_dashboard(settings, result, day: str, folder: Path) -> None:
    page = write_dashboard(settings, result, folder / "dashboard.html")
    source = page.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", source), "the page fetches nothing from the network"
    dom = _rendered(page)
    widths = re.search(r'data-widths="([^"]*)"', dom).group(1).split(",")
    judged_signals = {j.signal for j in result.judged}
    assert len(widths) >= len(judged_signals) and all(int(w) > 0 for w in widths), widths  # a trend per signal, all drawn
    for signal in judged_signals:
        assert f'id="signal-{signal}"' in dom
    for i, (j, _) in enumerate(result.fired):  # each alert's row links to the rows behind it, which are there
        assert f'href="#rows-{i}"' in dom and f'id="rows-{i}"' in dom
        behind = dom.split(f'id="rows-{i}"')[1].split("<h3")[0]
        error_rows = delta_io.read_arrow(settings.table_root(EMBEDDINGS.name if j.kind == "embedding" else LABELS.name),
                                         filters=(pc.field("signal") == j.signal) & (pc.field("ds") == day) & (pc.field("status") == "error"))
        assert f"{error_rows.num_rows} row(s)" in behind
        listed = sum(f">{content_id}<" in behind for content_id in error_rows["content_id"].to_pylist())
        assert listed == min(ROWS_SHOWN, error_rows.num_rows)  # the rows shown are error rows of that day, as many as are shown


@pytest.fixture(scope="module")
def watched(spark, cheap_backfilled, tmp_path_factory):
    """The sample corpus backfilled with the cheap signals (a copy of the shared backfill), its
    statistics checked. Read only: a test copies it (`_copy`)."""
    settings = copy_lakehouse(cheap_backfilled, tmp_path_factory.mktemp("watched") / "lakehouse", *CHEAP_SIGNALS)
    (backfill,) = set(delta_io.read_arrow(settings.table_root("runs"))["run_id"].to_pylist())
    quiet = run_monitor(spark, settings, backfill)
    assert not quiet.fired, [v.message for _, v in quiet.fired]
    _check_stats_against_the_rows(settings, backfill)  # kept by the backfill as it wrote its rows
    kept = read_stats(settings, pc.field("run_id") == backfill)
    _check_same_stats(kept, stats_of_run(spark, settings, backfill, recompute=True))  # its files read again
    return settings


def _copy(settings, tmp_path: Path, *overrides: str):
    """A writable copy of a lakehouse (tables and registry), with the same overrides and these."""
    return copy_lakehouse(settings, tmp_path / "lakehouse", *CHEAP_SIGNALS, *overrides)


def test_a_day_of_truncated_images_raises_error_rate_alerts_and_exit_5(spark, watched, tmp_path) -> None:
    settings = _copy(watched, tmp_path)
    day = append_scenario_day(settings.lakehouse_root, "truncated", 24, seed=1)
    refresh = run_refresh(spark, settings)
    result = run_monitor(spark, settings, refresh.run_id)
    fired = {(j.signal, j.ds, v.rule) for j, v in result.fired}
    assert fired == {("image_embedding", day, "error_rate"), ("image_quality", day, "error_rate")}
    counted = {(j.signal, v.rule): v for j in result.judged for v in j.verdicts}
    assert not counted[("text_embedding", "row_count")].fired and counted[("text_embedding", "row_count")].value == 24
    assert "image is corrupt or truncated" in counted[("image_embedding", "error_rate")].message
    _check_stats_against_the_rows(settings, refresh.run_id)
    _check_dashboard(settings, result, day, tmp_path)
    with pytest.raises(AlertsFired) as raised:
        raise_on_alerts([result])
    assert explain(raised.value).status == ALERTED

    alerts = delta_io.read_arrow(settings.table_root(ALERTS.name), filters=pc.field("run_id") == refresh.run_id)
    assert {(r["signal"], r["ds"], r["rule"]) for r in alerts.to_pylist() if r["fired"]} == fired
    again = run_monitor(spark, settings, refresh.run_id)  # kept statistics, verdicts replaced: never duplicated
    assert len(again.fired) == len(result.fired)
    assert delta_io.read_arrow(settings.table_root(ALERTS.name), filters=pc.field("run_id") == refresh.run_id).num_rows == alerts.num_rows


@pytest.mark.parametrize(("scenario", "signal"), [("thumbnails", "image_embedding"), ("language", "text_embedding")])
def test_a_corpus_scenario_raises_its_embeddings_drift_alert_on_its_day_put_down_to_the_corpus(spark, watched, tmp_path, scenario, signal) -> None:
    settings = _copy(watched, tmp_path)
    day = append_scenario_day(settings.lakehouse_root, scenario, 24, seed=1)
    result = run_monitor(spark, settings, run_refresh(spark, settings).run_id)
    fired = {(j.signal, j.ds, v.rule, v.cause) for j, v in result.fired}
    assert (signal, day, "embedding_drift", "corpus") in fired, fired
    assert {ds for _, ds, _, _ in fired} == {day}


def test_a_new_model_versions_shifted_scores_raise_score_drift_put_down_to_the_model(spark, watched, tmp_path) -> None:
    from jobs.corpus import Window
    from jobs.monitor import SHIFTED_SIGNAL, register_shifted_version
    from lake.registry import CHALLENGER

    only_topics = [f"signals.{name}.enabled={'true' if name == SHIFTED_SIGNAL else 'false'}"
                   for name in ("image_embedding", "text_embedding", "image_quality", SHIFTED_SIGNAL)]
    settings = _copy(watched, tmp_path, *only_topics)
    last_day = append_scenario_day(settings.lakehouse_root, "normal", 24, seed=1)  # enough items on one day to judge
    run_backfill(spark, settings)  # the champion on every day: the reference
    register_shifted_version(settings)
    shadow = run_backfill(spark, settings, Window(last_day, last_day), role=CHALLENGER)
    result = run_monitor(spark, settings, shadow.run_id)
    fired = {(j.signal, j.ds, v.rule, v.cause) for j, v in result.fired}
    assert (SHIFTED_SIGNAL, last_day, "score_drift", "model") in fired, fired
    assert {cause for *_, cause in fired} == {"model"}


def test_items_added_to_a_monitored_day_raise_row_count_alerts_that_name_them(spark, watched, tmp_path) -> None:
    """Items arriving late in a day the backfill computed: each signal's row count falls short on that
    day, and the alert's dashboard section lists the items missing. Until review it listed the rows
    the table held, every one of them not what the alert was about."""
    from monitoring.monitor import MissingItems

    settings = _copy(watched, tmp_path)
    (backfill,) = set(delta_io.read_arrow(settings.table_root("runs"))["run_id"].to_pylist())
    day = max(delta_io.read_arrow(settings.table_root(EMBEDDINGS.name), columns=["ds"])["ds"].to_pylist())
    append_scenario_day(settings.lakehouse_root, "normal", 3, seed=5, day=day)
    late = sorted(f"normal-{day}-{i:04d}" for i in range(3))

    result = run_monitor(spark, settings, backfill)
    fired = {(j.signal, j.ds, v.rule) for j, v in result.fired}
    assert fired == {(j.signal, day, "row_count") for j in result.judged if j.ds == day}
    assert result.missing == {(j.signal, j.model_version, day): MissingItems(3, late) for j in result.judged if j.ds == day}
    page = write_dashboard(settings, result, tmp_path / "dashboard.html").read_text()
    for i in range(len(result.fired)):
        section = page.split(f"id='rows-{i}'")[1].split("<h3")[0]
        assert "3 corpus item(s)" in section and all(f"<td>{content_id}</td>" in section for content_id in late)
        assert section.count("<td>") == len(late)  # the items missing, none of the rows the table holds


def test_a_rerun_backfill_of_a_day_supersedes_the_first_runs_verdicts_on_it(spark, watched, tmp_path) -> None:
    """A day of truncated images refreshed and monitored (error-rate alerts), then its images fixed
    and the day backfilled again by a new run: the first run's rows of that day are gone, so its
    verdicts on them must not stay in `alerts` as the day's latest, whether or not the new run is
    monitored, nor come back when the first run is monitored again."""
    from deltalake import write_deltalake

    from jobs.corpus import Window
    from sample_corpus.scenarios import scenario_day
    from signals.contracts import CORPUS

    settings = _copy(watched, tmp_path)
    day = append_scenario_day(settings.lakehouse_root, "truncated", 24, seed=1)
    first = run_refresh(spark, settings).run_id
    assert {(j.signal, v.rule) for j, v in run_monitor(spark, settings, first).fired} == {("image_embedding", "error_rate"), ("image_quality", "error_rate")}
    write_deltalake(settings.table_root(CORPUS.name), scenario_day("normal", day, 24, seed=1), mode="overwrite",
                    predicate=f"ds = '{day}'", partition_by=list(CORPUS.partition_by))  # the day's images fixed
    second = run_backfill(spark, settings, Window(day, day)).run_id

    def verdicts_of_the_day() -> list[dict]:
        return delta_io.read_arrow(settings.table_root(ALERTS.name), filters=pc.field("ds") == day).to_pylist()

    def runs_with_rows() -> set[tuple[str, str, str]]:  # (signal, model version, run) of the rows the day holds now
        rows = [r for c in (EMBEDDINGS, LABELS) for r in delta_io.read_arrow(settings.table_root(c.name), filters=pc.field("ds") == day,
                                                                           columns=["signal", "model_version", "run_id"]).to_pylist()]
        return {(r["signal"], r["model_version"], r["run_id"]) for r in rows}

    assert {r for _, _, r in runs_with_rows()} == {second}
    assert verdicts_of_the_day() == []  # the new run, not monitored: no verdict of the first run's gone rows stays
    result = run_monitor(spark, settings, second)
    kept = verdicts_of_the_day()
    assert {r["run_id"] for r in kept} == {second} and {(r["signal"], r["model_version"], r["run_id"]) for r in kept} == runs_with_rows()
    assert {(r["signal"], r["rule"], r["label"]) for r in kept if r["fired"]} == {(j.signal, v.rule, v.label) for j, v in result.fired}
    assert not any(r["fired"] for r in kept if r["rule"] == "error_rate")  # the images fixed: no error-rate alert stays
    with pytest.raises(UsageError, match="wrote no signal rows"):  # its statistics of the day went with its rows
        run_monitor(spark, settings, first)
    assert sorted(verdicts_of_the_day(), key=repr) == sorted(kept, key=repr)


@pytest.mark.parametrize("die_in", ["keep_run_stats", "drop_superseded"])
def test_a_rerun_backfill_killed_after_its_commits_has_its_retry_drop_the_first_runs_verdicts(spark, watched, tmp_path, monkeypatch,
                                                                                                die_in) -> None:
    """Found in review: a backfill of a day again killed after its commits, before it kept its statistics or dropped
    those and the verdicts of the run it replaced, was recognised by its retry (the same run id) as done and
    skipped, so the first run's verdicts on rows that are gone stayed the day's latest, and its statistics the
    day's reference, until someone monitored the new run."""
    from jobs import engine
    from jobs.corpus import Window

    settings = _copy(watched, tmp_path)
    day = append_scenario_day(settings.lakehouse_root, "truncated", 24, seed=1)
    first = run_refresh(spark, settings).run_id
    assert run_monitor(spark, settings, first).fired
    real = getattr(engine, die_in)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt(f"killed in {die_in}, after the run's commits")

    monkeypatch.setattr(engine, die_in, killed)
    with pytest.raises(KeyboardInterrupt):
        run_backfill(spark, settings, Window(day, day), run_id="again")
    monkeypatch.setattr(engine, die_in, real)
    committed = {c.name: DeltaTable(settings.table_root(c.name)).version() for c in (EMBEDDINGS, LABELS)}
    assert run_backfill(spark, settings, Window(day, day), run_id="again").status == "skipped"  # the retry: nothing computed twice
    assert {c.name: DeltaTable(settings.table_root(c.name)).version() for c in (EMBEDDINGS, LABELS)} == committed
    assert delta_io.read_arrow(settings.table_root(ALERTS.name), filters=pc.field("ds") == day).num_rows == 0
    kept = read_stats(settings, pc.field("ds") == day)
    assert set(kept["run_id"].to_pylist()) == {"again"}  # the first run's statistics of the day went with its rows
    _check_stats_against_the_rows(settings, "again")


@pytest.mark.parametrize("die_in", [None, "drop_superseded"])
def test_a_day_a_refresh_took_down_whole_keeps_no_statistics_or_verdicts_of_it(spark, watched, tmp_path, monkeypatch, die_in) -> None:
    """Every item of a monitored day taken down and refreshed away: the refresh wrote no row of that
    day, so it kept no statistics there, and the first run's statistics and verdicts of the day
    stayed (as the day's latest verdicts and as a reference) about rows that are gone; so too where
    the refresh was killed before dropping them and its retry found its commits made."""
    from jobs import engine
    from signals.contracts import CORPUS

    settings = _copy(watched, tmp_path)
    day = append_scenario_day(settings.lakehouse_root, "truncated", 24, seed=1)
    first = run_refresh(spark, settings).run_id
    assert run_monitor(spark, settings, first).fired
    DeltaTable(settings.table_root(CORPUS.name)).delete(f"ds = '{day}'")
    if die_in is not None:
        def killed(*args, **kwargs):
            raise KeyboardInterrupt(f"killed in {die_in}, after the run's commits")

        monkeypatch.setattr(engine, die_in, killed)
        with pytest.raises(KeyboardInterrupt):
            run_refresh(spark, settings, run_id="takedown")
        monkeypatch.undo()
    run_refresh(spark, settings, run_id="takedown")

    for contract in (EMBEDDINGS, LABELS):
        assert delta_io.read_arrow(settings.table_root(contract.name), filters=pc.field("ds") == day).num_rows == 0
    assert read_stats(settings, pc.field("ds") == day).num_rows == 0
    assert delta_io.read_arrow(settings.table_root(ALERTS.name), filters=pc.field("ds") == day).num_rows == 0
    assert read_stats(settings, pc.field("ds") != day).num_rows == read_stats(watched).num_rows  # the other days' are kept


def test_a_reference_day_backfilled_again_is_described_by_the_new_runs_rows(spark, watched, tmp_path) -> None:
    """The pinned reference day, first of truncated images, is fixed with fewer items and backfilled
    again: the next day is compared with the rows the day holds now (the new run's statistics), not
    with the first run's, which had the most items but describe error rows that are gone."""
    from deltalake import write_deltalake

    from jobs.corpus import Window
    from sample_corpus.scenarios import scenario_day
    from signals.contracts import CORPUS

    settings = _copy(watched, tmp_path)
    day = append_scenario_day(settings.lakehouse_root, "truncated", 24, seed=1)
    run_refresh(spark, settings)
    write_deltalake(settings.table_root(CORPUS.name), scenario_day("normal", day, 20, seed=1), mode="overwrite",
                    predicate=f"ds = '{day}'", partition_by=list(CORPUS.partition_by))
    run_backfill(spark, settings, Window(day, day))
    later = append_scenario_day(settings.lakehouse_root, "normal", 24, seed=2)
    pinned = settings_for(settings.lakehouse_root, *CHEAP_SIGNALS, f"monitor.reference_day={day}")
    result = run_monitor(spark, pinned, run_refresh(spark, pinned).run_id)
    held = delta_io.read_arrow(settings.table_root(EMBEDDINGS.name), filters=(pc.field("ds") == day) & (pc.field("signal") == "image_embedding"))
    (image,) = [j for j in result.judged if (j.signal, j.ds) == ("image_embedding", later)]
    errors = held.filter(pc.field("status") == "error").num_rows
    assert (image.window.items, image.window.error_items) == (held.num_rows, errors) and held.num_rows == 20 and errors < 20
    assert not any("holds only error rows" in v.message for v in image.verdicts)  # the first run's truncated images
