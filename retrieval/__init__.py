"""Nearest-neighbour retrieval over the embedding tables: faiss indexes built from a pinned table version, updated from its changes, searched. Imports lake, conf and signals; never pyspark."""
