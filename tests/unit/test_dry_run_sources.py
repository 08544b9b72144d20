"""`--dry-run` on corpora laid out as users lay them out (jobs/dry_run.py, jobs/corpus.py, no
Spark): a Delta corpus partitioned by a DATE column, a parquet dataset whose day is its partition
folder, and one with a column pyspark has no type for; the plan says what a run would read."""
from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.dataset as ds
from conftest import settings_for
from deltalake import write_deltalake

from jobs.corpus import CorpusSource, Window
from jobs.dry_run import corpus_partitions

MAPPING = ("corpus.columns.content_id=pin_id", "corpus.columns.image=img", "corpus.columns.ds=day", "corpus.columns.title=null",
           "corpus.columns.description=null", "corpus.columns.created_at=null", "corpus.columns.updated_at=null")
DAYS = [dt.date(2026, 11, 14), dt.date(2026, 11, 15), dt.date(2026, 11, 15)]
ROWS = pa.table({"pin_id": ["a", "b", "c"], "img": [b"x", b"y", b"z"], "views": pa.array([1, 2, 3], pa.uint64()), "day": DAYS})


def test_a_delta_corpus_partitioned_by_a_date_column_is_pruned_to_the_window(tmp_path):
    write_deltalake(str(tmp_path / "corpus"), ROWS, partition_by=["day"])
    source = CorpusSource.of(settings_for(tmp_path / "lakehouse", f"corpus.path={tmp_path / 'corpus'}", *MAPPING))
    assert source.check_schema()
    assert corpus_partitions(source, Window("2026-11-15", "2026-11-15"))[1] == "1 days (2026-11-15..2026-11-15), 1 files, 2 rows"


def test_a_parquet_dataset_with_its_day_in_the_folders_and_an_unsigned_column_passes_the_mapping(tmp_path):
    ds.write_dataset(ROWS.set_column(3, "day", pa.array([str(d) for d in DAYS])), tmp_path / "parquet", format="parquet",
                     partitioning=ds.partitioning(pa.schema([("day", pa.string())]), flavor="hive"))
    settings = settings_for(tmp_path / "lakehouse", "corpus.format=parquet", f"corpus.path={tmp_path / 'parquet'}", *MAPPING)
    assert CorpusSource.of(settings).check_schema()


def test_a_challenger_plan_lists_the_signals_a_shadow_run_computes_and_refuses_one_with_none(tmp_path, empty_registry_db):
    """A shadow run computes only the signals that have a challenger other than their champion, and refuses when none
    has: the plan listed every signal as "not registered yet (a run registers ... as the champion)" and exited 0."""
    import pytest
    from embedding_tables import SIGNAL, registry_in

    from conf.settings import UsageError
    from jobs.dry_run import model_versions

    settings = settings_for(tmp_path)
    with pytest.raises(UsageError, match="no enabled signal has a 'challenger' version"):
        model_versions(settings, [SIGNAL, "text_embedding"], challenger=True)  # no registry at all
    registry = registry_in(tmp_path, empty_registry_db)  # versions 1 and 2 of SIGNAL, champion 1
    with pytest.raises(UsageError, match="no enabled signal has a 'challenger' version"):
        model_versions(settings, [SIGNAL, "text_embedding"], challenger=True)
    registry.client.set_registered_model_alias(SIGNAL, "challenger", "2")
    assert model_versions(settings, [SIGNAL, "text_embedding"], challenger=True) == {
        SIGNAL: "2 (challenger)", "text_embedding": "none: no challenger version, not computed"}
    assert model_versions(settings, [SIGNAL])[SIGNAL] == "1 (champion)"


def test_the_plan_warns_of_a_filter_on_a_column_the_corpus_lacks(tmp_path):
    """`--dry-run` said nothing of `corpus.filter`: a misspelt column passed it and the run refused it (exit 2)."""
    from jobs.dry_run import filter_line

    write_deltalake(str(tmp_path / "corpus"), ROWS, partition_by=["day"])

    def line(condition: str) -> str:
        source = CorpusSource.of(settings_for(tmp_path / "lakehouse", f"corpus.path={tmp_path / 'corpus'}", *MAPPING,
                                              f"corpus.filter={condition}"))
        return filter_line(source, source.check_schema())

    assert line("views > 1") == "corpus filter: views > 1 (it reads the corpus's columns)"
    misspelt = line("veiws > 1")
    assert misspelt.startswith("corpus filter: WARNING corpus.filter 'veiws > 1' cannot be evaluated without Spark")
    assert "veiws" in misspelt and "pin_id, img, views, day" in misspelt


def test_a_refresh_plan_says_what_it_compares_of_the_keyframes_table(tmp_path):
    """A refresh compares the keyframes table beside embeddings and labels (a takedown leaves it too), and its run
    message says so; its `--dry-run` named only embeddings and labels."""
    import argparse

    from jobs.commands import make_corpus
    from jobs.dry_run import plan_lines
    from signals.contracts import KEYFRAMES

    settings = settings_for(tmp_path)
    make_corpus(settings, n_items=12, videos=False)
    write_deltalake(settings.table_root(KEYFRAMES.name), KEYFRAMES.schema.empty_table(), partition_by=list(KEYFRAMES.partition_by))
    lines = plan_lines(settings, argparse.Namespace(command="refresh", full=True))
    assert [line for line in lines if line.startswith(("embeddings:", "labels:", "keyframes:"))] == [
        f"{table}: compares the whole corpus (--full)" for table in ("embeddings", "labels", "keyframes")]
