"""Signals we train ourselves: human labels, weak supervision, heads on the stored embeddings, the gate."""
