"""Human labels through the CLI (no Spark): simulated annotators' exports imported in one commit,
the same file again a no-op, bad files refused whole with a per-row report; gold from the table."""
from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import not_utf8
from deltalake import DeltaTable, write_deltalake
from sklearn.metrics import cohen_kappa_score

from conf.settings import CorpusSettings
from jobs.cli import main
from lake.corpus import CorpusTable
from signals.contracts import CORPUS, HUMAN_LABELS, LABELS
from tests.killed import run_killed
from training.aggregate import dawid_skene
from training.annotators import simulate, write_exports
from training.gold import gold_labels, votes_of
from training.tasks import task_named

IDS = [f"pin-{i:06d}" for i in range(40)]


@pytest.fixture
def lakehouse(tmp_path: Path) -> Path:
    """A lakehouse holding a corpus of 40 ids (no images: labels only check ids) and their truth."""
    root = tmp_path / "lakehouse"
    corpus = pa.table({"content_id": IDS, "image": [None] * 40, "title": ["t"] * 40, "description": ["d"] * 40,
                       "created_at": [None] * 40, "updated_at": [None] * 40, "ds": ["2026-11-20"] * 40}, schema=CORPUS.schema)
    write_deltalake(root / "corpus", corpus, partition_by=["ds"])
    write_deltalake(root / "corpus_truth", pa.table({"content_id": IDS, "has_text_overlay": [i % 4 == 0 for i in range(40)]}))
    return root


def cli(capsys, lakehouse: Path, *args: str) -> tuple[int, str]:
    status = main([*args, "--set", f"lakehouse={lakehouse}"])
    return status, " ".join(capsys.readouterr().out.split())  # rich wraps long lines


def exports(lakehouse: Path, tmp_path: Path) -> tuple[Path, Path]:
    truth = DeltaTable(str(lakehouse / "corpus_truth")).to_pyarrow_table()
    return write_exports(simulate(truth, task_named("text_heavy"), seed=1), task_named("text_heavy"), tmp_path / "exports")


def test_import_once_then_a_no_op_and_gold(lakehouse: Path, tmp_path: Path, capsys) -> None:
    as_json, as_csv = exports(lakehouse, tmp_path)
    status, out = cli(capsys, lakehouse, "labels", "import", str(as_json), "--task", "text_heavy")
    assert status == 0 and "imported (human_labels version" in out
    table = DeltaTable(str(lakehouse / "human_labels"))
    rows = table.to_pyarrow_table()
    with as_csv.open() as f:
        expected = sorted((r["content_id"], r["annotator"], r["label"]) for r in csv.DictReader(f))
    assert sorted(zip(rows["content_id"].to_pylist(), rows["annotator"].to_pylist(), rows["label"].to_pylist())) == expected
    # every judgement but the skips, once; the CSV of the same judgements is the same batch
    assert "already imported" in cli(capsys, lakehouse, "labels", "import", str(as_csv), "--task", "text_heavy")[1]
    version = table.version()
    assert cli(capsys, lakehouse, "labels", "import", str(as_json), "--task", "text_heavy")[1].count("already imported") == 1
    assert DeltaTable(str(lakehouse / "human_labels")).version() == version
    gold = gold_labels(str(lakehouse), "text_heavy")
    assert list(gold.columns) == ["content_id", "p_positive", "label", "n_annotators"]
    independent = dawid_skene(votes_of(rows, "yes").matrix).posterior[:, 1]
    np.testing.assert_allclose(gold["p_positive"], independent)
    assert (gold["label"] == (gold["content_id"].map(lambda c: IDS.index(c) % 4 == 0))).mean() > 0.9
    status, out = cli(capsys, lakehouse, "labels", "gold", "--task", "text_heavy")
    assert status == 0 and "Krippendorff's alpha" in out and "Cohen's kappa" in out


def test_a_corpus_row_whose_id_is_not_utf8_refuses_no_import(lakehouse: Path, tmp_path: Path, capsys) -> None:
    """`labels import` checks a file's ids against the corpus's, converted to Python: one row whose
    content_id is not UTF-8 (the jobs skip it) raised UnicodeDecodeError and refused every import
    into that corpus. Such an id is left out of the corpus's ids, as the jobs leave it out."""
    row = pa.table({"content_id": ["x"], "image": [None], "title": ["t"], "description": ["d"], "created_at": [None], "updated_at": [None],
                    "ds": ["2026-11-20"]}, schema=CORPUS.schema)
    write_deltalake(lakehouse / "corpus", not_utf8(row, "content_id", 0), mode="append")
    as_json, _ = exports(lakehouse, tmp_path)
    status, out = cli(capsys, lakehouse, "labels", "import", str(as_json), "--task", "text_heavy")
    assert status == 0 and "imported (human_labels version" in out


def test_a_bad_file_is_refused_whole(lakehouse: Path, tmp_path: Path, capsys) -> None:
    good = {"content_id": IDS[0], "label": "yes", "annotator": "ann"}
    rows = [good, {**good, "content_id": "pin-999999"}, {**good, "content_id": IDS[1], "label": "maybe"}, dict(good),
            {**good, "content_id": IDS[2], "task": "spam_text"}, {**good, "content_id": IDS[3]}]
    path = tmp_path / "bad.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, ["content_id", "label", "annotator", "task"])
        writer.writeheader()
        writer.writerows(rows)
    status, out = cli(capsys, lakehouse, "labels", "import", str(path), "--task", "text_heavy")
    assert status == 2 and "4 of 6 rows cannot be imported" in out and "nothing was imported" in out
    for line, why in ((3, "unknown content id"), (4, "value 'maybe'"), (5, "duplicate of an earlier row"), (6, "task 'spam_text'")):
        assert f"line {line} " in out and why in out
    assert not DeltaTable.is_deltatable(str(lakehouse / "human_labels"))
    path.write_text("content_id,label\n")
    assert cli(capsys, lakehouse, "labels", "import", str(path), "--task", "text_heavy")[0] == 2


def test_already_imported_for_that_annotator_is_refused(lakehouse: Path, tmp_path: Path, capsys) -> None:
    as_json, as_csv = exports(lakehouse, tmp_path)
    assert cli(capsys, lakehouse, "labels", "import", str(as_csv), "--task", "text_heavy")[0] == 0
    data = json.loads(as_json.read_text())  # the same items and annotators from Label Studio, relabelled
    for item in data:
        for annotation in item["annotations"]:
            for result in annotation["result"]:
                result["value"]["choices"] = ["no" if result["value"]["choices"] == ["yes"] else "yes"]
    as_json.write_text(json.dumps(data))
    status, out = cli(capsys, lakehouse, "labels", "import", str(as_json), "--task", "text_heavy")
    assert status == 2 and "already imported for this annotator" in out


def label_studio(*annotations: dict, content_id: object = IDS[0]) -> list[dict]:
    """A Label Studio export of one task with these annotations."""
    return [{"data": {"content_id": content_id}, "annotations": list(annotations)}]


def choice(value: object, control: str = "text_heavy", annotator: object = "a@x") -> dict:
    return {"completed_by": {"email": annotator}, "result": [{"from_name": control, "type": "choices", "value": {"choices": [value]}}]}


@pytest.mark.parametrize("export, why", [
    (label_studio(choice("yes"), "not an annotation"), "task 2 annotation 2 (None, annotator None): the annotation is a str, not an object"),
    ([{"data": "pin-000000", "annotations": [choice("yes")]}], "the task's data is a str, not an object"),
    (label_studio({"completed_by": 1, "result": {"type": "choices"}}), "the annotation's result is a dict, not a list"),
    (label_studio(choice([1])), "a choice [1] is not text"),
    (label_studio({"completed_by": 1, "result": []}), "task 2 annotation 1 (pin-000000, annotator 1): needs content_id, annotator and label"),
    (label_studio(choice("yes", annotator=None)), "needs content_id, annotator and label"),  # beside a good task: sorting the batch met a None
    (label_studio({**choice("yes"), "created_at": "yesterday"}), "labelled_at 'yesterday' is not an ISO-8601 time"),
    # found in review, each a traceback before (nothing was imported then either):
    (label_studio({**choice("yes"), "created_at": "0001-01-01T00:00:00+05:00"}), "is outside the years a time in UTC can have"),
    (label_studio({"completed_by": 1, "result": [{"from_name": ["text_heavy"], "type": "choices", "value": {"choices": ["yes"]}}]}),
     "from_name ['text_heavy'] is not text"),
    (label_studio(choice("yes", annotator="\ud800@x")), "completed_by is not valid Unicode text"),
])
def test_a_malformed_label_studio_export_is_reported_per_row(lakehouse: Path, tmp_path: Path, capsys, export: list, why: str) -> None:
    path = tmp_path / "export.json"
    path.write_text(json.dumps(label_studio(choice("no"), content_id=IDS[1]) + export))
    status, out = cli(capsys, lakehouse, "labels", "import", str(path), "--task", "text_heavy")
    assert status == 2 and why in out and "nothing was imported" in out
    assert not DeltaTable.is_deltatable(str(lakehouse / "human_labels"))


def test_a_control_that_names_no_task_is_left_out_and_ids_may_be_numbers(lakehouse: Path, tmp_path: Path, capsys) -> None:
    with_confidence = choice("yes")
    with_confidence["result"].append({"from_name": "confidence", "type": "choices", "value": {"choices": ["high"]}})
    path = tmp_path / "export.json"
    path.write_text(json.dumps(label_studio(with_confidence) + label_studio(choice("no"), content_id=0)))
    status, out = cli(capsys, lakehouse, "labels", "import", str(path), "--task", "text_heavy")
    assert status == 2 and "task 2 annotation 1 (0, annotator a@x): unknown content id" in out  # 0 is read as the id "0"
    path.write_text(json.dumps(label_studio(with_confidence)))
    assert cli(capsys, lakehouse, "labels", "import", str(path), "--task", "text_heavy")[0] == 0
    rows = DeltaTable(str(lakehouse / "human_labels")).to_pyarrow_table()
    assert rows.select(["content_id", "label", "annotator"]).to_pylist() == [{"content_id": IDS[0], "label": "yes", "annotator": "a@x"}]


def test_csv_encodings_and_extra_cells(lakehouse: Path, tmp_path: Path, capsys) -> None:
    path = tmp_path / "labels.csv"
    path.write_bytes("content_id,label,annotator\npin-000001,yes,Jos\xe9\n".encode("latin-1"))
    status, out = cli(capsys, lakehouse, "labels", "import", str(path), "--task", "text_heavy")
    assert status == 2 and "is not UTF-8 text" in out
    path.write_text("content_id,label,annotator\npin-000001,yes,Smith, Jane\npin-000002,no,\n")
    status, out = cli(capsys, lakehouse, "labels", "import", str(path), "--task", "text_heavy")
    assert status == 2 and "line 2 (None, annotator None): 1 more cells than the header" in out
    assert "line 3 (pin-000002, annotator None): needs content_id, annotator and label" in out
    assert not DeltaTable.is_deltatable(str(lakehouse / "human_labels"))
    path.write_bytes("\ufeffcontent_id,label,annotator\npin-000001,yes,\"Smith, Jane\"\n".encode())  # a spreadsheet's UTF-8 CSV
    assert cli(capsys, lakehouse, "labels", "import", str(path), "--task", "text_heavy")[0] == 0
    assert DeltaTable(str(lakehouse / "human_labels")).to_pyarrow_table()["annotator"].to_pylist() == ["Smith, Jane"]


def test_unreadable_files_are_refused_with_where_and_why(lakehouse: Path, tmp_path: Path, capsys) -> None:
    """JSON nested past the parser's depth, a CSV value over the csv module's limit (an unclosed
    quote), and a CSV row after a quoted line break, reported on its own line (found in review)."""
    nested = tmp_path / "nested.json"
    nested.write_text("[" * 100_000 + "]" * 100_000)
    status, out = cli(capsys, lakehouse, "labels", "import", str(nested), "--task", "text_heavy")
    assert status == 2 and "is not JSON that can be read" in out
    unclosed = tmp_path / "unclosed.csv"
    unclosed.write_text('content_id,label,annotator\npin-000001,yes,"a\n' + "x" * 200_000 + "\n")
    status, out = cli(capsys, lakehouse, "labels", "import", str(unclosed), "--task", "text_heavy")
    assert status == 2 and "field larger than field limit" in out and "nothing was imported" in out
    broken = tmp_path / "broken.csv"
    broken.write_text('content_id,label,annotator\npin-000001,yes,"Smith,\nJane"\npin-000002,maybe,b\n')
    status, out = cli(capsys, lakehouse, "labels", "import", str(broken), "--task", "text_heavy")
    assert status == 2 and "line 4 (pin-000002, annotator b): value 'maybe'" in out
    assert not DeltaTable.is_deltatable(str(lakehouse / "human_labels"))


def test_an_import_committed_meanwhile_makes_the_other_conflict(lakehouse: Path, tmp_path: Path, monkeypatch) -> None:
    """Two imports of one item by one annotator, the second checked before the first commits: it
    must not land beside it (two judgements of one annotator for one item)."""
    from lake.delta_io import CommitConflict
    from training import human_labels

    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    first.write_text("content_id,label,annotator\npin-000000,yes,ann\n")
    second.write_text("content_id,label,annotator\npin-000000,no,ann\n")
    checked = human_labels.problems

    def first_lands_meanwhile(*args, **kwargs):
        found = checked(*args, **kwargs)
        monkeypatch.setattr(human_labels, "problems", checked)
        human_labels.import_labels(str(lakehouse), CorpusTable(CorpusSettings(), str(lakehouse / "corpus")), first, "text_heavy")
        return found

    monkeypatch.setattr(human_labels, "problems", first_lands_meanwhile)
    with pytest.raises(CommitConflict):
        human_labels.import_labels(str(lakehouse), CorpusTable(CorpusSettings(), str(lakehouse / "corpus")), second, "text_heavy")
    rows = DeltaTable(str(lakehouse / "human_labels")).to_pyarrow_table()
    assert rows["label"].to_pylist() == ["yes"]


@pytest.mark.subprocess
@pytest.mark.parametrize("target, landed", [("lake.delta_io:commit_files", False), ("training.human_labels:ImportOutcome", True)],
                         ids=["files-written", "committed"])
def test_an_import_killed_before_or_after_its_commit_is_imported_once_by_the_retry(lakehouse: Path, tmp_path: Path, capsys, target,
                                                                                  landed) -> None:
    """`labels import` killed (a process ended at once) with its data files written and not committed, or after its
    commit: the retry leaves the table holding the file's judgements once, and says whether it imported them."""
    as_json, as_csv = exports(lakehouse, tmp_path)
    run_killed(target, "True", "from jobs.cli import main; main(['labels', 'import', argv[0], '--task', 'text_heavy', '--set', "
               "f'lakehouse={argv[1]}'])", str(as_json), str(lakehouse))
    status, out = cli(capsys, lakehouse, "labels", "import", str(as_json), "--task", "text_heavy")
    assert status == 0 and ("already imported" if landed else "imported (human_labels version") in out
    rows = DeltaTable(str(lakehouse / "human_labels")).to_pyarrow_table()
    with as_csv.open() as f:
        expected = sorted((r["content_id"], r["annotator"], r["label"]) for r in csv.DictReader(f))
    assert sorted(zip(rows["content_id"].to_pylist(), rows["annotator"].to_pylist(), rows["label"].to_pylist())) == expected


def test_gold_of_a_task_without_labels_says_so(lakehouse: Path, capsys) -> None:
    status, out = cli(capsys, lakehouse, "labels", "gold", "--task", "text_heavy")
    assert status == 2 and "no human labels of text_heavy" in out


def test_the_same_judgements_labelled_as_another_task_are_refused_not_taken_for_imported(lakehouse: Path, tmp_path: Path, capsys) -> None:
    """Found in review: the batch digest left out the task a row names, so a file of another task's
    labels, with the same items, annotators and values as an import, was "already imported" (exit 0)."""
    path = tmp_path / "labels.csv"
    path.write_text("content_id,label,annotator\npin-000001,yes,ann\n")
    assert cli(capsys, lakehouse, "labels", "import", str(path), "--task", "text_heavy")[0] == 0
    path.write_text("content_id,label,annotator,task\npin-000001,yes,ann,text_heavy\n")  # naming the task it is imported for: the same batch
    assert "already imported" in cli(capsys, lakehouse, "labels", "import", str(path), "--task", "text_heavy")[1]
    path.write_text("content_id,label,annotator,task\npin-000001,yes,ann,spam_text\n")
    status, out = cli(capsys, lakehouse, "labels", "import", str(path), "--task", "text_heavy")
    assert status == 2 and "a label of task 'spam_text', not 'text_heavy'" in out and "nothing was imported" in out


def test_gold_prints_annotators_as_written_not_as_markup(lakehouse: Path, tmp_path: Path, capsys) -> None:
    """Found in review: annotator names and file names went to the console as Rich markup: "alice [ops]"
    lost its team and a name holding "[/]" stopped `labels gold` with a MarkupError traceback."""
    path = tmp_path / "labels [v2].csv"  # the file's name too: it is printed once the import has landed
    path.write_text("content_id,label,annotator\n" + "".join(f"{c},yes,{a}\n" for c in IDS[:3] for a in ("alice [ops]", "b[/]")))
    status, out = cli(capsys, lakehouse, "labels", "import", str(path), "--task", "text_heavy")
    assert status == 0 and "labels [v2].csv: 6 labels of text_heavy" in out
    status, out = cli(capsys, lakehouse, "labels", "gold", "--task", "text_heavy")
    assert status == 0 and "alice [ops]" in out and "Cohen's kappa alice [ops] / b[/]" in out


def test_gold_says_which_figures_cannot_be_estimated_instead_of_printing_them(lakehouse: Path, tmp_path: Path, capsys) -> None:
    """Found in review: an annotator who shares no item with another (one annotator only, say) was
    printed with P(yes | no) 0.000 and P(no | yes) 0.001, read against their own votes, as if they
    never erred; and kappa or alpha without items to compare printed "nan"."""
    path = tmp_path / "labels.csv"
    path.write_text("content_id,label,annotator\n" + "".join(f"{c},yes,{a}\n" for c in IDS[:3] for a in ("a", "b"))
                    + "".join(f"{c},{label},solo\n" for c, label in ((IDS[3], "yes"), (IDS[4], "no"))))
    assert cli(capsys, lakehouse, "labels", "import", str(path), "--task", "text_heavy")[0] == 0
    status, out = cli(capsys, lakehouse, "labels", "gold", "--task", "text_heavy")
    assert status == 0 and "nan" not in out
    assert "│ solo │ 2 │ - │ - │" in out and "│ a │ 3 │ - │" not in out and "cannot be weighed" in out
    assert "Krippendorff's alpha not a number (one value said throughout)" in out
    assert "Cohen's kappa a / b: not a number (one value said by both throughout)" in out
    assert "Cohen's kappa not a number for 2 pairs of annotators who judged no item in common (a / solo, b / solo)" in out
    assert "Cohen's kappa a / solo" not in out


def test_gold_counts_the_pairs_of_a_crowd_who_share_no_item_instead_of_a_line_each(lakehouse: Path, tmp_path: Path, capsys) -> None:
    """Found in review: 102 annotators in trios printed 5,151 kappa lines, nearly all "no item
    judged by both"; pairs who judged items together still get their line."""
    crowd = [f"annotator-{i}" for i in range(8)]
    rows = [f"{IDS[i % 4]},{'yes' if i % 3 else 'no'},{crowd[2 * (i % 4) + k]}\n" for i in range(4) for k in (0, 1)]
    path = tmp_path / "labels.csv"
    path.write_text("content_id,label,annotator\n" + "".join(rows))
    assert cli(capsys, lakehouse, "labels", "import", str(path), "--task", "text_heavy")[0] == 0
    status, out = cli(capsys, lakehouse, "labels", "gold", "--task", "text_heavy")
    assert status == 0 and out.count("Cohen's kappa ") == 5  # the four pairs who share an item, then one line for the other 24
    assert "Cohen's kappa not a number for 24 pairs of annotators who judged no item in common (annotator-0 / annotator-2, " in out
    assert "annotator-0 / annotator-6, ...)" in out and "annotator-0 / annotator-7" not in out  # five named, the rest counted


def test_one_annotator_typed_two_ways_is_one_annotator(lakehouse: Path, tmp_path: Path, capsys) -> None:
    """`José` with its accent composed (CSV) and decomposed (Label Studio) names one annotator:
    their second judgement of the item is a repeat, and the table holds the composed name."""
    path = tmp_path / "labels.csv"
    path.write_text(f"content_id,label,annotator\n{IDS[0]},yes,Jos\u00e9\n", encoding="utf-8")
    assert cli(capsys, lakehouse, "labels", "import", str(path), "--task", "text_heavy")[0] == 0
    again = tmp_path / "export.json"
    again.write_text(json.dumps(label_studio(choice("no", annotator="Jose\u0301"))))
    status, out = cli(capsys, lakehouse, "labels", "import", str(again), "--task", "text_heavy")
    assert status == 2 and "already imported for this annotator" in out
    assert DeltaTable(str(lakehouse / "human_labels")).to_pyarrow_table()["annotator"].to_pylist() == ["Jos\u00e9"]


def test_one_email_in_two_letter_cases_is_one_annotator(lakehouse: Path, tmp_path: Path, capsys) -> None:
    """`Ann@Example.com` and `ann@example.com` are one person: in one file, their two judgements of an
    item are a repeat; across imports, already imported; the table holds the address in lower case, so
    gold has one annotator. A name that is not an email keeps its case (`Bob` and `bob` are two)."""
    path = tmp_path / "labels.csv"
    path.write_text(f"content_id,label,annotator\n{IDS[0]},yes,Ann@Example.com\n{IDS[0]},no,ann@example.com\n", encoding="utf-8")
    status, out = cli(capsys, lakehouse, "labels", "import", str(path), "--task", "text_heavy")
    assert status == 2 and "line 3 (pin-000000, annotator ann@example.com): a duplicate of an earlier row of the file" in out
    path.write_text(f"content_id,label,annotator\n{IDS[0]},yes,Ann@Example.com\n{IDS[1]},no,ANN@EXAMPLE.COM\n"
                    f"{IDS[0]},no,Bob\n{IDS[1]},yes,bob\n", encoding="utf-8")
    assert cli(capsys, lakehouse, "labels", "import", str(path), "--task", "text_heavy")[0] == 0
    again = tmp_path / "export.json"
    again.write_text(json.dumps(label_studio(choice("no", annotator="aNN@example.COM"))))
    status, out = cli(capsys, lakehouse, "labels", "import", str(again), "--task", "text_heavy")
    assert status == 2 and "already imported for this annotator" in out
    rows = DeltaTable(str(lakehouse / "human_labels")).to_pyarrow_table()
    assert sorted(rows["annotator"].to_pylist()) == ["Bob", "ann@example.com", "ann@example.com", "bob"]
    assert votes_of(rows, "yes").annotators == ["Bob", "ann@example.com", "bob"]


def test_an_email_stored_in_another_case_before_is_already_imported(lakehouse: Path, tmp_path: Path, capsys) -> None:
    """A table written before emails were lower-cased holds `Ann@Example.com`: the same person's
    judgement of that item, now `ann@example.com`, is refused as already imported, not added."""
    stored = pa.table({"content_id": [IDS[0]], "task": ["text_heavy"], "label": ["yes"], "annotator": ["Ann@Example.com"],
                       "labelled_at": [dt.datetime(2026, 11, 23, tzinfo=dt.UTC)], "batch": ["before"]}, schema=HUMAN_LABELS.schema)
    write_deltalake(lakehouse / "human_labels", stored, partition_by=["task"])
    path = tmp_path / "labels.csv"
    path.write_text(f"content_id,label,annotator\n{IDS[0]},no,ann@example.com\n", encoding="utf-8")
    status, out = cli(capsys, lakehouse, "labels", "import", str(path), "--task", "text_heavy")
    assert status == 2 and "already imported for this annotator" in out


def test_one_person_stored_in_two_cases_before_is_one_annotator_in_gold(lakehouse: Path, tmp_path: Path, capsys) -> None:
    """A table written before emails were lower-cased (and names composed) holds one person as
    `Ann@Example.com` and `ann@example.com`, and `Jose\u0301` beside `Jos\u00e9`: gold and `labels gold`
    count each as one annotator, as import identifies them (before: four annotators, a kappa of Ann
    with herself "no item judged by both", her item judged in both cases two votes). Of one person's
    two judgements of an item, the first labelled counts, as import keeps the judgement stored first."""
    at = [dt.datetime(2026, 11, 23, h, tzinfo=dt.UTC) for h in range(3)]
    stored = [(IDS[0], "yes", "Ann@Example.com", at[0]), (IDS[1], "no", "Ann@Example.com", at[0]),
              (IDS[2], "yes", "ann@example.com", at[0]), (IDS[3], "no", "ann@example.com", at[0]),
              (IDS[4], "no", "ann@example.com", at[2]), (IDS[4], "yes", "ANN@example.com", at[1]),  # judged twice: yes first
              (IDS[0], "yes", "Jos\u00e9", at[0]), (IDS[1], "no", "Jose\u0301", at[0]), (IDS[2], "no", "Jos\u00e9", at[0]),
              (IDS[3], "no", "Jose\u0301", at[0]), (IDS[4], "yes", "Jos\u00e9", at[0])]
    write_deltalake(lakehouse / "human_labels", pa.table(
        {"content_id": [r[0] for r in stored], "task": ["text_heavy"] * len(stored), "label": [r[1] for r in stored],
         "annotator": [r[2] for r in stored], "labelled_at": [r[3] for r in stored], "batch": ["before"] * len(stored)},
        schema=HUMAN_LABELS.schema), partition_by=["task"])
    ann, jose = [1, 0, 1, 0, 1], [1, 0, 0, 0, 1]  # by hand: one column each, items 0..4
    votes = votes_of(DeltaTable(str(lakehouse / "human_labels")).to_pyarrow_table(), "yes")
    assert votes.annotators == ["Jos\u00e9", "ann@example.com"] and votes.content_ids == IDS[:5]  # sorted: upper case first
    np.testing.assert_array_equal(votes.matrix, np.array([jose, ann]).T)
    gold = gold_labels(str(lakehouse), "text_heavy")
    assert gold["n_annotators"].tolist() == [2] * 5
    np.testing.assert_allclose(gold["p_positive"], dawid_skene(np.array([jose, ann], dtype=np.int8).T).posterior[:, 1])
    status, out = cli(capsys, lakehouse, "labels", "gold", "--task", "text_heavy")
    assert status == 0 and "text_heavy: 5 items, 2 annotators;" in out and "Ann@Example.com" not in out
    assert f"Cohen's kappa Jos\u00e9 / ann@example.com: {cohen_kappa_score(jose, ann):.3f}" in out
    assert "│ ann@example.com │ 5 │" in out and "no item in common" not in out


def test_a_csv_header_naming_a_column_twice_and_a_json_min_export_are_refused(lakehouse: Path, tmp_path: Path, capsys) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(f"content_id,label,annotator,label\n{IDS[0]},yes,ann,no\n")
    status, out = cli(capsys, lakehouse, "labels", "import", str(path), "--task", "text_heavy")
    assert status == 2 and "names label more than once" in out
    json_min = tmp_path / "export.json"  # Label Studio's JSON-MIN: a flat row per annotation
    json_min.write_text(json.dumps([{"id": 1, "content_id": IDS[0], "text_heavy": "yes", "annotator": "a@x", "annotation_id": 7}]))
    status, out = cli(capsys, lakehouse, "labels", "import", str(json_min), "--task", "text_heavy")
    assert status == 2 and "JSON-MIN" in out
    assert not DeltaTable.is_deltatable(str(lakehouse / "human_labels"))


def test_weak_labels_of_a_lakehouse_with_labels_but_no_embeddings_say_to_backfill(lakehouse: Path, capsys) -> None:
    """Found in review: a labels table without an embeddings table was a KeyError traceback."""
    write_deltalake(lakehouse / "labels", LABELS.schema.empty_table(), partition_by=list(LABELS.partition_by))
    status, out = cli(capsys, lakehouse, "labels", "weak", "--task", "text_heavy")
    assert status == 2 and "no embeddings table" in out and "run a backfill first" in out
