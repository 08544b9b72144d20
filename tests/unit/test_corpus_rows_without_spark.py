"""The row of an id that the jobs keep, picked without Spark (lake/corpus.py `latest_rows`, on
lake/spark_hash.py's xxhash64), and training reading that row, not whichever delta-rs reads last;
a labelling task's image given by URI."""
from __future__ import annotations

import base64
import datetime as dt
import json
import re
import struct

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from conftest import NOT_UTF8, clean_up_log, not_utf8, settings_for
from deltalake import DeltaTable, QueryBuilder, write_deltalake
from training_lakehouse import PNG, training_lakehouse

from conf.settings import CorpusSettings, UsageError
from jobs.corpus import CorpusCheck, CorpusSource, check_day
from jobs.engine import CORPUS_MAPPING, CORPUS_VERSION, Run
from jobs.refresh import earlier_commits, version_to_read
from lake import delta_io
from lake.corpus import DAY_PATTERN, CorpusTable, latest_rows
from lake.spark_hash import spark_xxhash64, xxh64
from signals.contracts import CORPUS, EMBEDDINGS
from training.evaluate import item_slices
from training.sampling import write_task_file


def test_xxhash64_is_sparks() -> None:
    """XXH64's published vectors, and Spark's documented `xxhash64('Spark', array(123), 2)` (an int hashed as its 4 bytes)."""
    assert (xxh64(b"", 0), xxh64(b"abc", 0)) == (0xEF46DB3751D8E999, 0x44BC2CF5AD770999)
    assert xxh64(b"Nobody inspects the spammish repetition", 0) == 0xFBCEA83C8A378BF1  # over 32 bytes: the four lanes
    seed = 42
    for value in (b"Spark", struct.pack("<i", 123), struct.pack("<i", 2)):
        seed = xxh64(value, seed)
    assert seed == 5602566077635097486
    assert spark_xxhash64(["a", None]) == spark_xxhash64(["a"]) and spark_xxhash64([b"a"]) == spark_xxhash64(["a"])


def test_latest_rows_keep_each_ids_latest_by_the_jobs_rule() -> None:
    """Against a plain sort: latest updated_at (null oldest), then ds, then the hash; rows that cannot be keyed are skipped."""
    rng = np.random.default_rng(3)
    t0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    rows = [{"content_id": f"pin-{rng.integers(8)}", "ds": f"2026-11-0{rng.integers(1, 4)}", "title": f"t{i}",
             "updated_at": None if rng.random() < 0.3 else t0 + dt.timedelta(days=int(rng.integers(2))),
             "image": None, "image_uri": None, "description": None} for i in range(200)]
    rows += [{**rows[0], "ds": "2026-13-01", "updated_at": t0 + dt.timedelta(days=9)}, {**rows[0], "content_id": None}]
    table = pa.Table.from_pylist(rows, schema=pa.schema([("content_id", pa.string()), ("ds", pa.string()), ("title", pa.string()),
                                                         ("updated_at", pa.timestamp("us", tz="UTC")), ("image", pa.binary()),
                                                         ("image_uri", pa.string()), ("description", pa.string())]))
    expected = {}
    for r in rows[:200]:
        key = (r["updated_at"] or dt.datetime.min.replace(tzinfo=dt.UTC), r["ds"], spark_xxhash64([r["title"]]))
        if r["content_id"] not in expected or key > expected[r["content_id"]][0]:
            expected[r["content_id"]] = (key, r["title"])
    kept = latest_rows(table).to_pylist()
    assert {r["content_id"]: r["title"] for r in kept} == {c: title for c, (_, title) in expected.items()} and len(kept) == len(expected)


def test_latest_rows_of_no_keyable_row_are_none() -> None:
    """Found with the refresh's plan on the driver: the ids of a takedown, read back from a corpus
    that no longer holds any of them, failed to concatenate an empty mask of no type."""
    table = pa.table({"content_id": pa.array([None, "pin-1"], pa.string()), "ds": pa.array(["2026-11-01", "not a day"], pa.string()),
                      "updated_at": pa.array([None, None], pa.timestamp("us", tz="UTC"))})
    for rows in (table, table.slice(0, 0)):
        assert latest_rows(rows).num_rows == 0



def test_a_corpus_whose_ids_and_titles_are_not_all_utf8_is_read_by_the_jobs_rule(tmp_path) -> None:
    """Training's read of the corpus (`CorpusTable.latest`, `latest_rows`) raised UnicodeDecodeError
    on a content id that is not UTF-8, which the jobs' rule skips (jobs/corpus.py), and on a tie of
    two rows whose title is not UTF-8, which Spark's hash takes as bytes; such values come as stored
    from a corpus another writer made. The monitor's count without Spark went to Spark for them."""
    root = str(tmp_path / "pins")
    t0 = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
    rows = [{"content_id": "pin-a", "title": "a", "ds": "2026-11-02", "updated_at": t0, "image": PNG},
            {"content_id": "pin-x", "title": "x", "ds": "2026-11-02", "updated_at": t0, "image": PNG},
            {"content_id": "pin-b", "title": "b", "ds": "2026-11-03", "updated_at": t0, "image": PNG},
            {"content_id": "pin-b", "title": "b2", "ds": "2026-11-03", "updated_at": t0, "image": PNG}]
    table = not_utf8(not_utf8(pa.Table.from_pylist(rows), "content_id", 1), "title", 3)
    write_deltalake(root, table, partition_by=["ds"])
    corpus = CorpusTable(CorpusSettings(), root)
    kept = corpus.latest(["content_id", "title"])
    tied = max((b"b", NOT_UTF8), key=lambda title: spark_xxhash64([PNG, None, title, None]))  # HASHED: image, image_uri, title, description
    assert kept["content_id"].to_pylist() == ["pin-a", "pin-b"]
    assert kept["title"].cast(pa.binary()).to_pylist() == [b"a", tied]
    assert corpus.count_items(["2026-11-02", "2026-11-03"]) == {"2026-11-02": 1, "2026-11-03": 1}

def test_slices_and_tasks_read_the_row_the_jobs_keep(tmp_path, empty_registry_db) -> None:
    """An item re-ingested, corrected (a PNG, a long title, a newer updated_at), is sliced and shown to annotators as corrected."""
    lake = training_lakehouse(tmp_path, empty_registry_db, n=30)
    root, item = str(tmp_path), lake.ids[1]  # a JPEG with a short title in the helper's corpus
    newer = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    write_deltalake(f"{root}/corpus", pa.Table.from_pylist([{"content_id": item, "image": PNG, "title": "corrected " * 20, "description": "",
                                                             "created_at": newer, "updated_at": newer, "ds": "2026-11-02"}],
                                                           schema=CORPUS.schema), mode="append", partition_by=["ds"])
    corpus = CorpusTable.of(lake.settings)
    slices = item_slices(root, corpus, [item], None, None, corpus.version()).iloc[0]
    assert (slices["ds"], slices["image_format"], slices["text_length"]) == ("2026-11-02", "png", "long")
    chosen = slices.to_frame().T[["content_id", "ds"]].assign(p_positive=0.5)
    task = json.loads(write_task_file(corpus, chosen, "low_quality", tmp_path / "t.json", "x").path.read_text())[0]["data"]
    assert task["title"] == "corrected " * 20


def test_a_task_shows_an_image_given_by_uri_and_passes_over_an_item_without_one_or_gone(tmp_path) -> None:
    """An item whose image is an image_uri is shown by that URI (not an empty data URI); one with
    neither bytes nor URI is passed over, by id, and so is one taken down from the corpus since its
    embedding was computed (a KeyError before); their places go to the next items of the ranking
    (found in review: the file held fewer than asked for)."""
    rows = pa.table({"content_id": ["pin-a", "pin-c", "pin-b", "pin-d", "pin-e"], "image": [PNG, None, None, PNG, PNG],
                     "image_uri": [None, None, "s3://pins/b.jpg", None, None], "title": list("acbde"), "ds": ["2026-11-02"] * 5})
    write_deltalake(tmp_path / "pins", rows)
    ranked = rows.select(["content_id", "ds"]).to_pandas()
    ranked = pd.concat([ranked[:2], pd.DataFrame({"content_id": ["pin-gone"], "ds": ["2026-11-02"]}), ranked[2:]]).assign(p_positive=0.5)
    corpus = CorpusTable(CorpusSettings(), str(tmp_path / "pins"))
    task_file = write_task_file(corpus, ranked, "low_quality", tmp_path / "t.json", "x", 3)
    shown = {t["data"]["content_id"]: t["data"]["image"] for t in json.loads(task_file.path.read_text())}
    data_uri = "data:image;base64," + base64.b64encode(PNG).decode()
    assert shown == {"pin-a": data_uri, "pin-b": "s3://pins/b.jpg", "pin-d": data_uri}
    assert task_file.written["content_id"].tolist() == ["pin-a", "pin-b", "pin-d"] and task_file.passed_over == ["pin-c", "pin-gone"]
    assert len(json.loads(write_task_file(corpus, ranked, "low_quality", tmp_path / "t.json", "x", 10).path.read_text())) == 4


def test_a_corpus_whose_image_column_is_left_unmapped_is_refused_naming_it(tmp_path) -> None:
    """A source with neither `image` nor `image_uri` under its default names (its bytes in `img`)
    was read as one without images: every image signal wrote an error row for every item (found
    in review). A mapping needs a picture of some kind; a video column is one."""
    rows = pa.table({"pin_id": ["pin-a"], "img": [PNG], "title": ["a"], "ds": ["2026-11-02"]})
    write_deltalake(tmp_path / "pins", rows)
    corpus = CorpusTable(CorpusSettings(columns={"content_id": "pin_id"}), str(tmp_path / "pins"))
    with pytest.raises(UsageError, match=r"image -> 'image' is not a column \(did you mean 'img'\?\); image_uri -> 'image_uri'"):
        corpus.check_schema()
    without_image = CorpusTable(CorpusSettings(columns={"content_id": "pin_id", "image": None}), str(tmp_path / "pins"))
    with pytest.raises(UsageError, match="image_uri -> 'image_uri' is not a column"):
        without_image.check_schema()
    mapped = CorpusTable(CorpusSettings(columns={"content_id": "pin_id", "image": "img"}), str(tmp_path / "pins"))
    assert mapped.rows(["content_id", "image", "image_uri"]).to_pylist() == [{"content_id": "pin-a", "image": PNG, "image_uri": None}]
    videos = pa.table({"pin_id": ["pin-v"], "video": [b"mp4"], "ds": ["2026-11-02"]})
    write_deltalake(tmp_path / "videos", videos)
    assert CorpusTable(CorpusSettings(columns={"content_id": "pin_id"}), str(tmp_path / "videos")).check_schema()


def test_a_pinned_version_whose_log_was_cleaned_up_is_a_usage_error(tmp_path) -> None:
    """A corpus pinned at a version whose log entries its owner's table cleaned up (after a
    checkpoint, past the log retention) failed with delta-rs' TableNotFoundError, a traceback (found
    in review); it is a setting to change, said as such. The latest version still reads."""
    root = str(tmp_path / "pins")
    for i in range(4):
        write_deltalake(root, pa.table({"content_id": [f"pin-{i}"], "image": [PNG], "ds": ["2026-11-02"]}), mode="append")
    DeltaTable(root).create_checkpoint()
    for entry in ("00000000000000000000.json", "00000000000000000001.json"):
        (tmp_path / "pins" / "_delta_log" / entry).unlink()
    pinned = CorpusTable(CorpusSettings(version=1), root)
    for read in (pinned.version, pinned.check_schema, lambda: pinned.rows(["content_id"])):
        with pytest.raises(UsageError, match=r"^corpus.version 1 of the corpus at .*pins can no longer be read .*pin a later version"):
            read()
    assert CorpusTable(CorpusSettings(version=3), root).rows(["content_id"]).num_rows == 4


def test_a_filter_naming_a_column_the_corpus_lacks_says_which_columns_it_has(tmp_path) -> None:
    """Found in review: DataFusion's message named only the columns read for it ("Valid fields are corpus._row")."""
    write_deltalake(tmp_path / "pins", pa.table({"content_id": ["pin-a"], "image": [PNG], "state": ["live"], "ds": ["2026-11-02"]}))
    corpus = CorpusTable(CorpusSettings(filter="stat = 'live'"), str(tmp_path / "pins"))
    with pytest.raises(UsageError, match=r"cannot be evaluated without Spark: .*\(the corpus's columns: content_id, image, state, ds\)"):
        corpus.rows(["content_id"])
    assert CorpusTable(CorpusSettings(filter="state = 'live'"), str(tmp_path / "pins")).rows(["content_id"])["content_id"].to_pylist() == ["pin-a"]


Z85 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"


def _delete_first_row_in_place(root: str) -> None:
    """Mark the table's one file's first row deleted with an inline deletion vector, as Spark and
    Databricks do (delta-rs rewrites the file instead): the Delta protocol's RoaringBitmapArray
    of one bucket holding row 0, z85-encoded, in a new add action for the same file."""
    bitmap = struct.pack("<IIHHIH", 12346, 1, 0, 0, 16, 0)  # portable format: cookie, one container, key 0, one value: 0
    vector = struct.pack("<iqi", 1681511377, 1, 0) + bitmap  # magic, one bucket, its key 0
    words = struct.unpack(f">{-(-len(vector) // 4)}I", vector + bytes(-len(vector) % 4))
    inline = "".join(Z85[w // 85**k % 85] for w in words for k in range(4, -1, -1))
    add = next(e["add"] for e in map(json.loads, open(f"{root}/_delta_log/00000000000000000000.json")) if "add" in e)
    with open(f"{root}/_delta_log/00000000000000000001.json", "w") as log:
        log.write(json.dumps({"remove": {"path": add["path"], "dataChange": True, "deletionTimestamp": 1, "partitionValues": {}}}) + "\n")
        log.write(json.dumps({"add": {**add, "deletionVector": {"storageType": "i", "pathOrInlineDv": inline,
                                                                 "sizeInBytes": len(vector), "cardinality": 1}}}) + "\n")


@pytest.mark.parametrize("layout", ["column mapping", "deletion vectors"])
def test_a_delta_corpus_whose_files_are_not_its_rows_is_refused_before_any_work(tmp_path, layout) -> None:
    """Both readers read a Delta corpus's files by their columns' names, every row of a file
    (found in review): with column mapping every column was read as null (in Spark too: every row
    skipped as having no content_id); with a deletion vector Spark's read brought the deleted row
    back, and delta-rs refused the table with a DeltaProtocolError traceback. DataFusion, which
    applies them, says what the table holds."""
    root = str(tmp_path / "pins")
    rows = pa.table({"content_id": ["pin-a", "pin-b"], "image": [PNG, PNG], "ds": ["2026-11-02"] * 2})
    if layout == "column mapping":
        write_deltalake(root, rows, configuration={"delta.columnMapping.mode": "name"})
        held = ["pin-a", "pin-b"]
    else:
        write_deltalake(root, rows, configuration={"delta.enableDeletionVectors": "true"})
        _delete_first_row_in_place(root)
        held = ["pin-b"]
    found = QueryBuilder().register("t", DeltaTable(root)).execute("SELECT content_id FROM t ORDER BY content_id").read_all()
    assert pa.table(found)["content_id"].to_pylist() == held
    corpus = CorpusTable(CorpusSettings(), root)
    for read in (corpus.version, corpus.check_schema, lambda: corpus.rows(["content_id"])):  # every job and --dry-run call version() first
        with pytest.raises(UsageError, match=rf"^the corpus at .*pins \(version \d\) cannot be read: .*{layout.split()[0]}"):
            read()


def test_a_column_at_its_default_name_in_other_letter_cases_is_refused_not_read_as_null(tmp_path) -> None:
    """`Title` and `Updated_At` were taken as a source without those columns: every item read with
    no title and no update time (which picks an id's row), silently (found in review)."""
    updated = pa.array([dt.datetime(2026, 11, 3, tzinfo=dt.UTC)])
    write_deltalake(tmp_path / "pins", pa.table({"content_id": ["pin-a"], "image": [PNG], "Title": ["A pin"], "Updated_At": updated,
                                                  "ds": ["2026-11-02"]}))
    with pytest.raises(UsageError, match=r"title -> 'title' is not a column \(did you mean 'Title'\?\); "
                                         r"updated_at -> 'updated_at' is not a column \(did you mean 'Updated_At'\?\)"):
        CorpusTable(CorpusSettings(), str(tmp_path / "pins")).check_schema()
    mapped = CorpusTable(CorpusSettings(columns={"title": "Title", "updated_at": "Updated_At"}), str(tmp_path / "pins"))
    assert mapped.rows(["title", "updated_at"]).to_pylist() == [{"title": "A pin", "updated_at": updated[0].as_py()}]


def test_a_retried_refresh_reads_the_corpus_version_its_commits_read_version_0_included(tmp_path) -> None:
    """Found in review: a `refresh --run-id` retry took the version its earlier commits read with
    `or`, so a run that had read version 0 read the latest on its retry, and its tables disagreed."""
    root = str(tmp_path / "pins")
    for i in range(3):
        write_deltalake(root, pa.table({"content_id": [f"pin-{i}"], "image": [PNG], "ds": ["2026-11-02"]}), mode="append")
    source = CorpusSource(CorpusSettings(), root)
    for read in (0, 1):
        assert version_to_read({"embeddings": {CORPUS_VERSION: str(read), CORPUS_MAPPING: source.mapping_id()}}, source) == read
    assert version_to_read({}, source) == 2  # a first attempt reads the latest
    assert version_to_read({"embeddings": {CORPUS_VERSION: "0", CORPUS_MAPPING: "another corpus"}}, source) == 2


def test_a_refresh_retried_after_its_earlier_commits_log_entry_is_gone_reads_the_latest_corpus(tmp_path) -> None:
    """Found in review: a refresh retried (`--run-id`) more than the log's retention after an attempt
    killed between its tables' commits raised LookupError reading the corpus version its commit read:
    the checkpoint keeps the commit's app id, not its record. The committed table is still skipped
    (None: no record), and the others read the corpus's latest version, the next refresh's to reconcile."""
    settings = settings_for(tmp_path / "lakehouse")
    run = Run("refresh", "refresh-old", dt.datetime(2026, 11, 2, tzinfo=dt.UTC))
    embeddings = settings.table_root(EMBEDDINGS.name)
    delta_io.ensure_table(embeddings, EMBEDDINGS)
    delta_io.commit_files(embeddings, EMBEDDINGS, [], run.app_id, {"job": "refresh", "run_id": run.run_id, CORPUS_VERSION: "0"})
    clean_up_log(embeddings)
    earlier = earlier_commits(settings, run)
    assert earlier == {EMBEDDINGS.name: None}
    root = str(tmp_path / "pins")
    for i in range(2):
        write_deltalake(root, pa.table({"content_id": [f"pin-{i}"], "image": [PNG], "ds": ["2026-11-02"]}), mode="append")
    assert version_to_read(earlier, CorpusSource(CorpusSettings(), root)) == 1


def test_the_day_pattern_reads_the_days_the_calendar_has() -> None:
    """Found in review: 2026-02-30 matched the pattern the corpus rule keeps days by, though
    `--start` refused it. Against `date.fromisoformat`, in Python and in Arrow's RE2 alike (Spark's
    `rlike`: tests/spark/test_corpus_rows.py); a trailing newline is no day in either."""
    candidates = [f"{y:04d}-{m:02d}-{d:02d}" for y in (0, 1, 4, 100, 400, 1900, 2000, 2024, 2026, 2100, 9996, 9999)
                  for m in range(14) for d in range(33)] + ["2026-11-20\n", "2026-1-20", "20261120"]

    def is_day(text: str) -> bool:
        try:
            return len(text) == 10 and bool(dt.date.fromisoformat(text))
        except ValueError:
            return False

    wanted = [is_day(c) for c in candidates]
    assert sum(wanted) == 11 * 365 + 5  # year 0000 has no day; 4, 400, 2000, 2024 and 9996 are leap years, 1, 100, 1900, 2026, 2100 and 9999 not
    assert [bool(re.fullmatch(DAY_PATTERN, c)) for c in candidates] == wanted
    assert pc.match_substring_regex(pa.array(candidates), DAY_PATTERN).to_pylist() == wanted

    def accepted(text: str) -> bool:
        try:
            return check_day(text, "--start") == text
        except UsageError:
            return False

    assert [accepted(c) for c in candidates] == wanted


def test_rows_whose_day_is_null_are_reported_as_null_not_as_no_example() -> None:
    """A null `ds` (an empty-string or Hive-null day folder) is no example of `check_rows`'s
    collect_set, so a run that skipped only such rows said "not a day (e.g. )" (found in review)."""
    nulls = CorpusCheck(items=2, null_ids=0, bad_days=[], duplicates=0, duplicate_examples=[], bad_day_rows=2, repeated_ids=0)
    assert nulls.describe() == "skipped 2 corpus rows: 2 whose ds is not a day (null)"
    named = CorpusCheck(items=2, null_ids=0, bad_days=["2026-02-30"], duplicates=0, duplicate_examples=[], bad_day_rows=3, repeated_ids=0)
    assert named.describe() == "skipped 3 corpus rows: 3 whose ds is not a day (e.g. '2026-02-30')"
