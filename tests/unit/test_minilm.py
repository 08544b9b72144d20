"""Tests for signals.embedders.minilm's token budget: a batch of long texts runs in several
forward passes of at most `max_batch_tokens` padded tokens, and the vectors are still
sentence-transformers' own."""
from __future__ import annotations

import numpy as np
import pytest
import reference
import torch

from signals.base import ModelRef, SignalConfig
from signals.embedders.minilm import TOKENS_PER_ROW, MiniLMTextEmbedder, token_chunks


def _right_padded(lengths: list[int]) -> dict[str, torch.Tensor]:
    width = max(lengths)
    mask = torch.tensor([[1] * n + [0] * (width - n) for n in lengths])
    ids = torch.arange(1, len(lengths) * width + 1).reshape(len(lengths), width) * mask
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("max_tokens", [1, 7, 20, 40, 1000])
def test_chunks_keep_every_row_once_within_the_budget(max_tokens: int) -> None:
    lengths = [2, 3, 3, 5, 8, 9, 12]
    tokens = _right_padded(lengths)
    chunks = list(token_chunks(tokens, max_tokens))
    rows = 0
    for chunk in chunks:
        n, width = chunk["input_ids"].shape
        own = lengths[rows : rows + n]
        assert width == max(own)  # cut to the chunk's own longest row, not the batch's
        assert n == 1 or n * max(lengths) <= max_tokens
        assert torch.equal(chunk["input_ids"], tokens["input_ids"][rows : rows + n, :width])
        assert torch.equal(chunk["attention_mask"].sum(dim=1), torch.tensor(own))
        rows += n
    assert rows == len(lengths)
    assert (len(chunks) == 1) == (max_tokens >= len(lengths) * max(lengths))


def test_the_default_budget_is_the_batch_size_in_rows_of_typical_length() -> None:
    config = SignalConfig("text_embedding", ModelRef("minilm", "test"), batch_size=64, device="cpu", params={})
    assert MiniLMTextEmbedder(config).max_batch_tokens == 64 * TOKENS_PER_ROW
    config = SignalConfig("text_embedding", ModelRef("minilm", "test"), batch_size=64, device="cpu",
                          params={"max_batch_tokens": 500})
    assert MiniLMTextEmbedder(config).max_batch_tokens == 500


def test_a_batch_over_the_budget_embeds_like_sentence_transformers() -> None:
    texts = ["short pin", "a somewhat longer title about gardening in small spaces",
             "a long description of a recipe " * 20, "tiny", "balcony tomatoes and herbs " * 8]
    config = SignalConfig("text_embedding", ModelRef("minilm", "test"), batch_size=len(texts), device="cpu",
                          params={"max_batch_tokens": 160})
    embedder = MiniLMTextEmbedder(config).load()
    passes: list[tuple[int, int]] = []
    hook = embedder.resources.model.register_forward_pre_hook(
        lambda module, args, kwargs: passes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True)
    try:
        got = embedder.embed(texts)
    finally:
        hook.remove()
    assert len(passes) > 1
    assert all(rows == 1 or rows * width <= 160 for rows, width in passes)
    assert sum(rows for rows, _ in passes) == len(texts)
    want = np.stack([reference.minilm_embedding(t) for t in texts])
    assert np.allclose(got, want, atol=1e-5)
