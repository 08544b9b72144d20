"""Label signals: one score per declared label for every row, decided at recorded thresholds.

A labeler's value for a row is a mapping label -> score. Scores are in [0, 1] and higher means
"more of the label" (more blurred, more offensive, more likely this topic), so that one
threshold per label turns a score into a decision. Thresholds come from configuration
(`params.thresholds`) over the labeler's defaults and are stored on every label row, so a
consumer always knows at which threshold a decision was made; a label with no threshold (an
open label set such as language) has a null threshold and decision. `detail` carries optional
per-row evidence (measurements, OCR boxes) as JSON.
"""
from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from signals.base import Signal


@dataclass(frozen=True)
class LabelScores:
    """A row's label scores, plus optional JSON evidence."""

    scores: Mapping[str, float]
    detail: str | None = None


class Labeler(Signal):
    """A signal whose value per row is a LabelScores over `labels`."""

    default_thresholds: ClassVar[Mapping[str, float]] = {}
    open_label_set: ClassVar[bool] = False  # True where labels are not known in advance (language)
    run_params: ClassVar[tuple[str, ...]] = ("thresholds",)

    @property
    @abstractmethod
    def labels(self) -> tuple[str, ...]:
        """The labels every row is scored on (empty for an open label set)."""

    @abstractmethod
    def score(self, prepared: list[Any]) -> list[LabelScores]:
        """Scores for one batch of prepared rows."""

    @property
    def thresholds(self) -> dict[str, float]:
        """Per-label decision thresholds: configuration over defaults."""
        return {**self.default_thresholds, **self.config.params.get("thresholds", {})}

    def compute(self, prepared: list[Any]) -> list[LabelScores]:
        return self.score(prepared)

    def check(self, value: LabelScores) -> None:
        missing = set(self.labels) - set(value.scores)
        if missing:
            raise ValueError(f"labeler returned no score for {sorted(missing)}")
        bad = {k: v for k, v in value.scores.items() if not (math.isfinite(v) and 0.0 <= v <= 1.0)}
        if bad:
            raise ValueError(f"scores outside [0, 1]: {bad}")

    def decide(self, scores: Mapping[str, float]) -> list[dict[str, Any]]:
        """Each label's score, threshold and decision (both None where no threshold is set)."""
        thresholds = self.thresholds
        return [
            {"label": label, "score": float(score), "threshold": thresholds.get(label),
             "decision": None if label not in thresholds else bool(score >= thresholds[label])}
            for label, score in scores.items()
        ]

    def result_columns(self, values: list[LabelScores | None]) -> dict[str, list[Any]]:
        return {
            "scores": [None if v is None else self.decide(v.scores) for v in values],
            "detail": [None if v is None else v.detail for v in values],
        }
