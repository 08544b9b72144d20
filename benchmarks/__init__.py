"""Throughput benchmark of the signals: `make bench` (python -m benchmarks.bench).

Arms, on the same generated corpus and the same signal objects (model, batch size):
- raw: decode, preprocess and forward in a plain Python loop, one process, torch on every core;
- predict_batch_udf: Spark's own `pyspark.ml.functions.predict_batch_udf`, writing plain parquet;
- ours: jobs.backfill.run_backfill end to end, Delta commit and run ledger included.
"""
