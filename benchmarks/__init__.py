"""Benchmarks: every figure in README comes from one of these, run by a command that prints a table."""
