"""What every text embedder shares: the same composed text of title and description."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from signals.embedders.base import Embedder
from signals.inputs import TextInput
from signals.profiling import stage_times


class TextEmbedder(TextInput, Embedder):
    """Title + description -> one text -> text model."""

    def prepare(self, row: Mapping[str, Any]) -> str:
        with stage_times.time("preprocess", 1):
            return self.text(row)
