"""Topic labelers: every taxonomy topic scored from an image or the text, three ways.

Each runs on top of an embedding signal's model, through that signal's own class: the embedder
prepares the rows (decode + transform, or compose_text) and holds the weights, so a worker that
computes both the embedding and the topics of a model loads it once (same model_cache key).
- ImageTopicLabeler: EfficientNet-Lite0's ImageNet-1k softmax, summed per topic through the
  taxonomy's class mapping. Scores are probability mass: they sum to at most 1 (classes with no
  topic keep the rest).
- TextTopicLabeler: cosine of the MiniLM embedding of the text with the MiniLM embedding of each
  topic's description, softmax over topics with a temperature. Scores sum to 1.
- ClipImageTopicLabeler: CLIP zero-shot; the image embedding against the averaged text
  embeddings of each topic's prompts, softmax with the model's own logit scale. Scores sum to 1.
A softmax always puts mass somewhere, so a text or image about none of the topics still gets
its closest topic; the 0.5 default thresholds only fire when one topic dominates.
"""
from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from scipy.special import softmax

from signals.base import SignalConfig
from signals.embedders.base import Embedder
from signals.embedders.efficientnet import EfficientNetImageEmbedder
from signals.embedders.minilm import MiniLMTextEmbedder
from signals.embedders.openclip import OpenClipImageEmbedder, OpenClipTextEmbedder
from signals.inputs import ImageInput, TextInput
from signals.labels.base import Labeler, LabelScores
from signals.labels.taxonomy import IMAGENET_CLASSES, TAXONOMY, TAXONOMY_VERSION, TOPIC_NAMES, clip_prompts, imagenet_topics

TEXT_TEMPERATURE = 0.05  # cosine gaps of ~0.1 between topics become probability ratios of ~e^2
TOP_CLASSES = 3


def imagenet_topic_matrix() -> np.ndarray:
    """(1000, topics) 0/1 matrix: class i counts for topic j. Rows of unmapped classes are 0."""
    matrix = np.zeros((IMAGENET_CLASSES, len(TOPIC_NAMES)), dtype=np.float32)
    for index, topic in enumerate(imagenet_topics()):
        if topic is not None:
            matrix[index, TOPIC_NAMES.index(topic)] = 1.0
    return matrix


def topic_softmax(embeddings: np.ndarray, topic_vectors: np.ndarray, scale: float) -> np.ndarray:
    """Softmax over topics of scale * cosine (both sides already L2-normalised)."""
    return softmax(scale * embeddings @ topic_vectors.T, axis=-1)


def _scores(row: np.ndarray, detail: str | None = None) -> LabelScores:
    return LabelScores({name: float(min(max(s, 0.0), 1.0)) for name, s in zip(TOPIC_NAMES, row)}, detail)


class _TopicLabeler(Labeler):
    """A labeler of every taxonomy topic on top of one or more embedders of the same model."""

    default_thresholds: ClassVar[Mapping[str, float]] = {name: 0.5 for name in TOPIC_NAMES}

    def __init__(self, config: SignalConfig) -> None:
        super().__init__(config)
        self.backing = self.backing_signals()

    @abstractmethod
    def backing_signals(self) -> tuple[Embedder, ...]:
        """The embedders whose model this labeler uses; the first one prepares the rows."""

    def backbones(self) -> tuple[Embedder, ...]:
        return self.backing

    @property
    def labels(self) -> tuple[str, ...]:
        return TOPIC_NAMES

    def weights_source(self) -> str | None:
        return self.backing[0].weights_source()

    def verify_weights(self) -> None:
        """Nothing more to check: the backing embedders verified the weights when they loaded them."""

    def load(self, gpu_addresses: tuple[str, ...] = ()) -> _TopicLabeler:
        """Load the embedders' shared model first: this labeler's own resources are built with it."""
        for signal in self.backing:
            signal.load(gpu_addresses)
        super().load(gpu_addresses)
        return self

    def prepare(self, row: Mapping[str, Any]) -> Any:
        return self.backing[0].prepare(row)


class ImageTopicLabeler(ImageInput, _TopicLabeler):
    """ImageNet-1k probabilities of EfficientNet-Lite0, summed per topic."""

    identity_params = EfficientNetImageEmbedder.identity_params
    installed_defaults = EfficientNetImageEmbedder.installed_defaults
    path_params = EfficientNetImageEmbedder.path_params
    run_params = EfficientNetImageEmbedder.run_params  # its backing embedder reads them

    def backing_signals(self) -> tuple[Embedder, ...]:
        return (EfficientNetImageEmbedder(self.config),)

    def resource_key(self) -> Hashable:
        return ("imagenet-topics", TAXONOMY_VERSION)

    def load_resources(self, device: torch.device) -> torch.Tensor:
        return torch.from_numpy(imagenet_topic_matrix()).to(device)

    @torch.inference_mode()
    def class_probabilities(self, prepared: list[torch.Tensor]) -> torch.Tensor:
        """ImageNet-1k softmax. The network's classifier applied to the embedder's pooled
        features is its full forward pass (pooling, then dropout, inactive in eval, then `_fc`);
        those features are the image embedding's own, shared where both run (signals.shared_forward)."""
        embedder = self.backing[0]
        with embedder.autocast():
            logits = embedder.resources.model._fc(embedder.pooled(prepared))
        return torch.softmax(logits.float(), dim=-1)

    def score(self, prepared: list[torch.Tensor]) -> list[LabelScores]:
        import imagenet_classes

        probs = self.class_probabilities(prepared)
        topics = (probs @ self.resources).cpu().numpy()
        top_p, top_i = (t.cpu().tolist() for t in probs.topk(TOP_CLASSES, dim=-1))
        out = []
        for row, ps, indices in zip(topics, top_p, top_i):
            top = [{"class": imagenet_classes.get_1k_clean_name(i), "p": round(p, 4)} for p, i in zip(ps, indices)]
            out.append(_scores(row, json.dumps({"imagenet_top": top})))
        return out


class TextTopicLabeler(TextInput, _TopicLabeler):
    """MiniLM similarity of the text to each topic's description."""

    pads_batches = True
    identity_params = (*MiniLMTextEmbedder.identity_params, "temperature")  # the temperature shapes every score
    identity_defaults = {"temperature": TEXT_TEMPERATURE}
    installed_defaults = MiniLMTextEmbedder.installed_defaults
    path_params = MiniLMTextEmbedder.path_params
    run_params = MiniLMTextEmbedder.run_params  # its backing embedder reads them

    def backing_signals(self) -> tuple[Embedder, ...]:
        return (MiniLMTextEmbedder(self.config),)

    @property
    def temperature(self) -> float:
        return float(self.config.params.get("temperature", TextTopicLabeler.identity_defaults["temperature"]))

    def resource_key(self) -> Hashable:
        return ("minilm-topics", self.backing[0].resource_key(), TAXONOMY_VERSION)

    def load_resources(self, device: torch.device) -> np.ndarray:
        return self.backing[0].embed([topic.description for topic in TAXONOMY])

    def score(self, prepared: list[str]) -> list[LabelScores]:
        embeddings = self.backing[0].embed(prepared)
        probs = topic_softmax(embeddings, self.resources, 1.0 / self.temperature)
        return [_scores(row) for row in probs]


@dataclass(frozen=True)
class _ClipTopics:
    text_features: np.ndarray  # (topics, dim), each the normalised mean of its prompts' embeddings
    logit_scale: float


class ClipImageTopicLabeler(ImageInput, _TopicLabeler):
    """CLIP zero-shot classification of the image over the taxonomy's prompts."""

    identity_params = OpenClipImageEmbedder.identity_params
    path_params = OpenClipImageEmbedder.path_params
    run_params = OpenClipImageEmbedder.run_params  # its backing image embedder reads them

    def backing_signals(self) -> tuple[Embedder, ...]:
        return (OpenClipImageEmbedder(self.config), OpenClipTextEmbedder(self.config))

    def resource_key(self) -> Hashable:
        return ("clip-topics", self.backing[1].resource_key(), TAXONOMY_VERSION)

    def load_resources(self, device: torch.device) -> _ClipTopics:
        """Prompt ensembling (as in the CLIP paper): average each topic's prompt embeddings."""
        text = self.backing[1]
        features = np.stack([text.embed(clip_prompts(topic)).mean(axis=0) for topic in TAXONOMY])
        features /= np.linalg.norm(features, axis=1, keepdims=True)
        return _ClipTopics(features, float(text.resources.model.logit_scale.detach().exp()))

    def score(self, prepared: list[torch.Tensor]) -> list[LabelScores]:
        topics: _ClipTopics = self.resources
        probs = topic_softmax(self.backing[0].embed(prepared), topics.text_features, topics.logit_scale)
        return [_scores(row) for row in probs]
