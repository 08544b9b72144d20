"""Label signals through the job: the labels table's contract, error rows, and scores equal to
the labeler called directly on the same input."""
from __future__ import annotations

from collections import defaultdict

import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from rollout.models import build_signals
from signals.contracts import LABELS
from signals.labels.base import Labeler
from signals.table_rows import output_of

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def labels(backfilled):
    return DeltaTable(backfilled.settings.table_root("labels")).to_pyarrow_table()


@pytest.fixture(scope="module")
def labelers(backfilled) -> dict[str, Labeler]:
    return {n: s for n, s in build_signals(backfilled.settings).items() if output_of(s) is LABELS}


def test_the_labels_table_keeps_its_contract(labels):
    assert labels.schema.equals(LABELS.schema)
    keys = list(zip(*(labels[c].to_pylist() for c in LABELS.key)))
    assert len(keys) == len(set(keys))


def test_every_item_has_every_label_or_one_error_row(backfilled, labels, labelers):
    corpus = set(DeltaTable(backfilled.settings.table_root("corpus")).to_pyarrow_table()["content_id"].to_pylist())
    rows = defaultdict(list)
    for row in labels.to_pylist():
        rows[(row["signal"], row["content_id"])].append(row)
    for name, labeler in labelers.items():
        assert {cid for (signal, cid) in rows if signal == name} == corpus, name
        for cid in corpus:
            mine = rows[(name, cid)]
            if mine[0]["status"] == "error":
                assert len(mine) == 1 and mine[0]["error"] and mine[0]["label"] is None and mine[0]["score"] is None
            elif labeler.open_label_set:
                assert len(mine) >= 1
            else:
                assert sorted(r["label"] for r in mine) == sorted(labeler.labels), (name, cid)


def test_decisions_follow_the_recorded_thresholds(labels):
    for row in labels.filter(pc.is_valid(labels["threshold"])).to_pylist():
        assert row["decision"] == (row["score"] >= row["threshold"])


def test_bad_images_are_error_rows_for_every_image_label(backfilled, labels, labelers):
    truth = DeltaTable(backfilled.settings.table_root("corpus_truth")).to_pyarrow_table()
    bad = set(pc.filter(truth["content_id"], truth["is_bad_image"]).to_pylist())
    for name, labeler in labelers.items():
        if labeler.input_kind != "image":
            continue
        failed = set(labels.filter(pc.and_(pc.equal(labels["signal"], name), pc.equal(labels["status"], "error")))["content_id"].to_pylist())
        assert failed == bad, name


def test_stored_scores_equal_the_labeler_called_directly(backfilled, labels, labelers):
    corpus = {r["content_id"]: r for r in DeltaTable(backfilled.settings.table_root("corpus")).to_pyarrow_table().to_pylist()}
    stored = defaultdict(dict)
    for row in labels.filter(pc.equal(labels["status"], "ok")).to_pylist():
        stored[(row["signal"], row["content_id"])][row["label"]] = row["score"]
    for name, labeler in labelers.items():
        labeler.load()
        sample = sorted(cid for (signal, cid) in stored if signal == name)[:4]
        direct = labeler.compute([labeler.prepare(corpus[cid]) for cid in sample])
        for cid, value in zip(sample, direct):
            for label, score in stored[(name, cid)].items():
                assert abs(score - value.scores[label]) <= 1e-4, (name, cid, label)
