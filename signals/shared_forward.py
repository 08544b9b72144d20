"""One backbone forward pass for the signals of one process that run the same model on the same items.

image_embedding and image_topics both run EfficientNet-Lite0 on an image; text_embedding and
text_topics both run MiniLM on a text. Where one process hands the same items to several such
signals (the video pass: every image signal on a video's keyframes; the online scorer: every
signal on a request batch), `share_backbones` gives the embedders of one loaded model a
`SharedForward`: the pooled features of the rows it ran last, kept by a digest of each prepared
row (its tensor's bytes, or its text), so the next signal asking for the same rows takes them
instead of running the network. Keyed by content, never by object: a hit is the same prepared
input through the same weights, so a stale hit cannot happen. Signals not given one (the batch
job, whose signals run in passes of their own) run as before and pay nothing. CPU only: on a GPU
a row's digest would cost a copy to the host (docs/design.md, Shared backbone forward).
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from signals.base import Signal
    from signals.embedders.base import Embedder


def row_digest(row: Any) -> bytes | None:
    """A digest of one prepared row's content (a CPU tensor's dtype, shape and bytes, or a text),
    or None for a row it cannot name (a tensor on a GPU, encoded bytes waiting for a device)."""
    if isinstance(row, str):
        return hashlib.sha256(b"text\0" + row.encode("utf-8", "surrogatepass")).digest()
    if isinstance(row, torch.Tensor) and row.device.type == "cpu":
        digest = hashlib.sha256(f"tensor\0{row.dtype}\0{tuple(row.shape)}\0".encode())
        digest.update(row.detach().contiguous().numpy().data)
        return digest.digest()
    return None


class SharedForward:
    """The pooled features of the last `rows` rows one backbone computed, by row digest; thread-safe."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self._lock = threading.Lock()
        self._features: OrderedDict[bytes, torch.Tensor] = OrderedDict()

    def pooled(self, forward: Callable[[list[Any]], torch.Tensor], prepared: list[Any]) -> torch.Tensor:
        """`forward(prepared)`, run only on the rows whose features are not kept already."""
        digests = [row_digest(row) for row in prepared]
        with self._lock:
            found: list[torch.Tensor | None] = [self._kept(d) for d in digests]
        missing = [i for i, features in enumerate(found) if features is None]
        if not missing:
            return torch.stack(found)  # type: ignore[arg-type]
        computed = forward([prepared[i] for i in missing])
        with self._lock:
            for i, features in zip(missing, computed):
                if digests[i] is not None:
                    self._features[digests[i]] = features
                    self._features.move_to_end(digests[i])
            while len(self._features) > self.rows:
                self._features.popitem(last=False)
        if len(missing) == len(prepared):
            return computed
        for i, features in zip(missing, computed):
            found[i] = features
        return torch.stack(found)  # type: ignore[arg-type]

    def _kept(self, digest: bytes | None) -> torch.Tensor | None:
        if digest is None or digest not in self._features:
            return None
        self._features.move_to_end(digest)
        return self._features[digest]


def share_backbones(signals: Iterable[Signal], rows: int) -> int:
    """Give the CPU embedders behind `signals` (an embedder itself, a labeler's backing ones) that
    run one loaded model (same class, same model cache entry) a SharedForward keeping `rows` rows:
    the most rows the caller hands each signal at once. Loaded signals only. Returns how many
    backbones are shared."""
    groups: dict[Any, list[Embedder]] = {}
    for signal in signals:
        for embedder in signal.backbones():
            if embedder.device is not None and embedder.device.type == "cpu":
                groups.setdefault((type(embedder), embedder.cache_key), []).append(embedder)
    shared = [group for group in groups.values() if len(group) > 1]
    for group in shared:
        forward = SharedForward(rows)
        for embedder in group:
            embedder.shared_forward = forward
    return len(shared)
