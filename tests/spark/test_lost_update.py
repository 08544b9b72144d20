"""No lost update across tables (issue #16): a backfill's labels commit conflicts with a commit
that landed in its partitions while it was computing its embeddings, and the ledger records
what the failed run did commit."""
from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest
from conftest import CHEAP_SIGNALS
from deltalake import DeltaTable

from jobs import backfill
from jobs.corpus import Window
from jobs.engine import by_output
from lake import delta_io
from lake.delta_io import CommitConflict, DataFile
from lake.file_writer import FILE_METADATA_SCHEMA, make_file_writer
from rollout.models import build_signals
from signals.contracts import EMBEDDINGS, LABELS

pytestmark = pytest.mark.spark


def _commit_a_label_row(settings, signal: str, version: str, day: str) -> None:
    """What a refresh landing in the backfill's labels partition would commit: one row."""
    root = settings.table_root(LABELS.name)
    row = {"content_id": "pin-concurrent", "signal": signal, "label": "x", "score": 1.0, "threshold": 0.5, "decision": True,
           "detail": None, "model_name": "m", "model_version": version, "input_hash": "h", "status": "ok", "error": None,
           "run_id": "refresh-concurrent", "computed_at": datetime.now(UTC), "ds": day}
    delta_io.ensure_table(root, LABELS)
    written = make_file_writer(root, LABELS, "part-concurrent", lambda: "t0")(iter(pa.Table.from_pylist([row], schema=LABELS.schema).to_batches()))
    files = [DataFile.from_row(r) for r in pa.Table.from_batches(list(written), schema=FILE_METADATA_SCHEMA).to_pylist()]
    delta_io.commit_files(root, LABELS, files, "content-signals/refresh-concurrent", {"job": "refresh"})


def test_a_commit_to_the_labels_partitions_during_the_embeddings_phase_makes_the_backfill_conflict(spark, fresh_lakehouse, monkeypatch):
    settings = fresh_lakehouse(*CHEAP_SIGNALS)
    day = min(f.partition_values["ds"] for f in delta_io.live_files(settings.table_root("corpus")))
    real = backfill.write_and_commit

    def embeddings_then_a_concurrent_refresh(spark, settings, run, contract, *args, **kwargs):
        version = real(spark, settings, run, contract, *args, **kwargs)
        if contract == EMBEDDINGS:
            labels = by_output(build_signals(settings))[LABELS]
            name, signal = sorted(labels.items())[0]
            _commit_a_label_row(settings, name, signal.config.model.version, day)
        return version

    monkeypatch.setattr(backfill, "write_and_commit", embeddings_then_a_concurrent_refresh)
    with pytest.raises(CommitConflict, match="Re-run"):
        backfill.run_backfill(spark, settings, Window(day, day), run_id="backfill-raced")
    labels = DeltaTable(settings.table_root(LABELS.name)).to_pyarrow_table()
    assert labels["content_id"].to_pylist() == ["pin-concurrent"]  # the refresh's commit stands
    ledger_rows = [r for r in DeltaTable(settings.table_root("runs")).to_pyarrow_table().to_pylist() if r["run_id"] == "backfill-raced"]
    ended = {r["signal"]: r for r in ledger_rows if r["status"] != "started"}
    grouped = by_output(build_signals(settings))
    for name in build_signals(settings):
        if name in grouped[EMBEDDINGS]:
            assert ended[name]["status"] == "succeeded" and ended[name]["rows_in"] > 0 and "committed before" in ended[name]["message"]
        else:
            assert ended[name]["status"] == "failed" and "CommitConflict" in ended[name]["message"]
