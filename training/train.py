"""`content-signals train TASK`: a head trained on a pinned snapshot, evaluated on held-out gold,
logged to MLflow (params, lineage, metrics, report, the model) and registered as a new version of
its own signal (`head_<task>`), pointed at by the `challenger` alias. A head may read several
embeddings joined (`--embedding image_embedding+text_embedding`): its version is then a
`joined_embedding_head`, whatever kind the profile gives the task's head, and runs as one.

The registry version records the weights file (its sha256, as for every model) and what the head
reads (the embedding signals, their model versions and input kinds); its held-out evaluation is
kept on it as a tag, which `promote` judges with the gate of the configuration then in force (training/gate.py).
Every table the run reads is read at a version taken once at its start and logged with the
lineage (ReadVersions), so its evaluation, and so the gate's verdict, can be repeated later.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from conf.settings import Settings, UsageError
from lake import delta_io
from lake.corpus import CorpusTable
from lake.registry import CHALLENGER, RegisteredModel, RegistryError
from rollout.compare import log_to_mlflow
from rollout.models import KIND, champion_version, registry_for
from signals.catalog import signal_class
from signals.contracts import HUMAN_LABELS, LABELS, WEAK_LABELS, lakehouse_table
from signals.embedders.base import Embedder
from signals.labels.head import JOINED_SEPARATOR
from training import gold, weak
from training.evaluate import (
    LANGUAGE_SIGNAL,
    RULES,
    Evaluation,
    common_items,
    evaluate,
    item_slices,
    report_metrics,
    rule_scores,
    scored_said,
    without_row_said,
    write_evaluation_report,
)
from training.gate import EVALUATION_TAG, HEAD, head_signal
from training.heads import TrainedHead, local_copy, save_head, train_head, unvalidated_said
from training.loader import Snapshot, batches, pin_snapshot, with_folds
from training.tasks import task_named

EXPERIMENT = "content-signals-training"
HEAD_KINDS = {"image": "image_embedding_head", "text": "text_embedding_head"}  # signals.catalog kind by the embedding's input
JOINED_HEAD_KIND = "joined_embedding_head"  # a head on several embeddings joined
JOIN = "+"  # between embedding signals whose vectors a head reads concatenated


@dataclass(frozen=True)
class ReadVersions:
    """The versions at which a training run reads the tables beside its embeddings snapshot: gold
    (human_labels), the weak labels and their majority vote, the rule's and the language's rows
    (labels) and the slices' corpus, None where a table does not exist; and the model versions of
    the rules and the language signal whose rows it reads (their champions then, None where a
    signal has none)."""

    human_labels: int | None
    weak_labels: int | None
    labels: int | None
    corpus: int | None
    champions: dict[str, str | None]  # signal -> model version, for the signals of RULES and LANGUAGE_SIGNAL

    @classmethod
    def latest(cls, settings: Settings) -> ReadVersions:
        """Each table's latest version now, the configured corpus's the one it reads (`corpus.version`
        where pinned), and each read signal's champion now: taken once, before the run reads any of them."""
        lakehouse = settings.lakehouse_root
        try:
            corpus = CorpusTable.of(settings).version()
        except FileNotFoundError:
            corpus = None  # no corpus: nothing reads it unless there is gold to evaluate on
        champions = {signal: _champion_of(settings, signal) for signal in (*(s for s, _ in RULES.values()), LANGUAGE_SIGNAL)}
        return cls(*(delta_io.latest_version(lakehouse_table(lakehouse, t.name)) for t in (HUMAN_LABELS, WEAK_LABELS, LABELS)), corpus, champions)

    def lineage(self) -> dict[str, str]:
        """The versions as MLflow params."""
        return {"human_labels_version": str(self.human_labels), "weak_labels_version": str(self.weak_labels),
                "labels_table_version": str(self.labels), "corpus_version": str(self.corpus),
                **{f"{signal}_model_version": str(version) for signal, version in self.champions.items()}}


def _champion_of(settings: Settings, signal: str) -> str | None:
    """A signal's champion model version, None when the profile or the registry does not have it (never run here)."""
    try:
        return champion_version(settings, signal) if signal in settings.signals else None
    except RegistryError:
        return None


def label_frames(lakehouse: str, task: str, source: str, reads: ReadVersions) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """(training labels as `--labels` names them, gold labels, majority vote), the training labels
    as (content_id, p_positive), gold first where `both`: the one place the label tables of
    training.gold and training.weak (human labels, weak supervision) are read, at `reads`' versions.
    Gold alone needs no weak labels: without a weak_labels table there is no majority vote (None)."""
    gold_frame = gold.gold_labels(lakehouse, task, reads.human_labels)
    frames = ([gold_frame] if source in ("gold", "both") else []) + \
        ([weak.weak_labels(lakehouse, task, reads.weak_labels)] if source in ("weak", "both") else [])
    labels = pd.concat([f[["content_id", "p_positive"]] for f in frames], ignore_index=True).drop_duplicates("content_id")
    no_weak_labels = source == "gold" and reads.weak_labels is None
    return labels, gold_frame, None if no_weak_labels else weak.majority_vote(lakehouse, task, reads.weak_labels)


@dataclass(frozen=True)
class TrainedVersion:
    """What `train` made: the registry version, its MLflow run and how it did."""

    task: str
    model: RegisteredModel
    run_id: str
    snapshot: Snapshot
    weights: str  # a local path, or a URI on the lakehouse's store
    head: TrainedHead
    evaluation: Evaluation | None
    report: Path | None
    replaced: str | None  # the version the challenger named before this one (None: none), read as it moved


def held_out_gold(settings: Settings, task: str, snapshot: Snapshot, gold: pd.DataFrame, majority: pd.DataFrame | None = None,
                  fold: tuple[int, int] | None = None, *, reads: ReadVersions) -> tuple[pd.DataFrame, np.ndarray, int]:
    """The gold items of the snapshot's test groups (with `fold`, (test fold, folds): that fold's
    groups) with an ok embedding: their label and near-duplicate group, the rule's and the majority
    vote's scores (NaN where one has no score of an item: every item is kept, for each scorer to be
    judged on those it scored) and their slices (tables, the rule's and the language's model
    versions as `reads` says), and their vectors in the same order, for any number of heads to be
    scored on; and how many of those groups' gold items have no ok embedding row (no head can
    score them, so no scorer is judged on them)."""
    pinned = pin_snapshot(snapshot.lakehouse, snapshot.signal, snapshot.model_version,
                          gold.assign(p_positive=gold["label"].astype(float)), snapshot.embeddings_version,
                          snapshot.duplicates_version, settings.training.splits, snapshot.joined)
    pinned = pinned if fold is None else with_folds(pinned, *fold)
    ids, vectors = [], []
    for batch in batches(pinned, "test", batch_size=1024, shuffle_buffer=1):
        ids += batch["content_id"]
        vectors.append(batch["x"].numpy())
    if not ids:
        raise UsageError(f"no held-out gold items of {task} with an ok {snapshot.signal} row: label more items")
    labels = gold.drop_duplicates("content_id").set_index("content_id")["label"]
    groups = pinned.labels.drop_duplicates("content_id").set_index("content_id")["group_id"]
    frame = pd.DataFrame({"content_id": ids, "label": labels.loc[ids].astype(int).to_numpy(), "group_id": groups.loc[ids].to_numpy()})
    frame["rule"] = rule_scores(snapshot.lakehouse, task, reads.champions[RULES[task][0]], ids, reads.labels).to_numpy()
    if majority is not None:
        frame["majority_vote"] = majority.drop_duplicates("content_id").set_index("content_id")["p_positive"].reindex(ids).to_numpy()
    slices = item_slices(snapshot.lakehouse, CorpusTable.of(settings), list(frame["content_id"]), reads.champions[LANGUAGE_SIGNAL],
                         reads.labels, reads.corpus)
    frame = frame.merge(slices, on="content_id")
    return frame, np.concatenate(vectors)[pd.Index(ids).get_indexer(frame["content_id"])], len(pinned.targets("test")) - len(ids)


def held_out(settings: Settings, task: str, snapshot: Snapshot, head: TrainedHead, gold: pd.DataFrame,
             majority: pd.DataFrame | None, reads: ReadVersions) -> tuple[pd.DataFrame, int]:
    """held_out_gold's frame with the head's scores beside the other scorers' (NaN where a baseline has no score of an item),
    and its count of held-out gold items without an ok embedding row."""
    frame, vectors, without_row = held_out_gold(settings, task, snapshot, gold, majority, reads=reads)
    frame.insert(3, HEAD, head.scores(vectors))
    return frame, without_row


def head_identity(settings: Settings, snapshot: Snapshot, weights: str) -> dict[str, str]:
    """The params a head's registry version records: its signal kind, its weights and the
    embeddings (signal and model version) it reads, with their input kinds when it joins several."""
    kinds = [signal_class(settings.signals[signal].kind).input_kind for signal in (snapshot.signal, *(s for s, _ in snapshot.joined))]
    identity = {"weights_path": weights, "embedding_signal": snapshot.signal, "embedding_model_version": snapshot.model_version}
    if not snapshot.joined:
        return {KIND: HEAD_KINDS[kinds[0]], **identity}
    return {KIND: JOINED_HEAD_KIND, **identity, "joined_embeddings": snapshot.lineage()["joined_embeddings"],
            "embedding_kinds": JOINED_SEPARATOR.join(kinds)}


def embedding_signals(settings: Settings, task: str, embedding: str | None = None) -> list[str]:
    """The embedding signals a task's head reads (`embedding`, default `training.embeddings`), in the
    order their vectors are concatenated; a usage error, before anything is read, for one the profile
    does not have as an embedding signal (a labeler's rows are not vectors) or one named twice."""
    names = (embedding or settings.training.embeddings.get(task) or "").split(JOIN)
    embedders = [n for n, s in settings.signals.items() if issubclass(signal_class(s.kind), Embedder)]
    said = f"--embedding {embedding}" if embedding else f"training.embeddings.{task} {JOIN.join(names)!r}"
    if not_embedding := [n for n in names if n not in embedders]:
        raise UsageError(f"{said}: {not_embedding[0]!r} is not an embedding signal of the profile; its embedding signals: "
                         f"{', '.join(embedders)} (join different ones with {JOIN!r}, e.g. image_embedding{JOIN}text_embedding)")
    if len(set(names)) < len(names):  # the same vector twice: a head on no more than one of them, with twice the weights
        raise UsageError(f"{said}: an embedding signal is named twice; join different ones of the profile's: {', '.join(embedders)}")
    return names


def pin_embeddings(settings: Settings, signals: list[str], labels: pd.DataFrame) -> Snapshot:
    """A snapshot of the champions of `signals` (the first's rows, the others' vectors joined) with `labels`."""
    joined = tuple((s, champion_version(settings, s)) for s in signals[1:])
    return pin_snapshot(settings.lakehouse_root, signals[0], champion_version(settings, signals[0]), labels,
                        fractions=settings.training.splits, joined=joined)


def train_task(settings: Settings, task_name: str, labels: pd.DataFrame, label_source: str, embedding: str | None = None,
               gold: pd.DataFrame | None = None, majority: pd.DataFrame | None = None,
               report_path: Path = Path("reports/train/latest.html"), reads: ReadVersions | None = None) -> TrainedVersion:
    """Train, evaluate (on `gold`'s held-out items, when given), log and register a head for the
    task; `reads`: the versions its label frames were read at (default: the latest now)."""
    task = task_named(task_name)
    conf = settings.training
    reads = reads or ReadVersions.latest(settings)
    snapshot = pin_embeddings(settings, embedding_signals(settings, task.name, embedding), labels)
    head = train_head(snapshot, conf)
    name = head_signal(task.name)
    lineage = {**snapshot.lineage(), **reads.lineage(), "task": task.name, "labels": label_source}
    evaluation, report = None, None
    if gold is not None:
        frame, without_row = held_out(settings, task.name, snapshot, head, gold, majority, reads)
        # every scorer judged on the items all of them scored, as the gate compares their ROC-AUCs; how many each left out kept beside
        evaluation = evaluate(task.name, common_items(frame), conf.precision_at_recall, conf.gate.min_slice_items,
                              f"{name}: held-out gold ({label_source} labels)", lead=HEAD, held_out=frame, without_row=without_row)
        report = write_evaluation_report(evaluation, report_path, [scored_said(evaluation), *without_row_said(evaluation.held_out, snapshot.signal),
                                                                   *unvalidated_said(head), *(f"{k}: {v}" for k, v in lineage.items())])
    # saved once the evaluation has not refused (an unregistered file was left behind), before MLflow and the registry, which read it
    weights = save_head(head, settings.table_root(f"_heads/{name}"), lineage)  # beside the tables, where executors read them
    params = {**lineage, **{k: str(v) for k, v in conf.model_dump(exclude={"gate", "embeddings"}).items()}}
    losses = {"train_loss": head.train_loss[head.best_epoch], "validation_loss": head.validation_loss[head.best_epoch],
              "best_epoch": head.best_epoch}
    with local_copy(weights) as logged:
        run_id = log_to_mlflow(settings.registry_uri, report, {**losses, **(report_metrics(evaluation) if evaluation else {})},
                               f"train {name}", settings.registry.artifact_location, EXPERIMENT, params, [logged])
    registry = registry_for(settings)
    model = registry.register(name, weights, head_identity(settings, snapshot, weights), description=task.question)
    registry.client.set_model_version_tag(name, model.version, "mlflow_run_id", run_id)
    if evaluation is not None:
        registry.client.set_model_version_tag(name, model.version, EVALUATION_TAG, json.dumps(evaluation.summary()))
    replaced = registry.point_alias(name, CHALLENGER, model.version)
    return TrainedVersion(task.name, model, run_id, snapshot, weights, head, evaluation, report, replaced)
