"""Online and batch agree: the service on the sample corpus's backfill (copied, with its registry,
so the index can be written beside it) scores corpus items over HTTP, and each answer is compared
with what the backfill stored for the item: vectors within 1e-5, label decisions equal, the same
error reasons, and neighbours as exact search over the stored vectors ranks them."""
from __future__ import annotations

import base64
import http.client
import json
import shutil
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import numpy as np
import pytest

from conf.settings import load_settings
from lake import delta_io
from retrieval.build import build_index
from rollout.models import champion_version
from serving.app import create_app
from serving.connections import ClosedConnections
from serving.reload import Champions
from serving.server import running

pytestmark = pytest.mark.spark
K = 5


def score(url: str, row: dict) -> tuple[int, dict]:
    where = urlsplit(url)
    connection = http.client.HTTPConnection(where.hostname, where.port, timeout=120)
    try:
        body = {"image": None if row["image"] is None else base64.b64encode(row["image"]).decode(), "title": row["title"],
                "description": row["description"]}
        connection.request("POST", "/score", json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_the_service_answers_what_the_backfill_stored(backfilled, tmp_path) -> None:
    lakehouse = tmp_path / "lakehouse"
    for name in ("embeddings", "labels", "corpus", "_registry"):
        shutil.copytree(f"{backfilled.settings.lakehouse_root}/{name}", lakehouse / name)
    settings = load_settings("local", [f"lakehouse={lakehouse}", f"serve.neighbours={K}", "serve.max_wait_ms=50"])
    build_index(str(lakehouse), "image_embedding", champion_version(settings, "image_embedding"), settings.index)

    embeddings = defaultdict(dict)
    for r in delta_io.read_arrow(str(lakehouse / "embeddings")).to_pylist():
        embeddings[r["content_id"]][r["signal"]] = r
    labels = defaultdict(lambda: defaultdict(dict))
    for r in delta_io.read_arrow(str(lakehouse / "labels")).to_pylist():
        labels[r["content_id"]][r["signal"]][r["label"]] = r
    corpus = sorted(delta_io.read_arrow(str(lakehouse / "corpus")).to_pylist(), key=lambda r: r["content_id"])

    def has_error(row: dict) -> bool:
        cid = row["content_id"]
        return any(r["status"] != "ok" for r in embeddings[cid].values()) or any(
            r["status"] != "ok" for by_label in labels[cid].values() for r in by_label.values())

    chosen = [r for r in corpus if not has_error(r)][:4] + [r for r in corpus if has_error(r)][:3]
    assert len(chosen) == 7
    ok_image = {cid: np.asarray(rows["image_embedding"]["vector"], np.float64) for cid, rows in embeddings.items()
                if rows["image_embedding"]["status"] == "ok"}
    ids, matrix = list(ok_image), np.array(list(ok_image.values()))

    with running(create_app(Champions(settings), settings.serve, ClosedConnections())) as url, ThreadPoolExecutor(len(chosen)) as pool:
        answers = list(pool.map(lambda row: score(url, row), chosen))  # at once: they share model batches

    for row, (status, body) in zip(chosen, answers):
        cid = row["content_id"]
        assert status == (422 if has_error(row) else 200), (cid, body.get("error"))
        for signal, stored in embeddings[cid].items():
            online = body["embeddings"][signal]
            assert (online["status"], online["error"], online["model_version"]) == (stored["status"], stored["error"], stored["model_version"])
            if stored["status"] == "ok":
                assert np.max(np.abs(np.asarray(online["vector"]) - np.asarray(stored["vector"]))) < 1e-5, (cid, signal)
        for signal, by_label in labels[cid].items():
            online = body["labels"][signal]
            first = next(iter(by_label.values()))
            assert (online["status"], online["error"], online["model_version"]) == (first["status"], first["error"], first["model_version"])
            if first["status"] == "ok":
                assert {one["label"]: one["decision"] for one in online["labels"]} == {label: r["decision"] for label, r in by_label.items()}
                for one in online["labels"]:
                    assert one["score"] == pytest.approx(by_label[one["label"]]["score"], abs=1e-5)
        if cid in ok_image:  # the k nearest by exact search over the stored vectors (ties between copies in any order)
            found = body["neighbours"]["image_embedding"]
            exact = np.sort(matrix @ ok_image[cid])[::-1][:K]
            assert [n["score"] for n in found] == pytest.approx(exact.tolist(), abs=1e-4)
            assert all(n["score"] == pytest.approx(float(matrix[ids.index(n["content_id"])] @ ok_image[cid]), abs=1e-4) for n in found)
        else:
            assert "image_embedding" not in body["neighbours"]
