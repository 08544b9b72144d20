"""Monitoring on the 60-item sample corpus: a backfill's statistics against the rows it wrote
(computed apart, with pyarrow and numpy), then a refresh of an appended day of truncated images:
its image signals raise error-rate alerts on that day only, the command's exit status is 5, the
alerts table keeps the verdicts, and monitoring the run again replaces them."""
from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pytest
from conftest import CHEAP_SIGNALS

from jobs.backfill import run_backfill
from jobs.failures import ALERTED, explain
from jobs.monitor import raise_on_alerts, run_monitor
from jobs.refresh import run_refresh
from lake import delta_io
from monitoring.monitor import AlertsFired, read_stats
from sample_corpus.scenarios import append_scenario_day
from signals.contracts import ALERTS, EMBEDDINGS, HISTOGRAM_BINS, LABELS

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


def test_a_day_of_truncated_images_raises_error_rate_alerts_and_exit_5(spark, fresh_lakehouse) -> None:
    settings = fresh_lakehouse(*CHEAP_SIGNALS)
    backfill = run_backfill(spark, settings)
    quiet = run_monitor(spark, settings, backfill.run_id)
    assert not quiet.fired, [v.message for _, v in quiet.fired]
    _check_stats_against_the_rows(settings, backfill.run_id)

    day = append_scenario_day(settings.lakehouse_root, "truncated", 24, seed=1)
    refresh = run_refresh(spark, settings)
    result = run_monitor(spark, settings, refresh.run_id)
    fired = {(j.signal, j.ds, v.rule) for j, v in result.fired}
    assert fired == {("image_embedding", day, "error_rate"), ("image_quality", day, "error_rate")}
    counted = {(j.signal, v.rule): v for j in result.judged for v in j.verdicts}
    assert not counted[("text_embedding", "row_count")].fired and counted[("text_embedding", "row_count")].value == 24
    assert "image is corrupt or truncated" in counted[("image_embedding", "error_rate")].message
    with pytest.raises(AlertsFired) as raised:
        raise_on_alerts([result])
    assert explain(raised.value).status == ALERTED

    alerts = delta_io.read_arrow(settings.table_root(ALERTS.name), filters=pc.field("run_id") == refresh.run_id)
    assert {(r["signal"], r["ds"], r["rule"]) for r in alerts.to_pylist() if r["fired"]} == fired
    again = run_monitor(spark, settings, refresh.run_id)  # kept statistics, verdicts replaced: never duplicated
    assert len(again.fired) == len(result.fired)
    assert delta_io.read_arrow(settings.table_root(ALERTS.name), filters=pc.field("run_id") == refresh.run_id).num_rows == alerts.num_rows
