"""What the lakehouse stores and how: Delta tables (committed with delta-rs), the run ledger, the model registry, the analysts' view. Imports signals and conf."""
