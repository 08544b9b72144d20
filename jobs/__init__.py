"""The Spark jobs (backfill, refresh, dedup) and the command line that runs them. Imports every layer below."""
