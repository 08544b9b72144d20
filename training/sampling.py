"""Items worth labelling next: the most uncertain under the current head (the task's head champion,
else the challenger `train` just registered; the label model's probabilities before any head),
spread over the corpus days, error-free, written as a task file Label Studio imports."""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from conf.settings import Settings
from lake import delta_io
from lake.corpus import CorpusTable, readable_text, undecodable
from lake.registry import CHALLENGER, CHAMPION, RegisteredModel, RegistryError
from retrieval.embedding_rows import pinned_version, signal_rows, vectors_of
from rollout.models import registry_for
from signals.contracts import EMBEDDINGS, STATUS_OK, lakehouse_table
from signals.labels.head import embedding_reads, load_head, score_vectors
from training.gate import head_signal
from training.human_labels import labels_of
from training.loader import two_ok_rows
from training.tasks import task_named


def current_head(settings: Settings, task: str) -> RegisteredModel | None:
    """The task's head the team works with now: its champion, else its challenger; None before any `train`."""
    if not settings.registry.enabled:
        return None
    registry = registry_for(settings)
    for alias in (CHAMPION, CHALLENGER):
        try:
            return registry.resolve(head_signal(task), alias)
        except RegistryError:
            continue
    return None


def head_probabilities(lakehouse: str, head: RegisteredModel) -> pd.DataFrame:
    """content_id and p_positive: the head's scores of the items with an ok row of every embedding it was trained on (none
    when no item has them all)."""
    root = lakehouse_table(lakehouse, EMBEDDINGS.name)
    version = pinned_version(root, None)
    parts = [vectors_of(signal_rows(root, signal, model_version, version), model_version) for signal, model_version in embedding_reads(head.params)]
    ids = sorted(set.intersection(*(set(part.content_ids) for part in parts)))  # each part's ok rows, ordered by content id
    if not ids:  # every row in error (an embedding of no items): nothing the head can score
        return pd.DataFrame({"content_id": pd.Series(dtype=str), "p_positive": pd.Series(dtype=float)})
    matrix = np.hstack([part.matrix[np.isin(part.content_ids, ids)] for part in parts])
    return pd.DataFrame({"content_id": ids, "p_positive": score_vectors(load_head(head.params["weights_path"]), matrix)})


def candidates(lakehouse: str, task: str, signal: str, model_version: str, probabilities: pd.DataFrame) -> pd.DataFrame:
    """Items not yet labelled for `task` whose row of the embedding `signal` at `model_version` is
    ok, with their day and their p_positive in `probabilities` (content_id, p_positive); a usage
    error naming an item with ok rows on two days (it was listed, and written to the task file, twice)."""
    rows = delta_io.read_arrow(lakehouse_table(lakehouse, EMBEDDINGS.name),
                               filters=(pc.field("signal") == signal) & (pc.field("model_version") == model_version),
                               columns=["content_id", "ds", "status"]).to_pandas()
    ok = rows[rows["status"] == STATUS_OK][["content_id", "ds"]]
    if not (again := ok["content_id"][ok["content_id"].duplicated()]).empty:
        raise two_ok_rows(again.iloc[0], signal, model_version)
    labelled = set(labels_of(lakehouse, task)["content_id"].to_pylist())
    return ok[~ok["content_id"].isin(labelled)].merge(probabilities, on="content_id")


def most_uncertain(items: pd.DataFrame) -> pd.DataFrame:
    """`items` in the order they are worth labelling: each day given its share (by its candidates),
    the most uncertain (p nearest 0.5) of each day first; days round-robin, so a small head of the
    order still reaches every day."""
    ranked = items.assign(uncertainty=(items["p_positive"] - 0.5).abs()).sort_values(["uncertainty", "content_id"])
    ranked["turn"] = ranked.groupby("ds").cumcount() / ranked.groupby("ds")["content_id"].transform("count")
    return ranked.sort_values(["turn", "uncertainty", "content_id"]).drop(columns=["turn"])


def task_image(row: dict) -> str | None:
    """What Label Studio shows of an item's image: its bytes inline as a data URI, else its URI; None
    with neither, or with a URI that is not UTF-8 (`uri_not_utf8`: read with U+FFFD, no address it can load)."""
    if row["image"]:
        return "data:image;base64," + base64.b64encode(row["image"]).decode()
    if row["uri_not_utf8"]:
        return None
    return row["image_uri"] or None


@dataclass(frozen=True)
class TaskFile:
    """A task file written for Label Studio: what `label-sample` writes and says of the items it chose."""

    path: Path
    written: pd.DataFrame  # the items in it, rows of the ranking
    passed_over: list[str]  # no image to show, or no longer in the corpus
    uri_not_utf8: list[str]  # passed over: no image bytes, and an image_uri that is not UTF-8
    text_not_utf8: list[str]  # written with a title or description that is not UTF-8 (shown with U+FFFD)


def write_task_file(corpus: CorpusTable, ranked: pd.DataFrame, task: str, out: Path, scored_by: str,
                    n: int | None = None) -> TaskFile:
    """The first `n` items of `ranked` (all when None) that have an image to show, as a Label Studio
    task file (the image `task_image` gives, title, description from the configured `corpus`, of
    the row of each id the jobs keep, the probability they were chosen at and what gave it), with
    the labelling config beside it (`.xml`: image, title and description, and the task's question),
    and what `label-sample` says of them (`TaskFile`). Passed over: no image to show (an image_uri
    that is not UTF-8 is none), or no longer in the corpus (taken down since its embedding was computed). Each passed-over item's place goes to the next of the ranking, so the
    file holds `n` items while there are any."""
    wanted = len(ranked) if n is None else n
    tasks: list[dict] = []
    left_out: list[str] = []
    uri_not_utf8: list[str] = []
    text_not_utf8: list[str] = []
    start = 0
    while len(tasks) < wanted and start < len(ranked):
        batch = ranked.iloc[start:start + wanted - len(tasks)]  # the corpus read for as many as are still wanted
        start += len(batch)
        rows = corpus.kept(["content_id", "image", "image_uri", "title", "description"], ids=batch["content_id"].tolist())
        replaced = pc.or_(undecodable(rows["title"]), undecodable(rows["description"]))
        marked = readable_text(rows).append_column("text_not_utf8", replaced).append_column("uri_not_utf8", undecodable(rows["image_uri"]))
        by_id = {r["content_id"]: r for r in marked.to_pylist()}
        for c, ds, p in zip(batch["content_id"], batch["ds"], batch["p_positive"], strict=True):
            shown = task_image(by_id[c]) if c in by_id else None
            if shown is None:
                (uri_not_utf8 if c in by_id and by_id[c]["uri_not_utf8"] else left_out).append(c)
                continue
            if by_id[c]["text_not_utf8"]:
                text_not_utf8.append(c)
            tasks.append({"data": {"content_id": c, "ds": ds, "p_positive": round(float(p), 4), "scored_by": scored_by,
                                   "title": by_id[c]["title"] or "", "description": (by_id[c]["description"] or "")[:2000], "image": shown}})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(tasks), encoding="utf-8")
    spec = task_named(task)
    choices = "".join(f'<Choice value="{v}"/>' for v in spec.values)
    out.with_suffix(".xml").write_text(
        f'<View><Image name="image" value="$image"/><Text name="text" value="$title"/><Text name="description" value="$description"/>'
        f'<Header value="{spec.question}"/><Choices name="{spec.name}" toName="image" choice="single">{choices}</Choices></View>\n',
        encoding="utf-8")
    written = ranked[ranked["content_id"].isin({t["data"]["content_id"] for t in tasks})]
    return TaskFile(out, written, left_out, uri_not_utf8, text_not_utf8)
