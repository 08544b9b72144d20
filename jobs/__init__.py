"""Jobs: spark-submit and CLI entry points, sessions, Delta I/O, the run ledger."""
