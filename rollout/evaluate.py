"""Offline evaluation of the labels and the duplicate groups against the sample corpus's truth.

    content-signals evaluate          # after backfill (with OCR on) and dedup; `make eval` does all

Per label: precision and recall of the stored decision, ROC-AUC of the stored score, over the
items the label could score (ok rows). Near-duplicates: pairs of items in the same predicted
group against pairs in the same true copy group (`corpus_truth.dup_group`, and the sample videos'
`video_truth.dup_group`: a re-encoding with its video, a pin's video version with the pin); a pair of an
*edit* (a crop, flip, blur, text overlay, low-resolution copy) with the group of the picture
it was made from is ambiguous and counted neither way, and so is a pair of two inputs without a
picture (byte-identical error pages, which dedup groups by their bytes). Retrieval: per embedding signal, recall@10 of the approximate (IVF-Flat) index against exact search
on the champion's vectors, and for each item with copies (the same `dup_group`) the share of them
among its 10 nearest neighbours (retrieval/quality.py). Writes reports/eval/latest.json.
This is the gate a model version passes before promotion.
"""
from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from sklearn.metrics import roc_auc_score

from conf.settings import Settings
from lake import delta_io
from retrieval.build import embeddings_root
from retrieval.embedding_rows import held_by, pinned_version, signal_rows, vectors_of
from retrieval.quality import retrieval_quality
from rollout.models import champion_version
from sample_corpus.generate import truth_root
from sample_corpus.kinds import COPY, NONE
from sample_corpus.videos import VIDEO_TRUTH_TABLE
from signals.contracts import DUPLICATES, LABELS, STATUS_OK

REPORT = Path("reports/eval/latest.json")


@dataclass(frozen=True)
class LabelTruth:
    """Which stored label is checked against which truth: `truth(row)` -> is it positive."""

    signal: str
    label: str
    truth: Callable[[dict], bool]
    description: str


LABEL_TRUTHS = (
    LabelTruth("image_quality", "blurry", lambda t: t["is_blurred"], "Gaussian-blurred variants"),
    LabelTruth("image_quality", "low_resolution", lambda t: t["is_low_res"], "downscaled to a 32-64 px long side"),
    LabelTruth("image_quality", "low_quality", lambda t: t["is_blurred"] or t["is_low_res"], "blurred or low resolution"),
    LabelTruth("text_in_image", "text_heavy", lambda t: t["has_text_overlay"], "text drawn over the picture"),
)


def binary_metrics(truth: Iterable[bool], decision: Iterable[bool], score: Iterable[float]) -> dict:
    """Precision, recall (of the decisions) and ROC-AUC (of the scores); None where undefined."""
    y, d, s = np.asarray(list(truth), bool), np.asarray(list(decision), bool), np.asarray(list(score), float)
    tp = int((y & d).sum())
    return {
        "precision": tp / int(d.sum()) if d.any() else None,
        "recall": tp / int(y.sum()) if y.any() else None,
        "roc_auc": float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else None,
        "n": int(len(y)),
        "positives": int(y.sum()),
    }


def evaluate_labels(labels: pa.Table, truth: dict[str, dict]) -> dict[str, dict]:
    """Metrics for every LABEL_TRUTHS entry whose signal is in the labels table."""
    results = {}
    for check in LABEL_TRUTHS:
        rows = labels.filter(pc.and_(pc.equal(labels["signal"], check.signal), pc.equal(labels["label"], check.label)))
        rows = [r for r in rows.filter(pc.equal(rows["status"], STATUS_OK)).to_pylist() if r["content_id"] in truth]
        if rows:
            results[check.label] = {
                **binary_metrics((check.truth(truth[r["content_id"]]) for r in rows), (r["decision"] for r in rows), (r["score"] for r in rows)),
                "signal": check.signal,
                "truth": check.description,
            }
    return results


def _pairs(groups: dict[str, list[str]]) -> set[tuple[str, str]]:
    return {tuple(sorted(p)) for members in groups.values() for p in itertools.combinations(members, 2)}


def without_picture(truth: dict) -> bool:
    """Whether a truth row is a bad input with no picture (noise, zero bytes, error text, NULL)."""
    return truth.get("bad_image_kind") is not None and truth["dup_relation"] == NONE


def evaluate_duplicates(duplicates: pa.Table, truth: dict[str, dict]) -> dict:
    """Pair precision and recall of the predicted groups against the true copy groups."""
    predicted, true = defaultdict(list), defaultdict(list)
    for row in duplicates.to_pylist():
        predicted[row["group_id"]].append(row["content_id"])
    for cid, t in truth.items():
        true[t["dup_group"]].append(cid)
    ambiguous = {
        tuple(sorted((cid, other)))
        for cid, t in truth.items() if t["dup_relation"] == "edit" and t["source_id"]
        for other in true[truth[t["source_id"]]["dup_group"]] + [c for c, u in truth.items() if u["source_id"] == t["source_id"] and c != cid]
    }
    # two inputs without a picture (the same error page uploaded twice) have no copy truth: dedup
    # groups their exact bytes by design, and the pair is counted neither way
    pictureless = {p for p in _pairs(predicted) if all(c in truth and without_picture(truth[c]) for c in p)}
    predicted_pairs, true_pairs = _pairs(predicted) - ambiguous - pictureless, _pairs(true)
    hits = len(predicted_pairs & true_pairs)
    return {
        "precision": hits / len(predicted_pairs) if predicted_pairs else None,
        "recall": hits / len(true_pairs) if true_pairs else None,
        "true_pairs": len(true_pairs),
        "predicted_pairs": len(predicted_pairs),
        "ambiguous_pairs_ignored": len(ambiguous),
        "pictureless_pairs_ignored": len(pictureless),
        "n": duplicates.num_rows,
    }


def video_duplicate_truth(video_truth: pa.Table) -> dict[str, dict]:
    """The sample videos' duplicate truth in corpus_truth's terms: a video whose dup_group is
    another item's (a re-encoding of a video, the video version of a pin) is a copy of it."""
    return {
        r["content_id"]: {"dup_group": r["dup_group"], "dup_relation": COPY if r["dup_group"] != r["content_id"] else NONE,
                          "source_id": r["dup_group"] if r["dup_group"] != r["content_id"] else None}
        for r in video_truth.select(["content_id", "dup_group"]).to_pylist()
    }


def evaluate_retrieval(settings: Settings, truth: dict[str, dict]) -> dict[str, dict]:
    """Per enabled signal in the embeddings table (its champion's rows at the latest version):
    recall@10 of the approximate index against exact search, and the share of copies found."""
    root = embeddings_root(settings.lakehouse_root)
    if not DeltaTable.is_deltatable(root):
        return {}
    version = pinned_version(root, None)
    groups = {content_id: t["dup_group"] for content_id, t in truth.items()}
    results = {}
    for signal in sorted({s for s, _ in held_by(root, version)} & set(settings.enabled_signals)):
        model_version = champion_version(settings, signal)
        vectors = vectors_of(signal_rows(root, signal, model_version, version), model_version)
        if len(vectors.content_ids) > 1:
            results[signal] = {**retrieval_quality(vectors, settings.index, groups), "table_version": version}
    return results


def replace_section(name: str, section: dict, report: Path = REPORT) -> dict:
    """The report with one section evaluated again (`eval --only`), the others as an earlier run left them."""
    result = json.loads(report.read_text()) if report.exists() else {}
    result[name] = section
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(result, indent=2))
    return result


def run_evaluation(settings: Settings, sections: dict | None = None, report: Path = REPORT) -> dict:
    """Evaluate what the lakehouse holds; write the JSON report, with the `sections` evaluated
    elsewhere (the monitoring's), and return it."""
    truth = {r["content_id"]: r for r in delta_io.read_arrow(truth_root(settings.lakehouse_root)).to_pylist()}
    labels_root = settings.table_root(LABELS.name)
    if not DeltaTable.is_deltatable(labels_root):  # the sample corpus made, nothing computed yet
        raise FileNotFoundError(f"no labels table at {labels_root}: run a backfill first (content-signals backfill)")
    result = {"labels": evaluate_labels(delta_io.read_arrow(labels_root), truth)}
    duplicates_root = settings.table_root(DUPLICATES.name)
    if DeltaTable.is_deltatable(duplicates_root):
        videos = settings.table_root(VIDEO_TRUTH_TABLE)  # the sample videos are corpus items too, across formats
        video_truth = video_duplicate_truth(delta_io.read_arrow(videos)) if DeltaTable.is_deltatable(videos) else {}
        pairs = evaluate_duplicates(delta_io.read_arrow(duplicates_root), {**truth, **video_truth})
        result["labels"]["near_duplicate"] = {**pairs, "roc_auc": None}  # groups, not scores: no curve
        result["near_duplicate"] = pairs
    result["retrieval"] = evaluate_retrieval(settings, truth)
    result.update(sections or {})
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(result, indent=2))
    return result
