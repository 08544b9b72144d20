"""How a signal runs inside a Spark Python worker. Imports pyspark and signals only."""
