"""Signals: what a signal is and how it is computed on one batch. Never imports pyspark."""
