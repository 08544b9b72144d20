"""What an operator reads of a run where a scheduler captures it (no terminal): the run's outcome whole."""
from __future__ import annotations

import io

from rich.console import Console

from conf.settings import load_settings
from jobs.corpus import CorpusCheck
from jobs.engine import RunResult
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

