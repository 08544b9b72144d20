"""`train` end to end without Spark (training/train.py): a head trained on injected labels,
evaluated on held-out gold, logged to MLflow, registered as its task's challenger; and `promote`
refusing a head that fails the gate, and any version that covers fewer items than the champion."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from conftest import NOT_UTF8, not_utf8
from deltalake import DeltaTable, write_deltalake
from embedding_tables import SIGNAL, append, delete, random_vectors, rows
from sklearn.metrics import roc_auc_score
from training_lakehouse import ERRORS, training_lakehouse

from conf.settings import UsageError, load_settings
from jobs.cli import main
from lake import delta_io
from lake.corpus import CorpusTable
from lake.registry import CHALLENGER, CHAMPION, Registry, RegistryError
from rollout.compare import EXPERIMENT as COMPARE_EXPERIMENT
from signals.contracts import LABELS
from signals.labels.head import load_head, score_vectors
from tests.killed import run_killed
from training.evaluate import image_format, text_length
from training.gate import EVALUATION_TAG
from training.gold import gold_labels
from training.human_labels import import_labels
from training.loader import split_of
from training.sampling import current_head, head_probabilities, write_task_file
from training.train import EXPERIMENT, ReadVersions, label_frames, train_task


@pytest.fixture
def lake(tmp_path, empty_registry_db):
    return training_lakehouse(tmp_path, empty_registry_db)


def test_train_registers_a_challenger_evaluated_on_held_out_gold(lake, tmp_path):
    trained = train_task(lake.settings, "low_quality", lake.weak, "weak", gold=lake.gold, majority=lake.majority,
                         report_path=tmp_path / "report.html")
    registry = Registry(lake.settings.registry_uri)
    assert (trained.model.name, trained.model.version) == ("head_low_quality", "1")
    assert registry.aliases("head_low_quality") == {CHALLENGER: "1"}
    held_out = [c for c in lake.ids[:-ERRORS] if split_of(c) == "test"]  # no duplicates table: every item its own group
    assert sorted(trained.evaluation.frame["content_id"]) == held_out
    stored = delta_io.read_arrow(f"{lake.settings.lakehouse_root}/embeddings").to_pandas().set_index("content_id")
    scores = score_vectors(load_head(trained.weights), np.stack(stored.loc[held_out, "vector"].to_list()))
    truth = lake.gold.set_index("content_id").loc[held_out, "label"]
    assert trained.evaluation.metrics["head"]["roc_auc"] == pytest.approx(roc_auc_score(truth, scores), abs=1e-9)
    rule = delta_io.read_arrow(f"{lake.settings.lakehouse_root}/labels").to_pandas().set_index("content_id").loc[held_out, "score"]
    assert trained.evaluation.metrics["rule"]["roc_auc"] == pytest.approx(roc_auc_score(truth, rule), abs=1e-9)
    assert set(trained.evaluation.metrics) == {"head", "rule", "majority_vote"}
    assert set(trained.evaluation.slices["head"]) >= {"ds", "image_format", "text_length"}
    kept = json.loads(registry.client.get_model_version("head_low_quality", "1").tags[EVALUATION_TAG])
    assert kept["leads"]["rule"]["difference"] == pytest.approx(roc_auc_score(truth, scores) - roc_auc_score(truth, rule), abs=1e-9)
    assert set(kept["leads"]) == {"rule", "majority_vote"}  # the gate's lead_beyond_noise reads them
    assert trained.report.read_text().count("data:image/png;base64,") == 2 and "head's ROC-AUC minus each other scorer's" in trained.report.read_text()
    run = registry.client.get_run(trained.run_id)
    assert registry.client.get_experiment(run.info.experiment_id).name == EXPERIMENT != COMPARE_EXPERIMENT
    assert run.data.params["embeddings_version"] == str(trained.snapshot.embeddings_version)
    assert run.data.params["labels"] == "weak" and run.data.metrics["head.roc_auc"] == trained.evaluation.metrics["head"]["roc_auc"]
    assert {a.path for a in registry.client.list_artifacts(trained.run_id)} == {"report.html", Path(trained.weights).name}


def test_the_evaluation_reads_the_tables_at_the_versions_taken_when_the_run_began(lake, tmp_path):
    """The rule rescored, or another rule version promoted, while a head trains does not reach its
    evaluation, and the versions read (tables and the rule's model) are logged, so the gate's verdict
    can be repeated."""
    root = lake.settings.lakehouse_root
    before = delta_io.read_arrow(f"{root}/labels").to_pandas()
    inverted = before.assign(score=1 - before["score"])
    registry = Registry(lake.settings.registry_uri)
    registry.register("image_quality", "code:rule-2", {"kind": "image_quality"})  # a second rule version, its rows scored the other way
    write_deltalake(f"{root}/labels", pa.Table.from_pandas(inverted.assign(model_version="2"), schema=LABELS.schema, preserve_index=False),
                    mode="append", partition_by=list(LABELS.partition_by))
    reads = ReadVersions.latest(lake.settings)
    write_deltalake(f"{root}/labels", pa.Table.from_pandas(inverted, schema=LABELS.schema, preserve_index=False),
                    mode="overwrite", partition_by=list(LABELS.partition_by))
    registry.promote("image_quality", "2")
    trained = train_task(lake.settings, "low_quality", lake.weak, "weak", gold=lake.gold, majority=lake.majority,
                         report_path=tmp_path / "report.html", reads=reads)
    held_out = trained.evaluation.frame["content_id"]
    truth = lake.gold.set_index("content_id").loc[held_out, "label"]
    rule = before.set_index("content_id").loc[held_out, "score"]
    assert trained.evaluation.metrics["rule"]["roc_auc"] == pytest.approx(roc_auc_score(truth, rule), abs=1e-9) != 0.5
    params = registry.client.get_run(trained.run_id).data.params
    assert params["labels_table_version"] == str(reads.labels) != str(delta_io.latest_version(f"{root}/labels"))
    assert (params["corpus_version"], params["human_labels_version"], params["weak_labels_version"]) == (str(reads.corpus), "None", "None")
    assert (params["image_quality_model_version"], params["language_model_version"]) == ("1", "None")


def test_gold_is_read_at_a_pinned_human_labels_version(lake, tmp_path):
    root = lake.settings.lakehouse_root
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    first.write_text("content_id,label,annotator\n" + "".join(f"{c},yes,a\n" for c in lake.ids[:4]))
    second.write_text("content_id,label,annotator\n" + "".join(f"{c},no,{who}\n" for c in lake.ids[:4] for who in "bc"))
    import_labels(root, CorpusTable.of(lake.settings), first, "low_quality")
    pinned = ReadVersions.latest(lake.settings).human_labels
    import_labels(root, CorpusTable.of(lake.settings), second, "low_quality")
    assert gold_labels(root, "low_quality", pinned)["label"].tolist() == [1] * 4
    assert gold_labels(root, "low_quality")["label"].tolist() == [0] * 4


def test_gold_alone_trains_without_weak_labels_and_weak_labels_say_they_are_missing(lake, tmp_path):
    """`train --labels gold` needs no weak_labels table: there is then no majority vote to score."""
    root = lake.settings.lakehouse_root
    labelled = tmp_path / "gold.csv"
    truth = lake.gold.set_index("content_id")["label"]
    labelled.write_text("content_id,label,annotator\n" + "".join(f"{c},{'yes' if truth[c] else 'no'},a\n" for c in truth.index))
    import_labels(root, CorpusTable.of(lake.settings), labelled, "low_quality")
    reads = ReadVersions.latest(lake.settings)
    labels, gold, majority = label_frames(root, "low_quality", "gold", reads)
    assert majority is None and sorted(labels["content_id"]) == sorted(gold["content_id"]) == sorted(truth.index)
    trained = train_task(lake.settings, "low_quality", labels, "gold", gold=gold, majority=majority, report_path=tmp_path / "report.html", reads=reads)
    assert set(trained.evaluation.metrics) == {"head", "rule"}  # judged against the rule alone
    with pytest.raises(UsageError, match="weak_labels"):
        label_frames(root, "low_quality", "weak", reads)


def test_training_reads_the_configured_corpus(tmp_path, empty_registry_db):
    """The held-out slices and label-sample's tasks read the corpus as configured (corpus.path, its
    column mapping, its filter, its pinned version), not a stale copy at <lakehouse>/corpus, and the
    version read is logged."""
    source = tmp_path / "source" / "pins"
    lake = training_lakehouse(tmp_path, empty_registry_db, overrides=(
        f"corpus.path={source}", "corpus.version=0", "corpus.columns.content_id=pin_id", "corpus.columns.title=headline",
        "corpus.filter=state = 'live'"))
    corpus = delta_io.read_arrow(f"{tmp_path}/corpus")
    removed = set(lake.ids[::7])
    mapped = corpus.rename_columns(["pin_id" if n == "content_id" else "headline" if n == "title" else n for n in corpus.column_names])
    mapped = mapped.append_column("state", pa.array(["removed" if c in removed else "live" for c in corpus["content_id"].to_pylist()]))
    blank = {"image": pa.nulls(len(corpus), pa.binary()), "title": pa.array([""] * len(corpus))}
    write_deltalake(source, mapped, partition_by=["ds"])
    write_deltalake(source, mapped.set_column(mapped.schema.get_field_index("headline"), "headline", blank["title"]), mode="overwrite")
    write_deltalake(f"{tmp_path}/corpus", corpus.set_column(corpus.schema.get_field_index("image"), "image", blank["image"]), mode="overwrite")
    trained = train_task(lake.settings, "low_quality", lake.weak, "weak", gold=lake.gold, majority=lake.majority,
                         report_path=tmp_path / "report.html")
    frame = trained.evaluation.frame.set_index("content_id")
    rows = corpus.to_pandas().set_index("content_id").loc[frame.index]
    live = ~frame.index.isin(removed)
    assert 0 < (~live).sum() and live.sum() > 20
    assert frame.loc[live, "ds"].tolist() == rows.loc[live, "ds"].tolist()
    assert frame.loc[live, "image_format"].tolist() == [image_format(b) for b in rows.loc[live, "image"]] != ["none"] * live.sum()
    assert frame.loc[live, "text_length"].tolist() == [text_length(t, d) for t, d in zip(rows.loc[live, "title"], rows.loc[live, "description"])]
    assert set(frame.loc[~live, "image_format"]) == {"none"} and set(frame.loc[~live, "ds"]) == {"unknown"}
    assert Registry(lake.settings.registry_uri).client.get_run(trained.run_id).data.params["corpus_version"] == "0"
    chosen = frame[live].reset_index()[["content_id", "ds"]].head(3).assign(p_positive=0.5)
    tasks = json.loads(write_task_file(CorpusTable.of(lake.settings), chosen, "low_quality", tmp_path / "t.json", "x").path.read_text())
    assert [t["data"]["title"] for t in tasks] == rows.loc[live, "title"].head(3).tolist()


def test_a_title_and_description_that_are_not_utf8_fail_neither_train_nor_label_sample(lake, tmp_path, capsys):
    """The corpus rows training reads keep one whose title or description is not UTF-8 (the jobs
    compute its image; its text is that row's error), and `train`'s slices by text length
    (`to_pandas`: ArrowException) and `label-sample`'s task file (`to_pylist`: UnicodeDecodeError)
    failed over that one row. Such text is read with U+FFFD for each sequence that is not UTF-8, and
    `label-sample` says how many items it wrote so (it said nothing)."""
    root = lake.settings.lakehouse_root
    corpus = delta_io.read_arrow(f"{root}/corpus")
    ids = corpus["content_id"].to_pylist()
    bad = next(i for i, c in enumerate(ids[:-ERRORS]) if split_of(c) == "test")  # held out, with an ok embedding
    write_deltalake(f"{root}/corpus", not_utf8(not_utf8(corpus, "title", bad), "description", bad), mode="overwrite", partition_by=["ds"])
    shown = NOT_UTF8.decode(errors="replace")
    trained = train_task(lake.settings, "low_quality", lake.weak, "weak", gold=lake.gold, majority=lake.majority,
                         report_path=tmp_path / "report.html")
    assert trained.evaluation.frame.set_index("content_id").loc[ids[bad], "text_length"] == text_length(shown, shown)
    out = tmp_path / "tasks.json"
    assert main(["label-sample", "low_quality", "--n", str(len(ids)), "--out", str(out), "--set", f"lakehouse={root}"]) == 0
    tasks = {t["data"]["content_id"]: t["data"] for t in json.loads(out.read_text())}
    assert (tasks[ids[bad]]["title"], tasks[ids[bad]]["description"]) == (shown, shown)
    assert tasks[ids[bad + 1]]["title"] == corpus["title"][bad + 1].as_py()
    said = " ".join(capsys.readouterr().out.split())
    assert f"1 items written with a title or description that is not UTF-8 (shown with U+FFFD) (e.g. {ids[bad]})" in said


def test_label_sample_passes_over_an_item_whose_image_uri_is_not_utf8(lake, tmp_path, capsys):
    """An item given by an `image_uri` that is not UTF-8 (no image bytes) was written with the URI
    replaced (U+FFFD), which Label Studio cannot load: it is passed over like an item without an
    image, and counted; one with image bytes as well is shown by its bytes."""
    root = lake.settings.lakehouse_root
    train_task(lake.settings, "low_quality", lake.weak, "weak", report_path=tmp_path / "report.html")
    corpus = delta_io.read_arrow(f"{root}/corpus")
    ids = corpus["content_id"].to_pylist()
    by_uri, with_bytes = 0, 1  # each with an ok embedding row
    corpus = corpus.append_column("image_uri", pa.array([f"s3://pins/{c}.jpg" for c in ids]))  # a corpus giving both
    corpus = corpus.set_column(corpus.schema.get_field_index("image"), "image",
                               pa.array([None if i == by_uri else b for i, b in enumerate(corpus["image"].to_pylist())], pa.binary()))
    write_deltalake(f"{root}/corpus", not_utf8(not_utf8(corpus, "image_uri", by_uri), "image_uri", with_bytes),
                    mode="overwrite", schema_mode="overwrite", partition_by=["ds"])
    out = tmp_path / "tasks.json"
    assert main(["label-sample", "low_quality", "--n", str(len(ids)), "--out", str(out), "--set", f"lakehouse={root}"]) == 0
    said = " ".join(capsys.readouterr().out.split())
    tasks = {t["data"]["content_id"]: t["data"] for t in json.loads(out.read_text())}
    assert ids[by_uri] not in tasks and tasks[ids[with_bytes]]["image"].startswith("data:image;base64,")
    assert "passed over 1 items whose image_uri is not UTF-8" in said and f"(e.g. {ids[by_uri]})" in said
    assert "written with a title or description that is not UTF-8" not in said


def test_an_out_that_cannot_be_written_is_refused_before_anything_is_committed_or_written(lake, tmp_path, capsys):
    """Found in review: `labels weak --out FILE` committed its weak labels and then crashed with a
    traceback writing the report; `label-sample --out` a folder crashed, and an `.xml` was overwritten
    by the labelling config, the command saying it had written both."""
    root, taken = lake.settings.lakehouse_root, tmp_path / "taken"
    taken.write_text("x")
    (tmp_path / "folder").mkdir()
    status = main(["labels", "weak", "--task", "low_quality", "--out", str(taken), "--set", f"lakehouse={root}"])
    assert status == 2 and "is a file: name a folder" in " ".join(capsys.readouterr().out.split())
    assert not DeltaTable.is_deltatable(f"{root}/weak_labels")
    for out in (tmp_path / "folder", taken / "tasks.json", tmp_path / "tasks.xml"):
        assert main(["label-sample", "low_quality", "--out", str(out), "--set", f"lakehouse={root}"]) == 2
        assert "name a task file (.json) in a folder" in " ".join(capsys.readouterr().out.split())
    assert not (tmp_path / "tasks.xml").exists()


def test_label_sample_asks_for_the_items_the_trained_head_is_least_sure_of(lake, tmp_path, capsys):
    """Once `train` registered a head, `label-sample` ranks by its scores of the stored vectors, not the label model's."""
    trained = train_task(lake.settings, "low_quality", lake.weak, "weak", report_path=tmp_path / "report.html")
    out = tmp_path / "tasks.json"
    assert main(["label-sample", "low_quality", "--n", "12", "--out", str(out), "--set", f"lakehouse={lake.settings.lakehouse_root}"]) == 0
    assert "the most uncertain under head_low_quality version 1" in " ".join(capsys.readouterr().out.split())
    stored = delta_io.read_arrow(f"{lake.settings.lakehouse_root}/embeddings").to_pandas()
    ok = stored[stored["status"] == "ok"]
    scores = score_vectors(load_head(trained.weights), np.stack(ok["vector"].to_list()))
    tasks = [t["data"] for t in json.loads(out.read_text())]
    assert {t["scored_by"] for t in tasks} == {"head_low_quality version 1"}
    for day in {t["ds"] for t in tasks}:  # each day's chosen items are that day's least sure, by the head's own scores
        of_day = np.abs(scores[(ok["ds"] == day).to_numpy()] - 0.5)
        chosen = [abs(t["p_positive"] - 0.5) for t in tasks if t["ds"] == day]
        assert sorted(chosen) == pytest.approx(sorted(of_day)[:len(chosen)], abs=1e-4)


def test_label_sample_under_a_head_whose_embedding_rows_are_all_in_error_has_nothing_to_sample(lake, tmp_path, capsys):
    """Found in review: with every row of the head's embedding in error, `label-sample` fed the head a
    0 x 0 matrix and stopped with a torch RuntimeError traceback (the sizes of the tensors)."""
    train_task(lake.settings, "low_quality", lake.weak, "weak", report_path=tmp_path / "report.html")
    root = lake.settings.lakehouse_root
    delete(root, *lake.ids)
    append(root, rows(lake.ids, None))
    assert head_probabilities(root, current_head(lake.settings, "low_quality")).empty
    out = tmp_path / "tasks.json"
    assert main(["label-sample", "low_quality", "--out", str(out), "--set", f"lakehouse={root}"]) == 0
    assert "nothing to sample" in " ".join(capsys.readouterr().out.split()) and not out.exists()


def test_a_head_on_joined_embeddings_reads_both_vectors_and_is_registered_as_one(lake, tmp_path):
    registry = Registry(lake.settings.registry_uri)
    registry.register("text_embedding", "code:text", {"kind": "minilm_text"})
    registry.promote("text_embedding", "1")
    text = random_vectors(len(lake.ids), 3)[:, :8]
    append(lake.settings.lakehouse_root, rows(lake.ids[10:], text[10:], signal="text_embedding"))  # the first ten have no text vector
    trained = train_task(lake.settings, "low_quality", lake.weak, "weak", "image_embedding+text_embedding", lake.gold, lake.majority,
                         tmp_path / "report.html")
    held_out = [c for c in lake.ids[10:-ERRORS] if split_of(c) == "test"]
    assert sorted(trained.evaluation.frame["content_id"]) == held_out
    image = delta_io.read_arrow(f"{lake.settings.lakehouse_root}/embeddings").to_pandas()
    image = image[image["signal"] == SIGNAL].set_index("content_id")
    both = np.hstack([np.stack(image.loc[held_out, "vector"].to_list()), text[[lake.ids.index(c) for c in held_out]]])
    truth = lake.gold.set_index("content_id").loc[held_out, "label"]
    assert trained.evaluation.metrics["head"]["roc_auc"] == pytest.approx(roc_auc_score(truth, score_vectors(load_head(trained.weights), both)))
    assert registry.client.get_run(trained.run_id).data.params["joined_embeddings"] == "text_embedding@1"
    assert {k: v for k, v in trained.model.params.items() if k != "weights_path"} == {
        "kind": "joined_embedding_head", "embedding_signal": SIGNAL, "embedding_model_version": "1",
        "joined_embeddings": "text_embedding@1", "embedding_kinds": "image,text"}

    scored = head_probabilities(lake.settings.lakehouse_root, trained.model).set_index("content_id")["p_positive"]
    ok = [c for c in lake.ids[10:] if image.loc[c, "status"] == "ok"]  # label-sample ranks the items with both vectors
    assert sorted(scored.index) == sorted(ok)
    expected = score_vectors(load_head(trained.weights), np.hstack([np.stack(image.loc[ok, "vector"].to_list()), text[[lake.ids.index(c) for c in ok]]]))
    np.testing.assert_allclose(scored.loc[ok], expected, atol=1e-6)


def test_the_same_seed_registers_the_same_version_and_another_seed_a_new_one(lake):
    first = train_task(lake.settings, "low_quality", lake.weak, "weak")
    again = train_task(lake.settings, "low_quality", lake.weak, "weak")
    other = train_task(lake.settings.model_copy(update={"training": lake.settings.training.model_copy(update={"seed": 1})}),
                       "low_quality", lake.weak, "weak")
    assert first.weights == again.weights and first.model.version == again.model.version == "1"
    assert other.model.version == "2" and other.weights != first.weights


@pytest.mark.subprocess
@pytest.mark.parametrize("target, when", [
    ("lake.registry:Registry.register", "True"),  # its MLflow run logged, nothing registered
    ("mlflow:MlflowClient.set_model_version_tag", "a[3] == 'mlflow_run_id'"),  # its version registered, without its tags
    ("mlflow:MlflowClient.set_registered_model_alias", "a[2] == 'challenger'"),  # evaluated and tagged, the alias not moved
], ids=["logged", "registered", "tagged"])
def test_a_train_killed_before_the_registry_moved_is_made_whole_by_the_retry(lake, tmp_path, target, when):
    """`train` killed (a process ended at once) between MLflow and the registry's alias: the retry registers the
    same weights as the same version, with its run and its evaluation, as the challenger; no second version."""
    frames = {name: tmp_path / f"{name}.pkl" for name in ("weak", "gold", "majority")}
    for name, path in frames.items():
        getattr(lake, name).to_pickle(path)
    overrides = [f"lakehouse={lake.settings.lakehouse_root}", "training.epochs=12", "training.hidden=0", "training.gate.min_slice_items=10"]
    assert load_settings("local", overrides) == lake.settings
    run_killed(target, when, "import pandas as pd; from conf.settings import load_settings; from training.train import train_task; "
               "weak, gold, majority = (pd.read_pickle(p) for p in argv[:3]); "
               "train_task(load_settings('local', argv[3:]), 'low_quality', weak, 'weak', gold=gold, majority=majority, "
               "report_path=__import__('pathlib').Path(argv[3].split('=', 1)[1]) / 'report.html')",
               *map(str, frames.values()), *overrides)
    retried = train_task(lake.settings, "low_quality", lake.weak, "weak", gold=lake.gold, majority=lake.majority,
                         report_path=tmp_path / "report.html")
    registry = Registry(lake.settings.registry_uri)
    assert [v.version for v in registry.versions("head_low_quality")] == ["1"] == [retried.model.version]
    assert registry.aliases("head_low_quality") == {CHALLENGER: "1"}
    tags = registry.client.get_model_version("head_low_quality", "1").tags
    assert tags["mlflow_run_id"] == retried.run_id
    assert json.loads(tags[EVALUATION_TAG]) == json.loads(json.dumps(retried.evaluation.summary()))


def promote(capsys, lake, *args: str) -> tuple[int, str]:
    status = main(["promote", *args, "--set", f"lakehouse={lake.settings.lakehouse_root}",
                   *[f"--set={o}" for o in ("training.gate.min_slice_items=10",)]])
    return status, capsys.readouterr().out


def test_promote_refuses_a_head_that_fails_the_gate_unless_forced(lake, capsys):
    train_task(lake.settings, "low_quality", lake.weak, "weak", gold=lake.gold, majority=lake.majority)
    registry = Registry(lake.settings.registry_uri)
    status, out = promote(capsys, lake, "head_low_quality", "challenger", "--set", "training.gate.max_ece=0.0001")
    assert status == 2 and "ECE" in out and "training.gate.max_ece" in out
    assert CHAMPION not in registry.aliases("head_low_quality")
    status, out = promote(capsys, lake, "head_low_quality", "challenger", "--set", "training.gate.min_auc_margin=0.9")
    assert status == 2 and "min_auc_margin" in out
    status, out = promote(capsys, lake, "head_low_quality", "challenger", "--set", "training.gate.min_auc_margin=0.9", "--force")
    assert status == 0 and "forced past" in out
    assert registry.aliases("head_low_quality")[CHAMPION] == "1"
    status, out = promote(capsys, lake, "head_low_quality", "1", "--set", "training.gate.min_auc_margin=0.9")  # moves nothing: not judged
    assert status == 0 and "forced past" not in out and registry.aliases("head_low_quality")[CHAMPION] == "1", out


def test_promote_refuses_a_head_without_an_evaluation(lake, capsys):
    train_task(lake.settings, "low_quality", lake.weak, "weak")
    status, out = promote(capsys, lake, "head_low_quality", "challenger")
    assert status == 2 and "no held-out evaluation" in out


def test_promote_refuses_a_version_covering_fewer_items_than_the_champion(tmp_path, empty_registry_db, capsys):
    from embedding_tables import registry_in

    registry = registry_in(tmp_path, empty_registry_db)  # versions 1 (champion) and 2
    ids = [f"pin-{i:03d}" for i in range(50)]
    append(tmp_path, rows(ids[:45], random_vectors(45, 0)))
    append(tmp_path, rows(ids[45:], None))  # error rows count: the champion has a row for them
    append(tmp_path, rows(ids[:5], random_vectors(5, 1), model_version="2"))  # a canary on 10%
    status, out = main(["promote", SIGNAL, "2", "--set", f"lakehouse={tmp_path}"]), capsys.readouterr().out
    assert status == 2 and "lacks 45 of the 50" in out and "backfill --challenger" in " ".join(out.split())
    assert registry.aliases(SIGNAL)[CHAMPION] == "1"
    append(tmp_path, rows(ids[5:10], None, model_version="2"))  # an error row where the champion has a vector does not cover it
    append(tmp_path, rows(ids[10:], random_vectors(40, 2), model_version="2"))
    status, out = main(["promote", SIGNAL, "2", "--set", f"lakehouse={tmp_path}"]), capsys.readouterr().out
    assert status == 2 and "has only an error row for 5 items the champion has a value for" in " ".join(out.split())
    assert registry.aliases(SIGNAL)[CHAMPION] == "1"
    DeltaTable(f"{tmp_path}/embeddings").delete("model_version = '2' AND status = 'error'")
    append(tmp_path, rows(ids[5:10], random_vectors(5, 3), model_version="2"))
    DeltaTable(f"{tmp_path}/embeddings").update(updates={"input_hash": "'hash-of-the-new-picture'"}, predicate=f"model_version = '1' AND content_id = '{ids[7]}'")
    status, out = main(["promote", SIGNAL, "2", "--set", f"lakehouse={tmp_path}"]), capsys.readouterr().out  # the champion refreshed, not 2
    assert status == 2 and f"has rows of another input than the champion's for 1 items, computed before their input changed (e.g. {ids[7]})" \
        in " ".join(out.split())
    DeltaTable(f"{tmp_path}/embeddings").update(updates={"input_hash": "'hash-of-the-new-picture'"}, predicate=f"model_version = '2' AND content_id = '{ids[7]}'")
    assert main(["promote", SIGNAL, "2", "--set", f"lakehouse={tmp_path}"]) == 0
    assert registry.aliases(SIGNAL)[CHAMPION] == "2"
    capsys.readouterr()
    append(tmp_path, rows(["pin-new"], random_vectors(1, 4), model_version="2"))  # a refresh on champion 2 adds an item
    status, out = main(["rollback", SIGNAL, "--set", f"lakehouse={tmp_path}"]), capsys.readouterr().out  # an emergency: never refused
    assert status == 0 and registry.aliases(SIGNAL)[CHAMPION] == "1"
    said = " ".join(out.split())
    assert "version 1 lacks 1 of the 51 items the version rolled back from (version 2) covers in embeddings (e.g. pin-new)" in said
    assert "until `content-signals refresh` computes them" in said


def test_a_version_whose_rows_are_of_an_input_newer_than_the_champions_is_not_refused_for_them(tmp_path, empty_registry_db, capsys):
    """Found in review: coverage refused every row of another input than the champion's as "computed before
    their input changed", also where the champion's was the older one (its input changed after its last refresh,
    and a shadow run then computed the item from the new input): the refusal said to backfill the challenger
    again, which computes the same rows, so it was refused until a refresh happened to recompute the champion.
    A row computed by a later run read a later corpus: only the candidate's older rows fall short."""
    import datetime as dt

    from embedding_tables import T0, registry_in

    registry = registry_in(tmp_path, empty_registry_db)

    def of(version: str, input_hash: str, computed_at: dt.datetime) -> pa.Table:
        table = rows(["x"], random_vectors(1, 0), model_version=version)
        table = table.set_column(table.schema.get_field_index("input_hash"), "input_hash", pa.array([input_hash]))
        return table.set_column(table.schema.get_field_index("computed_at"), "computed_at", pa.array([computed_at], table.schema.field("computed_at").type))
    append(tmp_path, of("1", "x-old-picture", T0))
    append(tmp_path, of("2", "x-new-picture", T0 - dt.timedelta(days=1)))  # computed before the champion's: behind it
    status, out = main(["promote", SIGNAL, "2", "--set", f"lakehouse={tmp_path}"]), " ".join(capsys.readouterr().out.split())
    assert status == 2 and "has rows of another input than the champion's for 1 items, computed before their input changed" in out, out
    DeltaTable(f"{tmp_path}/embeddings").delete("model_version = '2'")
    append(tmp_path, of("2", "x-new-picture", T0 + dt.timedelta(days=1)))  # a shadow run after the input changed, before a refresh
    status, out = main(["promote", SIGNAL, "2", "--set", f"lakehouse={tmp_path}"]), capsys.readouterr().out
    assert status == 0 and registry.aliases(SIGNAL)[CHAMPION] == "2", out


def test_a_version_whose_keyframes_were_cut_down_is_not_promoted(tmp_path, empty_registry_db, capsys):
    """Found in review: coverage read the embeddings and labels tables alone. A canary commits its keyframes
    first, so one killed (or stopped by a conflict, or by a promote of its version) before its embeddings commit
    had cut the version's keyframes down to its slice while its video-level rows stayed whole from a shadow run
    before it: promote passed, and readers of the champion's keyframes lost the other videos' keyframes."""
    from embedding_tables import T0, registry_in

    from signals.contracts import KEYFRAMES

    registry = registry_in(tmp_path, empty_registry_db)
    for version in ("1", "2"):  # the video-level rows of a video item and a photo, whole in both versions
        append(tmp_path, rows(["video", "photo"], random_vectors(2, int(version)), model_version=version))

    def keyframes(version: str) -> pa.Table:
        return pa.Table.from_pylist([
            {"content_id": "video", "keyframe_index": i, "signal": SIGNAL, "vector": [0.5] * 4, "dim": 4, "model_name": "m",
             "model_version": version, "input_hash": "hash-video", "status": "ok", "run_id": "run", "computed_at": T0,
             "ds": "2026-11-19"} for i in range(3)], schema=KEYFRAMES.schema)
    write_deltalake(f"{tmp_path}/keyframes", keyframes("1"), partition_by=list(KEYFRAMES.partition_by))
    status, out = main(["promote", SIGNAL, "2", "--set", f"lakehouse={tmp_path}"]), " ".join(capsys.readouterr().out.split())
    assert status == 2 and "lacks 1 of the 2 items the champion (version 1) covers in keyframes (e.g. video)" in out, out
    assert registry.aliases(SIGNAL)[CHAMPION] == "1"
    write_deltalake(f"{tmp_path}/keyframes", keyframes("2"), partition_by=list(KEYFRAMES.partition_by), mode="append")
    assert main(["promote", SIGNAL, "2", "--set", f"lakehouse={tmp_path}"]) == 0, capsys.readouterr().out
    assert registry.aliases(SIGNAL)[CHAMPION] == "2"


def test_coverage_judges_an_item_of_two_days_day_by_day(tmp_path, empty_registry_db, capsys):
    """Found in review: coverage kept one input hash per item, the last row read, so an item in the
    corpus on two days with two inputs (ingested again, changed) was "of another input" whenever the
    challenger's rows were read in another order than the champion's: promote refused a version with
    the very rows the champion has, and the backfill it advised could not change that."""
    from embedding_tables import registry_in

    registry = registry_in(tmp_path, empty_registry_db)

    def day_rows(version: str, ds: str) -> pa.Table:
        table = rows(["x"], random_vectors(1, 0), model_version=version, ds=ds)
        return table.set_column(table.schema.get_field_index("input_hash"), "input_hash", pa.array([f"x-of-{ds}"]))
    for version, days in (("1", ["2026-11-18", "2026-11-19"]), ("2", ["2026-11-19", "2026-11-18"])):  # the backfill's order
        for ds in days:
            append(tmp_path, day_rows(version, ds))
    assert main(["promote", SIGNAL, "2", "--set", f"lakehouse={tmp_path}"]) == 0, capsys.readouterr().out
    assert registry.aliases(SIGNAL)[CHAMPION] == "2"
    DeltaTable(f"{tmp_path}/embeddings").delete("model_version = '1' AND ds = '2026-11-18'")  # version 1 now lacks x's first day
    status, out = main(["rollback", SIGNAL, "--set", f"lakehouse={tmp_path}"]), " ".join(capsys.readouterr().out.split())
    assert status == 0 and "version 1 lacks 1 of the 1 items the version rolled back from (version 2) covers in embeddings (e.g. x)" in out, out


def test_a_rollback_under_a_pin_says_the_coverage_it_lacks_is_seen_by_readers_without_the_pin(tmp_path, empty_registry_db, capsys):
    """Found in review: under a profile pinning the signal's `model.version`, a rollback to a version
    lacking items said "readers of the champion see them so until `content-signals refresh` computes
    them", while this profile's readers and refresh keep the pinned version: only readers without the
    pin see the gap, and only a refresh under a profile without the pin computes it."""
    from embedding_tables import registry_in

    registry = registry_in(tmp_path, empty_registry_db)
    append(tmp_path, rows(["x"], random_vectors(1, 0)))
    append(tmp_path, rows(["x", "y"], random_vectors(2, 1), model_version="2"))
    assert main(["promote", SIGNAL, "2", "--set", f"lakehouse={tmp_path}"]) == 0, capsys.readouterr().out
    capsys.readouterr()
    status = main(["rollback", SIGNAL, "--set", f"lakehouse={tmp_path}", "--set", f"signals.{SIGNAL}.model.version=2"])
    out = " ".join(capsys.readouterr().out.split())
    assert status == 0 and registry.aliases(SIGNAL)[CHAMPION] == "1", out
    assert "version 1 lacks 1 of the 2 items the version rolled back from (version 2) covers in embeddings (e.g. y)" in out, out
    assert "readers of the champion see them so" not in out, out
    assert (f"readers of the champion without the pin (another profile, a Lakehouse without signals.{SIGNAL}.model.version) see "
            "them so until `content-signals refresh` under a profile without the pin computes them") in out, out


def test_train_on_a_lakehouse_without_embeddings_says_so_and_makes_no_registry_there(tmp_path, capsys) -> None:
    """Found in review: a mistyped `lakehouse` got a registry database made in it before the refusal."""
    typo = tmp_path / "typo"
    assert main(["train", "low_quality", "--set", f"lakehouse={typo}"]) == 2
    assert "no embeddings table" in " ".join(capsys.readouterr().out.split()) and not typo.exists()


def test_a_refusal_for_too_few_items_says_which_baseline_left_held_out_items_out(lake, tmp_path, capsys):
    """Found in review: `train` judges every scorer on the held-out items all of them scored, so a rule
    that scored a fifth of them shrank the head's evaluation too, and the gate's refusal told the user
    to label more, though the held-out gold held enough of each class: the rule's coverage was the cause."""
    from jobs.show import print_trained
    from training.gate import gate_failures

    root = lake.settings.lakehouse_root
    kept = lake.ids[::5]
    rule = delta_io.read_arrow(f"{root}/labels").to_pandas()
    write_deltalake(f"{root}/labels", pa.Table.from_pandas(rule[rule["content_id"].isin(kept)], schema=LABELS.schema, preserve_index=False),
                    mode="overwrite", partition_by=list(LABELS.partition_by))
    trained = train_task(lake.settings, "low_quality", lake.weak, "weak", gold=lake.gold, majority=lake.majority,
                         report_path=tmp_path / "report.html")
    held_out = [c for c in lake.ids[:-ERRORS] if split_of(c) == "test"]
    scored = [c for c in held_out if c in kept]
    truth = lake.gold.set_index("content_id")["label"]
    positives, common = int(truth[held_out].sum()), int(truth[scored].sum())
    assert min(positives, len(held_out) - positives) >= 10 > min(common, len(scored) - common)  # enough gold; too few scored by the rule
    summary = json.loads(Registry(lake.settings.registry_uri).client.get_model_version("head_low_quality", "1").tags[EVALUATION_TAG])
    without_row = sum(split_of(c) == "test" for c in lake.ids[-ERRORS:])  # error rows: no head can score them
    assert summary["held_out"] == {"items": len(held_out), "positives": positives, "left_out": {"rule": len(held_out) - len(scored)},
                                   "without_row": without_row}
    assert summary["metrics"]["head"]["items"] == len(scored)
    logged = Registry(lake.settings.registry_uri).client.get_run(trained.run_id).data.metrics
    assert (logged["head.items"], logged["held_out.items"], logged["held_out.left_out.rule"]) == (len(scored), len(held_out), len(held_out) - len(scored))
    refusal = gate_failures(summary, lake.settings.training.gate)[0]
    assert refusal == (f"the held-out gold holds {common} positive and {len(scored) - common} negative items, fewer than "
                       f"training.gate.min_class_items 10 of a class: of the {len(held_out)} held-out gold items ({positives} positive) "
                       f"every scorer scored {len(scored)}, rule left out {len(held_out) - len(scored)}: the gold is enough, "
                       "rule's coverage is not: have rule score them and train again")
    print_trained(trained)
    said = " ".join(capsys.readouterr().out.split())
    scored_said = f"held-out gold ({len(scored)} of {len(held_out)} items, those every scorer scored; rule left out {len(held_out) - len(scored)})"
    assert scored_said in said
    assert scored_said in trained.report.read_text()  # the report's figures are on those items too; before, it did not say so


def test_baselines_that_scored_no_held_out_item_in_common_are_refused_by_name(lake, tmp_path):
    """Found in review: a rule and a majority vote that each scored some held-out gold items but
    none in common left `train` no items to judge the scorers on, and the calibration error divided
    by zero: a traceback instead of a refusal saying which scorers share no items."""
    root = lake.settings.lakehouse_root
    ruled = set(lake.ids[::2])
    rule = delta_io.read_arrow(f"{root}/labels").to_pandas()
    write_deltalake(f"{root}/labels", pa.Table.from_pandas(rule[rule["content_id"].isin(ruled)], schema=LABELS.schema, preserve_index=False),
                    mode="overwrite", partition_by=list(LABELS.partition_by))
    majority = lake.majority[~lake.majority["content_id"].isin(ruled)]
    held_out = [c for c in lake.ids[:-ERRORS] if split_of(c) == "test"]
    by_rule = sum(c in ruled for c in held_out)
    assert 0 < by_rule < len(held_out)  # each baseline scored some held-out items, none of them the same
    with pytest.raises(UsageError) as refused:
        train_task(lake.settings, "low_quality", lake.weak, "weak", gold=lake.gold, majority=majority, report_path=tmp_path / "report.html")
    assert str(refused.value) == (
        f"none of the {len(held_out)} held-out gold items was scored by every scorer (rule left out {len(held_out) - by_rule}, "
        f"majority_vote left out {by_rule}): rule and majority_vote share no scored item, so the head cannot be judged against "
        "them on the same items; have them score the same held-out items and train again")
    with pytest.raises(RegistryError, match="no registered model"):  # nothing registered for `promote` to judge
        Registry(lake.settings.registry_uri).aliases("head_low_quality")


def test_an_evaluation_that_refuses_leaves_no_weights_file_where_nothing_is_registered(lake, tmp_path):
    """Found in review: `train` saved the head's weights under <lakehouse>/_heads before its evaluation, so a refusal
    there (no held-out gold item, here) left a file no registry version names. Nothing is written now; the same
    head trained and evaluated writes the one file its version names."""
    heads = Path(lake.settings.lakehouse_root) / "_heads"
    not_held_out = lake.gold[[split_of(c) != "test" for c in lake.gold["content_id"]]]
    with pytest.raises(UsageError, match="no held-out gold items of low_quality"):
        train_task(lake.settings, "low_quality", lake.weak, "weak", gold=not_held_out, majority=lake.majority, report_path=tmp_path / "r.html")
    with pytest.raises(RegistryError, match="no registered model"):
        Registry(lake.settings.registry_uri).aliases("head_low_quality")
    assert not heads.exists() or not any(heads.rglob("*"))
    trained = train_task(lake.settings, "low_quality", lake.weak, "weak", gold=lake.gold, majority=lake.majority, report_path=tmp_path / "r.html")
    assert [p for p in heads.rglob("*") if p.is_file()] == [Path(trained.weights)]


def test_held_out_gold_without_an_ok_embedding_row_is_counted_in_the_evaluation_and_said(lake, tmp_path, capsys):
    """Found in review: held-out gold items without an ok embedding row (an error row, or no row yet)
    were left out of every scorer's evaluation without a word: the report said N items where more
    had been labelled and held out."""
    from jobs.show import print_trained

    unseen = pd.DataFrame({"content_id": [f"unseen-{i:03d}" for i in range(60)], "p_positive": 1.0, "label": 1, "n_annotators": 3})
    gold = pd.concat([lake.gold, unseen], ignore_index=True)
    trained = train_task(lake.settings, "low_quality", lake.weak, "weak", gold=gold, majority=lake.majority,
                         report_path=tmp_path / "report.html")
    without_row = [c for c in [*lake.ids[-ERRORS:], *unseen["content_id"]] if split_of(c) == "test"]
    assert ERRORS > 0 < sum(c.startswith("unseen") for c in without_row)  # both kinds: an error row, and no row at all
    held_out = [c for c in lake.ids[:-ERRORS] if split_of(c) == "test"]
    assert sorted(trained.evaluation.frame["content_id"]) == held_out
    summary = json.loads(Registry(lake.settings.registry_uri).client.get_model_version("head_low_quality", "1").tags[EVALUATION_TAG])
    assert summary["held_out"]["items"] == len(held_out) and summary["held_out"]["without_row"] == len(without_row)
    logged = Registry(lake.settings.registry_uri).client.get_run(trained.run_id).data.metrics  # before, MLflow had the common items' counts only
    assert (logged["held_out.items"], logged["held_out.without_row"]) == (len(held_out), len(without_row))
    said = f"{len(without_row)} held-out gold items have no ok image_embedding row (an error row, or none yet): no head can score them"
    assert said in trained.report.read_text()
    print_trained(trained)
    assert said in " ".join(capsys.readouterr().out.split())


def test_a_head_without_a_validation_split_says_it_kept_the_last_epoch(lake, capsys):
    """Found in review: labels with no item in the validation split gave no epoch a validation loss,
    so the last epoch's weights were kept where the best epoch's are said to be, without a word."""
    from jobs.show import print_trained

    trained_only = lake.weak[[split_of(c) == "train" for c in lake.weak["content_id"]]]
    trained = train_task(lake.settings, "low_quality", trained_only, "weak")
    epochs = lake.settings.training.epochs
    assert trained.head.best_epoch == epochs - 1 and np.isnan(trained.head.validation_loss).all()
    print_trained(trained)
    assert ("no epoch had a validation loss (no labelled item with an ok row in the validation split): the last epoch's weights "
            "are kept, not the best epoch's") in " ".join(capsys.readouterr().out.split())
    print_trained(train_task(lake.settings, "low_quality", lake.weak, "weak"))  # a validation split: nothing to say
    assert "no epoch had a validation loss" not in capsys.readouterr().out


def test_a_head_without_a_validation_split_says_it_kept_the_last_epoch_in_its_report_too(lake, tmp_path):
    """Found in review: `train` printed that no epoch had a validation loss, but its HTML report (the
    MLflow run's artifact, what a reviewer of the version opens) did not say it."""
    from html import escape

    from mlflow.artifacts import download_artifacts

    said = escape("no epoch had a validation loss (no labelled item with an ok row in the validation split): the last epoch's weights "
            "are kept, not the best epoch's")  # as the report escapes it
    trained_only = lake.weak[[split_of(c) == "train" for c in lake.weak["content_id"]]]
    trained = train_task(lake.settings, "low_quality", trained_only, "weak", gold=lake.gold, majority=lake.majority,
                         report_path=tmp_path / "unvalidated.html")
    assert not trained.head.validated and said in trained.report.read_text()
    logged = Path(download_artifacts(run_id=trained.run_id, artifact_path="unvalidated.html", tracking_uri=lake.settings.registry_uri,
                                     dst_path=str(tmp_path / "logged")))
    assert said in logged.read_text()
    validated = train_task(lake.settings, "low_quality", lake.weak, "weak", gold=lake.gold, majority=lake.majority,
                           report_path=tmp_path / "validated.html")
    assert validated.head.validated and "no epoch had a validation loss" not in validated.report.read_text()


@pytest.mark.parametrize("embedding", ["image_quality", "image_embedding+image_embedding", "image_embedding+image_quality"])
def test_an_embedding_that_is_no_embedding_signal_or_is_named_twice_is_refused_before_any_table_is_read(lake, capsys, embedding):
    """Found in review: a labeler's name failed later for want of rows (here: of a weak_labels table the lake lacks),
    and the same embedding twice trained a joined head on one vector repeated."""
    assert main(["train", "low_quality", "--labels", "weak", "--embedding", embedding, "--set", f"lakehouse={lake.settings.lakehouse_root}"]) == 2
    out = " ".join(capsys.readouterr().out.split())  # one message, wrapped by the console
    assert out.count("error:") == 1 and "weak_labels" not in out and f"--embedding {embedding}:" in out
    assert out.endswith("image_embedding, text_embedding, clip_image_embedding, clip_text_embedding (join different ones with '+', e.g. "
                           "image_embedding+text_embedding)") or out.endswith("named twice; join different ones of the profile's: "
                                                                                "image_embedding, text_embedding, clip_image_embedding, clip_text_embedding")
    with pytest.raises(UsageError, match="named twice" if embedding.count("image_embedding") == 2 else "'image_quality' is not an embedding"):
        train_task(lake.settings, "low_quality", lake.weak, "weak", embedding)
