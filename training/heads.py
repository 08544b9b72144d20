"""Heads: small torch classifiers on the stored embeddings, trained on soft labels.

A head (its architecture: signals/labels/head.py, shared with the job that runs it) is a logistic regression (`hidden: 0`) or a two-layer MLP on one embedding signal's
vectors. Its loss is binary cross-entropy against each item's probability of the positive value
(`p_positive`), so weak labels count as sure as their label model is, and gold labels (0/1, or
annotators' shares) as they are. With `balance_classes` the positives' loss is weighted by the
negative over positive mass of the train split's rows (its labelled items with an ok row), so a rare label's few (and, as weak labels, often
unsure) positives are not drowned by the negatives; that weight shifts every logit by its log at
the optimum, which is taken off the output bias after training, so scores stay calibrated.
With `standardize` each input dimension is centred and scaled by the train split's mean and
standard deviation, kept in the head (signals.labels.head.Standardize). Training is seeded end to
end (initial weights, the loader's shuffle): the same snapshot and seed give the same weights. The
kept weights are those of the epoch with the lowest validation loss; without one (no labelled item
with an ok row in the validation split) those of the last epoch, which `train` says, and its report (`unvalidated_said`).
Kept weights that are not numbers (training diverged) are a usage error: no head is saved to score NaN.
"""
from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pyarrow import fs as pafs
from torch import nn
from torch.nn import functional as F

from conf.settings import TrainingSettings, UsageError
from signals.device import configure_threads
from signals.labels.head import build_head, score_vectors
from signals.weights import weights_bytes
from training.loader import Snapshot, batches


@dataclass
class TrainedHead:
    """A trained head, its shape and how its training went."""

    model: nn.Module
    dim: int
    hidden: int
    standardize: bool = False
    train_loss: list[float] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)
    best_epoch: int = 0

    def scores(self, vectors: np.ndarray) -> np.ndarray:
        """P(positive) of each row of `vectors` (float64)."""
        return score_vectors(self.model, vectors)

    @property
    def validated(self) -> bool:
        """Whether some epoch had a validation loss to choose the kept weights by (else they are the last epoch's)."""
        return bool(np.isfinite(self.validation_loss).any())


def unvalidated_said(head: TrainedHead) -> list[str]:
    """That the head kept its last epoch's weights for want of a validation loss, in words (validated: nothing to say), as
    `train` prints it and its report and MLflow run keep it."""
    return [] if head.validated else ["no epoch had a validation loss (no labelled item with an ok row in the validation split): "
                                      "the last epoch's weights are kept, not the best epoch's; label more items"]


def _dim_of(snapshot: Snapshot, split: str) -> int:
    for batch in batches(snapshot, split, batch_size=1, shuffle_buffer=1):
        return int(batch["x"].shape[1])
    raise UsageError(f"no labelled ok rows of {snapshot.signal} (model version {snapshot.model_version}) in the {split} split "
                     f"at embeddings version {snapshot.embeddings_version}: label more items, or backfill the embeddings")


def positive_weight(targets: Iterable[float], balance: bool) -> float:
    """The positives' loss weight: negative over positive mass of `targets` when balancing (1 without, or with one class only)."""
    p = np.fromiter(targets, dtype=float)
    positive, negative = p.sum(), (1 - p).sum()
    return float(negative / positive) if balance and positive > 0 and negative > 0 else 1.0


def _noting_targets(loader: Iterable[dict[str, Any]], targets: list[torch.Tensor]) -> Iterator[dict[str, Any]]:
    """The loader's batches, each one's targets appended to `targets` as it passes: the moments' read gives the positives' weight too."""
    for batch in loader:
        targets.append(batch["y"])
        yield batch


def _moments(loader: Iterable[dict[str, Any]], dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and 1 / standard deviation of each dimension over a split's rows (1 where a dimension is constant).
    Summed about the first row, so a constant dimension's variance is exactly 0: raw sums of squares
    left it a rounding error, a scale of 1e7 that turned an unseen item's slightly other value into a saturated score."""
    shift, total, squares, rows = np.zeros(dim), np.zeros(dim), np.zeros(dim), 0
    for batch in loader:
        x = batch["x"].double().numpy()
        shift = x[0] if rows == 0 else shift
        x = x - shift
        total, squares, rows = total + x.sum(axis=0), squares + (x * x).sum(axis=0), rows + len(x)
    offset = total / rows
    std = np.sqrt(np.maximum(squares / rows - offset * offset, 0.0))
    scale = np.divide(1.0, std, out=np.ones_like(std), where=std > 0)
    return torch.tensor(shift + offset, dtype=torch.float32), torch.tensor(scale, dtype=torch.float32)


def _mean_loss(model: nn.Module, loader: Iterable[dict[str, Any]], weight: torch.Tensor) -> float:
    model.eval()
    total, rows = 0.0, 0
    with torch.no_grad():
        for batch in loader:
            logits = model(batch["x"]).squeeze(-1)
            total += float(F.binary_cross_entropy_with_logits(logits, batch["y"], reduction="sum", pos_weight=weight))
            rows += len(batch["y"])
    return total / rows if rows else float("nan")


def train_head(snapshot: Snapshot, conf: TrainingSettings) -> TrainedHead:
    """A head trained on the snapshot's train split, the weights of its best validation epoch kept."""
    configure_threads(conf.threads)
    dim = _dim_of(snapshot, "train")
    with torch.random.fork_rng():  # the initial weights from the seed, the process's own generator untouched
        torch.manual_seed(conf.seed)
        model = build_head(dim, conf.hidden, conf.standardize)
    optimiser = torch.optim.AdamW(model.parameters(), lr=conf.learning_rate, weight_decay=conf.weight_decay)
    kept = conf.kept_split_mb * 2**20
    train = batches(snapshot, "train", conf.batch_size, conf.shuffle_buffer, conf.seed, kept)
    validation = batches(snapshot, "validation", conf.batch_size, 1, conf.seed, kept)
    head = TrainedHead(model, dim, conf.hidden, conf.standardize)
    # the rows trained on: a labelled item without an ok row is never trained on, so it weighs nothing; one read for both
    targets: list[torch.Tensor] = []
    if conf.standardize:
        model[0].mean, model[0].scale = _moments(_noting_targets(train, targets), dim)
    elif conf.balance_classes:
        targets = [batch["y"] for batch in train]
    weight = torch.tensor(positive_weight(torch.cat(targets).double().numpy(), conf.balance_classes) if targets else 1.0)
    best: tuple[float, dict[str, torch.Tensor]] | None = None
    for epoch in range(conf.epochs):
        train.set_epoch(epoch)
        model.train()
        total, rows = 0.0, 0
        for batch in train:
            optimiser.zero_grad()
            loss = F.binary_cross_entropy_with_logits(model(batch["x"]).squeeze(-1), batch["y"], pos_weight=weight)
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch["y"])
            rows += len(batch["y"])
        head.train_loss.append(total / rows)
        head.validation_loss.append(_mean_loss(model, validation, weight))
        current = head.validation_loss[-1]
        if best is None or not np.isfinite(best[0]) or current < best[0]:
            best = (current, {k: v.detach().clone() for k, v in model.state_dict().items()})
            head.best_epoch = epoch
    assert best is not None
    if not all(torch.isfinite(v).all() for v in best[1].values() if v.is_floating_point()):
        raise UsageError(f"training diverged: the head's weights are not numbers in every one of its {conf.epochs} epochs "
                         f"(training.learning_rate {conf.learning_rate}): lower the learning rate and train again")
    model.load_state_dict(best[1])
    with torch.no_grad():
        model[-1].bias -= torch.log(weight)  # the weight's shift of the logits, undone
    model.eval()
    return head


def save_head(head: TrainedHead, folder: str | Path, metadata: Mapping[str, str]) -> str:
    """Write the head's weights and shape to `<folder>/<sha256 of the file>.pt`, a local folder
    (written aside, then moved into place) or a storage URI (one put): a file of that name is
    always whole. Returns its path or URI."""
    buffer = io.BytesIO()
    torch.save({"state_dict": head.model.state_dict(), "dim": head.dim, "hidden": head.hidden, "standardize": head.standardize, "metadata": dict(metadata)}, buffer)
    data = buffer.getvalue()
    name = f"{hashlib.sha256(data).hexdigest()[:16]}.pt"
    if "://" in str(folder):
        filesystem, base = pafs.FileSystem.from_uri(str(folder))
        with filesystem.open_output_stream(f"{base.rstrip('/')}/{name}") as out:
            out.write(data)
        return f"{str(folder).rstrip('/')}/{name}"
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".part", delete=False) as out:
        out.write(data)
    os.replace(out.name, folder / name)
    return str(folder / name)


@contextmanager
def local_copy(location: str) -> Iterator[Path]:
    """A saved head as a file on this machine for the block (MLflow logs local files): itself, or a
    temporary copy of one at a storage URI."""
    if "://" not in location:
        yield Path(location)
        return
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / location.rsplit("/", 1)[1]
        copy.write_bytes(weights_bytes(location))
        yield copy
