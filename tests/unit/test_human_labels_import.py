"""Human labels through the CLI (no Spark): simulated annotators' exports imported in one commit,
the same file again a no-op, bad files refused whole with a per-row report; gold from the table."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from jobs.cli import main
from signals.contracts import CORPUS
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
