"""A shortened year (benchmarks/year.py) on copies of the shared backfilled lakehouse, without
Spark after the backfill: 40 days of corpus commits brought into the embeddings by the refresh's
commit path (the labelers off: one table keeps it cheap), with `maintain` weekly and without. The
log is checkpointed and files per partition stay bounded with upkeep, and are more without; the
tables hold exactly the rows that the days' changes, applied to the backfill's rows in plain
Python, leave."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
from conftest import settings_for

from benchmarks.year import simulate
from jobs.maintain import policy_of
from lake import delta_io, upkeep
from signals.contracts import CORPUS, EMBEDDINGS

DAYS, EVERY = 40, 7
PER_DAY = (1, 3, 1)  # new, changed, taken down: the 60-item corpus's partitions take many changes
LABELERS_OFF = tuple(f"signals.{n}.enabled=false" for n in ("image_safety", "text_safety", "language", "image_topics", "text_topics", "image_quality"))
PAYLOAD = ("input_hash", "status", "error", "model_name", "vector", "score", "label")


def _rows(root: str, version: int | None = None) -> dict[tuple, dict]:
    """The table's rows (at `version`) by key, without the run's own columns."""
    rows = {}
    for r in delta_io.read_arrow(root, version).to_pylist():
        key = (r["content_id"], r["signal"], r["model_version"], r.get("label"))
        assert key not in rows, key
        rows[key] = {k: v for k, v in r.items() if k in PAYLOAD or k == "ds"}
    return rows


def _expected(before: dict[tuple, dict], history) -> dict[tuple, dict]:
    """The rows the days should leave: a takedown's gone, a new or changed item's those of its source that day, in its own day."""
    rows = dict(before)
    for day in history:
        by_item: dict[str, list] = {}
        for key, row in rows.items():
            by_item.setdefault(key[0], []).append((key, row))
        for item in (*day.takedowns, *day.changed):
            for key, _ in by_item.get(item, []):
                del rows[key]
        for item, source in {**day.new, **day.changed}.items():
            for key, row in by_item[source]:
                rows[(item, *key[1:])] = {**row, "ds": day.days[item]}
    return rows


def _removal_times(root: str, day_1_version: int) -> tuple[list[int], list[int]]:
    """When the removals that the table's last checkpoint keeps were made, and those of day 1's commit
    (pinned, so its log entry stays)."""
    log, last = Path(root) / "_delta_log", upkeep.last_checkpoint(root)
    checkpoint = pq.read_table(log / f"{last:020d}.checkpoint.parquet", columns=["remove"])["remove"].drop_null()
    day_1 = [json.loads(line)["remove"] for line in (log / f"{day_1_version:020d}.json").read_text().splitlines() if line.startswith('{"remove"')]
    return [r["deletionTimestamp"] for r in checkpoint.to_pylist()], [r["deletionTimestamp"] for r in day_1]


def test_a_shortened_year_with_weekly_upkeep_keeps_the_log_short_and_the_files_few(backfilled, tmp_path: Path) -> None:
    source = Path(backfilled.settings.lakehouse_root)
    arms = {}
    for arm, every in (("upkeep", EVERY), ("none", None)):
        shutil.copytree(source, tmp_path / arm)
        settings = settings_for(tmp_path / arm, *LABELERS_OFF)
        before = _rows(settings.table_root(EMBEDDINGS.name))
        expected_ids = set(delta_io.read_arrow(settings.table_root(CORPUS.name), columns=["content_id"])["content_id"].to_pylist())
        year = simulate(settings, DAYS, every, PER_DAY, seed=3, reads=False, measured=(EMBEDDINGS,))
        arms[arm] = year
        assert _rows(settings.table_root(EMBEDDINGS.name)) == _expected(before, year["changes"]), arm
        # day 1's version, pinned, is still read by time travel
        assert _rows(settings.table_root(EMBEDDINGS.name), year["day_1_version"]) == _expected(before, year["changes"][:1]), arm
        for day in year["changes"]:
            expected_ids = (expected_ids - set(day.takedowns)) | set(day.new)
        assert set(delta_io.read_arrow(settings.table_root(CORPUS.name), columns=["content_id"])["content_id"].to_pylist()) == expected_ids

    policy = policy_of(settings_for(tmp_path / "upkeep"))
    kept = [day["tables"][EMBEDDINGS.name] for day in arms["upkeep"]["series"]]
    left = [day["tables"][EMBEDDINGS.name] for day in arms["none"]["series"]]
    # a reader of the maintained table replays at most the commits of a week past the checkpoint threshold
    replay = policy.checkpoint_every + 2 * EVERY
    assert max(d["commits_since_checkpoint"] for d in kept) <= replay
    assert upkeep.last_checkpoint(str(tmp_path / "upkeep" / EMBEDDINGS.name)) is not None
    assert left[-1]["commits_since_checkpoint"] > replay  # without upkeep the whole log is replayed
    # a partition takes at most a file a day; compaction brings a crowded one back to one file,
    # and leaves the table fewer files than the same days without it
    bound = policy.min_small_files + EVERY
    assert max(d["most_files_in_a_partition"] for d in kept) <= bound
    assert left[-1]["most_files_in_a_partition"] > kept[-1]["most_files_in_a_partition"]
    assert left[-1]["data_files"] > kept[-1]["data_files"]
    # its retentions count simulated days: the checkpoint forgets the removals of the first weeks
    kept_removals, day_1_removals = _removal_times(str(tmp_path / "upkeep" / EMBEDDINGS.name), arms["upkeep"]["day_1_version"])
    assert kept_removals and day_1_removals and min(kept_removals) > max(day_1_removals)
    # and its log: the entries past the log's retention expired (the backfill's first), day 1's kept (read above)
    assert not (tmp_path / "upkeep" / EMBEDDINGS.name / "_delta_log" / f"{0:020d}.json").exists()
    assert (tmp_path / "none" / EMBEDDINGS.name / "_delta_log" / f"{0:020d}.json").exists()
