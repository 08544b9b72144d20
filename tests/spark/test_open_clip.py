"""open_clip through the whole job: a small random-weight model saved as a checkpoint file and
loaded from that path by configuration, exactly as real weights would be."""
from __future__ import annotations

import numpy as np
import open_clip
import pytest
import reference
from deltalake import DeltaTable

from conf.settings import load_settings
from jobs.backfill import run_backfill

pytestmark = pytest.mark.spark

ARCH = "tiny-test-ViT"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """(config dir, checkpoint path, the model that was saved) for a random-weight tiny CLIP."""
    return reference.tiny_clip_checkpoint(tmp_path_factory.mktemp("open_clip"), ARCH)


def test_open_clip_signals_equal_the_checkpoint_model_called_directly(spark, fresh_lakehouse, checkpoint):
    config_dir, weights, model, preprocess = checkpoint
    clip = [
        f"signals.{name}.{key}={value}"
        for name in ("clip_image_embedding", "clip_text_embedding")
        for key, value in (
            ("enabled", "true"),
            ("batch_size", "6"),
            ("params.arch", ARCH),
            ("params.pretrained", weights),
            ("params.model_config_dir", config_dir),
        )
    ]
    others = [f"signals.{name}.enabled=false" for name in load_settings("local").enabled_signals]
    settings = fresh_lakehouse(*others, *clip)
    result = run_backfill(spark, settings)
    assert {o.signal for o in result.outcomes} == {"clip_image_embedding", "clip_text_embedding"}

    corpus = {r["content_id"]: r for r in DeltaTable(settings.table_root("corpus")).to_pyarrow_table().to_pylist()}
    rows = DeltaTable(settings.table_root("embeddings")).to_pyarrow_table().to_pylist()
    assert len(rows) == 2 * len(corpus)
    ok = [r for r in rows if r["status"] == "ok"]
    assert {r["dim"] for r in ok} == {64} and {r["model_version"] for r in rows} == {"1"}  # registered on first use
    images = [r for r in ok if r["signal"] == "clip_image_embedding"][:5]
    for row in images:
        expected = reference.open_clip_image_embedding(model, preprocess, corpus[row["content_id"]]["image"])
        assert np.max(np.abs(np.asarray(row["vector"]) - expected)) <= 1e-5
    tokenizer = open_clip.get_tokenizer(ARCH)
    texts = [r for r in ok if r["signal"] == "clip_text_embedding"][:5]
    for row in texts:
        item = corpus[row["content_id"]]
        text = "\n".join(p.strip() for p in (item["title"], item["description"]) if p and p.strip())[:4096]
        expected = reference.open_clip_text_embedding(model, tokenizer, text)
        assert np.max(np.abs(np.asarray(row["vector"]) - expected)) <= 1e-5
