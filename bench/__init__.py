"""Benchmark of the returns service against a minimal consumer."""
