"""How the session's settings are decided and checked, without starting Spark: spark-submit's
settings win over the profile's, and an executor is judged by whether it can run one task."""
from __future__ import annotations

import pytest
from pyspark import SparkConf

from conf.settings import SparkSettings, UsageError, load_settings
from jobs.session import build_session, can_run_a_task, session_conf, task_needs, unapplied_driver_settings


def test_spark_submit_settings_win_over_the_profile() -> None:
    profile = SparkSettings(master="local[2]", conf={"spark.driver.memory": "4g", "spark.sql.shuffle.partitions": "8"})
    conf = session_conf(profile, {"spark.master": "spark://10.0.0.1:7077", "spark.sql.shuffle.partitions": "200"})
    assert conf["spark.master"] == "spark://10.0.0.1:7077"
    assert conf["spark.sql.shuffle.partitions"] == "200"
    assert "spark.driver.memory" not in conf  # the driver's JVM spark-submit started cannot take the profile's (found in review)
    assert unapplied_driver_settings(profile, {"spark.master": "yarn"}) == {"spark.driver.memory": "4g"}
    assert unapplied_driver_settings(profile, {"spark.driver.memory": "8g"}) == {}  # spark-submit gave its own
    assert session_conf(profile, {})["spark.driver.memory"] == "4g"  # this process starts the JVM: the profile's applies


def test_executors_get_the_object_store_location_but_never_the_credentials(monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.delenv("AWS_REGION", raising=False)
    conf = session_conf(SparkSettings(master="local[2]", conf={"spark.executorEnv.AWS_ALLOW_HTTP": "false"}), {})
    assert conf["spark.executorEnv.AWS_ENDPOINT_URL"] == "http://127.0.0.1:9000"
    assert conf["spark.executorEnv.AWS_ALLOW_HTTP"] == "false"  # the profile's setting wins
    assert not any("SECRET" in key or "secret" in value for key, value in conf.items())
    assert "spark.executorEnv.AWS_REGION" not in conf


def test_without_spark_submit_the_profile_decides() -> None:
    assert session_conf(SparkSettings(master="local[2]"), {})["spark.master"] == "local[2]"
    assert "spark.master" not in session_conf(SparkSettings(master=""), {})


def test_a_profile_without_master_outside_spark_submit_is_a_usage_error(monkeypatch) -> None:
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    with pytest.raises(UsageError, match="spark-submit --master"):
        build_session(SparkSettings(master=""))


def test_an_executor_is_enough_when_it_can_run_one_task() -> None:
    conf = SparkConf(loadDefaults=False).setAll([("spark.task.cpus", "4"), ("spark.task.resource.gpu.amount", "0.5")])
    needs = task_needs(conf)
    assert needs == {"cpus": 4.0, "gpu": 0.5}
    assert can_run_a_task({"cpus": 4.0, "gpu": 1.0}, needs)  # half a GPU per task: one address serves two tasks
    assert not can_run_a_task({"cpus": 4.0}, needs)  # no GPU on the worker
    assert not can_run_a_task({"cpus": 1.0, "gpu": 1.0}, needs)  # fewer cores than a task asks for
    assert can_run_a_task({"cpus": 1.0}, task_needs(SparkConf(loadDefaults=False)))


def test_an_application_whose_executors_start_with_its_tasks_does_not_wait_for_one(monkeypatch) -> None:
    """Under dynamic allocation with no minimum (EMR's and YARN's usual settings), executors are
    asked for only when tasks wait: the session waited spark.executor_wait_s (120 s) for one that
    could not come, then stopped with exit 2 saying a cluster without GPUs never grants one (found
    in review). It does not wait there; with executors to start with, it still does."""
    import jobs.session as session

    waited = []

    class Builder:
        def config(self, key, value):
            return self

        def getOrCreate(self):
            return type("Spark", (), {"sparkContext": type("Context", (), {"setLogLevel": lambda self, level: None})()})()

    monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    monkeypatch.setattr(session, "SparkSession", type("Session", (), {"builder": Builder()}))
    monkeypatch.setattr(session, "await_executor", lambda sc, timeout_s: waited.append(timeout_s))
    dynamic = {"spark.dynamicAllocation.enabled": "true", "spark.dynamicAllocation.shuffleTracking.enabled": "true"}
    session.build_session(SparkSettings(master="yarn", conf=dynamic))
    assert waited == []
    session.build_session(SparkSettings(master="yarn", conf={**dynamic, "spark.dynamicAllocation.minExecutors": "2"}))
    session.build_session(SparkSettings(master="spark://10.0.0.1:7077"))
    assert waited == [120, 120]


@pytest.mark.parametrize("profile", ["cluster", "cluster-cpu"])
def test_a_cluster_profile_leaves_shuffle_partitions_to_the_cluster_and_a_setting_given_still_wins(profile) -> None:
    """base.yaml's 8 shuffle partitions (local[2] x 4) held on the cluster profiles: a refresh's
    copies and dedup's shuffles ran in 8 tasks on any cluster (found in review). A cluster profile
    leaves the setting to the cluster: spark-defaults.conf or --conf (spark-submit's, which win as
    ever), the user's --set, else Spark's own default, which adaptive execution coalesces."""
    key = "spark.sql.shuffle.partitions"
    launched = {"spark.master": "spark://10.0.0.1:7077"}
    settings = load_settings(profile, ["lakehouse=/lh"])
    assert key not in session_conf(settings.spark, launched)
    assert session_conf(settings.spark, {**launched, key: "400"})[key] == "400"  # spark-defaults.conf or --conf
    given = load_settings(profile, ["lakehouse=/lh", f"spark.conf[{key}]=64"])
    assert session_conf(given.spark, launched)[key] == "64"
    assert session_conf(given.spark, {**launched, key: "400"})[key] == "400"  # spark-submit's still win over the profile's
    for local in ("local", "base"):  # local runs as before (the tests and benchmarks count on it)
        assert session_conf(load_settings(local).spark, {})[key] == "8"
