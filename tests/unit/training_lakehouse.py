"""A small lakehouse for the training tests, written with delta-rs (no Spark): a registry whose
image_embedding champion is version 1, that version's vectors (positives of `low_quality` lie
along the first dimension; the last items are error rows), corpus rows, the rule's scores in
the labels table, the sample corpus's truth table (`low_quality` as `is_blurred`), and gold, weak
and majority-vote label frames of the shape training.gold and training.weak return."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from deltalake import write_deltalake
from embedding_tables import T0, append, registry_in, rows

from conf.settings import Settings, load_settings
from sample_corpus.generate import TRUTH_SCHEMA, TRUTH_TABLE
from signals.contracts import CORPUS, LABELS

DIM, ERRORS = 16, 5
DAYS = ("2026-11-01", "2026-11-02", "2026-11-03")
JPEG, PNG = b"\xff\xd8\xff\xe0" + bytes(16), b"\x89PNG\r\n\x1a\n" + bytes(16)


@dataclass(frozen=True)
class TrainingLake:
    settings: Settings
    ids: list[str]
    vectors: np.ndarray  # of every id (error rows' vectors are not stored)
    truth: np.ndarray
    rule: np.ndarray  # the rule's score of every id, in the labels table
    gold: pd.DataFrame
    weak: pd.DataFrame
    majority: pd.DataFrame


def training_lakehouse(root: Path, empty_registry_db: Path, n: int = 400, seed: int = 0, overrides: tuple[str, ...] = ()) -> TrainingLake:
    rng = np.random.default_rng(seed)
    registry = registry_in(root, empty_registry_db, versions=1)
    registry.register("image_quality", "code:rule", {"kind": "image_quality"})
    registry.promote("image_quality", "1")
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    truth = (vectors[:, 0] + 0.4 * rng.standard_normal(n) > 0.3).astype(int)
    ids = [f"pin-{i:04d}" for i in range(n)]
    days = [DAYS[i % len(DAYS)] for i in range(n)]
    for day in DAYS:
        mine = [i for i in range(n - ERRORS) if days[i] == day]
        append(root, rows([ids[i] for i in mine], vectors[mine], ds=day))
    append(root, rows(ids[n - ERRORS:], None, ds=DAYS[0]))
    write_deltalake(f"{root}/corpus", pa.Table.from_pylist([
        {"content_id": c, "image": JPEG if i % 2 else PNG, "title": "t" * (10 + 50 * (i % 3)), "description": "", "created_at": T0,
         "updated_at": T0, "ds": days[i]} for i, c in enumerate(ids)], schema=CORPUS.schema), partition_by=["ds"])
    write_deltalake(f"{root}/{TRUTH_TABLE}", pa.Table.from_pylist([
        {**{f.name: False for f in TRUTH_SCHEMA if pa.types.is_boolean(f.type)}, "content_id": c, "variant": "original", "params": "{}",
         "dup_group": c, "dup_relation": "none", "text_kind": "normal", "is_blurred": bool(truth[i])} for i, c in enumerate(ids)],
        schema=TRUTH_SCHEMA))
    rule = 1 / (1 + np.exp(-(truth + rng.normal(0, 1.2, n))))  # a weaker scorer than the direction itself
    write_deltalake(f"{root}/labels", pa.Table.from_pylist([
        {"content_id": c, "signal": "image_quality", "label": "low_quality", "score": float(rule[i]), "threshold": 0.5,
         "decision": bool(rule[i] > 0.5), "detail": None, "model_name": "rule", "model_version": "1", "input_hash": "h",
         "status": "ok", "error": None, "run_id": "r", "computed_at": T0, "ds": days[i]} for i, c in enumerate(ids)],
        schema=LABELS.schema), partition_by=list(LABELS.partition_by))
    flipped = rng.random(n) < 0.15
    weak = pd.DataFrame({"content_id": ids, "p_positive": np.where(truth ^ flipped, 0.8, 0.2)})
    majority = pd.DataFrame({"content_id": ids, "p_positive": np.where(truth ^ (rng.random(n) < 0.3), 1.0, 0.0)})
    gold = pd.DataFrame({"content_id": ids, "p_positive": truth.astype(float), "label": truth, "n_annotators": 3})
    settings = load_settings("local", [f"lakehouse={root}", "training.epochs=12", "training.hidden=0", "training.gate.min_slice_items=10",
                                       *overrides])
    return TrainingLake(settings, ids, vectors, truth, rule, gold, weak, majority)
