"""The signal catalog: configuration names (`kind` in conf/*.yaml) of the signal implementations."""
from __future__ import annotations

from signals.base import Signal, SignalConfig
from signals.embedders.efficientnet import EfficientNetImageEmbedder
from signals.embedders.minilm import MiniLMTextEmbedder
from signals.embedders.openclip import OpenClipImageEmbedder, OpenClipTextEmbedder
from signals.labels.head import ImageEmbeddingHead, JoinedEmbeddingHead, TextEmbeddingHead
from signals.labels.image_safety import ImageSafetyLabeler
from signals.labels.language import LanguageLabeler
from signals.labels.quality import ImageQualityLabeler, OcrTextLabeler
from signals.labels.text_safety import TextSafetyLabeler
from signals.labels.topics import ClipImageTopicLabeler, ImageTopicLabeler, TextTopicLabeler

SIGNALS: dict[str, type[Signal]] = {
    # embeddings -> the `embeddings` table
    "efficientnet_lite0_image": EfficientNetImageEmbedder,
    "minilm_text": MiniLMTextEmbedder,
    "open_clip_image": OpenClipImageEmbedder,
    "open_clip_text": OpenClipTextEmbedder,
    # labels -> the `labels` table
    "open_nsfw_image_safety": ImageSafetyLabeler,
    "text_safety": TextSafetyLabeler,
    "fasttext_language": LanguageLabeler,
    "imagenet_image_topics": ImageTopicLabeler,
    "minilm_text_topics": TextTopicLabeler,
    "open_clip_image_topics": ClipImageTopicLabeler,
    "image_quality": ImageQualityLabeler,
    "ocr_text": OcrTextLabeler,
    # heads we trained, scoring the stored embeddings (training/; derived: they read the embeddings table)
    "image_embedding_head": ImageEmbeddingHead,
    "text_embedding_head": TextEmbeddingHead,
    "joined_embedding_head": JoinedEmbeddingHead,
}


def signal_class(kind: str) -> type[Signal]:
    """The implementation of catalog entry `kind`."""
    try:
        return SIGNALS[kind]
    except KeyError:
        raise ValueError(f"unknown signal kind {kind!r}; known kinds: {', '.join(sorted(SIGNALS))}") from None


def build_signal(kind: str, config: SignalConfig) -> Signal:
    """The signal of catalog entry `kind`, configured but not loaded."""
    return signal_class(kind)(config)
