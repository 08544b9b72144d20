"""Heads on stored embeddings (training/heads.py): seeded, noise-aware, saved and loaded whole."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from embedding_tables import SIGNAL, append, rows
from sklearn.metrics import roc_auc_score

from conf.settings import TrainingSettings, UsageError
from lake.registry import Registry, local_store_uri
from signals.labels.head import load_head, score_vectors
from signals.weights import weights_sha256
from training import heads
from training.heads import local_copy, positive_weight, save_head, train_head
from training.loader import pin_snapshot, split_of

DIM = 16


def separable_lakehouse(root, n: int = 600, seed: int = 0, cut: float = 0.0) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """An embeddings table whose positives lie along one direction (past `cut`), soft labels with noise."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    truth = (vectors[:, 0] + 0.3 * rng.standard_normal(n) > cut).astype(int)
    ids = [f"c{i:05d}" for i in range(n)]
    for day in range(3):  # three data files
        part = slice(day * n // 3, (day + 1) * n // 3)
        append(root, rows(ids[part], vectors[part], ds=f"2026-11-0{day + 1}"))
    flipped = rng.random(n) < 0.1  # label noise
    p = np.where(truth ^ flipped, 0.85, 0.15)
    return pd.DataFrame({"content_id": ids, "p_positive": p}), vectors, ids


CONF = TrainingSettings(hidden=8, epochs=8, batch_size=32, shuffle_buffer=128, seed=5)


def test_the_same_seed_gives_the_same_weights_and_another_seed_others(tmp_path):
    labels, _, _ = separable_lakehouse(tmp_path)
    snapshot = pin_snapshot(str(tmp_path), SIGNAL, "1", labels)
    weights = [train_head(snapshot, conf).model.state_dict()
               for conf in (CONF, CONF, CONF.model_copy(update={"seed": 6}))]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])


def test_a_head_trained_on_noisy_soft_labels_ranks_held_out_items_by_the_truth(tmp_path):
    labels, vectors, ids = separable_lakehouse(tmp_path, seed=1)
    snapshot = pin_snapshot(str(tmp_path), SIGNAL, "1", labels)
    head = train_head(snapshot, CONF.model_copy(update={"hidden": 0, "epochs": 20}))
    test = snapshot.labels[snapshot.labels["split"] == "test"]["content_id"]
    rows_of = [ids.index(c) for c in test]
    truth = (vectors[rows_of, 0] > 0).astype(int)  # the direction itself, not the noisy labels
    assert roc_auc_score(truth, head.scores(vectors[rows_of])) > 0.9
    assert head.validation_loss[head.best_epoch] == min(head.validation_loss)


def test_balanced_classes_weigh_rare_positives_and_the_scores_stay_calibrated(tmp_path):
    """Positives weighted by the negatives' over the positives' mass, the shift undone: the mean score
    stays the labels' mean, where the weighted logits alone would lift it well above."""
    labels, vectors, ids = separable_lakehouse(tmp_path, seed=3, cut=1.2)  # about one positive in eight
    snapshot = pin_snapshot(str(tmp_path), SIGNAL, "1", labels)
    train = snapshot.labels[snapshot.labels["split"] == "train"]
    p = train["p_positive"].to_numpy()
    weight = positive_weight(p, True)
    assert weight == pytest.approx((1 - p).sum() / p.sum()) and weight > 2
    assert positive_weight(p, False) == 1.0 and positive_weight(np.zeros(4), True) == 1.0
    head = train_head(snapshot, CONF.model_copy(update={"hidden": 0, "epochs": 30, "balance_classes": True}))
    scores = head.scores(vectors[[ids.index(c) for c in train["content_id"]]])
    assert scores.mean() == pytest.approx(p.mean(), abs=0.03)
    weighted = 1 / (1 + (1 - scores) / (scores * weight))  # the same logits before the shift was undone
    assert weighted.mean() > p.mean() + 0.1


def test_labels_of_items_without_an_ok_row_change_neither_the_balance_nor_the_head(tmp_path):
    """The positives' weight is the mass of the rows trained on: before, labelled items the loader
    never yields (no ok embedding row: failed, not computed yet) counted, and the undone shift
    moved every score (here 300 positive labels without rows lifted the mean score far above the labels')."""
    labels, vectors, ids = separable_lakehouse(tmp_path, seed=3, cut=1.2)
    without_rows = pd.DataFrame({"content_id": [f"gone{i:04d}" for i in range(300)], "p_positive": 1.0})
    conf = CONF.model_copy(update={"hidden": 0, "epochs": 30, "balance_classes": True})
    heads = [train_head(pin_snapshot(str(tmp_path), SIGNAL, "1", frame), conf) for frame in (labels, pd.concat([labels, without_rows]))]
    assert all(torch.equal(heads[0].model.state_dict()[k], heads[1].model.state_dict()[k]) for k in heads[0].model.state_dict())
    train = pin_snapshot(str(tmp_path), SIGNAL, "1", labels).labels.query("split == 'train'")
    scores = heads[1].scores(vectors[[ids.index(c) for c in train["content_id"]]])
    assert scores.mean() == pytest.approx(train["p_positive"].mean(), abs=0.03)


@pytest.mark.parametrize(("standardize", "balance", "passes"), [(True, True, 1), (True, False, 1), (False, True, 1), (False, False, 0)])
def test_the_moments_and_the_positives_weight_take_one_read_of_the_train_split(tmp_path, monkeypatch, standardize, balance, passes):
    """Found in review: with both on, the train split was read once for the standardisation's moments
    and again for the positives' weight (and once for a weight of 1 with balancing off); one read
    gives both, the same moments and weight as computed here from the rows themselves."""
    from training.loader import EmbeddingBatches

    labels, vectors, ids = separable_lakehouse(tmp_path, seed=3, cut=1.2)
    snapshot = pin_snapshot(str(tmp_path), SIGNAL, "1", labels)
    reads, weights = [], []
    iterate, weigh = EmbeddingBatches.__iter__, heads.positive_weight
    monkeypatch.setattr(EmbeddingBatches, "__iter__", lambda self: reads.append(self) or iterate(self))
    monkeypatch.setattr(heads, "positive_weight", lambda targets, balance: weights.append(weigh(targets, balance)) or weights[-1])
    conf = CONF.model_copy(update={"standardize": standardize, "balance_classes": balance, "epochs": 3})
    head = train_head(snapshot, conf)
    train = [loader for loader in reads if loader.targets == snapshot.targets("train") and loader.batch_size == conf.batch_size]
    assert len(train) == passes + conf.epochs
    rows = snapshot.labels.query("split == 'train'")
    p = rows["p_positive"].to_numpy(np.float32).astype(np.float64)  # as the loader's batches carry them
    x = vectors[[ids.index(c) for c in rows["content_id"]]].astype(np.float64)
    if balance:  # the negative over positive mass of the rows themselves
        assert weights == [pytest.approx((1 - p).sum() / p.sum(), rel=1e-12)] and weights[0] > 2
    else:
        assert weights in ([], [1.0])
    if standardize:
        np.testing.assert_allclose(head.model[0].mean.numpy(), x.mean(axis=0), atol=1e-6)
        np.testing.assert_allclose(head.model[0].scale.numpy(), 1 / x.std(axis=0), rtol=1e-5)


def test_a_saved_head_loads_to_the_same_scores(tmp_path):
    labels, vectors, _ = separable_lakehouse(tmp_path / "lake")
    snapshot = pin_snapshot(str(tmp_path / "lake"), SIGNAL, "1", labels)
    head = train_head(snapshot, CONF)
    path = save_head(head, tmp_path / "heads", {"task": "low_quality"})
    again = save_head(head, tmp_path / "heads", {"task": "low_quality"})
    assert path == again and len(list((tmp_path / "heads").iterdir())) == 1
    np.testing.assert_allclose(score_vectors(load_head(path), vectors), head.scores(vectors), atol=0)
    train = np.stack([vectors[int(c[1:])] for c in snapshot.labels.loc[snapshot.labels["split"] == "train", "content_id"]]).astype(np.float64)
    np.testing.assert_allclose(head.model[0].mean.numpy(), train.mean(axis=0), atol=1e-6)  # the train split's moments
    np.testing.assert_allclose(head.model[0].scale.numpy(), 1 / train.std(axis=0), rtol=1e-5)
    z = (vectors.astype(np.float64) - train.mean(axis=0)) / train.std(axis=0)
    logits = z @ head.model[1].weight.detach().double().numpy().T + head.model[1].bias.detach().double().numpy()
    hidden = np.maximum(logits, 0) @ head.model[3].weight.detach().double().numpy().T + head.model[3].bias.detach().double().numpy()
    np.testing.assert_allclose(head.scores(vectors), 1 / (1 + np.exp(-hidden[:, 0])), atol=1e-5)


def test_a_dimension_constant_over_the_train_split_is_not_scaled_up_and_moves_no_unseen_score(tmp_path):
    """Found in review: the one-pass sums of squares left a constant dimension's variance a rounding
    error (here 774 train rows of 2.3262897 in batches of 64: a scale of 3.4e7), so an unseen item
    0.001 away in it scored 0 or 1 whatever its other dimensions said."""
    constant = np.float32(2.326289653778076)
    ids = [c for c in (f"c{i:05d}" for i in range(3000)) if split_of(c) == "train"][:774]
    ids += [c for c in (f"v{i:05d}" for i in range(3000)) if split_of(c) == "validation"][:150]
    vectors = np.random.default_rng(0).standard_normal((len(ids), DIM)).astype(np.float32)
    vectors[:, 1] = constant
    append(tmp_path, rows(ids, vectors))
    labels = pd.DataFrame({"content_id": ids, "p_positive": np.where(vectors[:, 0] > 0, 0.9, 0.1)})
    head = train_head(pin_snapshot(str(tmp_path), SIGNAL, "1", labels), CONF.model_copy(update={"hidden": 0, "batch_size": 64}))
    train = vectors[:774].astype(np.float64)
    np.testing.assert_allclose(head.model[0].mean.numpy(), train.mean(axis=0), atol=1e-6)
    std = train.std(axis=0)
    assert std[1] == 0 and head.model[0].scale[1] == 1  # constant: not scaled
    np.testing.assert_allclose(head.model[0].scale.numpy()[std > 0], 1 / std[std > 0], rtol=1e-5)
    unseen = np.random.default_rng(1).standard_normal((200, DIM)).astype(np.float32)
    unseen[:, 1] = constant
    moved = unseen.copy()
    moved[:, 1] += np.float32(1e-3)
    np.testing.assert_allclose(head.scores(moved), head.scores(unseen), atol=1e-3)


def test_a_head_saved_on_the_lakehouse_store_loads_registers_and_is_logged_from_there(tmp_path, s3_server, monkeypatch, empty_registry_db):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint_url)  # a lakehouse on s3:// takes its store from the environment
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    s3_server.put("heads", {})
    labels, vectors, _ = separable_lakehouse(tmp_path / "lake")
    head = train_head(pin_snapshot(str(tmp_path / "lake"), SIGNAL, "1", labels), CONF)
    local = save_head(head, tmp_path / "heads", {"task": "low_quality"})
    uri = save_head(head, "s3://heads/lakehouse/_heads/head_low_quality", {"task": "low_quality"})
    assert uri == f"s3://heads/lakehouse/_heads/head_low_quality/{Path(local).name}"  # named by its bytes, wherever it is
    np.testing.assert_allclose(score_vectors(load_head(uri), vectors), head.scores(vectors), atol=0)
    with local_copy(uri) as logged:  # what `train` hands MLflow
        assert logged.read_bytes() == Path(local).read_bytes()
    shutil.copy(empty_registry_db, tmp_path / "mlflow.db")
    version = Registry(local_store_uri(tmp_path)).register("head_low_quality", uri, {})
    assert (version.source, version.weights_sha256) == (uri, weights_sha256(local))  # hashed on the store, as a worker checks it


def test_labels_without_p_positive_are_refused(tmp_path):
    append(tmp_path, rows(["a"], np.ones((1, DIM), np.float32)))
    with pytest.raises(UsageError, match="p_positive"):
        pin_snapshot(str(tmp_path), SIGNAL, "1", pd.DataFrame({"content_id": ["a"], "label": [1]}))


def test_a_head_whose_training_diverged_is_refused_not_evaluated_on_scores_that_are_not_numbers(tmp_path):
    """Found in review: a learning rate that made every weight NaN kept the last epoch's NaN weights
    (no epoch had a finite validation loss), and `train`'s evaluation, dropping the head's column as
    a scorer that scored nothing, failed with KeyError 'head'."""
    labels, vectors, _ = separable_lakehouse(tmp_path)
    snapshot = pin_snapshot(str(tmp_path), SIGNAL, "1", labels)
    with pytest.raises(UsageError, match=r"training diverged: the head's weights are not numbers in every one of its 8 epochs "
                                         r"\(training.learning_rate 1e\+20\): lower the learning rate"):
        train_head(snapshot, CONF.model_copy(update={"learning_rate": 1e20}))
    head = train_head(snapshot, CONF.model_copy(update={"learning_rate": 100.0}))  # large, not diverged: finite, if saturated
    assert np.isfinite(head.scores(vectors)).all() and np.isfinite(head.validation_loss).all()


@pytest.mark.parametrize(("dtype", "p"), [("float64", np.nan), ("object", None), ("Float64", pd.NA), ("float64", 1.5), ("float64", -0.2),
                                         ("object", "yes")])
def test_a_label_that_is_no_probability_is_refused_naming_its_item_not_trained_into_nan_weights(tmp_path, dtype, p):
    """Found in review: one NaN p_positive made every weight NaN, refused as "training diverged: lower the
    learning rate" (the wrong cure), and a p_positive of 1.5 or -0.2 was trained on as a target past sure."""
    labels, _, ids = separable_lakehouse(tmp_path, n=60)
    labels["p_positive"] = labels["p_positive"].astype(dtype)
    labels.loc[7, "p_positive"] = p
    with pytest.raises(UsageError, match=rf"p_positive.*1 label.*{ids[7]}"):
        pin_snapshot(str(tmp_path), SIGNAL, "1", labels)
    labels.loc[7, "p_positive"] = 1.0  # 0 and 1 exactly are probabilities
    labels.loc[8, "p_positive"] = 0.0
    assert pin_snapshot(str(tmp_path), SIGNAL, "1", labels).labels["p_positive"].between(0, 1).all()
