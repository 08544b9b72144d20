"""Text safety: offensive language (alt-profanity-check) and spam (documented indicators).

offensive: the profanity model's probability, the max over title and description, so a short
offensive title is not diluted by a long harmless description.

spam: a noisy-OR of indicator scores, each in [0, 1]: spam = 1 - prod(1 - s_i). Any strong
indicator alone makes a text spammy, and several weak ones add up. The indicators, what they
count and how a count maps to s_i (`_saturating(n, scale)` = 1 - exp(-n / scale): 0 for none,
0.63 at `scale`, approaching 1):
- links: URLs and bare domains; s = saturating(n, 3). One link is normal on a pin; several in
  one text are typical of link farms. A bare domain's labels are read up to DNS's 63 characters
  each, and up to ten of them before its top-level domain (a longer host still counts once, from
  its last ten): unbounded, every start inside a long run of "a.a.a..." or "a-a-a-..." read to
  its end, and 4,096 such characters took a second, twice as many four.
- spam_phrases: distinct known spam phrases (SPAM_PHRASES); s = saturating(n, 1.5): one phrase
  ~0.49, two ~0.74.
- shouting: share of upper-case letters among cased letters, once there are at least
  MIN_LETTERS; s rises linearly from 0 at 0.5 to 1 at 0.9 (titles In Title Case stay near 0.2).
- repetition: share of word trigrams that repeat an earlier trigram (copy-pasted filler,
  keyword stuffing); prose is near 0. s rises linearly from 0 at 0.2 to 1 at 0.6.
- char_runs: runs of 4+ identical characters other than white space ("!!!!", "soooo"); s =
  saturating(n, 3). Runs of spaces, tabs and newlines are layout (indented lists, blank lines
  between paragraphs), not emphasis.
- emoji: emoji beyond the first 3; s = saturating(n - 3, 6). An emoji is what shows as one: a
  flag (two regional indicators), a skin tone or variation selector with the emoji it modifies,
  and a ZWJ sequence (a family, a rainbow flag) each count once.
- hashtags: hashtags beyond the first 5; s = saturating(n - 5, 5). A "#" after "&" is an HTML
  character reference ("&#8217;", a scraped apostrophe), not a hashtag.
The counts and the combined score go into `detail` as JSON.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Hashable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from signals.inputs import TextInput
from signals.labels.base import Labeler, LabelScores

OFFENSIVE = "offensive"
SPAM = "spam"
MIN_LETTERS = 12

SPAM_PHRASES: tuple[str, ...] = (
    "click here", "click the link", "free money", "dm me", "message me", "limited offer", "limited time offer",
    "act now", "buy now", "order now", "100% free", "make money", "earn money", "earn cash", "work from home",
    "get rich", "cash prize", "you have won", "you won", "winner", "free gift", "free trial", "promo code",
    "discount code", "use code", "link in bio", "check my profile", "follow for follow", "follow back",
    "subscribe now", "crypto", "bitcoin", "forex", "casino", "viagra", "weight loss pills", "risk free",
    "no credit check", "lowest price", "best price", "100% guaranteed", "double your", "sign up now",
)
_PHRASES = [re.compile(rf"(?<!\w){re.escape(p)}(?!\w)", re.IGNORECASE) for p in SPAM_PHRASES]
_URL = re.compile(
    r"\b(?:https?://|www\.)\S+|\b[a-z0-9-]{1,63}(?:\.[a-z0-9-]{1,63}){0,9}\.(?:com|net|org|info|biz|ly|io|co|xyz|ru|cn|top|shop)\b(?:/\S*)?",
    re.IGNORECASE,
)
_HASHTAG = re.compile(r"(?<![\w#&])#\w+")
_CHAR_RUN = re.compile(r"(\S)\1{3,}")
_WORD = re.compile(r"\w+")
_EMOJI_CHAR = "[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF]"
_EMOJI_MODIFIER = "[\U0001F3FB-\U0001F3FF\uFE0F\U000E0020-\U000E007F]"  # skin tones, emoji presentation, tag letters
_EMOJI = re.compile(rf"[\U0001F1E6-\U0001F1FF]{{2}}|{_EMOJI_CHAR}{_EMOJI_MODIFIER}*(?:\u200D{_EMOJI_CHAR}{_EMOJI_MODIFIER}*)*")


@dataclass(frozen=True)
class SpamIndicators:
    """Counts and ratios measured on one text."""

    links: int
    spam_phrases: int
    shouting: float
    repetition: float
    char_runs: int
    emoji: int
    hashtags: int


def _saturating(n: float, scale: float) -> float:
    return 1.0 - math.exp(-max(n, 0.0) / scale)


def _linear(x: float, zero_at: float, one_at: float) -> float:
    return min(max((x - zero_at) / (one_at - zero_at), 0.0), 1.0)


def _shouting(text: str) -> float:
    cased = [c for c in text if c.isupper() or c.islower()]
    return sum(c.isupper() for c in cased) / len(cased) if len(cased) >= MIN_LETTERS else 0.0


def _repetition(text: str) -> float:
    words = _WORD.findall(text.lower())
    trigrams = list(zip(words, words[1:], words[2:]))
    return 1.0 - len(set(trigrams)) / len(trigrams) if trigrams else 0.0


def spam_indicators(text: str) -> SpamIndicators:
    """The spam indicators of one text (cheap: regular expressions and counts)."""
    return SpamIndicators(
        links=len(_URL.findall(text)),
        spam_phrases=sum(bool(p.search(text)) for p in _PHRASES),
        shouting=_shouting(text),
        repetition=_repetition(text),
        char_runs=len(_CHAR_RUN.findall(text)),
        emoji=len(_EMOJI.findall(text)),
        hashtags=len(_HASHTAG.findall(text)),
    )


def spam_score(ind: SpamIndicators) -> float:
    """Noisy-OR of the indicator scores (see the module docstring for each mapping)."""
    scores = (
        _saturating(ind.links, 3.0),
        _saturating(ind.spam_phrases, 1.5),
        _linear(ind.shouting, 0.5, 0.9),
        _linear(ind.repetition, 0.2, 0.6),
        _saturating(ind.char_runs, 3.0),
        _saturating(ind.emoji - 3, 6.0),
        _saturating(ind.hashtags - 5, 5.0),
    )
    return 1.0 - float(np.prod([1.0 - s for s in scores]))


@dataclass(frozen=True)
class _Prepared:
    fields: list[str]
    indicators: SpamIndicators


class TextSafetyLabeler(TextInput, Labeler):
    """offensive (profanity model) and spam (indicators) of a pin's title and description."""

    default_thresholds: ClassVar[Mapping[str, float]] = {OFFENSIVE: 0.5, SPAM: 0.7}  # offensive: the model's own decision level

    @property
    def labels(self) -> tuple[str, ...]:
        return (OFFENSIVE, SPAM)

    def resource_key(self) -> Hashable:
        return ("profanity_check", self.config.model.version)

    def load_resources(self, device: torch.device) -> Any:
        from profanity_check import predict_prob  # loads the model and vectoriser on import

        return predict_prob

    def prepare(self, row: Mapping[str, Any]) -> _Prepared:
        text = self.text(row)  # InputError when title and description are both blank
        return _Prepared(self.fields(row), spam_indicators(text))

    def score(self, prepared: list[_Prepared]) -> list[LabelScores]:
        flat = [field for p in prepared for field in p.fields]
        probs = iter(self.resources(flat).tolist())
        out = []
        for p in prepared:
            offensive = max(next(probs) for _ in p.fields)
            spam = spam_score(p.indicators)
            detail = json.dumps({**asdict(p.indicators), "spam": round(spam, 4)})
            out.append(LabelScores({OFFENSIVE: float(offensive), SPAM: spam}, detail))
        return out
