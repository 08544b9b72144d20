"""Offline evaluation of a head on held-out gold labels, against the rule it would replace and the
majority vote of the labelling functions: ROC and PR curves, precision at a fixed recall,
calibration (ECE, reliability diagram) and ROC-AUC per slice (day, language, image format, text
length), in one HTML report with the plots embedded (rollout/compare.py's helpers).

Held out means the test split of the near-duplicate groups (training/loader.py): the gold items
whose group hashes into `test`, so no copy of an evaluated item was trained on.
"""
from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc
from deltalake import DeltaTable
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from conf.settings import UsageError
from lake import delta_io
from lake.corpus import CorpusTable
from rollout.html_report import figure_png, html_page, html_table, image_tag
from signals.contracts import LABELS, STATUS_OK, lakehouse_table
from training.labeling_functions import one_day_each

# task -> (signal, label) of the rule-based labeler a head for it would replace (signals/labels/)
RULES: dict[str, tuple[str, str]] = {
    "low_quality": ("image_quality", "low_quality"),
    "text_heavy": ("text_in_image", "text_heavy"),
    "spam_text": ("text_safety", "spam"),
}
LANGUAGE_SIGNAL = "language"
TEXT_LENGTHS = ((0, 40, "short"), (40, 120, "medium"), (120, math.inf, "long"))  # characters of title + description
SLICES = ("ds", "language", "image_format", "text_length")
ITEMS = ("content_id", "label", "group_id")  # what an evaluation frame says of each item; its other columns but SLICES are scorers
CALIBRATION_BINS = 10
BOOTSTRAP_ROUNDS = 2000  # resamples behind an ROC-AUC difference's interval
MAGIC = ((b"\xff\xd8\xff", "jpeg"), (b"\x89PNG", "png"), (b"GIF8", "gif"), (b"BM", "bmp"), (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"))


def expected_calibration_error(labels: np.ndarray, scores: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """ECE: the item-weighted mean gap between the share of positives and the mean score in equal-width score bins."""
    which = np.minimum((scores * bins).astype(int), bins - 1)
    gap = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            gap += inside.sum() * abs(labels[inside].mean() - scores[inside].mean())
    return gap / len(labels)


def precision_at_recall(labels: np.ndarray, scores: np.ndarray, recall: float) -> float:
    """The best precision among thresholds that keep at least `recall` of the positives."""
    precision, recalls, _ = precision_recall_curve(labels, scores)
    return float(precision[recalls >= recall].max())


def score_metrics(labels: np.ndarray, scores: np.ndarray, recall: float) -> dict[str, float | None]:
    """ROC-AUC, average precision, precision at `recall` and ECE of one scorer (None where one class only)."""
    both = 0 < labels.sum() < len(labels)
    return {
        "items": float(len(labels)), "positives": float(labels.sum()),
        "roc_auc": float(roc_auc_score(labels, scores)) if both else None,
        "average_precision": float(average_precision_score(labels, scores)) if both else None,
        f"precision_at_recall_{recall:g}": precision_at_recall(labels, scores, recall) if both else None,
        "ece": expected_calibration_error(labels, scores),
    }


@dataclass(frozen=True)
class AucDifference:
    """One scorer's ROC-AUC minus another's on the same items, and the 95% interval of that
    difference over resamples of the items: whether one ranks better than the other, or only
    differently on these few items."""

    difference: float
    low: float
    high: float

    @property
    def beyond_noise(self) -> bool:
        """Whether the first scorer is better on (nearly) every resample, not just on this draw of items."""
        return self.low > 0

    def as_dict(self) -> dict[str, float]:
        return {"difference": self.difference, "ci95_low": self.low, "ci95_high": self.high}


def lead_is_clear(lead: Mapping[str, float] | None) -> bool:
    """Whether a kept difference (`AucDifference.as_dict`) lies above zero across its whole 95% interval."""
    return lead is not None and lead["ci95_low"] > 0


def auc_difference(labels: np.ndarray, first: np.ndarray, second: np.ndarray, groups: np.ndarray | None = None,
                   rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0) -> AucDifference:
    """ROC-AUC of `first` minus `second`, with a paired bootstrap interval over `groups` (default:
    each item its own): each round draws the groups again, with replacement, and weighs every item
    by how often its group was drawn, so copies of one picture count as the one draw they are, and
    both scorers are judged on the same draw."""
    ids = np.arange(len(labels)) if groups is None else pd.factorize(groups)[0]
    n = ids.max() + 1
    weights = np.random.default_rng(seed).multinomial(n, np.full(n, 1 / n), size=rounds)[:, ids].astype(float)
    differences = weighted_aucs(labels, first, weights) - weighted_aucs(labels, second, weights)
    low, high = np.nanquantile(differences, [0.025, 0.975])  # a round that drew one class only has no ROC-AUC
    return AucDifference(float(roc_auc_score(labels, first) - roc_auc_score(labels, second)), float(low), float(high))


def weighted_aucs(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC-AUC under each row of item `weights` (rounds x items): the weighted share of (positive,
    negative) pairs the scores put in order, ties counting half (NaN where a class weighs nothing)."""
    levels = np.unique(scores, return_inverse=True)[1]  # items of equal score share a level, levels in score order
    order = np.argsort(levels, kind="stable")
    negative = weights * (labels == 0)
    at_level = np.add.reduceat(negative[:, order], np.searchsorted(levels[order], np.arange(levels.max() + 1)), axis=1)  # rounds x levels
    below = np.cumsum(at_level, axis=1) - at_level
    positive = weights * (labels == 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (positive * (below[:, levels] + at_level[:, levels] / 2)).sum(axis=1) / (positive.sum(axis=1) * negative.sum(axis=1))


def leads(frame: pd.DataFrame, scorer: str, others: Sequence[str]) -> dict[str, dict[str, float] | None]:
    """`scorer`'s ROC-AUC minus each of `others`' on the frame's items, with the 95% interval of
    that difference, resampled by the frame's `group_id` (near-duplicate group; by item without
    one). None where the items hold one class only, or the other scorer is not in the frame."""
    labels = frame["label"].to_numpy(dtype=int)
    both = 0 < labels.sum() < len(labels)
    groups = frame["group_id"].to_numpy() if "group_id" in frame else None
    return {other: auc_difference(labels, frame[scorer].to_numpy(float), frame[other].to_numpy(float), groups).as_dict()
            if both and other in frame else None for other in others}


def slice_aucs(frame: pd.DataFrame, scorer: str, min_items: int) -> dict[str, dict[str, float]]:
    """slice kind -> value -> ROC-AUC of `scorer`, for slices of at least `min_items` items holding both classes."""
    found: dict[str, dict[str, float]] = {}
    for kind in SLICES:
        for value, part in frame.dropna(subset=[scorer]).groupby(kind, dropna=False):
            labels = part["label"].to_numpy()
            if len(part) >= min_items and 0 < labels.sum() < len(labels):
                found.setdefault(kind, {})[str(value)] = float(roc_auc_score(labels, part[scorer]))
    return found


@dataclass
class Evaluation:
    """A head's held-out evaluation: per scorer (head, rule, majority) its metrics, slices and the scores."""

    task: str
    title: str
    frame: pd.DataFrame = field(repr=False)  # content_id, label, one column per scorer, the slice columns
    metrics: dict[str, dict[str, float | None]] = field(default_factory=dict)
    slices: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    slice_items: dict[str, dict[str, int]] = field(default_factory=dict)  # slice kind -> value -> held-out items
    lead: str | None = None  # the scorer judged against the others (a head against its baselines)
    leads: dict[str, dict[str, float] | None] = field(default_factory=dict)  # other scorer -> the lead's difference and interval
    held_out: dict[str, Any] = field(default_factory=dict)  # held_out_coverage of the items `frame` is the common items of

    def summary(self) -> dict[str, Any]:
        """What the gate reads and the registry keeps (JSON): with each slice's size, so a gate
        asking for larger slices than the training run did can leave the smaller ones out, the
        lead's intervals, so it can tell a lead from chance, and the held-out items before the
        common ones, so it can tell too few gold labels from a baseline that left items out."""
        return {"task": self.task, "metrics": self.metrics, "slices": self.slices, "slice_items": self.slice_items, "leads": self.leads,
                "held_out": self.held_out}


def evaluate(task: str, frame: pd.DataFrame, recall: float, min_slice_items: int, title: str, lead: str | None = None,
             held_out: pd.DataFrame | None = None, without_row: int = 0) -> Evaluation:
    """Metrics of every scorer column of `frame` (all but ITEMS and the slices) on its scored
    items; with `lead`, that scorer's ROC-AUC lead over each other one, with its interval; with
    `held_out`, the frame `frame` is the common_items of, how many items each scorer left out, and
    `without_row` held-out gold items no head could score (a usage error naming the scorers where
    they share no scored item: there is nothing to judge on)."""
    evaluation = Evaluation(task, title, frame, lead=lead, held_out={} if held_out is None else held_out_coverage(held_out, without_row))
    if held_out is not None and frame.empty:
        names = " and ".join(evaluation.held_out["left_out"])
        raise UsageError(f"none of the {len(held_out)} held-out gold items was scored by every scorer ({left_out_said(evaluation.held_out)}): "
                         f"{names} share no scored item, so the head cannot be judged against them on the same items; "
                         "have them score the same held-out items and train again")
    evaluation.slice_items = {kind: {str(v): int(n) for v, n in frame.groupby(kind, dropna=False).size().items()} for kind in SLICES}
    for scorer in scorers(frame):
        scored = frame.dropna(subset=[scorer])
        evaluation.metrics[scorer] = score_metrics(scored["label"].to_numpy(), scored[scorer].to_numpy(float), recall)
        evaluation.slices[scorer] = slice_aucs(frame, scorer, min_slice_items)
    if lead is not None:
        evaluation.leads = leads(frame, lead, [s for s in scorers(frame) if s != lead])
    return evaluation


def scorers(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in (*ITEMS, *SLICES)]


def common_items(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame without the scorers that scored none of its items, and of its items those every
    other scorer scored: scorers judged against each other are judged on the same items."""
    frame = frame.drop(columns=[s for s in scorers(frame) if frame[s].isna().all()])
    return frame.dropna(subset=scorers(frame))


def held_out_coverage(frame: pd.DataFrame, without_row: int = 0) -> dict[str, Any]:
    """The frame's items and positives, and per scorer that scored some of its items but not all,
    how many it left out: why common_items may hold far fewer items than were held out (a baseline's
    coverage, not too few gold labels); and the held-out gold items `without_row` (no ok embedding
    row), which are in no frame: the gold the evaluation could not use."""
    return {"items": len(frame), "positives": int(frame["label"].sum()),
            "left_out": {s: int(frame[s].isna().sum()) for s in scorers(frame) if frame[s].notna().any() and frame[s].isna().any()},
            "without_row": without_row}


def without_row_said(held_out: Mapping[str, Any], signal: str) -> list[str]:
    """held_out_coverage's held-out gold items without an ok row of `signal`, in words (none: nothing to say)."""
    n = held_out.get("without_row", 0)
    return [f"{n} held-out gold items have no ok {signal} row (an error row, or none yet): no head can score them, "
            "so no scorer is judged on them"] if n else []


def scored_said(evaluation: Evaluation) -> str:
    """Which held-out gold items the scorers' figures are on, in words: where a baseline left some
    out, those every scorer scored, of how many, and who left how many out (`train` prints it above
    its figures, and its report says it)."""
    items, held_out = int(next(iter(evaluation.metrics.values()))["items"]), evaluation.held_out
    if held_out.get("left_out"):
        return f"held-out gold ({items} of {held_out['items']} items, those every scorer scored; {left_out_said(held_out)})"
    return f"held-out gold ({items} items)"


def left_out_said(held_out: Mapping[str, Any]) -> str:
    """held_out_coverage's scorers that left items out, in words ("rule left out 34")."""
    return ", ".join(f"{scorer} left out {n}" for scorer, n in held_out["left_out"].items())


# -- what the lakehouse says about the items ---------------------------------------------------

def _champion_rows(lakehouse: str, signal: str, model_version: str | None, ids: Sequence[str], columns: list[str],
                   version: int | None) -> pd.DataFrame:
    root = lakehouse_table(lakehouse, LABELS.name)
    if model_version is None or not DeltaTable.is_deltatable(root):
        return pd.DataFrame(columns=columns)
    condition = (pc.field("signal") == signal) & (pc.field("model_version") == model_version) & (pc.field("status") == STATUS_OK)
    condition &= pc.field("content_id").isin(list(ids))
    rows = delta_io.read_arrow(root, version, filters=condition, columns=list(dict.fromkeys([*columns, "signal", "ds"]))).to_pandas()
    one_day_each(rows, {signal: model_version})
    return rows[columns]


def rule_scores(lakehouse: str, task: str, model_version: str | None, ids: Sequence[str], labels_version: int | None) -> pd.Series:
    """The rule-based labeler's score of each item (NaN where it has none), at its `model_version`,
    from the labels table at `labels_version`."""
    signal, label = RULES[task]
    rows = _champion_rows(lakehouse, signal, model_version, ids, ["content_id", "label", "score"], labels_version)
    rows = rows[rows["label"] == label]
    return rows.set_index("content_id")["score"].reindex(list(ids)).astype(float)


def image_format(data: bytes | None) -> str:
    """The image's format from its first bytes ("none" without bytes, "other" when unknown)."""
    if not data:
        return "none"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return next((name for magic, name in MAGIC if data.startswith(magic)), "other")


def text_length(title: str | None, description: str | None) -> str:
    n = len(title or "") + len(description or "")
    return next(name for low, high, name in TEXT_LENGTHS if low <= n < high)


def item_slices(lakehouse: str, corpus: CorpusTable, ids: Sequence[str], language_version: str | None,
                labels_version: int | None, corpus_version: int | None) -> pd.DataFrame:
    """Per item: its day, language (the language signal's `language_version` in the labels table at
    `labels_version`), image format and text length (the configured `corpus` at `corpus_version`, the row of each id the jobs keep)."""
    corpus = corpus.latest(["content_id", "ds", "image", "title", "description"], corpus_version, ids).to_pandas()
    corpus = corpus.set_index("content_id").reindex(list(ids))
    languages = _champion_rows(lakehouse, LANGUAGE_SIGNAL, language_version, ids, ["content_id", "label"], labels_version)
    return pd.DataFrame({
        "content_id": list(ids),
        "ds": corpus["ds"].fillna("unknown").to_numpy(),
        "language": languages.set_index("content_id")["label"].reindex(list(ids)).fillna("unknown").to_numpy(),
        "image_format": [image_format(b if isinstance(b, bytes) else None) for b in corpus["image"]],
        "text_length": [text_length(t if isinstance(t, str) else None, d if isinstance(d, str) else None)
                        for t, d in zip(corpus["title"], corpus["description"])],
    })


# -- the report --------------------------------------------------------------------------------

def _figures(evaluation: Evaluation) -> dict[str, bytes]:
    from matplotlib.figure import Figure

    frame, figures = evaluation.frame, {}
    curves = Figure(figsize=(10, 4))
    roc, pr = curves.add_subplot(1, 2, 1), curves.add_subplot(1, 2, 2)
    reliability = Figure(figsize=(5, 4))
    diagram = reliability.add_subplot()
    diagram.plot([0, 1], [0, 1], color="grey", linestyle=":")
    for scorer in scorers(frame):
        scored = frame.dropna(subset=[scorer])
        labels, scores = scored["label"].to_numpy(), scored[scorer].to_numpy(float)
        if not 0 < labels.sum() < len(labels):
            continue
        fpr, tpr, _ = roc_curve(labels, scores)
        roc.plot(fpr, tpr, label=f"{scorer} ({evaluation.metrics[scorer]['roc_auc']:.3f})")
        precision, recall, _ = precision_recall_curve(labels, scores)
        pr.plot(recall, precision, label=scorer)
        which = np.minimum((scores * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
        bins = [b for b in range(CALIBRATION_BINS) if (which == b).any()]
        diagram.plot([scores[which == b].mean() for b in bins], [labels[which == b].mean() for b in bins], marker="o", label=scorer)
    roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    pr.set(xlabel="recall", ylabel="precision", title="precision-recall")
    diagram.set(xlabel="mean score", ylabel="share positive", title="reliability")
    for ax in (roc, pr, diagram):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    figures["ROC and PR curves"] = figure_png(curves)
    figures["reliability diagram"] = figure_png(reliability)
    return figures


def write_evaluation_report(evaluation: Evaluation, path: Path, notes: Sequence[str] = ()) -> Path:
    """One self-contained HTML file: the scorers' metrics, their slices, the curves and the reliability diagram."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = scorers(evaluation.frame)
    columns = list(next(iter(evaluation.metrics.values()), {}))
    parts = [f"<p>{html.escape(note)}</p>" for note in notes]
    parts.append(html_table([[n, *(evaluation.metrics[n].get(c) for c in columns)] for n in names], ["scorer", *columns]))
    if evaluation.leads:
        parts.append(f"<h2>{html.escape(str(evaluation.lead))}'s ROC-AUC minus each other scorer's (95% interval, by near-duplicate group)</h2>")
        parts.append(html_table([[n, *((None, None, None) if d is None else (d["difference"], d["ci95_low"], d["ci95_high"]))]
                                 for n, d in evaluation.leads.items()], ["scorer", "difference", "ci95_low", "ci95_high"]))
    parts.append("<h2>ROC-AUC per slice</h2>")
    keys = sorted({(kind, value) for n in names for kind, values in evaluation.slices[n].items() for value in values})
    parts.append(html_table([[f"{kind}={value}", *(evaluation.slices[n].get(kind, {}).get(value) for n in names)] for kind, value in keys],
                        ["slice", *names]))
    parts += [image_tag(name, png) for name, png in _figures(evaluation).items()]
    path.write_text(html_page(evaluation.title, parts), encoding="utf-8")
    return path


def report_metrics(evaluation: Evaluation) -> Mapping[str, Any]:
    """The metrics nested by scorer, slices under `slices`, and the held-out gold they were judged on
    under `held_out` (held_out_coverage: items, positives, without_row, left_out per scorer), as
    rollout.compare.log_to_mlflow takes them."""
    return {**evaluation.metrics, "slices": evaluation.slices, "held_out": evaluation.held_out}
