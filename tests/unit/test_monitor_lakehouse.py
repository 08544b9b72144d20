"""Monitoring on a lakehouse made here with delta-rs (statistics kept, no Spark job): bad input
gives a usage error that says what to do, and a new model version's drift is put down to the
model when the two versions disagree on the same items, to the corpus when they agree."""
from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable, write_deltalake
from embedding_tables import SIGNAL, append, delete, random_vectors, rows
from test_monitor_rules import label_stats

from conf.settings import UsageError, load_settings
from lake import delta_io
from monitoring.attribution import attribute
from monitoring.monitor import latest_run, monitor_run, read_stats, rows_are_items, stats_rows, table_items
from signals.contracts import ALERTS, EMBEDDINGS, LABELS, SIGNAL_STATS

DAYS = ["2026-11-01", "2026-11-02", "2026-11-03"]


def _settings(tmp_path, *overrides: str):
    return load_settings("local", [f"lakehouse={tmp_path}", *overrides])


def _keep(settings, rows: list[dict]) -> None:
    for run_id in {r["run_id"] for r in rows}:
        mine = [{**r, "error_rate": None, "computed_at": datetime(2026, 11, 5, tzinfo=UTC)} for r in rows if r["run_id"] == run_id]
        delta_io.replace_run_rows(settings.table_root(SIGNAL_STATS.name), SIGNAL_STATS,
                                  pa.Table.from_pylist(mine, schema=SIGNAL_STATS.schema), run_id, {})


def _label_rows(version: str, scores: np.ndarray, day: str = "2026-11-04") -> list[dict]:
    return [{"content_id": f"pin-{i}", "signal": "image_quality", "label": "blurry", "score": float(s), "threshold": 0.5,
             "decision": bool(s >= 0.5), "detail": None, "model_name": "rules", "model_version": version, "input_hash": "h",
             "status": "ok", "error": None, "run_id": f"run-{version}", "computed_at": datetime(2026, 11, 5, tzinfo=UTC), "ds": day}
            for i, s in enumerate(scores)]


def test_a_stats_table_of_an_older_contract_is_refused_with_what_to_do(tmp_path) -> None:
    settings = _settings(tmp_path)
    write_deltalake(settings.table_root(SIGNAL_STATS.name), pa.table({"signal": ["a"], "ds": ["2026-11-01"], "rows": [3]}))
    with pytest.raises(UsageError, match="another contract.*Move it aside"):
        read_stats(settings)


def test_a_pinned_reference_day_without_statistics_and_a_run_without_rows_are_usage_errors(tmp_path) -> None:
    settings = _settings(tmp_path, "monitor.reference_day=2026-10-01")
    rng = np.random.default_rng(0)
    _keep(settings, [label_stats(rng.random(50), ds=d, run_id="backfill") for d in DAYS])
    with pytest.raises(UsageError, match="reference_day 2026-10-01 has no statistics"):
        monitor_run(None, settings, "backfill")
    with pytest.raises(UsageError, match="run nope wrote no signal rows"):
        monitor_run(None, _settings(tmp_path), "nope")


def test_a_new_versions_shifted_scores_are_the_models_drift_and_the_verdicts_are_kept(tmp_path) -> None:
    settings = _settings(tmp_path)
    rng = np.random.default_rng(1)
    old, new = rng.beta(2, 5, 80), rng.beta(5, 2, 80)
    _keep(settings, [label_stats(rng.beta(2, 5, 60), ds=d, run_id="backfill") for d in DAYS]
          + [label_stats(new, ds="2026-11-04", run_id="run-2", version="2")])
    write_deltalake(settings.table_root(LABELS.name), pa.Table.from_pylist(_label_rows("1", old) + _label_rows("2", new), schema=LABELS.schema),
                    partition_by=list(LABELS.partition_by))
    result = monitor_run(None, settings, "run-2")
    fired = {(v.rule, v.cause) for _, v in result.fired}
    assert ("score_drift", "model") in fired and ("decision_rate", "model") in fired
    kept = delta_io.read_arrow(settings.table_root(ALERTS.name)).to_pylist()
    assert {(r["rule"], r["cause"]) for r in kept if r["fired"]} == fired


def test_versions_that_agree_on_the_same_items_leave_the_corpus_and_too_few_shared_leave_it_unknown(tmp_path) -> None:
    settings = _settings(tmp_path)
    scores = np.random.default_rng(2).random(60)
    rows = _label_rows("1", scores) + _label_rows("2", scores) + [{**r, "content_id": "other-" + r["content_id"]} for r in _label_rows("3", scores)]
    rows += _label_rows("4", 1 - scores[:5])  # 5 items shared with version 1, scored otherwise
    root = settings.table_root(LABELS.name)
    write_deltalake(root, pa.Table.from_pylist(rows, schema=LABELS.schema), partition_by=list(LABELS.partition_by))
    assert attribute(root, "label", "image_quality", ["1"], "2", ["2026-11-04"], settings.monitor).cause == "corpus"
    unknown = attribute(root, "label", "image_quality", ["1"], "3", ["2026-11-04"], settings.monitor)
    assert unknown.cause == "unknown" and "backfill --challenger" in unknown.message
    few = attribute(root, "label", "image_quality", ["1"], "4", ["2026-11-04"], settings.monitor)  # 5 items: agreeing or not says nothing
    assert few.cause == "unknown" and f"fewer than {settings.monitor.min_rows} items" in few.message


def test_the_evaluations_new_model_version_is_the_champions_with_a_flatter_softmax_as_challenger(tmp_path, empty_registry_db) -> None:
    import shutil

    from jobs.monitor import SHIFTED_SIGNAL, TEMPERATURE_FACTOR, register_shifted_version
    from lake.registry import Registry

    settings = _settings(tmp_path)
    (tmp_path / "_registry").mkdir()
    shutil.copy(empty_registry_db, tmp_path / "_registry" / "mlflow.db")
    registry = Registry(settings.registry_uri)
    params = {"kind": "minilm_text_topics", "model_dir": "minilm", "temperature": 0.05}
    registry.register(SHIFTED_SIGNAL, "code:topics", params)
    registry.promote(SHIFTED_SIGNAL, "1")
    version = register_shifted_version(settings)
    shifted = registry.resolve(SHIFTED_SIGNAL, "challenger")
    assert (version, shifted.version, shifted.source) == ("2", "2", "code:topics")
    assert shifted.params == {**params, "temperature": pytest.approx(0.05 * TEMPERATURE_FACTOR)}
    assert registry.aliases(SHIFTED_SIGNAL) == {"champion": "1", "challenger": "2"}


def test_item_counts_from_the_log_are_the_distinct_items_a_read_finds(tmp_path) -> None:
    """The embeddings' items per (signal, version, day) from the add actions' row counts equal
    the distinct content ids of a read of the table, over several commits, days, versions and a
    delete (files rewritten); labels (a row per label) are counted by a read."""
    settings = _settings(tmp_path)
    append(tmp_path, rows([f"a{i}" for i in range(7)], random_vectors(7, 1)))
    append(tmp_path, rows([f"b{i}" for i in range(5)], None, ds="2026-11-20"))
    append(tmp_path, rows([f"c{i}" for i in range(4)], random_vectors(4, 2), ds="2026-11-20"))
    append(tmp_path, rows([f"a{i}" for i in range(3)], random_vectors(3, 3), model_version="2"))
    delete(tmp_path, "a1", "c2")
    write_deltalake(settings.table_root(LABELS.name), pa.Table.from_pylist(
        _label_rows("1", np.linspace(0, 1, 6)) + [{**r, "label": "dark"} for r in _label_rows("1", np.linspace(0, 1, 6))], schema=LABELS.schema),
        partition_by=list(LABELS.partition_by))
    asked = [{"kind": "embedding", "signal": SIGNAL, "ds": d} for d in ("2026-11-19", "2026-11-20")]
    asked += [{"kind": "label", "signal": "image_quality", "ds": "2026-11-04"}]
    read = pa.concat_tables([delta_io.read_arrow(settings.table_root(t), columns=["signal", "model_version", "ds", "content_id"])
                             for t in ("embeddings", "labels")])
    expected = {(r["signal"], r["model_version"], r["ds"]): r["content_id_count_distinct"]
                for r in read.group_by(["signal", "model_version", "ds"]).aggregate([("content_id", "count_distinct")]).to_pylist()}
    assert expected[(SIGNAL, "1", "2026-11-19")] == 6 and expected[("image_quality", "1", "2026-11-04")] == 6  # the table as written
    assert rows_are_items(EMBEDDINGS) and not rows_are_items(LABELS)
    assert table_items(settings, asked) == expected


def test_a_signal_table_of_another_writer_with_days_as_dates_is_a_usage_error(tmp_path) -> None:
    """Found in review: an embeddings table whose `ds` is a date column stopped `monitor` with an
    ArrowTypeError (a date where the statistics hold the day's text)."""
    settings = _settings(tmp_path)
    written = rows([f"pin-{i}" for i in range(30)], random_vectors(30, 0), ds=DAYS[0])
    written = written.set_column(written.schema.get_field_index("ds"), pa.field("ds", pa.date32()), pc.cast(written["ds"], pa.date32()))
    write_deltalake(settings.table_root(EMBEDDINGS.name), written, partition_by=list(EMBEDDINGS.partition_by))
    for monitor in (lambda: monitor_run(None, settings, "run"), lambda: latest_run(settings, DAYS[0])):
        with pytest.raises(UsageError, match="holds ds as date32.*, not as text"):
            monitor()


def test_items_of_a_table_partitioned_otherwise_are_counted_by_a_read(tmp_path) -> None:
    """Found in review: an embeddings table another writer partitioned by day alone stopped the
    row-count rule with a KeyError ('partition.signal') where the log's counts were looked up."""
    settings = _settings(tmp_path)
    for day, n in (("2026-11-19", 5), ("2026-11-20", 3)):
        write_deltalake(settings.table_root(EMBEDDINGS.name), rows([f"p{i}" for i in range(n)], random_vectors(n, n), ds=day),
                        partition_by=["ds"], mode="append")
    assert delta_io.rows_per_partition(settings.table_root(EMBEDDINGS.name), ("signal", "model_version", "ds")) is None
    asked = [{"kind": "embedding", "signal": SIGNAL, "ds": d} for d in ("2026-11-19", "2026-11-20")]
    assert table_items(settings, asked) == {(SIGNAL, "1", "2026-11-19"): 5, (SIGNAL, "1", "2026-11-20"): 3}


def test_attribution_reads_the_keys_then_only_the_shared_items_rows_and_the_columns_compared(tmp_path, monkeypatch) -> None:
    """A canary's 25 items beside the champion's full days: the vectors read are those 25 items' of
    each version, and the cause is the one a comparison of every row of both versions gives."""
    from conf.settings import MonitorSettings
    from monitoring.attribution import conclusive, model_differs
    from rollout.compare import compare_embeddings

    settings = _settings(tmp_path)
    root = settings.table_root(EMBEDDINGS.name)
    for i, day in enumerate(DAYS):
        append(tmp_path, rows([f"{day}-{n}" for n in range(60)], random_vectors(60, i), ds=day))
    canary = [f"{DAYS[-1]}-{n}" for n in range(25)]
    append(tmp_path, rows(canary, random_vectors(60, len(DAYS) - 1)[:25] * 2, model_version="2", ds=DAYS[-1]))  # the same directions
    full = delta_io.read_arrow(root)
    expected = compare_embeddings(*(full.filter(pc.equal(full["model_version"], v)) for v in ("1", "2")))
    monitor = MonitorSettings()
    reads: list[pa.Table] = []
    read_arrow = delta_io.read_arrow
    monkeypatch.setattr(delta_io, "read_arrow", lambda *a, **k: reads.append(read_arrow(*a, **k)) or reads[-1])

    found = attribute(root, "embedding", SIGNAL, ["1"], "2", DAYS, monitor)

    assert conclusive("embedding", expected, monitor) and not model_differs("embedding", expected, monitor)
    assert found.cause == "corpus"
    assert all(t.column_names == ["content_id", "ds"] for t in reads if "vector" not in t.column_names)
    vectors = [t for t in reads if "vector" in t.column_names]
    assert [t.column_names for t in vectors] == [["content_id", "ds", "status", "vector"]] * 2
    assert [sorted(t["content_id"].to_pylist()) for t in vectors] == [sorted(canary)] * 2


def test_a_signal_table_of_another_writer_without_columns_the_monitor_reads_is_a_usage_error(tmp_path) -> None:
    """Found in review: an embeddings table written without `error` and `dim` stopped `monitor` with a
    KeyError in a Spark task's traceback, and `monitor --day` on one without `computed_at` with an Arrow error."""
    settings = _settings(tmp_path)
    written = rows([f"pin-{i}" for i in range(30)], random_vectors(30, 0), ds=DAYS[0])
    write_deltalake(settings.table_root(EMBEDDINGS.name), written.drop_columns(["error", "dim", "computed_at"]),
                    partition_by=list(EMBEDDINGS.partition_by))
    with pytest.raises(UsageError, match="has no column error, dim: the monitor reads a signal table of the contract"):
        monitor_run(None, settings, "run")  # no Spark session: refused before the job that would read the files
    with pytest.raises(UsageError, match="has no column computed_at"):
        latest_run(settings, DAYS[0])
    with pytest.raises(UsageError, match="by its runs ledger.*--run-id.*--day"):  # no ledger: the latest run is not known
        latest_run(settings)


def test_the_latest_run_to_monitor_is_the_latest_that_wrote_rows_not_a_refresh_that_only_took_items_down(tmp_path) -> None:
    """Found in review: a refresh that only took items down commits (a table version) but writes no row of its own, and
    plain `monitor` picked it and stopped with exit 2 ("wrote no signal rows"): a daily refresh-then-monitor failed on
    every day of takedowns alone. It monitors the latest run that wrote rows."""
    from datetime import timedelta

    from lake.ledger import RunRecord, record_runs

    t0 = datetime(2026, 11, 4, tzinfo=UTC)

    def run(run_id: str, job: str, rows_in: int, version: int, hours: int) -> RunRecord:
        at = t0 + timedelta(hours=hours)
        return RunRecord(run_id, job, SIGNAL, "m", "1", None, None, rows_in, rows_in, 0, "succeeded", None, version, at, at)

    settings = _settings(tmp_path)
    record_runs(settings.table_root("runs"), [run("backfill-1", "backfill", 60, 1, 0), run("refresh-1", "refresh", 3, 2, 24),
                                              run("refresh-2", "refresh", 0, 3, 48)])
    assert latest_run(settings) == "refresh-1"


def test_a_runs_statistics_are_read_from_a_stats_table_delta_rs_rewrote(tmp_path) -> None:
    """A delete by delta-rs (another tool's takedown of a run's statistics, after its OPTIMIZE merged
    the runs' files) rewrites the file with string_view columns, and reading a run's statistics by
    its run id failed in pyarrow ("no kernel matching input types (string, string_view)")."""
    settings = _settings(tmp_path)
    rng = np.random.default_rng(0)
    kept = [label_stats(rng.random(50), ds=DAYS[0], run_id=run_id, version=version) for run_id in ("a", "b", "c") for version in ("1", "2")]
    _keep(settings, kept)
    table = DeltaTable(settings.table_root(SIGNAL_STATS.name))
    table.optimize.compact()
    table.delete("run_id = 'c'")
    read = read_stats(settings, pc.field("run_id") == "a", columns=["run_id", "model_version", "items"]).to_pylist()
    assert sorted(read, key=lambda r: r["model_version"]) == [{"run_id": "a", "model_version": v, "items": 50} for v in ("1", "2")]


def test_a_multi_day_run_is_judged_with_the_statistics_read_once_not_once_per_day(tmp_path, monkeypatch) -> None:
    """A backfill of 5 days after another run's 2: each day's drift is what its reference, merged
    from the rows as written, gives, while `signal_stats` is read three times however many days
    (the run's rows, the index, the other run's rows), not once more per judged day."""
    from embedding_tables import append, random_vectors, rows
    from test_monitor_rules import embedding_stats

    from monitoring.reference import merge
    from monitoring.rules import judge

    settings = _settings(tmp_path)
    days = [f"2026-11-0{d}" for d in range(1, 8)]
    written = []
    for i, day in enumerate(days):
        run = "older" if i < 2 else "backfill"
        vectors = random_vectors(40, i) + (0.8 if i == 6 else 0.0)  # the last day moved
        written.append(embedding_stats(vectors, ds=day, run_id=run))
        table = rows([f"{day}-{n}" for n in range(40)], vectors, ds=day)
        append(tmp_path, table.set_column(table.schema.get_field_index("run_id"), "run_id", pa.array([run] * 40)))
    _keep(settings, written)
    reads: list[str] = []
    read_arrow = delta_io.read_arrow
    monkeypatch.setattr(delta_io, "read_arrow", lambda root, *a, **k: reads.append(root) or read_arrow(root, *a, **k))

    result = monitor_run(None, settings, "backfill")

    assert sum(root.endswith(SIGNAL_STATS.name) for root in reads) == 3
    expected = {}
    for i, day in enumerate(days[2:], start=2):
        reference = merge(written[max(0, i - 7):i], settings.monitor.max_reference_sample, settings.monitor.seed)
        expected[day] = [(v.rule, v.fired, v.value) for v in judge(written[i], reference, settings.monitor)]
    assert {j.ds: [(v.rule, v.fired, v.value) for v in j.verdicts] for j in result.judged} == expected
    assert [j.ds for j, v in result.fired if v.rule == "embedding_drift"] == [days[-1]]


def test_verdicts_on_a_day_a_refresh_replaced_while_the_monitor_judged_it_are_not_kept_as_current(tmp_path, monkeypatch) -> None:
    """A refresh that replaces the monitored run's rows of a day between the monitor's read of the runs
    holding it and its verdicts' commit drops the superseded verdicts before the monitor's land: they
    stayed, the latest verdicts of that day (as the dashboard and `show` read them) about rows gone."""
    import monitoring.monitor as monitor
    from monitoring.superseded import drop_superseded

    settings = _settings(tmp_path)
    rng = np.random.default_rng(3)
    day = "2026-11-04"
    _keep(settings, [label_stats(rng.beta(2, 5, 60), ds=d, run_id="backfill") for d in DAYS]
          + [label_stats(rng.beta(2, 5, 60), ds=day, run_id="run-1")])
    root = settings.table_root(LABELS.name)
    write_deltalake(root, pa.Table.from_pylist(_label_rows("1", rng.beta(2, 5, 60), day), schema=LABELS.schema),
                    partition_by=list(LABELS.partition_by))
    holding, refreshes = monitor.runs_holding, []

    def refreshed_meanwhile(*args, **kwargs):  # the monitor has read which runs hold the day; a refresh replaces it now
        found = holding(*args, **kwargs)
        if not refreshes:
            refreshes.append(day)
            refreshed = [{**r, "run_id": "refresh"} for r in _label_rows("1", rng.beta(2, 5, 60), day)]
            write_deltalake(root, pa.Table.from_pylist(refreshed, schema=LABELS.schema), mode="overwrite",
                            predicate=f"ds = '{day}'")
            _keep(settings, [label_stats(rng.beta(2, 5, 60), ds=day, run_id="refresh")])
            drop_superseded(settings.lakehouse_root, "refresh", "refresh", {})  # as the refresh does as it keeps its statistics
        return found

    monkeypatch.setattr(monitor, "runs_holding", refreshed_meanwhile)
    monitor_run(None, settings, "run-1")

    assert {r["run_id"] for r in delta_io.read_arrow(root).to_pylist()} == {"refresh"}
    kept = delta_io.read_arrow(settings.table_root(ALERTS.name)).to_pylist()
    assert [r for r in kept if r["ds"] == day] == []  # no verdict about rows the table no longer holds
    assert {r["run_id"] for r in read_stats(settings, pc.field("ds") == day).to_pylist()} == {"refresh"}


def test_the_runs_holding_the_judged_days_are_read_again_after_the_verdicts_commit_only_where_a_signal_table_moved(tmp_path, monkeypatch) -> None:
    """With no commit to a signal table since the monitor read which runs hold its days, it does not
    read them again after its verdicts' commit (it did: the same runs, a read of every judged day's
    rows); the verdicts kept are those of the read again (forced here), and where a refresh replaced
    a day meanwhile it reads again (the test above)."""
    import monitoring.monitor as monitor

    settings = _settings(tmp_path)
    rng = np.random.default_rng(3)
    day = "2026-11-04"
    _keep(settings, [label_stats(rng.beta(2, 5, 60), ds=d, run_id="backfill") for d in DAYS]
          + [label_stats(rng.beta(2, 5, 60), ds=day, run_id="run-1")])
    write_deltalake(settings.table_root(LABELS.name), pa.Table.from_pylist(_label_rows("1", rng.beta(2, 5, 60), day), schema=LABELS.schema),
                    partition_by=list(LABELS.partition_by))
    holding, reads = monitor.runs_holding, []
    monkeypatch.setattr(monitor, "runs_holding", lambda *a, **k: reads.append(a) or holding(*a, **k))

    def verdicts() -> list[tuple]:
        kept = delta_io.read_arrow(settings.table_root(ALERTS.name)).drop_columns(["evaluated_at"]).to_pylist()
        return sorted(tuple(r.values()) for r in kept)

    monitor_run(None, settings, "run-1")
    assert len(reads) == 1
    once, versions, moved = verdicts(), monitor.table_versions, iter(range(10**6))
    monkeypatch.setattr(monitor, "table_versions", lambda *a: {**versions(*a), "moved": next(moved)})  # as if a table moved
    monitor_run(None, settings, "run-1")
    assert len(reads) == 3 and verdicts() == once and once


def test_the_vectors_a_takedown_removed_leave_the_sample_of_the_statistics_its_day_keeps(tmp_path) -> None:
    """A refresh that takes down some of a day's items keeps the backfill's statistics of that day
    (they describe the day as backfilled), and their sample kept the taken-down items' own vectors,
    for as long as those statistics are kept (found in review): each vector its commit removed now
    leaves the sample, and the vectors of the rows still there stay."""
    from monitoring.file_summary import summarise_file
    from monitoring.stats import keep_run_stats
    from monitoring.superseded import drop_superseded

    settings = _settings(tmp_path)
    written = rows([f"pin-{i}" for i in range(12)], random_vectors(12, 5))
    append(tmp_path, written)
    summary = summarise_file(iter(written.to_batches()), "run", settings.monitor.sample_size, settings.monitor.seed)
    keep_run_stats(settings.lakehouse_root, "run", "backfill", [summary], settings.monitor.sample_size)
    taken_down = delete(tmp_path, "pin-3", "pin-8")  # as a refresh's copy on write: the file written again without them
    drop_superseded(settings.lakehouse_root, "refresh", "refresh", {EMBEDDINGS.name: taken_down})

    [kept] = stats_rows(read_stats(settings))
    left = delta_io.read_arrow(settings.table_root(EMBEDDINGS.name)).to_pylist()
    assert sorted(map(tuple, kept["sample"].tolist())) == sorted(tuple(np.float32(r["vector"]).tolist()) for r in left)
    assert len(left) == 10 and kept["items"] == 12  # the rest of the statistics still describes the day as the run wrote it


def test_a_vector_equal_to_a_taken_down_one_stays_in_the_sample_however_often_the_takedown_is_monitored(tmp_path) -> None:
    """Found in review: each `monitor --recompute` of a refresh took its removed vectors out of the
    backfill's sample again, so a duplicate image's equal vector, of an item still there, went
    with the second."""
    from monitoring.file_summary import summarise_file
    from monitoring.stats import keep_run_stats
    from monitoring.superseded import drop_superseded

    settings = _settings(tmp_path)
    vectors = random_vectors(12, 6)
    vectors[4] = vectors[3]  # pin-4 is a copy of pin-3's image
    written = rows([f"pin-{i}" for i in range(12)], vectors)
    append(tmp_path, written)
    summary = summarise_file(iter(written.to_batches()), "run", settings.monitor.sample_size, settings.monitor.seed)
    keep_run_stats(settings.lakehouse_root, "run", "backfill", [summary], settings.monitor.sample_size)
    taken_down = delete(tmp_path, "pin-3")
    for _ in range(3):  # the refresh's own monitor, then `monitor --recompute` twice
        drop_superseded(settings.lakehouse_root, "refresh", "refresh", {EMBEDDINGS.name: taken_down})

    [kept] = stats_rows(read_stats(settings))
    left = delta_io.read_arrow(settings.table_root(EMBEDDINGS.name)).to_pylist()
    assert sorted(map(tuple, kept["sample"].tolist())) == sorted(tuple(np.float32(r["vector"]).tolist()) for r in left)
    assert tuple(vectors[3].tolist()) in map(tuple, kept["sample"].tolist())


def test_monitoring_one_day_of_a_run_keeps_its_verdicts_on_the_other_days(tmp_path) -> None:
    """Found in review: `monitor --day D` (monitor_run with `days`) replaced every verdict the run had
    in `alerts` with those of D alone, so re-checking the last day of a 7-day backfill erased its
    verdicts, alerts included, on the six days before (and their points on the dashboard's trend)."""
    from test_monitor_rules import embedding_stats

    settings = _settings(tmp_path)
    days = [f"2026-11-0{d}" for d in range(1, 8)]
    written = []
    for i, day in enumerate(days):
        vectors = random_vectors(40, i) + (0.8 if i == 5 else 0.0)  # day 6 moved
        written.append(embedding_stats(vectors, ds=day, run_id="backfill"))
        table = rows([f"{day}-{n}" for n in range(40)], vectors, ds=day)
        append(tmp_path, table.set_column(table.schema.get_field_index("run_id"), "run_id", pa.array(["backfill"] * 40)))
    _keep(settings, written)
    every = monitor_run(None, settings, "backfill")
    assert [j.ds for j, v in every.fired] == [days[5]]
    before = sorted((r["ds"], r["rule"], r["fired"]) for r in delta_io.read_arrow(settings.table_root(ALERTS.name)).to_pylist())

    one = monitor_run(None, settings, "backfill", [days[-1]])

    assert [j.ds for j in one.judged] == [days[-1]]
    after = delta_io.read_arrow(settings.table_root(ALERTS.name)).to_pylist()
    assert sorted((r["ds"], r["rule"], r["fired"]) for r in after) == before  # day 6's alert kept, the last day's replaced
    assert len(after) == len(before)


def test_a_monitored_refresh_that_only_took_items_down_has_nothing_new_to_monitor_not_a_usage_error(tmp_path, monkeypatch, capsys) -> None:
    """Found in review: `refresh --monitor` after a refresh that only took items down (it committed, and wrote no
    signal row of its own) stopped with exit 2, "run ... wrote no signal rows: nothing to monitor", after a run that
    succeeded: a daily `refresh --monitor` failed on every day that brought only takedowns."""
    from jobs import commands
    from jobs.cli import main
    from jobs.engine import RunResult
    from lake.ledger import SUCCEEDED, SignalOutcome
    from signals.base import ModelRef

    settings = _settings(tmp_path)
    table = rows(["pin-1"], random_vectors(1, 0), ds=DAYS[0])
    append(tmp_path, table.set_column(table.schema.get_field_index("run_id"), "run_id", pa.array(["backfill"])))
    _keep(settings, [label_stats(np.random.default_rng(0).random(30), ds=DAYS[0], run_id="backfill")])

    class Session:
        def stop(self) -> None:
            pass

    monkeypatch.setattr(commands, "build_session", lambda _: Session())
    nothing_written = [SignalOutcome(SIGNAL, ModelRef("m", "1"), 0, 0, 0)]  # as run_outcomes finds a takedown's
    monkeypatch.setattr(commands, "_spark_steps", lambda *_: iter([RunResult("takedown", SUCCEEDED, {EMBEDDINGS.name: 3}, nothing_written)]))
    monkeypatch.setattr(commands, "print_result", lambda *_: None)

    status = main(["refresh", "--monitor", "--set", f"lakehouse={tmp_path}"])

    out = " ".join(capsys.readouterr().out.split())
    assert status == 0, out
    assert "run takedown wrote no signal rows of its own (it only removed rows): nothing new to monitor" in out
