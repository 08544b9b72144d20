"""The champion signals of a profile, loaded once, scoring a batch of items: per item its
embeddings, its labels (scores and decisions) and its nearest neighbours in each index.

Nothing here computes a signal: the signals are the batch job's `Signal` objects at the versions
the registry names (`rollout.models.build_signals`), run by the batch job's runner
(`signals.runner.run_signal`), so decoding, limits, error reasons, thresholds and decisions are
the batch job's. Signals on one loaded model run it once per batch (`signals.shared_forward`).
A head we trained (signals.labels.head) scores the embeddings the same request computed, as the
jobs score the stored ones; one whose embedding is not served at the version it was trained on
is not loaded, and /health says why. A `Scorer` never changes once loaded: a reload builds a new
one (serving.reload).
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from conf.settings import Settings, UsageError
from retrieval import index_store
from retrieval.index_store import Manifest
from retrieval.vector_index import VectorIndex
from rollout.models import build_signals
from signals.base import Signal
from signals.contracts import STATUS_ERROR, STATUS_OK, is_retried_error
from signals.embedders.base import Embedder
from signals.fetch import FetchError, FetchPolicy, fetch
from signals.labels.head import EmbeddingHead, part_columns, part_hash_column
from signals.runner import run_signal
from signals.shared_forward import share_backbones

log = logging.getLogger(__name__)

SAME_REQUEST = "computed in this request"  # the input hash of a head's inputs and of its embeddings: the same item's, by construction


@dataclass(frozen=True)
class Item:
    """One item to score, as the corpus holds one: image bytes or an image URI, title, description;
    and why its URI's image could not be fetched (`fetched`), which is then its image signals' error."""

    image: bytes | None = None
    image_uri: str | None = None
    title: str | None = None
    description: str | None = None
    fetch_error: str | None = None

    @property
    def to_fetch(self) -> bool:
        """Whether the item's image is known by its URI alone."""
        return self.image is None and self.image_uri is not None


def online_policy(policy: FetchPolicy, time_limit_s: float) -> FetchPolicy:
    """The policy of a fetch for one request: one attempt that ends by the request's time limit
    (the client retries a 503), so a request answered 504 leaves no fetch behind holding a thread."""
    return replace(policy, deadline_s=min(policy.deadline_s, time_limit_s), retries=0)


def fetched(item: Item, policy: FetchPolicy) -> Item:
    """The item with the image its URI names fetched, or the reason it could not be: done for each
    request on its own thread before it joins a batch, so a slow server holds up that request only,
    not every item of the batch (and once per item, not once per image signal)."""
    if not item.to_fetch:
        return item
    try:
        return replace(item, image=fetch(item.image_uri, policy))
    except FetchError as e:
        return replace(item, fetch_error=str(e))


@dataclass(frozen=True)
class ItemResult:
    """What the signals made of one item: per signal its row as the tables would hold it (status,
    error, model version, then the vector or the labels), and per indexed signal its neighbours
    and the index build they came from (consumers that cache an answer know when it is outdated)."""

    embeddings: dict[str, dict[str, Any]] = field(default_factory=dict)
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)
    neighbours: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    index_builds: dict[str, str] = field(default_factory=dict)

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
        return {"embeddings": self.embeddings, "labels": self.labels, "neighbours": self.neighbours, "index_builds": self.index_builds}


@dataclass(frozen=True)
class LoadedIndex:
    """An index loaded from the lakehouse, with the manifest that says what it holds."""

    manifest: Manifest
    index: VectorIndex


class Scorer:
    """Loaded signals and indexes, fixed for its lifetime."""

    def __init__(self, signals: Mapping[str, Signal], indexes: Mapping[str, LoadedIndex], neighbours: int, skipped: Mapping[str, str],
                 unserved_heads: Mapping[str, Signal] | None = None, *, index_builds: Mapping[str, str]) -> None:
        self.signals = dict(signals)
        self.indexes = dict(indexes)
        self.neighbours = neighbours
        self.skipped = dict(skipped)  # indexed signal -> why its index is not used (another model version's, or damaged)
        self.unserved_heads = dict(unserved_heads or {})  # enabled heads not loaded: an embedding they read is not served
        # indexed signal -> the build its manifest named, loaded or found damaged (a reload is due when the manifest names another)
        self.index_builds = dict(index_builds)
        self.loaded_at = dt.datetime.now(dt.UTC)

    @classmethod
    def load(cls, settings: Settings) -> Scorer:
        """The profile's enabled signals at their champion versions, loaded (weights verified), and
        the index of each embedding signal whose manifest holds that same version. Signals on one
        model (an embedding and its topics) share its forward pass on a batch's items."""
        built = build_signals(settings)
        unserved = {name: why for name, signal in built.items() if (why := unservable(signal, built))}
        for name, why in unserved.items():
            log.warning("%s: %s", name, why)
        signals = {name: signal.load() for name, signal in built.items() if name not in unserved}
        share_backbones(signals.values(), settings.serve.max_batch)
        manifests, skipped = index_manifests(settings.lakehouse_root, {name: s.config.model.version for name, s in signals.items()
                                                                        if isinstance(s, Embedder)})
        indexes = {}
        for name, manifest in manifests.items():
            if manifest.dim != (dim := signals[name].dim):  # another model's vectors under this version's number: every query would fail
                skipped[name] = (f"its index holds vectors of {manifest.dim} dimensions, model version {manifest.model_version} gives {dim}: "
                                 f"another model's; build its index (content-signals index {name})")
                continue
            try:
                indexes[name] = LoadedIndex(*index_store.load(settings.lakehouse_root, name, manifest))
            except UsageError as damaged:  # no neighbours rather than the build before it, whose items may be taken down since
                skipped[name] = str(damaged)
            except FileNotFoundError as gone:  # deleted by hand, or by two saves since its manifest was read: the next check reloads
                skipped[name] = f"the files of its build {manifest.build} are gone ({gone}): build its index (content-signals index {name})"
        for name, why in skipped.items():
            log.warning("%s: %s", name, why)
        return cls(signals, indexes, settings.serve.neighbours, skipped, {name: built[name] for name in unserved},
                   index_builds={name: manifest.build for name, manifest in manifests.items()})

    @property
    def state(self) -> dict[str, Any]:
        """What was loaded: each signal's model version (an unserved head's too) and each index's
        build (a reload is due when the lakehouse names others)."""
        every = {**self.signals, **self.unserved_heads}
        return {"signals": {name: s.config.model.version for name, s in sorted(every.items())},
                "indexes": dict(sorted(self.index_builds.items()))}

    @property
    def skipped_heads(self) -> dict[str, str]:
        """Enabled head -> why the service does not score it."""
        return {name: unservable(head, self.signals) or "" for name, head in self.unserved_heads.items()}

    def score(self, items: list[Item]) -> list[ItemResult]:
        """Every signal on the items (one model batch each, through the batch job's runner), and
        the neighbours of each ok vector in its signal's index, with that index's build."""
        if not items:
            return []
        frame = pd.DataFrame({name: pd.Series([getattr(item, name) for item in items], dtype=object)
                              for name in ("image", "image_uri", "title", "description")})
        failed = [i for i, item in enumerate(items) if item.fetch_error is not None]
        frame.loc[failed, "image_uri"] = None  # fetched once already: not again by each image signal
        results = [ItemResult() for _ in items]
        for name, signal in sorted(self.signals.items(), key=lambda named: isinstance(named[1], EmbeddingHead)):  # heads after what they read
            inputs = _head_inputs(signal, results) if isinstance(signal, EmbeddingHead) else frame
            rows = pd.concat(list(run_signal(signal, [inputs], prefetch=0)), ignore_index=True)
            if signal.input_kind == "image" and not isinstance(signal, EmbeddingHead):
                for i in failed:  # the reason its fetch gave, as the batch job's row would hold it
                    rows.loc[i, ["status", "error"]] = [STATUS_ERROR, items[i].fetch_error]
            _record(results, name, signal, rows)
        for name, loaded in self.indexes.items():
            found = [i for i, r in enumerate(results) if r.embeddings[name]["status"] == STATUS_OK]
            if found and self.neighbours:
                matrix = np.array([results[i].embeddings[name]["vector"] for i in found], dtype=np.float32)
                for i, near in zip(found, loaded.index.search(matrix, self.neighbours)):
                    results[i].neighbours[name] = [{"content_id": c, "score": s} for c, s in near]
                    results[i].index_builds[name] = loaded.manifest.build
        return results


def _record(results: list[ItemResult], name: str, signal: Signal, rows: pd.DataFrame) -> None:
    """Each item's row of `signal`, as the tables would hold it, into its result."""
    version = signal.config.model.version
    for result, row in zip(results, rows.to_dict("records"), strict=True):
        ok = row["status"] == STATUS_OK
        base = {"status": row["status"], "error": None if ok else row["error"], "model_version": version}
        if isinstance(signal, Embedder):
            result.embeddings[name] = {**base, "vector": np.asarray(row["vector"]).tolist() if ok else None}
        else:
            result.labels[name] = {**base, "labels": row["scores"] if ok else None, "detail": row["detail"] if ok else None}


def index_manifests(lakehouse_root: str, versions: Mapping[str, str]) -> tuple[dict[str, Manifest], dict[str, str]]:
    """The manifest of each index of a served embedding signal (signal -> the model version served)
    that holds that version's vectors, and why each other one is not used (another version's, or a
    manifest that cannot be read): read by the scorer that loads them and the check that reloads it."""
    manifests, skipped = {}, {}
    for name in index_store.indexed_signals(lakehouse_root):
        if name not in versions:
            continue
        try:
            manifest = index_store.read_manifest(lakehouse_root, name)  # an outdated index is skipped unread
        except UsageError as unreadable:
            skipped[name] = str(unreadable)
            continue
        if manifest.model_version != versions[name]:
            skipped[name] = (f"its index holds model version {manifest.model_version}, the champion is {versions[name]}: "
                             f"build its index (content-signals index {name})")
            continue
        manifests[name] = manifest
    return manifests, skipped


def unservable(signal: Signal, signals: Mapping[str, Signal]) -> str | None:
    """Why a head cannot score online beside `signals` (an embedding it reads is not among them at
    the model version it was trained on); None for any other signal."""
    if not isinstance(signal, EmbeddingHead):
        return None
    for embedding, version in signal.reads:
        served = signals.get(embedding)
        if served is None or served.config.model.version != version:
            serving = f"version {served.config.model.version}" if served else "not enabled"
            return (f"it reads {embedding} version {version}, which the service does not run ({serving}): "
                    f"enable it, or train the head on the champion (content-signals train)")
    return None


def _head_inputs(head: EmbeddingHead, results: list[ItemResult]) -> pd.DataFrame:
    """A head's input rows from the embeddings each item's result holds, as the jobs join its
    stored rows (udfs.rows.derived_inputs): all of them computed from this item's inputs."""
    columns: dict[str, list[Any]] = {"input_hash": [SAME_REQUEST] * len(results)}
    for part, (embedding, _) in enumerate(head.reads):
        rows = [result.embeddings[embedding] for result in results]
        for column, values in zip(part_columns(part), ([r["vector"] for r in rows], [r["status"] for r in rows],
                                                        [r["error"] for r in rows], [SAME_REQUEST] * len(rows)), strict=True):
            columns[column] = values
        columns[part_hash_column(part)] = [SAME_REQUEST] * len(results)
    return pd.DataFrame(columns)

