"""The signal catalog: configuration names of the signal implementations."""
from __future__ import annotations

from signals.embedders.base import Embedder, EmbedderConfig
from signals.embedders.efficientnet import EfficientNetImageEmbedder
from signals.embedders.minilm import MiniLMTextEmbedder
from signals.embedders.openclip import OpenClipImageEmbedder, OpenClipTextEmbedder

EMBEDDERS: dict[str, type[Embedder]] = {
    "efficientnet_lite0_image": EfficientNetImageEmbedder,
    "minilm_text": MiniLMTextEmbedder,
    "open_clip_image": OpenClipImageEmbedder,
    "open_clip_text": OpenClipTextEmbedder,
}


def build_embedder(kind: str, config: EmbedderConfig) -> Embedder:
    """The embedder of catalog entry `kind`, configured but not loaded."""
    try:
        cls = EMBEDDERS[kind]
    except KeyError:
        raise ValueError(f"unknown signal kind {kind!r}; known kinds: {', '.join(sorted(EMBEDDERS))}") from None
    return cls(config)
