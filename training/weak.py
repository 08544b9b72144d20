"""Weak labels: the labeling functions' votes turned into probabilistic labels by the label model,
kept in the `weak_labels` table, with each function's coverage, overlap, conflict and accuracy
against gold, and the gold items the label model most doubts, for re-review."""
from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

from conf.settings import UsageError
from lake import delta_io
from signals.contracts import WEAK_LABELS, lakehouse_table
from training.gold import gold_labels
from training.label_model import LabelModel, label_model_for, vote_share
from training.labeling_functions import ABSTAIN, LABELING_FUNCTIONS, NEIGHBOUR_SIGNAL, item_signals, neighbour_votes
from training.tasks import task_named

NEIGHBOURS_LF = "neighbours"


@dataclass(frozen=True)
class WeakRun:
    """A `labels weak` run of one task: what it committed and its report (JSON-ready)."""

    task: str
    run_id: str
    version: int
    items: int
    report: dict[str, Any] = field(default_factory=dict)


def table_root(lakehouse: str) -> str:
    return lakehouse_table(lakehouse, WEAK_LABELS.name)


def _task_rows(lakehouse: str, task: str, version: int | None = None) -> pd.DataFrame:
    root = table_root(lakehouse)
    if not DeltaTable.is_deltatable(root):
        raise UsageError(f"no weak_labels table at {root}: run `content-signals labels weak --task {task}` first")
    rows = delta_io.read_arrow(root, version, filters=pc.field("task") == task_named(task).name).to_pandas()
    if rows.empty:
        raise UsageError(f"{root} holds no weak labels of {task!r}: run `content-signals labels weak --task {task}` first")
    return rows.sort_values("content_id").reset_index(drop=True)


def weak_labels(lakehouse: str, task: str, version: int | None = None) -> pd.DataFrame:
    """content_id and p_positive (the label model's probability) of every item, weak_labels at `version` (default: the latest)."""
    return _task_rows(lakehouse, task, version)[["content_id", "p_positive"]]


def majority_vote(lakehouse: str, task: str, version: int | None = None) -> pd.DataFrame:
    """content_id and p_positive: the labeling functions' majority vote (share of positive votes,
    abstains ignored; 0.5 where every function abstained), the baseline a head must beat, from
    weak_labels at `version` (default: the latest)."""
    rows = _task_rows(lakehouse, task, version)
    return pd.DataFrame({"content_id": rows["content_id"], "p_positive": rows["majority_p"].fillna(0.5).astype(float)})


def lf_votes(lakehouse: str, task: str, versions: Mapping[str, str], gold: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The items (item_signals) and each labeling function's votes of `task`, the neighbours' last."""
    items = item_signals(lakehouse, versions)
    votes = {lf.name: lf.vote(items) for lf in LABELING_FUNCTIONS[task]}
    signal = NEIGHBOUR_SIGNAL[task]
    votes[NEIGHBOURS_LF] = (neighbour_votes(lakehouse, signal, versions[signal], items["content_id"].tolist(), gold)
                            if signal in versions else np.full(len(items), ABSTAIN))
    return items, votes


def lf_report(votes: dict[str, np.ndarray], gold_label: np.ndarray | None) -> dict[str, dict[str, float | int | None]]:
    """Per labeling function: coverage (share of items it votes on), overlap (share where another votes
    too), conflict (share where another votes otherwise) and accuracy against the gold label
    (`gold_label`: 0/1, -1 where an item has none) with how many gold items it was measured on."""
    matrix = np.stack(list(votes.values()), axis=1)
    report = {}
    for j, name in enumerate(votes):
        mine, others = matrix[:, j], np.delete(matrix, j, axis=1)
        voted = mine != ABSTAIN
        other_voted = (others != ABSTAIN).any(axis=1)
        other_differs = ((others != ABSTAIN) & (others != mine[:, None])).any(axis=1)
        judged = voted & (gold_label != -1) if gold_label is not None else np.zeros_like(voted)
        report[name] = {
            "coverage": float(voted.mean()), "overlap": float((voted & other_voted).mean()),
            "conflict": float((voted & other_differs).mean()),
            "accuracy": float((mine[judged] == gold_label[judged]).mean()) if judged.any() else None, "gold_items": int(judged.sum()),
        }
    return report


def label_issues(gold: pd.DataFrame, p_positive: pd.Series) -> list[dict[str, Any]]:
    """Gold items likely mislabelled (cleanlab's find_label_issues on the label model's
    probabilities, which never saw gold), most doubtful first; empty while gold holds one class."""
    from cleanlab.filter import find_label_issues

    joined = gold.merge(p_positive.rename("weak_p").reset_index(), on="content_id")
    if joined["label"].nunique() < 2:
        return []
    probs = np.clip(joined["weak_p"].to_numpy(dtype=float), 1e-6, 1 - 1e-6)
    ranked = find_label_issues(labels=joined["label"].to_numpy(), pred_probs=np.stack([1 - probs, probs], axis=1),
                               return_indices_ranked_by="self_confidence")
    return [{"content_id": joined["content_id"].iloc[i], "gold": int(joined["label"].iloc[i]),
             "gold_p": round(float(joined["p_positive"].iloc[i]), 4), "weak_p": round(float(probs[i]), 4),
             "annotators": int(joined["n_annotators"].iloc[i])} for i in ranked]


def run_weak(lakehouse: str, task: str, versions: Mapping[str, str], model: LabelModel | None = None,
             readable_gold: Collection[str] | None = None) -> WeakRun:
    """Vote, fit the label model, and replace the task's rows of weak_labels in one commit; the report
    has each labeling function's figures, the label model's accuracy on gold and the label issues.
    `readable_gold`: the gold items the votes and the class balance may read (default: all), so an
    evaluation can keep its held-out items' gold from every scorer."""
    task = task_named(task).name
    gold = gold_labels(lakehouse, task)
    readable = gold if readable_gold is None else gold[gold["content_id"].isin(readable_gold)]
    items, votes = lf_votes(lakehouse, task, versions, readable)
    if items.empty:
        raise UsageError(f"no label rows of the signals {sorted(versions)} in {lakehouse}: run a backfill first")
    matrix = np.stack(list(votes.values()), axis=1)
    model = model or label_model_for(matrix)
    share = float(readable["p_positive"].mean()) if len(readable) else None
    model.fit(matrix, share if share is not None and 0 < share < 1 else None)  # gold of one class says no balance: estimated
    p = model.p_positive(matrix)
    voted = (matrix != ABSTAIN).sum(axis=1)
    majority_p = vote_share(matrix)
    run_id = f"weak-{task}-{uuid.uuid4().hex[:12]}"
    rows = pa.table({
        "content_id": items["content_id"].tolist(), "task": [task] * len(items), "p_positive": p, "votes": voted.astype(np.int32),
        "majority_p": pa.array(majority_p, pa.float64(), from_pandas=True), "label_model": [model.name] * len(items),
        "run_id": [run_id] * len(items), "computed_at": pa.array([dt.datetime.now(dt.UTC)] * len(items), WEAK_LABELS.schema.field("computed_at").type),
    }, schema=WEAK_LABELS.schema)
    root = table_root(lakehouse)
    files = delta_io.write_driver_rows(root, WEAK_LABELS, rows, f"part-{run_id}")
    version = delta_io.commit_files(root, WEAK_LABELS, files, f"content-signals/{run_id}/{WEAK_LABELS.name}",
                                    {"job": "labels weak", "run_id": run_id, "task": task, "label_model": model.name,
                                     "signals": ",".join(f"{s}@{v}" for s, v in sorted(versions.items()))},
                                    remove=lambda f: f.partition_values["task"] == task)
    gold_of = dict(zip(gold["content_id"], gold["label"]))
    gold_label = np.array([gold_of.get(c, -1) for c in items["content_id"]])
    has_gold = gold_label != -1
    report = {
        "task": task, "run_id": run_id, "weak_labels_version": version, "items": len(items), "gold_items": int(has_gold.sum()),
        "label_model": model.name, "labeling_functions": lf_report(votes, gold_label),
        "label_model_accuracy": float(((p[has_gold] >= 0.5) == gold_label[has_gold]).mean()) if has_gold.any() else None,
        # yes at >= 0.5 as the label model's (and gold's): a tie is a yes; no vote cast (NaN) a no
        "majority_accuracy": float(((majority_p[has_gold] >= 0.5) == gold_label[has_gold]).mean()) if has_gold.any() else None,
        "label_issues": label_issues(gold, pd.Series(p, index=items["content_id"], name="p")),
    }
    return WeakRun(task, run_id, version, len(items), report)
