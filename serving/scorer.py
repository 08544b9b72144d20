"""The champion signals of a profile, loaded once, scoring a batch of items: per item its
embeddings, its labels (scores and decisions) and its nearest neighbours in each index.

Nothing here computes a signal: the signals are the batch job's `Signal` objects at the versions
the registry names (`rollout.models.build_signals`), run by the batch job's runner
(`signals.runner.run_signal`), so decoding, limits, error reasons, thresholds and decisions are
the batch job's. Signals on one loaded model run it once per batch (`signals.shared_forward`).
A `Scorer` never changes once loaded: a reload builds a new one (serving.reload).
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from conf.settings import Settings
from retrieval import index_store
from retrieval.index_store import Manifest
from retrieval.vector_index import VectorIndex
from rollout.models import build_signals
from signals.base import Signal
from signals.contracts import STATUS_OK, is_retried_error
from signals.embedders.base import Embedder
from signals.runner import run_signal
from signals.shared_forward import share_backbones

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Item:
    """One item to score, as the corpus holds one: image bytes or an image URI, title, description."""

    image: bytes | None = None
    image_uri: str | None = None
    title: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class ItemResult:
    """What the signals made of one item: per signal its row as the tables would hold it (status,
    error, model version, then the vector or the labels), and per indexed signal its neighbours."""

    embeddings: dict[str, dict[str, Any]] = field(default_factory=dict)
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)
    neighbours: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def errors(self) -> dict[str, str]:
        """Signal -> error reason, for the signals that could not score the item."""
        return {name: row["error"] for rows in (self.embeddings, self.labels) for name, row in rows.items() if row["status"] != STATUS_OK}

    @property
    def retryable(self) -> bool:
        """Whether every error may pass on another try (a fetch that timed out, the model failing),
        as the batch job's next refresh would compute it again; False when any is final (bad input)."""
        return all(is_retried_error(reason) for reason in self.errors.values())

    def as_dict(self) -> dict[str, Any]:
        return {"embeddings": self.embeddings, "labels": self.labels, "neighbours": self.neighbours}


@dataclass(frozen=True)
class LoadedIndex:
    """An index loaded from the lakehouse, with the manifest that says what it holds."""

    manifest: Manifest
    index: VectorIndex


class Scorer:
    """Loaded signals and indexes, fixed for its lifetime."""

    def __init__(self, signals: Mapping[str, Signal], indexes: Mapping[str, LoadedIndex], neighbours: int, skipped: Mapping[str, str]) -> None:
        self.signals = dict(signals)
        self.indexes = dict(indexes)
        self.neighbours = neighbours
        self.skipped = dict(skipped)  # indexed signal -> why its index is not used (its model version is not the champion's)
        self.loaded_at = dt.datetime.now(dt.UTC)

    @classmethod
    def load(cls, settings: Settings) -> Scorer:
        """The profile's enabled signals at their champion versions, loaded (weights verified), and
        the index of each embedding signal whose manifest holds that same version. Signals on one
        model (an embedding and its topics) share its forward pass on a batch's items."""
        signals = {name: signal.load() for name, signal in build_signals(settings).items()}
        share_backbones(signals.values(), settings.serve.max_batch)
        indexes, skipped = {}, {}
        for name in index_store.indexed_signals(settings.lakehouse_root):
            signal = signals.get(name)
            if not isinstance(signal, Embedder):
                continue
            manifest, index = index_store.load(settings.lakehouse_root, name)
            if manifest.model_version != signal.config.model.version:
                skipped[name] = (f"its index holds model version {manifest.model_version}, the champion is {signal.config.model.version}: "
                                 f"build its index (content-signals index {name})")
                log.warning("%s: %s", name, skipped[name])
                continue
            indexes[name] = LoadedIndex(manifest, index)
        return cls(signals, indexes, settings.serve.neighbours, skipped)

    @property
    def state(self) -> dict[str, Any]:
        """What was loaded: each signal's model version and each index's build (a reload is due
        when the lakehouse names others)."""
        return {"signals": {name: s.config.model.version for name, s in sorted(self.signals.items())},
                "indexes": {name: i.manifest.build for name, i in sorted(self.indexes.items())}}

    def score(self, items: list[Item]) -> list[ItemResult]:
        """Every signal on the items (one model batch each, through the batch job's runner), and
        the neighbours of each ok vector in its signal's index."""
        if not items:
            return []
        frame = pd.DataFrame({name: pd.Series([getattr(item, name) for item in items], dtype=object)
                              for name in ("image", "image_uri", "title", "description")})
        results = [ItemResult() for _ in items]
        for name, signal in self.signals.items():
            rows = pd.concat(list(run_signal(signal, [frame], prefetch=0)), ignore_index=True)
            version = signal.config.model.version
            for result, row in zip(results, rows.to_dict("records")):
                ok = row["status"] == STATUS_OK
                base = {"status": row["status"], "error": None if ok else row["error"], "model_version": version}
                if isinstance(signal, Embedder):
                    result.embeddings[name] = {**base, "vector": np.asarray(row["vector"]).tolist() if ok else None}
                else:
                    result.labels[name] = {**base, "labels": row["scores"] if ok else None, "detail": row["detail"] if ok else None}
        for name, loaded in self.indexes.items():
            found = [i for i, r in enumerate(results) if r.embeddings[name]["status"] == STATUS_OK]
            if found and self.neighbours:
                matrix = np.array([results[i].embeddings[name]["vector"] for i in found], dtype=np.float32)
                for i, near in zip(found, loaded.index.search(matrix, self.neighbours)):
                    results[i].neighbours[name] = [{"content_id": c, "score": s} for c, s in near]
        return results
