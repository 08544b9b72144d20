"""open_clip image and text embeddings: the production model family.

Architecture and weights come from configuration:
- `arch`: an open_clip model name (e.g. "ViT-B-32"), optionally defined by JSON files in
  `model_config_dir` (registered with `open_clip.add_model_config`);
- `pretrained`: a hub tag (e.g. "laion2b_s34b_b79k", where a hub is reachable) or the path of a
  checkpoint file (anywhere).
The image and the text signal of the same model share one loaded copy per worker.
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from signals.base import SignalConfig
from signals.embedders.image import ImageEmbedder
from signals.embedders.text import TextEmbedder
from signals.weights import HubWeightsUnavailable, is_weights_location


@dataclass
class OpenClipModel:
    model: torch.nn.Module
    preprocess: Any
    tokenizer: Any
    embed_dim: int


def load_open_clip(arch: str, pretrained: str | None, model_config_dir: str | None, device: torch.device) -> OpenClipModel:
    """Build the model, its eval preprocessing and tokenizer, with weights from `pretrained`."""
    import open_clip

    if model_config_dir:
        open_clip.add_model_config(model_config_dir)
    if pretrained and not is_weights_location(pretrained):
        fetch_hub_weights(arch, pretrained)
    model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=pretrained, device=device)
    model.eval()
    model = model.to(memory_format=torch.channels_last)  # see ImageEmbedder.forward
    embed_dim = int(open_clip.get_model_config(arch)["embed_dim"])
    return OpenClipModel(model, preprocess, open_clip.get_tokenizer(arch), embed_dim)


def fetch_hub_weights(arch: str, tag: str) -> None:
    """The weights of an open_clip hub tag in the local hub cache (downloaded if need be) before the
    model is built, so that a tag open_clip does not know, or a hub neither reachable nor cached,
    is HubWeightsUnavailable naming the tag rather than open_clip's traceback."""
    from open_clip.pretrained import download_pretrained, get_pretrained_cfg, list_pretrained_tags_by_model

    found = get_pretrained_cfg(arch, tag)
    if not found:
        raise HubWeightsUnavailable.of(tag, f"open_clip knows no such tag for {arch}; it knows {', '.join(list_pretrained_tags_by_model(arch)) or 'none'}")
    try:
        download_pretrained(found)
    except Exception as e:  # noqa: BLE001 - whichever the hub client raises: offline and not cached, unreachable, not found
        raise HubWeightsUnavailable.of(tag, f"{arch}: {e}") from e


def declared_dim(params: Mapping[str, Any]) -> int:
    """The embedding width from the architecture's config, read without loading weights."""
    import open_clip

    if params.get("model_config_dir"):
        open_clip.add_model_config(params["model_config_dir"])
    config = open_clip.get_model_config(params["arch"])
    if config is None:
        raise ValueError(f"unknown open_clip architecture {params['arch']!r}")
    return int(config["embed_dim"])


class _OpenClipMixin:
    config: SignalConfig
    identity_params: ClassVar[tuple[str, ...]] = ("arch", "pretrained", "model_config_dir")
    path_params: ClassVar[tuple[str, ...]] = ("pretrained", "model_config_dir")

    @property
    def dim(self) -> int:
        return declared_dim(self.config.params)

    def weights_source(self) -> str | None:
        return self.config.params.get("pretrained")

    def resource_key(self) -> Hashable:
        p = self.config.params
        return ("open_clip", p["arch"], p.get("pretrained"), p.get("model_config_dir"), self.config.model.version)

    def load_resources(self, device: torch.device) -> OpenClipModel:
        p = self.config.params
        return load_open_clip(p["arch"], p.get("pretrained"), p.get("model_config_dir"), device)


class OpenClipImageEmbedder(_OpenClipMixin, ImageEmbedder):
    """CLIP image tower."""

    @property
    def transform(self) -> Any:
        return self.resources.preprocess

    def image_features(self, batch: torch.Tensor) -> torch.Tensor:
        return self.resources.model.encode_image(batch)


class OpenClipTextEmbedder(_OpenClipMixin, TextEmbedder):
    """CLIP text tower over title and description (truncated to the context length)."""

    def forward(self, prepared: list[str]) -> torch.Tensor:
        tokens = self.to_device(self.resources.tokenizer(prepared))
        return self.resources.model.encode_text(tokens)
