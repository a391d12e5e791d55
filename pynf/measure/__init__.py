"""Measuring: pynf profile, pynf plan (placement), the paper's experiments, counters."""
