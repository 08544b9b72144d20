"""UDFs: how a signal runs inside Spark. Imports pyspark and signals, nothing from jobs."""
