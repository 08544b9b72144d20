"""Titles and descriptions of the sample corpus's items: templated sentences about the picture's
subject, their edge cases (empty, null, very long, odd unicode, whitespace only) and spam."""

from __future__ import annotations

import numpy as np

from sample_corpus.draws import pick

TEXT_WEIGHTS: dict[str, float] = {
    "normal": 88.0, "empty": 2.0, "null": 2.0, "long": 2.0, "unicode": 4.0, "whitespace": 2.0,
}

SENTENCES: tuple[str, ...] = (
    "A {adj} photo of {subject}.",
    "Found this shot of {subject} and had to save it.",
    "Pinned for my {board} board: {subject}.",
    "Love how {adj} {subject} looks here.",
    "Reference picture of {subject}, {adj} light and nice detail.",
    "{Subject}, saved for later.",
    "Could not stop looking at {subject} today.",
    "Great inspiration for anyone into {board}: {subject}.",
)
ADJECTIVES: tuple[str, ...] = ("crisp", "moody", "bright", "textured", "classic", "striking", "calm", "vivid")
BOARDS: tuple[str, ...] = ("science", "travel", "photography", "home decor", "weekend", "mood", "art class")
UNICODE_FRAGMENTS: tuple[str, ...] = (
    "😍🔥✨",
    "👩\u200d👩\u200d👧\u200d👦 family day",  # zero-width-joiner emoji sequence
    "🏳️\u200d🌈",
    "صورة رائعة جدا",  # Arabic (RTL)
    "תמונה יפה מאוד",  # Hebrew (RTL)
    "\u202eright-to-left override\u202c",
    "美しい写真です",
    "非常漂亮的照片",
    "정말 멋진 사진",
    "Cafe\u0301 cre\u0300me bru\u0302le\u0301e",  # combining accents
    "Z\u0351\u0364a\u0308\u0301l\u0308g\u036do\u0489",  # stacked combining marks
    "zero\u200bwidth\u200cspaces\u200dhere\ufeff",
)
WHITESPACE: tuple[str, ...] = (" ", "   ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2003")


def _sentence(rng: np.random.Generator, subject: str) -> str:
    """One templated sentence about the subject."""
    template = pick(rng, SENTENCES)
    return template.format(
        subject=subject, Subject=subject[:1].upper() + subject[1:], adj=pick(rng, ADJECTIVES), board=pick(rng, BOARDS)
    )


def _whitespace(rng: np.random.Generator) -> str:
    """Non-empty text that is blank once stripped (ASCII and unicode spaces)."""
    return "".join(pick(rng, WHITESPACE) for _ in range(int(rng.integers(1, 6))))


def pin_text(rng: np.random.Generator, text_kind: str, caption: str, subject: str) -> tuple[str | None, str | None]:
    """(title, description) for one item, with the requested edge case."""
    if text_kind == "empty":
        return "", ""
    if text_kind == "null":
        return None, None
    if text_kind == "whitespace":
        return _whitespace(rng), _whitespace(rng)
    if text_kind == "unicode":
        fragments = [UNICODE_FRAGMENTS[i] for i in rng.choice(len(UNICODE_FRAGMENTS), size=3, replace=False)]
        return f"{caption} {fragments[0]}", " ".join([_sentence(rng, subject), *fragments[1:]])
    if text_kind == "long":
        length = int(rng.integers(20_000, 100_001))
        parts: list[str] = []
        total = 0
        while total < length:
            parts.append(_sentence(rng, subject))
            total += len(parts[-1]) + 1
        return caption, " ".join(parts)[:length]
    return caption, " ".join(_sentence(rng, subject) for _ in range(int(rng.integers(1, 4))))


# Spam, for the spam_text training task: some carry the phrases and links a rule knows, some only
# the stuffing and shouting it weighs less.
SPAM_HOOKS: tuple[str, ...] = (
    "Click here to make money from home!!!!", "Limited time offer, buy now at the lowest price",
    "DM me for a promo code", "You have won a free gift, check my profile", "Earn cash with crypto, 100% guaranteed",
    "Best deals of the week on {subject}", "Cheap {subject} prints shipped today",
)
SPAM_LINKS: tuple[str, ...] = ("www.cheap-deals.xyz", "http://bit.ly/3xYz", "best-prints.shop/sale", "promo-hub.top")
SPAM_STUFFING: tuple[str, ...] = ("cheap", "sale", "deal", "wholesale", "discount", "prints", "shipping")


def spam_text(rng: np.random.Generator, caption: str, subject: str) -> tuple[str, str]:
    """(title, description) of a spam pin about `subject`: a hook, keyword stuffing, sometimes links
    and shouting."""
    hook = pick(rng, SPAM_HOOKS).format(subject=subject)
    words = [pick(rng, SPAM_STUFFING) for _ in range(int(rng.integers(4, 9)))]
    links = [pick(rng, SPAM_LINKS) for _ in range(int(rng.integers(0, 3)))]
    description = " ".join([hook, " ".join(words * 2), *links])
    title = f"{caption} {hook}" if rng.random() < 0.5 else hook
    return (title.upper() if rng.random() < 0.3 else title), description
