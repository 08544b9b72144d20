"""What every text embedder shares: the same composed text of title and description."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from signals.base import InputKind
from signals.embedders.base import Embedder
from signals.text import compose_text


class TextEmbedder(Embedder):
    """Title + description -> one text -> text model."""

    input_kind: ClassVar[InputKind] = "text"
    input_columns: ClassVar[tuple[str, ...]] = ("title", "description")

    def prepare(self, row: Mapping[str, Any]) -> str:
        return compose_text(row["title"], row["description"], self.config.params.get("max_chars", 4096))
