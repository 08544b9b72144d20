"""The dashboard's parts that need no browser: the rows behind an alert are read without the
columns and files the page does not show."""
from __future__ import annotations

import os
from urllib.parse import unquote

import pyarrow as pa
import pytest
from embedding_tables import SIGNAL, append, random_vectors, rows

from conf.settings import load_settings
from lake import delta_io
from monitoring import dashboard
from monitoring.monitor import Judged
from monitoring.rules import EMBEDDING_DRIFT, Verdict
from signals.contracts import EMBEDDINGS

DAY = "2026-11-04"


def _run_rows(run_id: str, n: int, ds: str = DAY, seed: int = 0) -> pa.Table:
    table = rows([f"{run_id}-{i}" for i in range(n)], random_vectors(n, seed), ds=ds)
    return table.set_column(table.schema.get_field_index("run_id"), "run_id", pa.array([run_id] * n))


def test_the_rows_behind_an_embedding_alert_read_only_the_columns_shown_and_only_the_runs_files(tmp_path, monkeypatch) -> None:
    settings = load_settings("local", [f"lakehouse={tmp_path}"])
    root = settings.table_root(EMBEDDINGS.name)
    append(tmp_path, _run_rows("run-1", 30))
    append(tmp_path, _run_rows("run-0", 7, seed=1))  # the same day, another run: its own file
    append(tmp_path, _run_rows("run-1", 5, ds="2026-11-03", seed=2))  # the run's other day
    for f in delta_io.live_files(root):  # a file the read would open raises FileNotFoundError
        if f.partition_values["ds"] != DAY or f.num_records == 7:
            os.remove(os.path.join(root, unquote(f.path)))
    with pytest.raises(FileNotFoundError):
        delta_io.read_arrow(root, columns=["content_id"])
    reads: list[pa.Table] = []
    read_arrow = delta_io.read_arrow
    monkeypatch.setattr(delta_io, "read_arrow", lambda *a, **k: reads.append(read_arrow(*a, **k)) or reads[-1])

    page = dashboard._rows_behind(settings, "run-1", 0, Judged(SIGNAL, "1", DAY, "x", [], "embedding", None),
                                  Verdict(EMBEDDING_DRIFT, True, "drift"))

    assert "30 row(s); the first 20:" in page and page.count("<td>run-1-") == 20
    assert [t.column_names for t in reads] == [["content_id", "status", "error"]]  # no vector decoded


def test_label_names_are_drawn_as_written_in_the_decision_rate_legend() -> None:
    """A `$` would start matplotlib's mathtext (an unclosed formula raised when drawn) and a leading
    `_` dropped the label's line from the legend."""
    from matplotlib.figure import Figure

    from rollout.html_report import figure_png

    names = ["$x^$", "_private", "cat"]
    days = [{"ds": d, "labels": [{"label": n, "decided": 10, "positives": i} for i, n in enumerate(names)]} for d in ("a", "b")]
    fig = Figure()
    ax = fig.subplots()
    dashboard._decision_rates(ax, [0, 1], days, [])
    assert figure_png(fig).startswith(b"\x89PNG")  # drawn, mathtext not parsed
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert [t.replace("\\$", "$").lstrip("\u200b") for t in legend] == sorted(names)
