"""Items worth labelling next: the most uncertain under the current probabilities (the label
model's), spread over the corpus days, error-free, written as a task file Label Studio imports."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import pandas as pd
import pyarrow.compute as pc

from lake import delta_io
from signals.contracts import CORPUS, EMBEDDINGS, STATUS_OK
from training.human_labels import labels_of
from training.labeling_functions import NEIGHBOUR_SIGNAL
from training.tasks import task_named
from training.weak import weak_labels


def candidates(lakehouse: str, task: str, model_version: str) -> pd.DataFrame:
    """Items not yet labelled for `task` whose embedding row (the task's neighbour signal at
    `model_version`) is ok, with their day and the label model's p_positive."""
    signal = NEIGHBOUR_SIGNAL[task]
    rows = delta_io.read_arrow(f"{lakehouse.rstrip('/')}/{EMBEDDINGS.name}",
                               filters=(pc.field("signal") == signal) & (pc.field("model_version") == model_version),
                               columns=["content_id", "ds", "status"]).to_pandas()
    ok = rows[rows["status"] == STATUS_OK][["content_id", "ds"]]
    labelled = set(labels_of(lakehouse, task)["content_id"].to_pylist())
    return ok[~ok["content_id"].isin(labelled)].merge(weak_labels(lakehouse, task), on="content_id")


def most_uncertain(items: pd.DataFrame, n: int) -> pd.DataFrame:
    """`n` items, each day given its share (by its candidates), the most uncertain (p nearest 0.5) of
    each day first; days round-robin, so a small n still reaches every day."""
    ranked = items.assign(uncertainty=(items["p_positive"] - 0.5).abs()).sort_values(["uncertainty", "content_id"])
    ranked["turn"] = ranked.groupby("ds").cumcount() / ranked.groupby("ds")["content_id"].transform("count")
    return ranked.sort_values(["turn", "uncertainty", "content_id"]).head(n).drop(columns=["turn"])


def write_task_file(lakehouse: str, chosen: pd.DataFrame, task: str, out: Path) -> Path:
    """The chosen items as a Label Studio task file (image inline as a data URI, title, description,
    the probability they were chosen at), with the labelling config beside it (`.xml`)."""
    corpus = delta_io.read_arrow(f"{lakehouse.rstrip('/')}/{CORPUS.name}", filters=pc.field("content_id").isin(chosen["content_id"].tolist()),
                                 columns=["content_id", "image", "title", "description"]).to_pylist()
    by_id = {r["content_id"]: r for r in corpus}
    tasks = [{"data": {"content_id": c, "ds": ds, "p_positive": round(float(p), 4), "title": by_id[c]["title"] or "",
                       "description": (by_id[c]["description"] or "")[:2000],
                       "image": "data:image;base64," + base64.b64encode(by_id[c]["image"] or b"").decode()}}
             for c, ds, p in zip(chosen["content_id"], chosen["ds"], chosen["p_positive"])]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(tasks), encoding="utf-8")
    spec = task_named(task)
    choices = "".join(f'<Choice value="{v}"/>' for v in spec.values)
    out.with_suffix(".xml").write_text(
        f'<View><Image name="image" value="$image"/><Text name="text" value="$title"/>'
        f'<Header value="{spec.question}"/><Choices name="{spec.name}" toName="image" choice="single">{choices}</Choices></View>\n',
        encoding="utf-8")
    return out
