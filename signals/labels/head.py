"""Heads as signals: a head we trained (training/heads.py) scoring items from the stored
embeddings, without running the image or text model again.

A head is a derived signal: a task's input is not the corpus item but the item's row of the
embedding signal and model version the head was trained on (`embedding_signal`,
`embedding_model_version`, identity params recorded in the registry by `train`), which the job
joins in (`stored_columns`). Its input hash is that of the corpus inputs the embedding was
computed from, so a refresh recomputes a head's row exactly when its embedding changes. Its
rows are label rows (one label, the task; threshold 0.5 unless configured). An item whose
embedding row is an error gets an error row with the embedding's reason; one without a current
embedding row (not computed yet, or computed from other inputs) gets a transient error, which
the next refresh retries.

A head trained on several embeddings joined (`train --embedding image_embedding+text_embedding`)
reads each item's row of every one of them (`joined_embeddings`, after the first) and scores
their vectors one after another, as it was trained; its input hash covers the inputs of all of
them (`Signal.input_parts`), and any one of them missing or in error makes its row an error.

The architecture lives here, not in training/, so the job, the trainer and an online scorer
build the same module from the same saved file.
"""
from __future__ import annotations

import io
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from signals.base import InputKind
from signals.contracts import TRANSIENT_PREFIX, is_retried_error
from signals.decode import InputError
from signals.inputs import INPUT_COLUMNS
from signals.labels.base import Labeler, LabelScores
from signals.weights import weights_bytes

STORED_COLUMNS = ("vector", "embedding_status", "embedding_error", "embedding_input_hash")
JOINED_SEPARATOR = ","  # between the (signal@version) entries of `joined_embeddings` and the kinds of `embedding_kinds`


def part_columns(part: int) -> tuple[str, ...]:
    """The names of a head's `part`-th embedding's stored columns in its input rows (the first's unsuffixed)."""
    return STORED_COLUMNS if part == 0 else tuple(f"{c}_{part}" for c in STORED_COLUMNS)


def part_hash_column(part: int) -> str:
    """The input rows' column of the hash of the corpus inputs a joined head's `part`-th embedding reads."""
    return f"part_input_hash_{part}"


class Standardize(nn.Module):
    """Each dimension centred and scaled by the train split's mean and standard deviation (buffers,
    saved with the head): an embedding's dimensions differ in scale by orders of magnitude, and a
    head trained on them raw learnt the small ones slowly."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) * self.scale


def build_head(dim: int, hidden: int, standardize: bool = False) -> nn.Module:
    """Logistic regression (hidden 0) or Linear-ReLU-Linear, one logit out, after Standardize if asked."""
    layers: list[nn.Module] = [Standardize(dim)] if standardize else []
    layers += [nn.Linear(dim, 1)] if hidden == 0 else [nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, 1)]
    return nn.Sequential(*layers)


def load_head(path: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """The head saved at `path` (training.heads.save_head: a local path or a storage URI), in evaluation mode."""
    saved = torch.load(io.BytesIO(weights_bytes(str(path))), map_location=device, weights_only=True)
    model = build_head(int(saved["dim"]), int(saved["hidden"]), bool(saved.get("standardize", False)))  # files saved before 2026-12-02 have none
    model.load_state_dict(saved["state_dict"])
    return model.to(device).eval()


def embedding_reads(params: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """(embedding signal, model version) of each embedding a head's registry params say it reads,
    in the order it joins their vectors: `embedding_signal`, then each of `joined_embeddings`."""
    joined = [tuple(entry.rsplit("@", 1)) for entry in str(params.get("joined_embeddings") or "").split(JOINED_SEPARATOR) if entry]
    return ((str(params["embedding_signal"]), str(params["embedding_model_version"])), *joined)  # type: ignore[return-value]


def score_vectors(model: nn.Module, vectors: np.ndarray) -> np.ndarray:
    """The head's probabilities for a matrix of embeddings (float64), in evaluation mode, no gradients."""
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        logits = model(torch.as_tensor(np.asarray(vectors, dtype=np.float32), device=device)).squeeze(-1)
    return torch.sigmoid(logits.double()).cpu().numpy()


class EmbeddingHead(Labeler):
    """A trained head on one embedding signal's stored vectors; its label is `params.label` (the task)."""

    identity_params: ClassVar[tuple[str, ...]] = ("weights_path", "embedding_signal", "embedding_model_version")
    run_params: ClassVar[tuple[str, ...]] = ("label",)
    trained_here: ClassVar[bool] = True
    cpu_only: ClassVar[bool] = True  # its stored scores equal the head called directly on the CPU (1e-6)
    default_threshold: ClassVar[float] = 0.5

    @property
    def labels(self) -> tuple[str, ...]:
        return (str(self.config.params["label"]),)

    @property
    def thresholds(self) -> dict[str, float]:
        return {self.labels[0]: self.default_threshold, **self.config.params.get("thresholds", {})}

    @property
    def reads(self) -> tuple[tuple[str, str], ...]:
        return embedding_reads(self.config.params)

    @property
    def stored_columns(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(c for part in range(len(self.reads)) for c in part_columns(part))

    def weights_source(self) -> str | None:
        return self.config.params.get("weights_path")

    def resource_key(self) -> Hashable:
        return ("head", self.config.params["weights_path"])

    def load_resources(self, device: torch.device) -> nn.Module:
        return load_head(self.config.params["weights_path"], device)

    @property
    def input_dim(self) -> int:
        """The width of the vector the loaded head reads (its embeddings' joined)."""
        return next(m for m in self.resources.modules() if isinstance(m, nn.Linear)).in_features

    def prepare(self, row: Mapping[str, Any]) -> np.ndarray:
        values = np.concatenate([self._embedding(row, part) for part in range(len(self.reads))])
        if len(values) != self.input_dim:  # another writer's row of another width: permanent, never "model failed"
            raise InputError(f"input embedding: {len(values)} values, the head reads {self.input_dim}")
        return values

    def _embedding(self, row: Mapping[str, Any], part: int) -> np.ndarray:
        """The vector of the row's `part`-th embedding, or InputError where it is an error, not current, or unusable."""
        (signal, version), (vector, status, error, computed_from) = self.reads[part], part_columns(part)
        expected = row.get("input_hash" if len(self.reads) == 1 else part_hash_column(part))
        if row.get(status) is None or row.get(computed_from) != expected:
            raise InputError(f"{TRANSIENT_PREFIX}no {signal} row of model version {version} for these inputs yet")
        if row[status] != "ok":
            reason = row.get(error)
            raise InputError(reason if is_retried_error(reason) else f"input embedding: {reason}")
        values = np.asarray(row[vector] if row[vector] is not None else [], dtype=np.float32)
        if not len(values):  # another writer's ok rows: not scored into NaN, nor failing the batch
            raise InputError(f"input embedding: the {signal} vector of this ok row is missing or empty")
        if not np.isfinite(values).all():
            raise InputError(f"input embedding: the {signal} vector of this ok row is not finite (NaN or infinite)")
        return values

    def score(self, prepared: list[np.ndarray]) -> list[LabelScores]:
        label = self.labels[0]
        return [LabelScores({label: float(p)}) for p in score_vectors(self.resources, np.stack(prepared))]


class ImageEmbeddingHead(EmbeddingHead):
    """A head on an image embedding: its input hash is the image's."""

    input_kind: ClassVar[InputKind] = "image"
    input_columns: ClassVar[tuple[str, ...]] = INPUT_COLUMNS["image"]


class TextEmbeddingHead(EmbeddingHead):
    """A head on a text embedding: its input hash is the title and description's."""

    input_kind: ClassVar[InputKind] = "text"
    input_columns: ClassVar[tuple[str, ...]] = INPUT_COLUMNS["text"]


class JoinedEmbeddingHead(EmbeddingHead):
    """A head on several embeddings' stored vectors joined (`joined_embeddings`: "signal@version,..."
    after the first), of the input kinds `embedding_kinds` lists in the same order: an image
    signal if one of them reads the image."""

    identity_params: ClassVar[tuple[str, ...]] = (*EmbeddingHead.identity_params, "joined_embeddings", "embedding_kinds")

    @property
    def input_parts(self) -> tuple[InputKind, ...]:
        kinds = tuple(str(self.config.params["embedding_kinds"]).split(JOINED_SEPARATOR))
        if len(kinds) != len(self.reads) or not set(kinds) <= set(INPUT_COLUMNS):
            raise ValueError(f"{self.signal}: embedding_kinds {kinds} do not name an input kind per embedding it reads ({len(self.reads)})")
        return kinds  # type: ignore[return-value]

    @property
    def input_kind(self) -> InputKind:  # type: ignore[override]
        return "image" if "image" in self.input_parts else "text"

    @property
    def input_columns(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(dict.fromkeys(c for kind in self.input_parts for c in INPUT_COLUMNS[kind]))

    @property
    def stored_columns(self) -> tuple[str, ...]:  # type: ignore[override]
        return (*super().stored_columns, *(part_hash_column(part) for part in range(len(self.reads))))
