"""The signal catalog: configuration names of the signal implementations."""
from __future__ import annotations

from signals.base import Signal, SignalConfig
from signals.embedders.efficientnet import EfficientNetImageEmbedder
from signals.embedders.minilm import MiniLMTextEmbedder
from signals.embedders.openclip import OpenClipImageEmbedder, OpenClipTextEmbedder

SIGNALS: dict[str, type[Signal]] = {
    "efficientnet_lite0_image": EfficientNetImageEmbedder,
    "minilm_text": MiniLMTextEmbedder,
    "open_clip_image": OpenClipImageEmbedder,
    "open_clip_text": OpenClipTextEmbedder,
}


def build_signal(kind: str, config: SignalConfig) -> Signal:
    """The signal of catalog entry `kind`, configured but not loaded."""
    try:
        cls = SIGNALS[kind]
    except KeyError:
        raise ValueError(f"unknown signal kind {kind!r}; known kinds: {', '.join(sorted(SIGNALS))}") from None
    return cls(config)
