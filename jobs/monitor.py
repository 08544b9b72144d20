"""The monitor step of the command line: which run, the corpus's items per day for the row-count
rule, then monitoring.monitor, and the items a row-count alert is about. `content-signals
monitor` and `backfill/refresh --monitor`."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

from pyspark.sql import SparkSession

from conf.settings import Settings, UsageError
from jobs.corpus import CorpusSource, check_day, ids_by_day, items_by_day
from lake import delta_io
from monitoring.dashboard import ROWS_SHOWN, write_dashboard
from monitoring.monitor import SIGNAL_TABLES, AlertsFired, MissingItems, MonitorResult, latest_run, monitor_run
from monitoring.rules import ROW_COUNT
from rollout.compare import log_to_mlflow

DASHBOARDS = Path("reports/monitor")  # one page per monitored run, beside the comparisons' reports
EXPERIMENT = "content-signals-monitor"


def corpus_items(spark: SparkSession, settings: Settings) -> Callable[[Sequence[str]], dict[str, int]]:
    """Items per day of the configured corpus, as the jobs count them (one row per id, the
    corpus's latest version), for the days asked: without Spark where that count is the same
    (`CorpusTable.count_items`), else by a Spark job over the corpus's key columns."""
    def count(days: Sequence[str]) -> dict[str, int]:
        source = CorpusSource.of(settings)
        version = source.version()
        counted = source.count_items(days, version)
        return counted if counted is not None else items_by_day(source.keys(spark, version), days)
    return count


def missing_items(spark: SparkSession, settings: Settings, result: MonitorResult) -> dict[tuple[str, str, str], MissingItems]:
    """The items each fired row-count alert is about: the corpus's ids of its day (those of every
    alerting day in one Spark job) less those its signal table holds at its model version; the first
    ROWS_SHOWN of them, as the dashboard lists them."""
    alerted = [j for j, v in result.fired if v.rule == ROW_COUNT]
    if not alerted:
        return {}
    source = CorpusSource.of(settings)
    of_day = ids_by_day(source.keys(spark, source.version()), sorted({j.ds for j in alerted}))
    found = {}
    for j in alerted:
        held = delta_io.read_arrow(settings.table_root(SIGNAL_TABLES[j.kind].name), columns=["content_id"],
                                   where=[("signal", "=", j.signal), ("model_version", "=", j.model_version), ("ds", "=", j.ds)])
        missing = sorted(set(of_day[j.ds]) - set(held["content_id"].to_pylist()))
        found[(j.signal, j.model_version, j.ds)] = MissingItems(len(missing), missing[:ROWS_SHOWN])
    return found


def run_monitor(spark: SparkSession, settings: Settings, run_id: str | None = None, day: str | None = None,
                recompute: bool = False) -> MonitorResult:
    """Monitor `run_id`, or the latest run that wrote `day` (that day only), or the latest run; a
    row-count alert comes with the items it is about."""
    if day is not None:
        check_day(day, "--day")
    run_id = run_id or latest_run(settings, day)
    result = monitor_run(spark, settings, run_id, [day] if day else None, corpus_items(spark, settings), recompute)
    return dataclasses.replace(result, missing=missing_items(spark, settings, result))


def publish_dashboard(settings: Settings, result: MonitorResult) -> tuple[Path, str]:
    """The run's dashboard page under DASHBOARDS, logged to MLflow with the verdicts' values as
    metrics; returns the page and the MLflow run id."""
    page = write_dashboard(settings, result, DASHBOARDS / f"{result.run_id}.html")
    values = {f"{j.signal}.{j.ds}.{v.rule}{'.' + v.label if v.label else ''}": v.value for j in result.judged for v in j.verdicts}
    metrics = {"alerts": len(result.fired), **{k: v for k, v in values.items() if v is not None}}
    run = log_to_mlflow(settings.registry_uri, page, metrics, f"monitor {result.run_id}", settings.registry.artifact_location, experiment=EXPERIMENT)
    return page, run


def raise_on_alerts(results: Sequence[MonitorResult]) -> None:
    """AlertsFired (exit 5) when any monitored run raised an alert."""
    fired = [(r.run_id, j, v) for r in results for j, v in r.fired]
    if fired:
        what = "; ".join(f"{j.signal} {j.ds} {v.rule}{' ' + v.label if v.label else ''}" for _, j, v in fired[:5])
        raise AlertsFired(f"{len(fired)} alert(s) fired on run {', '.join(sorted({r for r, _, _ in fired}))}: {what}"
                          f"{' ...' if len(fired) > 5 else ''} (the alerts table has every verdict)")


# The monitoring evaluation (`make eval`, section "monitoring"): ordinary days must raise no
# alert, each scenario day the alert it is for, on its day, with the shipped thresholds, and its
# drift put down to the right cause: the corpus scenarios' to the corpus, a new model version's
# (computed beside the champion on the last ordinary day, as a shadow run) to the model.
EVAL_DAYS, EVAL_ITEMS_PER_DAY = 14, 30
EXPECTED_ALERTS = {"thumbnails": ("image_embedding", "embedding_drift"), "truncated": ("image_embedding", "error_rate"),
                   "language": ("text_embedding", "embedding_drift"), "model_version": ("text_topics", "score_drift")}
MODEL_SCENARIO = "model_version"
SHIFTED_SIGNAL, TEMPERATURE_FACTOR = "text_topics", 4.0  # the new version's topic softmax is four times as flat


def register_shifted_version(settings: Settings) -> str:
    """A new version of SHIFTED_SIGNAL, its champion's with the temperature TEMPERATURE_FACTOR times
    higher (every score shifts), as its challenger; returns the version."""
    from lake.registry import CHALLENGER, CHAMPION
    from rollout.models import registry_for
    from signals.labels.topics import TEXT_TEMPERATURE

    registry = registry_for(settings)
    champion = registry.resolve(SHIFTED_SIGNAL, CHAMPION)
    temperature = float(champion.params.get("temperature", TEXT_TEMPERATURE)) * TEMPERATURE_FACTOR
    model = registry.register(SHIFTED_SIGNAL, champion.source, {**champion.params, "temperature": temperature},
                              description=f"temperature {temperature}")
    registry.point_alias(SHIFTED_SIGNAL, CHALLENGER, model.version)
    return model.version


def _scenario_run(spark: SparkSession, settings: Settings, scenario: str, last_day: str) -> tuple[str, MonitorResult]:
    """The scenario's day and its monitored run: a corpus scenario's day appended and refreshed, or
    the shifted model version computed beside the champion on the last ordinary day."""
    from jobs.backfill import run_backfill
    from jobs.corpus import Window
    from jobs.refresh import run_refresh
    from lake.registry import CHALLENGER
    from sample_corpus.scenarios import append_scenario_day

    if scenario == MODEL_SCENARIO:
        register_shifted_version(settings)
        return last_day, run_monitor(spark, settings, run_backfill(spark, settings, Window(last_day, last_day), role=CHALLENGER).run_id)
    day = append_scenario_day(settings.lakehouse_root, scenario, EVAL_ITEMS_PER_DAY, settings.sample_corpus.seed)
    return day, run_monitor(spark, settings, run_refresh(spark, settings).run_id)


def evaluate_monitoring(spark: SparkSession, settings: Settings) -> dict:
    """Backfill and monitor EVAL_DAYS ordinary days in a lakehouse beside the profile's, then, in
    a copy of it per scenario, run the scenario and monitor it. Returns the report: alerts on
    ordinary days (should be none), per scenario which alerts fired, whether the expected one did
    on its day and whether every drift alert was put down to the expected cause, and what
    monitoring cost next to the backfill."""
    import shutil
    import time

    from jobs.backfill import run_backfill
    from monitoring.attribution import CORPUS, MODEL
    from monitoring.rules import DRIFT_RULES
    from sample_corpus.scenarios import write_normal_days

    base = settings.model_copy(update={"lakehouse": f"{settings.lakehouse_root}-monitoring"})
    base = base.model_copy(update={"signals": {n: s.model_copy(update={"enabled": s.enabled and n != "text_in_image"})
                                               for n, s in base.signals.items()}})  # OCR is evaluated above, and slow
    if "://" in base.lakehouse_root:
        raise UsageError("the monitoring evaluation copies lakehouses: it needs a local one")
    shutil.rmtree(base.lakehouse_root, ignore_errors=True)
    write_normal_days(base.lakehouse_root, EVAL_DAYS, EVAL_ITEMS_PER_DAY, settings.sample_corpus.seed)
    started = time.monotonic()
    backfill = run_backfill(spark, base)
    backfill_s = time.monotonic() - started
    started = time.monotonic()
    normal = run_monitor(spark, base, backfill.run_id)
    monitor_s = time.monotonic() - started
    report: dict = {
        "normal_days": EVAL_DAYS, "items_per_day": EVAL_ITEMS_PER_DAY, "drift_judged_days": len(normal.drift_judged_days),
        "false_alerts": [f"{j.signal} {j.ds} {v.rule}: {v.message}" for j, v in normal.fired],
        "cost": {"backfill_s": round(backfill_s, 1), "monitor_s": round(monitor_s, 1), "share": round(monitor_s / backfill_s, 3)},
        "scenarios": {},
    }
    last_day = max(j.ds for j in normal.judged)
    for scenario, (signal, rule) in EXPECTED_ALERTS.items():
        copy = base.model_copy(update={"lakehouse": f"{base.lakehouse_root}-{scenario}"})
        shutil.rmtree(copy.lakehouse_root, ignore_errors=True)
        shutil.copytree(base.lakehouse_root, copy.lakehouse_root)
        day, result = _scenario_run(spark, copy, scenario, last_day)
        fired = sorted({(j.signal, j.ds, v.rule, v.cause or "") for j, v in result.fired})
        expected_cause = MODEL if scenario == MODEL_SCENARIO else CORPUS
        causes = sorted({v.cause for _, v in result.fired if v.rule in DRIFT_RULES})
        report["scenarios"][scenario] = {
            "day": day, "expected": f"{signal} {rule}", "caught": (signal, day, rule) in {f[:3] for f in fired},
            "fired": [" ".join(filter(None, f)) for f in fired], "only_on_its_day": all(f[1] == day for f in fired),
            "expected_cause": expected_cause, "drift_causes": causes,
            "attributed_right": causes == [expected_cause] if causes else None,  # None: no drift alert to attribute
        }
    return report
