"""The monitor step of the command line: which run, the corpus's items per day for the row-count
rule, then monitoring.monitor. `content-signals monitor` and `backfill/refresh --monitor`."""
from __future__ import annotations

from collections.abc import Callable, Sequence

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from conf.settings import Settings, UsageError
from jobs.corpus import CorpusSource, one_row_per_id
from monitoring.monitor import AlertsFired, MonitorResult, latest_run, monitor_run


def corpus_items(spark: SparkSession, settings: Settings) -> Callable[[Sequence[str]], dict[str, int]]:
    """Items per day of the configured corpus, as the jobs count them (one row per id, the
    corpus's latest version), for the days asked."""
    def count(days: Sequence[str]) -> dict[str, int]:
        source = CorpusSource.of(settings)
        version = source.version()
        items = one_row_per_id(source.read(spark, version, days=tuple(days)), source.keys(spark, version))
        return {r["ds"]: r["count"] for r in items.groupBy(F.col("ds").cast("string").alias("ds")).count().collect()}
    return count


def run_monitor(spark: SparkSession, settings: Settings, run_id: str | None = None, day: str | None = None,
                recompute: bool = False) -> MonitorResult:
    """Monitor `run_id`, or the latest run that wrote `day` (that day only), or the latest run."""
    if day is not None and (len(day) != 10 or day[4] != "-" or day[7] != "-"):
        raise UsageError(f"--day {day!r} is not a day (YYYY-MM-DD)")
    run_id = run_id or latest_run(settings, day)
    return monitor_run(spark, settings, run_id, [day] if day else None, corpus_items(spark, settings), recompute)


def raise_on_alerts(results: Sequence[MonitorResult]) -> None:
    """AlertsFired (exit 5) when any monitored run raised an alert."""
    fired = [(r.run_id, j, v) for r in results for j, v in r.fired]
    if fired:
        what = "; ".join(f"{j.signal} {j.ds} {v.rule}{' ' + v.label if v.label else ''}" for _, j, v in fired[:5])
        raise AlertsFired(f"{len(fired)} alert(s) fired on run {', '.join(sorted({r for r, _, _ in fired}))}: {what}"
                          f"{' ...' if len(fired) > 5 else ''} (the alerts table has every verdict)")
