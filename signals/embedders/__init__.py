"""Embedding signals: one module per model family, all built on `base.Embedder`."""
