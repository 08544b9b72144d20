"""Tests for signals.embedders.minilm's forward passes: a batch runs in the runs of rows that cost
least (padded tokens plus a pass's own cost), none over `max_batch_tokens` padded tokens, and the
vectors are still sentence-transformers' own, in the rows' order."""
from __future__ import annotations

import numpy as np
import pytest
import reference
import torch

from signals.base import ModelRef, SignalConfig
from signals.embedders.minilm import PASS_TOKENS, TOKENS_PER_ROW, MiniLMTextEmbedder, pass_bounds, token_chunks


def _right_padded(lengths: list[int]) -> dict[str, torch.Tensor]:
    width = max(lengths)
    mask = torch.tensor([[1] * n + [0] * (width - n) for n in lengths])
    ids = torch.arange(1, len(lengths) * width + 1).reshape(len(lengths), width) * mask
    return {"input_ids": ids, "attention_mask": mask}


def _cost(runs: list[tuple[int, int]], lengths: list[int]) -> int:
    return sum(PASS_TOKENS + (end - begin) * max(lengths[begin:end]) for begin, end in runs)


def _all_splits(n: int) -> list[list[tuple[int, int]]]:
    """Every way to cut rows 0..n-1 into consecutive runs (2^(n-1) of them)."""
    splits = []
    for mask in range(2 ** (n - 1)):
        cuts = [0, *[i + 1 for i in range(n - 1) if mask >> i & 1], n]
        splits.append(list(zip(cuts, cuts[1:])))
    return splits


@pytest.mark.parametrize("max_tokens", [1, 7, 20, 40, 1000])
@pytest.mark.parametrize("lengths", [[2, 3, 3, 5, 8, 9, 12], [9, 120, 10, 200, 12, 8, 230, 11], [40] * 6])
def test_passes_cost_least_of_every_split_within_the_budget(max_tokens: int, lengths: list[int]) -> None:
    runs = pass_bounds(lengths, max_tokens)
    assert [r for run in runs for r in range(*run)] == list(range(len(lengths)))  # every row once, in order
    assert all(end - begin == 1 or (end - begin) * max(lengths[begin:end]) <= max_tokens for begin, end in runs)
    allowed = [split for split in _all_splits(len(lengths))
               if all(end - begin == 1 or (end - begin) * max(lengths[begin:end]) <= max_tokens for begin, end in split)]
    assert _cost(runs, lengths) == min(_cost(split, lengths) for split in allowed)  # brute force agrees


def test_a_short_title_is_not_padded_to_a_long_description() -> None:
    runs = pass_bounds([8, 10, 12, 230, 240], 10_000)
    assert runs == [(0, 3), (3, 5)]  # three short rows in one pass, the two long ones in another


def test_chunks_are_the_runs_cut_to_their_own_longest_row() -> None:
    lengths = [2, 3, 3, 5, 8, 9, 120]
    tokens = _right_padded(lengths)
    chunks = list(token_chunks(tokens, 40))
    rows = 0
    for chunk, (begin, end) in zip(chunks, pass_bounds(lengths, 40), strict=True):
        width = chunk["input_ids"].shape[1]
        assert (begin, end) == (rows, rows + chunk["input_ids"].shape[0]) and width == max(lengths[begin:end])
        assert torch.equal(chunk["input_ids"], tokens["input_ids"][begin:end, :width])
        rows = end
    assert rows == len(lengths)


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
