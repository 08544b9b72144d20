"""Which model version a signal runs and whether a new one is better: version resolution, comparison, evaluation. Imports lake, conf and signals."""
