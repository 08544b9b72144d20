"""A trained head in the jobs: trained on the backfilled sample's stored embeddings, shadowed at
100% beside nothing (its scores equal the head on the stored vectors), promoted through the gate,
a second version canaried on a slice and refused promotion for its coverage, and a refresh that
scores new items from the embeddings it commits in the same run and drops a takedown's row."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import copy_lakehouse, edit_corpus, settings_for

from jobs.backfill import run_backfill
from jobs.cli import main
from jobs.dedup import run_dedup
from jobs.refresh import run_refresh
from lake import delta_io
from lake.registry import CHALLENGER, CHAMPION, Registry
from rollout.models import build_signals
from sample_corpus.generate import TRUTH_TABLE
from serving.scorer import Item, Scorer, unservable
from signals.contracts import TRANSIENT_PREFIX
from signals.labels.head import load_head, score_vectors
from training.gate import EVALUATION_TAG
from training.train import train_task

pytestmark = pytest.mark.spark

OFF = tuple(f"signals.{n}.enabled=false" for n in ("text_embedding", "image_safety", "text_safety", "language", "image_topics", "text_topics"))
HEAD = "head_low_quality"
# a lenient gate, and 40% of the 60 items' groups held out, so both classes are among them
LENIENT = ("training.gate.min_auc_margin=-1", "training.gate.min_class_items=1", "training.gate.max_ece=1", "training.gate.max_slice_drop=1",
           "training.epochs=10", "training.splits=[0.5, 0.1, 0.4]")


def labels_from_truth(lakehouse: str, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(weak labels with 15% flipped, gold labels) of low_quality from the sample corpus truth."""
    truth = delta_io.read_arrow(f"{lakehouse}/{TRUTH_TABLE}").to_pandas()
    positive = (truth["is_blurred"] | truth["is_low_res"]).to_numpy()
    flipped = np.random.default_rng(seed).random(len(truth)) < 0.15
    weak = pd.DataFrame({"content_id": truth["content_id"], "p_positive": np.where(positive ^ flipped, 0.8, 0.2)})
    gold = pd.DataFrame({"content_id": truth["content_id"], "p_positive": positive.astype(float), "label": positive.astype(int),
                         "n_annotators": 1})
    return weak, gold


def head_rows(settings, version: str) -> pd.DataFrame:
    rows = delta_io.read_arrow(settings.table_root("labels")).to_pandas()
    return rows[(rows["signal"] == HEAD) & (rows["model_version"] == version)].set_index("content_id")


def test_a_trained_head_through_shadow_gate_canary_and_refresh(spark, backfilled, tmp_path, capsys):
    lakehouse = tmp_path / "lakehouse"
    settings = copy_lakehouse(backfilled.settings, lakehouse, *OFF, *LENIENT, "signals.head_low_quality.enabled=true")
    weak, gold = labels_from_truth(str(lakehouse), seed=0)
    first = train_task(settings, "low_quality", weak, "weak", gold=gold, report_path=tmp_path / "report.html")
    run_backfill(spark, settings, role=CHALLENGER)  # only the head has a challenger: a shadow run of it on every item

    rows = head_rows(settings, first.model.version)
    embeddings = delta_io.read_arrow(settings.table_root("embeddings")).to_pandas()
    embeddings = embeddings[embeddings["signal"] == "image_embedding"].set_index("content_id")
    assert sorted(rows.index) == sorted(embeddings.index)
    ok = embeddings[embeddings["status"] == "ok"]
    assert (rows.loc[ok.index, "status"] == "ok").all()
    np.testing.assert_allclose(rows.loc[ok.index, "score"], score_vectors(load_head(first.weights), np.stack(ok["vector"])), atol=1e-6)
    failed = embeddings[embeddings["status"] == "error"]
    assert len(failed) and (rows.loc[failed.index, "error"] == "input embedding: " + failed["error"]).all()

    def promote(*args: str) -> int:
        return main(["promote", HEAD, "challenger", "--set", f"lakehouse={lakehouse}", *(f"--set={o}" for o in LENIENT), *args])

    assert promote("--set=training.gate.min_auc_margin=0.99") == 2 and "min_auc_margin" in capsys.readouterr().out
    assert promote() == 0
    registry = Registry(settings.registry_uri)
    assert registry.aliases(HEAD)[CHAMPION] == first.model.version
    served_like_stored(settings, rows, [*ok.index[:6], *failed.index[:2]], first.model.version)

    retrained = settings.model_copy(update={"training": settings.training.model_copy(update={"seed": 1})})
    second = train_task(retrained, "low_quality", weak, "weak", gold=gold, report_path=tmp_path / "report.html")
    run_backfill(spark, settings, role=CHALLENGER, slice_percent=30)  # a canary
    canaried = len(head_rows(settings, second.model.version))
    assert 0 < canaried < len(rows)
    assert promote() == 2
    out = " ".join(capsys.readouterr().out.split())
    assert f"lacks {len(rows) - canaried} of the {len(rows)}" in out and "backfill --challenger" in out
    assert registry.aliases(HEAD)[CHAMPION] == first.model.version

    edits = edit_corpus(settings.table_root("corpus"), drop=1, retitle=0, add=2)
    run_refresh(spark, settings)  # the new items' embeddings, then the champion head on them, in one run; the takedown gone
    rows = head_rows(settings, first.model.version)
    assert (rows.loc[edits["added"], "status"] == "ok").all() and not rows["error"].fillna("").str.startswith(TRANSIENT_PREFIX).any()
    assert not set(edits["dropped"]) & set(rows.index)


def served_like_stored(settings, stored: pd.DataFrame, content_ids: list[str], version: str) -> None:
    """The online service's champion head on these corpus items (their embeddings computed in
    the request) says what the shadow run stored for them; a head whose embedding the service
    does not run is not loaded, and the service says why."""
    corpus = delta_io.read_arrow(settings.table_root("corpus")).to_pandas().set_index("content_id")
    scorer = Scorer.load(settings)
    results = scorer.score([Item(corpus.loc[c, "image"], None, corpus.loc[c, "title"], corpus.loc[c, "description"]) for c in content_ids])
    for content_id, result in zip(content_ids, results, strict=True):
        online, row = result.labels[HEAD], stored.loc[content_id]
        assert (online["status"], online["error"], online["model_version"]) == (row["status"], row["error"], version)
        if row["status"] == "ok":
            (label,) = online["labels"]
            assert label["label"] == row["label"] and label["decision"] == row["decision"] and abs(label["score"] - row["score"]) < 1e-5
    assert not scorer.skipped_heads and scorer.state["signals"][HEAD] == version
    without = build_signals(settings.model_copy(update={"signals": {**settings.signals, "image_embedding": settings.signals["image_embedding"]
                                                                    .model_copy(update={"enabled": False})}}))
    assert "image_embedding version" in unservable(without[HEAD], without) and "not enabled" in unservable(without[HEAD], without)


def test_the_training_loop_through_the_command_line(spark, backfilled, tmp_path, capsys):
    """simulated annotators -> import -> gold -> weak labels -> train on both -> promote: every
    step the command a team runs, on the labels tables those commands wrote, after the dedup job
    (the splits keep each near-duplicate group whole; the job here, as the CLI would stop the
    tests' Spark session)."""
    from training.gold import gold_labels
    from training.weak import weak_labels

    lakehouse, exports = tmp_path / "lakehouse", tmp_path / "exports"
    shutil.copytree(backfilled.settings.lakehouse_root, lakehouse)
    options = ["--set", f"lakehouse={lakehouse}", *(f"--set={o}" for o in LENIENT)]
    run_dedup(spark, settings_for(lakehouse))
    assert main(["labels", "simulate", "--task", "low_quality", "--out", str(exports), *options]) == 0
    assert main(["labels", "import", str(exports / "low_quality-label-studio.json"), "--task", "low_quality", *options]) == 0
    assert main(["labels", "gold", "--task", "low_quality", *options]) == 0
    assert main(["labels", "weak", "--task", "low_quality", "--out", str(exports), *options]) == 0
    gold, weak = gold_labels(str(lakehouse), "low_quality"), weak_labels(str(lakehouse), "low_quality")
    truth = delta_io.read_arrow(f"{lakehouse}/{TRUTH_TABLE}").to_pandas().set_index("content_id")
    expected = (truth["is_blurred"] | truth["is_low_res"]).astype(int)
    assert len(gold) and (gold.set_index("content_id")["label"] == expected.loc[gold["content_id"]]).mean() > 0.9  # careful annotators win
    assert weak["p_positive"].between(0, 1).all() and len(weak) > len(gold) / 2
    capsys.readouterr()

    assert main(["train", "low_quality", "--labels", "both", *options]) == 0
    trained = capsys.readouterr().out
    assert "head_low_quality: version 1 became 'challenger' (it named no version before)" in " ".join(trained.split()) and "held-out gold" in trained
    assert "the head's ROC-AUC minus each baseline's (95% interval" in " ".join(trained.split())
    registry = Registry(settings_for(lakehouse).registry_uri)
    kept = json.loads(registry.client.get_model_version(HEAD, "1").tags[EVALUATION_TAG])
    strict = main(["promote", HEAD, "challenger", *options, "--set=training.gate.lead_beyond_noise=true"])  # judged: no champion yet
    said = " ".join(capsys.readouterr().out.split())
    chance = [b for b, lead in kept["leads"].items() if lead is not None and lead["ci95_low"] <= 0]
    assert (strict == 2) == bool(chance) and all(f"lead over {b}" in said for b in chance)
    assert main(["promote", HEAD, "challenger", *options]) == 0
    assert registry.aliases(HEAD)[CHAMPION] == "1"


def test_a_head_on_joined_embeddings_in_a_shadow_run_and_a_refresh_that_changes_one_of_its_inputs(spark, backfilled, tmp_path, capsys):
    """A head trained on the image and text embeddings joined runs as its own kind whatever the
    profile's: each stored score equals the head on the two stored vectors, an item's image error
    is its error, and a retitled item (the text embedding alone recomputed) is scored again."""
    lakehouse = tmp_path / "lakehouse"
    settings = copy_lakehouse(backfilled.settings, lakehouse, *(o for o in OFF if not o.startswith("signals.text_embedding.")), *LENIENT,
                            "signals.head_low_quality.enabled=true")
    weak, gold = labels_from_truth(str(lakehouse), seed=0)
    trained = train_task(settings, "low_quality", weak, "weak", "image_embedding+text_embedding", gold=gold, report_path=tmp_path / "r.html")
    assert trained.model.params["kind"] == "joined_embedding_head" and settings.signals[HEAD].kind == "image_embedding_head"
    run_backfill(spark, settings, role=CHALLENGER)

    def expected(version: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        rows = head_rows(settings, version)
        stored = delta_io.read_arrow(settings.table_root("embeddings")).to_pandas()
        image, text = (stored[stored["signal"] == s].set_index("content_id") for s in ("image_embedding", "text_embedding"))
        ok = image.index[(image["status"] == "ok") & image.index.isin(text.index[text["status"] == "ok"])]
        both = np.hstack([np.stack(image.loc[ok, "vector"]), np.stack(text.loc[ok, "vector"])])
        np.testing.assert_allclose(rows.loc[ok, "score"], score_vectors(load_head(trained.weights), both), atol=1e-6)
        return rows, image

    rows, image = expected(trained.model.version)
    failed = image[image["status"] == "error"]
    assert len(failed) and (rows.loc[failed.index, "error"] == "input embedding: " + failed["error"]).all()
    before = rows["score"]

    assert main(["promote", HEAD, "challenger", "--set", f"lakehouse={lakehouse}", *(f"--set={o}" for o in LENIENT)]) == 0
    edits = edit_corpus(settings.table_root("corpus"), drop=0, retitle=2, add=0)
    run_refresh(spark, settings)
    rows, _ = expected(trained.model.version)
    recomputed = rows[rows["computed_at"] > rows["computed_at"].min()].index
    assert sorted(recomputed) == sorted(edits["retitled"]) and (rows.loc[edits["retitled"], "score"] != before.loc[edits["retitled"]]).all()
