"""The analysts' Lakehouse lists its tables through pyarrow's filesystems, so a lakehouse named by
a URI (s3://, gs://, file://) lists as a local folder does; it reads without a registry, and its
champions are those the registry names, if it has one."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import clean_up_log
from deltalake import DeltaTable, write_deltalake
from embedding_tables import SIGNAL, T0, append, delete, random_vectors, registry_in, rows

from conf.settings import UsageError
from lake.lakehouse import Lakehouse


def notebook_cell(marker: str, scope: dict) -> dict:
    """Run the analysts' notebook's code cell holding `marker` in `scope`, as the notebook would after its cells before."""
    cells = json.loads((Path(__file__).parents[2] / "notebooks" / "explore_signals.ipynb").read_text())["cells"]
    exec(next("".join(c["source"]) for c in cells if c["cell_type"] == "code" and marker in "".join(c["source"])), scope)  # noqa: S102
    return scope


def test_tables_of_a_folder_and_of_a_uri(tmp_path) -> None:
    for name in ("embeddings", "runs"):
        write_deltalake(str(tmp_path / name), pa.table({"x": [1]}))
    (tmp_path / "not_a_table").mkdir()
    (tmp_path / "_registry").mkdir()
    assert Lakehouse(str(tmp_path)).tables() == ["embeddings", "runs"]
    assert Lakehouse(f"file://{tmp_path}").tables() == ["embeddings", "runs"]  # no registry needed to list or read


def test_a_lakehouse_that_does_not_exist_has_no_tables(tmp_path) -> None:
    assert Lakehouse(str(tmp_path / "missing")).tables() == []


def test_champions_without_a_registry_or_a_registered_model(tmp_path, empty_registry_db) -> None:
    append(tmp_path, rows(["pin-1", "pin-2"], random_vectors(2, 0)))
    append(tmp_path, rows(["pin-1"], random_vectors(1, 1), signal="text_embedding"))
    lakehouse = Lakehouse(str(tmp_path))
    assert lakehouse.champions("embeddings") == {} and lakehouse.champion("embeddings").num_rows == 0
    assert not (tmp_path / "_registry").exists()  # a read makes no registry
    registry_in(tmp_path, empty_registry_db)  # SIGNAL registered, champion version 1; text_embedding never registered
    assert lakehouse.champions("embeddings") == {SIGNAL: "1"}
    assert lakehouse.champion("embeddings")["content_id"].to_pylist() == ["pin-1", "pin-2"]


def test_a_profile_that_pins_a_version_reads_that_one_as_its_jobs_run_it(tmp_path, empty_registry_db) -> None:
    append(tmp_path, rows(["pin-1", "pin-2"], random_vectors(2, 0)))
    append(tmp_path, rows(["pin-1"], random_vectors(1, 1), model_version="2"))
    registry_in(tmp_path, empty_registry_db)  # champion 1 in the registry
    lakehouse = Lakehouse.from_profile("local", (f"lakehouse={tmp_path}", f"signals.{SIGNAL}.model.version=2"))
    assert lakehouse.champions("embeddings") == {SIGNAL: "2"} and lakehouse.champion("embeddings")["content_id"].to_pylist() == ["pin-1"]


def test_a_champion_without_rows_reads_as_none_with_a_warning(tmp_path, empty_registry_db) -> None:
    """Found in review: a champion alias on a version never computed (promote --force) read as no
    items of the signal, silently."""
    append(tmp_path, rows(["pin-1", "pin-2"], random_vectors(2, 0)))
    registry_in(tmp_path, empty_registry_db)
    lakehouse = Lakehouse.from_profile("local", (f"lakehouse={tmp_path}", f"signals.{SIGNAL}.model.version=3"))
    with pytest.warns(UserWarning, match=f"no rows of the champion of {SIGNAL} .model version 3."):
        assert lakehouse.champion("embeddings").num_rows == 0


def test_a_version_a_vacuum_removed_is_named_as_such(tmp_path) -> None:
    append(tmp_path, rows([f"pin-{i}" for i in range(10)], random_vectors(10, 0)))
    delete(tmp_path, "pin-3")  # rewrites the day's file; version 0's file is then an old version's
    DeltaTable(str(tmp_path / "embeddings")).vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    lakehouse = Lakehouse(str(tmp_path))
    assert lakehouse.arrow("embeddings", version=1).num_rows == 9
    with pytest.raises(UsageError, match="version 0 of .* can no longer be read: a vacuum"):
        lakehouse.arrow("embeddings", version=0)
    latest = DeltaTable(str(tmp_path / "embeddings")).version()  # the vacuum's own commits are versions too
    for missing in (latest + 1, -1):  # found in review: delta-rs's log-segment error, and an OverflowError
        with pytest.raises(UsageError, match=f"embeddings has versions 0 to {latest}, not {missing}"):
            lakehouse.pandas("embeddings", version=missing)


def test_a_version_whose_log_entry_expired_is_named_as_such(tmp_path) -> None:
    append(tmp_path, rows(["pin-1"], random_vectors(1, 0)))
    append(tmp_path, rows(["pin-2"], random_vectors(1, 1)))
    clean_up_log(str(tmp_path / "embeddings"))
    lakehouse = Lakehouse(str(tmp_path))
    with pytest.raises(UsageError, match="version 0 of embeddings can no longer be read: its log entry expired"):
        lakehouse.arrow("embeddings", version=0)
    assert lakehouse.arrow("embeddings", version=lakehouse.version("embeddings")).num_rows == 2


def test_a_table_without_signal_versions_has_no_champions(tmp_path) -> None:
    write_deltalake(str(tmp_path / "duplicates"), pa.table({"content_id": ["a"], "ds": ["2026-11-20"]}), partition_by=["ds"])
    with pytest.raises(UsageError, match="duplicates holds no versions of signals"):
        Lakehouse(str(tmp_path)).champion("duplicates")


def test_show_counts_the_champions_label_decisions_only(tmp_path, empty_registry_db, capsys) -> None:
    from training_lakehouse import training_lakehouse

    from jobs.show import show
    from signals.contracts import LABELS

    lake = training_lakehouse(tmp_path, empty_registry_db)  # image_quality's champion is version 1
    labels = DeltaTable(lake.settings.table_root("labels"))
    champion = labels.to_pyarrow_table()
    positives = sum(champion["decision"].to_pylist())
    write_deltalake(lake.settings.table_root("labels"), champion.set_column(champion.schema.get_field_index("model_version"), "model_version",
                    pa.array(["2"] * champion.num_rows)).cast(LABELS.schema), mode="append", partition_by=list(LABELS.partition_by))
    show(lake.settings)
    counted = [line for line in capsys.readouterr().out.splitlines() if line.startswith("image_quality")]
    assert counted == [f"image_quality  low_quality    {positives}"] and 0 < positives < champion.num_rows


@pytest.mark.parametrize("labels_rows", ["none", "errors only"])
def test_show_of_tables_without_ok_label_rows(tmp_path, capsys, labels_rows) -> None:
    """A first backfill that stopped before committing leaves its tables empty, and a labels table may hold error rows
    only: show selected the champions' rows with an empty list, which pandas took as no columns (AttributeError)."""
    from conf.settings import load_settings
    from jobs.show import show
    from lake import delta_io
    from signals.contracts import EMBEDDINGS, LABELS, RUNS

    for contract in (EMBEDDINGS, LABELS, RUNS):
        delta_io.ensure_table(str(tmp_path / contract.name), contract)
    if labels_rows == "errors only":
        error = {"content_id": "pin-1", "signal": "image_quality", "label": None, "model_name": "m", "model_version": "1",
                 "input_hash": "h", "status": "error", "error": "image is corrupt", "run_id": "run", "computed_at": T0, "ds": "2026-11-19"}
        write_deltalake(str(tmp_path / LABELS.name), pa.Table.from_pylist([error], schema=LABELS.schema), mode="append",
                        partition_by=list(LABELS.partition_by))
    show(load_settings("local", [f"lakehouse={tmp_path}"]))
    assert "labels: 0 items labelled" in capsys.readouterr().out


def test_show_and_a_runs_outcome_print_what_tables_hold_as_text_not_rich_markup(tmp_path, capsys) -> None:
    """An error reason (another writer's, a URI) or a run id (--run-id) holding `[/...]` stopped show, and a run
    after its commits landed, with rich's MarkupError."""
    from conf.settings import load_settings
    from jobs.engine import RunResult
    from jobs.show import print_result, show
    from lake.ledger import SignalOutcome
    from signals.base import ModelRef

    lakehouse = tmp_path
    errors = rows(["pin-1"], None)
    append(lakehouse, errors.set_column(errors.schema.get_field_index("error"), "error", pa.array(["not allowed: [/srv/a.jpg]"])))
    write_deltalake(str(lakehouse / "runs"), pa.table({"run_id": ["[/]run"], "signal": [SIGNAL], "rows_in": [1], "rows_ok": [0],
                                                       "rows_error": [1], "status": ["succeeded"], "table_version": [0],
                                                       "duration_s": [1.0], "finished_at": [1]}))
    settings = load_settings("local", [f"lakehouse={lakehouse}"])
    show(settings)
    print_result(RunResult("[/]run", "succeeded", {"embeddings": 0}, [SignalOutcome(SIGNAL, ModelRef("[b]m", "1"), 1, 0, 1)]), settings)
    print_result(RunResult("[/]run", "skipped", {"embeddings": 0}), settings)
    out = capsys.readouterr().out
    assert '"not allowed: [/srv/a.jpg]": 1' in out and "[/]run" in out and "[b]m@1" in out


def test_show_prints_each_table_at_one_version_while_another_writer_commits(tmp_path, capsys, monkeypatch) -> None:
    """Found in review: show counted a table's rows in one snapshot, printed the version of a later one and summed its
    embeddings in a third, so a refresh committing meanwhile printed a version beside another version's rows."""
    from conf.settings import load_settings
    from jobs.show import show

    append(tmp_path, rows([f"pin-{i}" for i in range(5)], random_vectors(5, 0)))
    root = str(tmp_path / "embeddings")
    opened = DeltaTable.__init__
    commits = []

    def commit_after_the_first_read(self, table_uri, *args, **kwargs) -> None:  # another writer commits once show has read the log
        opened(self, table_uri, *args, **kwargs)
        if not commits and str(table_uri).rstrip("/") == root:
            commits.append(None)  # the writer's own reads open the table too
            commits[0] = append(tmp_path, rows([f"pin-{i}" for i in range(5, 8)], random_vectors(3, 1), ds="2026-11-20"))

    monkeypatch.setattr(DeltaTable, "__init__", commit_after_the_first_read)
    show(load_settings("local", [f"lakehouse={tmp_path}"]))

    out = capsys.readouterr().out
    printed = next(line.split("│")[1:4] for line in out.splitlines() if line.startswith("│ embeddings "))
    version, count = int(printed[1]), int(printed[2])
    summed = sum(int(line.split("│")[-2]) for line in out.splitlines() if line.startswith(f"│ {SIGNAL} "))
    assert commits == [1] and count == summed == DeltaTable(root, version=version).to_pyarrow_table().num_rows


def test_a_table_whose_first_commit_is_under_way_is_not_yet_a_table(tmp_path, capsys) -> None:
    """Found in review: a folder whose `_delta_log` holds no commit yet (a first day's first commit under way: delta-rs
    writes a temporary file there, then renames it) was listed as a table, so show stopped with KeyError
    "no Delta table 'embeddings' ...; tables: embeddings, runs"."""
    from conf.settings import load_settings
    from jobs.show import show

    write_deltalake(str(tmp_path / "runs"), pa.table({"run_id": ["r"], "signal": [SIGNAL], "rows_in": [1], "rows_ok": [1], "rows_error": [0],
                                                      "status": ["succeeded"], "table_version": [0], "duration_s": [1.0], "finished_at": [1]}))
    (tmp_path / "embeddings" / "_delta_log").mkdir(parents=True)
    (tmp_path / "embeddings" / "_delta_log" / "_commit_0b1c.json.tmp").write_text("{}")
    assert Lakehouse(str(tmp_path)).tables() == ["runs"]
    show(load_settings("local", [f"lakehouse={tmp_path}"]))
    assert "│ runs " in capsys.readouterr().out
    append(tmp_path, rows(["pin-1"], random_vectors(1, 0)))  # the commit lands: a table now
    assert Lakehouse(str(tmp_path)).tables() == ["embeddings", "runs"]


def test_show_reads_no_vector_of_the_signal_tables(tmp_path, capsys, monkeypatch) -> None:
    """Found in review: show read every column of the embeddings (and the keyframes) table, vectors and all, to count
    rows by signal, model version and status: a year's vectors in memory for a table of counts."""
    from conf.settings import load_settings
    from jobs.show import show
    from lake import delta_io

    append(tmp_path, rows([f"pin-{i}" for i in range(6)], random_vectors(6, 0)))
    append(tmp_path, rows(["bad-1", "bad-2"], None))
    append(tmp_path, rows(["pin-1", "pin-2"], random_vectors(2, 1), model_version="2"))
    read_arrow, reads = delta_io.read_arrow, []

    def recorded(root, version=None, filters=None, columns=None, **kwargs):
        reads.append((root, columns))
        return read_arrow(root, version, filters, columns, **kwargs)

    monkeypatch.setattr(delta_io, "read_arrow", recorded)
    show(load_settings("local", [f"lakehouse={tmp_path}"]))

    embeddings = [columns for root, columns in reads if root.endswith("/embeddings")]
    assert embeddings and all(columns is not None and "vector" not in columns for columns in embeddings)
    printed = {tuple(cell.strip() for cell in line.split("│")[1:-1]) for line in capsys.readouterr().out.splitlines() if line.startswith(f"│ {SIGNAL} ")}
    table = DeltaTable(str(tmp_path / "embeddings")).to_pyarrow_table()
    counted = table.group_by(["signal", "model_version", "status", "dim"]).aggregate([([], "count_all")]).to_pylist()
    assert printed == {(r["signal"], r["model_version"], r["status"], str(r["dim"]), str(r["count_all"])) for r in counted}


def test_the_notebooks_time_travel_reads_a_version_a_maintained_table_still_has(tmp_path, capsys) -> None:
    """Found in review: the analysts' notebook read the oldest version in the history, which a weekly `maintain` has
    vacuumed, so its time-travel cell stopped with "version 0 ... can no longer be read: a vacuum ...". Run here as the
    notebook has it, on a table compacted and vacuumed at retention 0: only the compaction's versions keep their files."""
    from urllib.parse import unquote

    append(tmp_path, rows([f"pin-{i}" for i in range(5)], random_vectors(5, 0)))
    append(tmp_path, rows(["pin-9"], None))
    delete(tmp_path, "pin-3")
    DeltaTable(str(tmp_path / "embeddings")).optimize.compact()
    DeltaTable(str(tmp_path / "embeddings")).vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    lakehouse = Lakehouse(str(tmp_path))
    read = notebook_cell("lakehouse.history", {"lakehouse": lakehouse, "embeddings": lakehouse.pandas("embeddings")})["first"]
    versions = {v: DeltaTable(str(tmp_path / "embeddings"), version=v) for v in range(lakehouse.version("embeddings") + 1)}
    held = {v for v, t in versions.items() if all((tmp_path / "embeddings" / unquote(f)).exists()
                                                  for f in pa.table(t.get_add_actions(flatten=True))["path"].to_pylist())}
    assert held and len(read) == versions[min(held)].to_pyarrow_table().num_rows == 5  # compacted: 5 rows after the delete
    assert f"version {min(held)}: 5 rows" in capsys.readouterr().out


def test_show_counts_no_decision_of_a_signal_registered_without_a_champion(tmp_path, empty_registry_db, capsys) -> None:
    """Found in review: show kept every version of a signal the registry names no champion of, taking it for one never
    registered, so a trained head's challenger rows (train, then backfill --challenger) were counted among the decisions
    consumers read, where `labels_champion` holds none of them."""
    from conf.settings import load_settings
    from jobs.show import show
    from signals.contracts import LABELS

    def labelled(signal: str, version: str, decisions: list[bool]) -> list[dict]:
        return [{"content_id": f"pin-{i}", "signal": signal, "label": signal, "score": 0.9 if d else 0.1, "threshold": 0.5, "decision": d,
                 "model_name": "m", "model_version": version, "status": "ok", "run_id": "run", "computed_at": T0, "ds": "2026-11-19"}
                for i, d in enumerate(decisions)]

    write_deltalake(str(tmp_path / LABELS.name), pa.Table.from_pylist(
        labelled(SIGNAL, "1", [True, True, False]) + labelled("low_quality", "1", [True] * 4) + labelled("text_safety", "1", [True, False]),
        schema=LABELS.schema), partition_by=list(LABELS.partition_by))
    registry = registry_in(tmp_path, empty_registry_db)  # SIGNAL's champion is version 1; text_safety never registered
    registry.register("low_quality", "code:head-1", {"kind": "efficientnet_lite0_image"})
    registry.promote("low_quality", "1", alias="challenger")
    lakehouse = Lakehouse(str(tmp_path))
    assert "low_quality" not in set(lakehouse.champion(LABELS.name)["signal"].to_pylist())
    show(load_settings("local", [f"lakehouse={tmp_path}"]))
    out = capsys.readouterr().out
    counted = {tuple(line.split()) for line in out.splitlines() if line.split()[:1] in ([SIGNAL], ["low_quality"], ["text_safety"])}
    assert counted == {(SIGNAL, SIGNAL, "2"), ("text_safety", "text_safety", "1")} and "labels: 3 items labelled" in out


def test_the_notebooks_summary_reads_a_corpus_its_signal_tables_have_not_caught_up_with(tmp_path, capsys) -> None:
    """Found in review: the analysts' notebook asserted that the embeddings hold every corpus item and no other, so it
    stopped with AssertionError between a corpus update and the refresh that follows it (an item new, one taken down)."""
    write_deltalake(str(tmp_path / "corpus"), pa.table({"content_id": ["pin-1", "pin-2", "pin-new"], "title": ["a", "b", "c"],
                                                         "ds": ["2026-11-19"] * 3}), partition_by=["ds"])
    append(tmp_path, rows(["pin-1", "pin-2", "pin-gone"], random_vectors(3, 0)))
    append(tmp_path, rows(["pin-1"], None, signal="text_embedding"))
    scope = notebook_cell('lakehouse.pandas("embeddings")', {"lakehouse": Lakehouse(str(tmp_path))})
    assert scope["summary"].to_dict("index") == {(SIGNAL, "m", "1"): {"ok": 3, "error": 0}, ("text_embedding", "m", "1"): {"ok": 0, "error": 1}}
    assert "1 corpus items without a row yet (pin-new), 1 items no longer in the corpus (pin-gone)" in capsys.readouterr().out


def test_the_notebooks_neighbours_of_an_item_taken_down_before_the_refresh(tmp_path, capsys) -> None:
    """Found in review: the notebook looked each champion image's title up in the corpus, so an item taken down since
    the last refresh (its rows still in the embeddings) stopped the nearest-neighbour cells with KeyError; and of fewer than
    six images it named the query among its own neighbours (similarity -1, the diagonal's)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    write_deltalake(str(tmp_path / "corpus"), pa.table({"content_id": ["pin-0", "pin-1"], "title": ["a cat", None],
                                                         "ds": ["2026-11-19"] * 2}), partition_by=["ds"])  # pin-1 has no title, and is not taken down
    vectors = random_vectors(3, 0)
    append(tmp_path, rows(["pin-0", "pin-1", "pin-gone"], vectors / np.linalg.norm(vectors, axis=1, keepdims=True)))
    lakehouse = Lakehouse(str(tmp_path), pinned={SIGNAL: "1"})
    scope = notebook_cell("champion = lakehouse.champion", {"lakehouse": lakehouse, "corpus": lakehouse.pandas("corpus"), "np": np, "plt": plt})
    notebook_cell("fig, axes", scope)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "query: a cat" and len(printed) == 3 and "(taken down)" in printed[1] + printed[2]  # the 2 others, not itself
    assert sorted(scope["labels"].tolist()) == ["", "(taken down)", "a cat"]


def test_show_prints_the_runs_counts_and_versions_as_whole_numbers_beside_an_alias_move(tmp_path, capsys) -> None:
    """Found in review: an alias move's ledger row has no counts and no table version (a promote, a rollback), and pandas
    took the columns holding it for floats, so show's latest runs printed every run's items and commit as 120.0 and 3.0."""
    from datetime import timedelta

    from conf.settings import load_settings
    from jobs.show import show
    from lake.ledger import RunRecord, record_runs

    backfill = RunRecord("run-1", "backfill", SIGNAL, "m", "1", "2026-11-19", "2026-11-19", 120, 117, 3, "succeeded", None, 3,
                         T0, T0 + timedelta(seconds=9))
    promote = RunRecord("promote-1", "promote", SIGNAL, "m", "2", None, None, None, None, None, "succeeded", "champion 1 -> 2", None,
                        T0 + timedelta(minutes=1), T0 + timedelta(minutes=1))
    record_runs(str(tmp_path / "runs"), [backfill, promote])
    show(load_settings("local", [f"lakehouse={tmp_path}"]))
    printed = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines() if line.split()[:1] in (["run-1"], ["promote-1"])}
    assert printed == {"run-1": [SIGNAL, "120", "117", "3", "succeeded", "3", "9.0"], "promote-1": [SIGNAL, "-", "-", "-", "succeeded", "-", "0.0"]}


def test_show_tells_a_video_in_error_from_one_with_some_rows_in_error(tmp_path, capsys) -> None:
    """Found in review: show counted a video with any error row (one of its signals failing on one keyframe) among the
    "videos in error", as if nothing of it had been computed."""
    from conf.settings import load_settings
    from jobs.show import show
    from signals.contracts import KEYFRAMES

    def row(video: str, index: int, signal: str, ok: bool) -> dict:
        return {"content_id": video, "keyframe_index": index, "signal": signal, "model_name": "m", "model_version": "1",
                "status": "ok" if ok else "error", "error": None if ok else "video is corrupt", "run_id": "run", "computed_at": T0,
                "ds": "2026-11-19"}

    written = [row("all-ok", i, s, True) for i in range(2) for s in ("a", "b")] + [row("all-error", 0, s, False) for s in ("a", "b")]
    written += [row("partly", 0, "a", True), row("partly", 0, "b", False), row("partly", 1, "a", True), row("partly", 1, "b", True)]
    write_deltalake(str(tmp_path / KEYFRAMES.name), pa.Table.from_pylist(written, schema=KEYFRAMES.schema), partition_by=list(KEYFRAMES.partition_by))
    show(load_settings("local", [f"lakehouse={tmp_path}"]))
    assert "keyframes: 3 videos, 4 keyframes, 1 videos in error, 1 with some rows in error;" in capsys.readouterr().out


def test_the_notebooks_neighbours_of_a_champion_whose_images_are_all_error_rows(tmp_path, capsys) -> None:
    """Found in review: with no ok image embedding in the champion's rows (every image failed), the notebook stopped in
    `np.stack` ("need at least one array to stack"); it now says so and draws nothing."""
    write_deltalake(str(tmp_path / "corpus"), pa.table({"content_id": ["pin-0", "pin-1"], "title": ["a", "b"], "ds": ["2026-11-19"] * 2}),
                    partition_by=["ds"])
    append(tmp_path, rows(["pin-0", "pin-1"], None))
    lakehouse = Lakehouse(str(tmp_path), pinned={SIGNAL: "1"})
    scope = notebook_cell("champion = lakehouse.champion", {"lakehouse": lakehouse, "corpus": lakehouse.pandas("corpus"), "np": np})
    notebook_cell("fig, axes", scope)
    assert capsys.readouterr().out == "0 ok image embeddings in the champion's rows: too few to find neighbours\n"
    assert "fig" not in scope
