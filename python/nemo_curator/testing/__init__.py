"""Deterministic example stages and tasks for tests, benchmarks and demos (importable by Ray workers)."""
