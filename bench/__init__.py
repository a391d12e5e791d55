"""Benchmarks and the paper's experiments (not part of the default test run)."""
