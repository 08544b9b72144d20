"""The backfill job: compute the configured signals for a window of the corpus and replace
that slice of each table they write (embeddings, labels, and keyframes for a corpus with videos),
in one Delta commit per table.

    content-signals backfill --profile local --start 2026-11-14 --end 2026-11-20

Re-running the same window replaces the same slice with the same vectors: never duplicates.
An item of the window with rows in another day's partition (ingested again on a later day) has
them dropped in the same commit, its keyframes' too: one row per key, in its newest corpus row's day.
Re-running with the same --run-id after its commit landed does nothing (the commit is
recognised by its application transaction id).
"""
from __future__ import annotations

from urllib.parse import unquote

from pyspark.sql import DataFrame, SparkSession

from conf.settings import Settings, UsageError
from jobs.copy_on_write import ROW, Rewrite, no_rewrite, rewrite_dropping
from jobs.corpus import CorpusSource, Window, broadcast_if_small, check_rows, newest_of_ids, one_row_per_id
from jobs.engine import (
    CORPUS_MAPPING,
    CORPUS_VERSION,
    Run,
    RunResult,
    already_committed,
    by_output,
    in_window_slice,
    keep_stats,
    of_versions,
    placements,
    recorded,
    run_outcomes,
    signal_rows,
    tracked,
    unknown_versions_said,
    write_and_commit,
)
from jobs.videos import commit_keyframes, keyframe_models, keyframes_read_version, without_videos, write_videos
from lake import delta_io, spark_io
from lake.ledger import NOTHING_TO_DO, SUCCEEDED
from rollout.models import CHALLENGER, CHAMPION, build_signals, check_still_challengers
from signals.contracts import KEYFRAMES
from udfs.columns import in_slice

JOB = "backfill"


def check_slice(slice_percent: int, role: str) -> None:
    """A UsageError for a share of items that is not a percent, or a canary of the champion (whose
    window a backfill replaces: it would keep only that share of its items)."""
    if not 0 < slice_percent <= 100:
        raise UsageError(f"--slice-pct {slice_percent}: a share of the items, in (0, 100]")
    if slice_percent < 100 and role == CHAMPION:
        raise UsageError(f"--slice-pct {slice_percent} is a canary of the challenger: add --challenger (a champion backfill computes every item)")


def run_backfill(
    spark: SparkSession, settings: Settings, window: Window = Window(), run_id: str | None = None,
    role: str = CHAMPION, slice_percent: int = 100,
) -> RunResult:
    """Compute every enabled signal over the window and replace that slice of each output table
    in one commit per table.

    With `role="challenger"` the signals run at their challenger versions, on the stable
    `slice_percent` of items (a shadow run at 100, a canary below): the rows land in the
    challenger's own partitions and champion rows are never touched.

    A run that fails is recorded in the ledger as failed (with the reason) and re-raised; the
    data files it wrote, if any, are never committed, so no reader sees them.
    """
    check_slice(slice_percent, role)
    corpus = CorpusSource.of(settings)
    run = Run.begin(JOB if role == CHAMPION else f"{JOB}-{role}", run_id)
    signals = build_signals(settings, role)
    placed = placements(spark, settings, signals)
    done = already_committed(spark, settings, run, by_output(signals))
    if done:
        return done
    with recorded(settings, run, tracked(signals), (window.start, window.end)) as finish:
        # every table's commit must conflict with any commit to its partitions since this moment,
        # before the corpus is read: not since the moment the run got round to that table
        read_versions = {c: delta_io.ensure_table(settings.table_root(c.name), c).version() for c in by_output(signals)}
        keyframes_version = keyframes_read_version(settings, corpus, signals)  # None: no videos to write
        corpus_version = corpus.version()  # every phase reads the same corpus (a Delta one: other formats have no versions)
        corpus_read = ({CORPUS_VERSION: str(corpus_version), CORPUS_MAPPING: corpus.mapping_id()}  # a later refresh compares from it
                       if corpus_version is not None else {})
        rows = corpus.read(spark, corpus_version, window)
        newest = newest_of_ids(corpus.keys(spark, corpus_version))
        check = check_rows(rows, newest)
        items = one_row_per_id(rows, newest, check.repeated_ids)
        if slice_percent < 100:
            items = items.filter(in_slice(slice_percent))
        rows_in = check.items if slice_percent == 100 else items.count()
        if check.items == 0:  # a canary whose share holds none of the window's items still replaces the canary before it
            result = RunResult(run.run_id, NOTHING_TO_DO, message=" ".join(
                filter(None, [f"the window {window.start}..{window.end} holds no corpus items: nothing committed.", check.describe()])))
            finish(result)
            return result
        committed = {}
        # a challenger promoted meanwhile is the champion, whose rows a canary's commit would cut down to its slice
        before_commit = (lambda: check_still_challengers(settings, signals)) if role == CHALLENGER else (lambda: None)
        videos = write_videos(settings, run, items, signals, placed) if keyframes_version is not None else None
        if keyframes_version is not None:  # first: a run killed after it is re-run whole, and replaces the same slice
            moved = replaced_rows(spark, settings.table_root(KEYFRAMES.name), keyframes_version, keyframe_models(signals), window, items, rows_in)
            keyframes = commit_keyframes(spark, settings, run, videos, signals, window, keyframes_version, moved, corpus_read,
                                         before_commit)
            if keyframes is not None:
                committed[KEYFRAMES.name] = keyframes
        for contract, mine in by_output(signals).items():
            models = {name: s.config.model.version for name, s in mine.items()}
            moved = replaced_rows(spark, settings.table_root(contract.name), read_versions[contract], models, window, items, rows_in)
            kept = moved.items_kept()
            committed[contract.name] = write_and_commit(
                spark, settings, run, contract,
                [*moved.kept(spark),
                 *[signal_rows(without_videos(items, s) if videos else items, s, settings, run, rows_in, placed[name]) for name, s in mine.items()]],
                expected_items={name: rows_in + kept.get(name, 0) for name in mine},
                remove=lambda live, models=models, moved=moved: moved.removes(live) or in_window_slice(models, window, live),
                read_version=read_versions[contract], written=videos.files[contract.name] if videos else (),
                before_commit=before_commit,
                metadata={"window": f"{window.start}..{window.end}", "model_versions": str(models), "role": role,
                          "slice_percent": str(slice_percent), "moved_items": str(moved.moved_items), **corpus_read},
            )
        keep_stats(settings, run, committed)
        versions = {name: c.version for name, c in committed.items()}
        result = RunResult(run.run_id, SUCCEEDED, versions, run_outcomes(settings, run.run_id, signals),
                           " ".join(filter(None, [check.describe(), unknown_versions_said(versions)])) or None,
                           [use for c in committed.values() for use in c.executors])
        finish(result)
    return result


def replaced_rows(spark: SparkSession, root: str, version: int, models: dict[str, str], window: Window, items: DataFrame,
                       count: int) -> Rewrite:
    """The rewrite of these signals' files (at their model versions) that hold rows of days outside
    the window: it drops their rows of the window's days, which the backfill replaces, and their
    rows of the window's `items` (`count` of them) on other days (an item ingested again on a later
    day, backfilled for that day, would otherwise keep its old day's row too). No Spark job when
    every such file's days are in the window (`in_window_slice`: removed whole)."""
    outside = {unquote(f.path) for f in delta_io.live_files(root, version) if of_versions(models, f) and not window.holds(f.days)}
    if not outside:
        return no_rewrite(spark, root, version)
    stored = spark_io.read_spark(spark, root, version, only=outside, file_column="file").select(*ROW, "file").distinct()
    window_items = stored.join(broadcast_if_small(items.select("content_id"), count), "content_id", "left_semi")
    return rewrite_dropping(spark, root, version, window_items.unionByName(stored.filter(window.condition())), moved=~window.condition())
