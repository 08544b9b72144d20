"""Build the SparkSession the jobs run on, from the profile's spark settings."""
from __future__ import annotations

import os
import sys

from pyspark.sql import SparkSession

from conf.settings import SparkSettings

BASE_CONF = {
    "spark.ui.showConsoleProgress": "false",  # jobs.progress draws its own bar
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.python.worker.reuse": "true",  # keeps models resident across tasks
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
}


def build_session(settings: SparkSettings) -> SparkSession:
    """A session whose Python workers run this interpreter (or the one PYSPARK_PYTHON names)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(settings.app_name)
    if settings.master:
        builder = builder.master(settings.master)
    conf = {**BASE_CONF, "spark.sql.execution.arrow.maxRecordsPerBatch": str(settings.arrow_batch_rows), **settings.conf}
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
