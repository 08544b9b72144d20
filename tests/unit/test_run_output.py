"""What an operator reads of a run where a scheduler captures it (no terminal): the run's outcome
whole, and a long Spark block's progress while it runs, not only when it ends."""
from __future__ import annotations

import io
import time
from types import SimpleNamespace

from rich.console import Console

from conf.settings import load_settings
from jobs.corpus import CorpusCheck
from jobs.engine import RunResult, unknown_versions_said
from lake.ledger import SignalOutcome
from signals.base import ModelRef


def _captured(monkeypatch, module) -> io.StringIO:
    """`module`'s console writing, unwrapped, into a buffer that is not a terminal (a scheduler's log)."""
    out = io.StringIO()
    monkeypatch.setattr(module, "console", Console(file=out, force_terminal=False, width=500))
    return out


def test_a_runs_printed_outcome_says_what_it_skipped_and_dropped(tmp_path, monkeypatch) -> None:
    """Found in review: a backfill or dedup that skipped corpus rows (a duplicated id, a day that is not
    one), and a refresh's count of what it computed and the stale items it dropped, were in the runs
    ledger's message only: the command printed its table of rows per signal, as if every row were used."""
    from jobs import show

    out = _captured(monkeypatch, show)
    settings = load_settings("local", [f"lakehouse={tmp_path}"])
    skipped = CorpusCheck(items=2, null_ids=0, bad_days=[], duplicates=1, duplicate_examples=["pin-000001"], bad_day_rows=0,
                          repeated_ids=1).describe()
    outcome = SignalOutcome("image_embedding", ModelRef("efficientnet-lite0", "1"), 2, 2, 0)
    show.print_result(RunResult("backfill-1", "succeeded", {"embeddings": 2}, [outcome], skipped), settings)
    dropped = "computed 0 items, copied 0 from committed rows of the same input, dropped 3 stale items (compared embeddings: all)"
    show.print_result(RunResult("refresh-1", "succeeded", {"embeddings": 3}, [], dropped), settings)  # takedowns only: no signal computed
    printed = out.getvalue()
    assert "skipped 1 corpus rows: 1 older copies of a duplicated content_id (e.g. pin-000001)" in printed, printed
    assert "image_embedding" in printed and f"refresh-1: succeeded -> {tmp_path}/embeddings version 3" in printed
    assert dropped in printed, printed



def test_a_retry_long_after_its_commits_prints_the_versions_it_cannot_name_as_unknown(tmp_path, monkeypatch) -> None:
    """A retry of a run id after its commits' log entries were cleaned up has versions it can no longer
    name (None): before, a skipped run printed its versions as a dict ("{'labels': None}") and not the
    message saying why, and a run that found such a commit printed "version None"."""
    from jobs import show

    out = _captured(monkeypatch, show)
    settings = load_settings("local", [f"lakehouse={tmp_path}"])
    versions = {"embeddings": 4, "labels": None}
    show.print_result(RunResult("nightly-1", "skipped", versions, message=unknown_versions_said(versions)), settings)
    show.print_result(RunResult("backfill-1", "succeeded", versions, message=unknown_versions_said(versions)), settings)
    printed = out.getvalue()
    assert "run nightly-1 was already committed (embeddings version 4, labels version unknown): nothing to do" in printed, printed
    assert f"backfill-1: succeeded -> {tmp_path}/embeddings version 4, {tmp_path}/labels version unknown" in printed, printed
    assert printed.count("the version of this run's commit to labels is no longer known") == 2 and "None" not in printed, printed


class _Tracker:
    """A status tracker whose one stage completes a task each time it is read."""

    def __init__(self, tasks: int) -> None:
        self.tasks, self.done = tasks, 0

    def getJobIdsForGroup(self, group: str) -> list[int]:  # noqa: N802 - pyspark's names
        return [0]

    def getJobInfo(self, job_id: int) -> SimpleNamespace:  # noqa: N802
        return SimpleNamespace(stageIds=[7])

    def getStageInfo(self, stage_id: int) -> SimpleNamespace:  # noqa: N802
        self.done = min(self.done + 1, self.tasks)
        return SimpleNamespace(numTasks=self.tasks, numCompletedTasks=self.done)


class _Context:
    def __init__(self, tracker: _Tracker) -> None:
        self.tracker = tracker

    def statusTracker(self) -> _Tracker:  # noqa: N802
        return self.tracker

    def setJobGroup(self, group: str, description: str) -> None:  # noqa: N802
        pass

    def setLocalProperty(self, key: str, value: str | None) -> None:  # noqa: N802
        pass


def test_a_long_block_off_a_terminal_says_its_progress_while_it_runs(monkeypatch) -> None:
    """Found in review: off a terminal each block printed one line when it ended, so a backfill's
    embeddings block (hours on a large corpus) left a scheduler's log silent for all that time."""
    from jobs import progress

    out = _captured(monkeypatch, progress)
    with progress.spark_progress(_Context(_Tracker(tasks=1000)), "backfill embeddings: 2 signals", poll_s=0.01, report_s=0.05):
        deadline = time.monotonic() + 5
        while "so far" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        during = out.getvalue()
    lines = during.splitlines()
    assert lines and all(line.startswith("backfill embeddings: 2 signals: ") and " of 1000 tasks done in 1 stages, " in line
                         for line in lines), during
    assert out.getvalue().splitlines()[-1].startswith("backfill embeddings: 2 signals: 1 stages, ")  # and the line when it ends
