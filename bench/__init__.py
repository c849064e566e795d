"""Benchmarks that print figures (never timed tests): run one with `python -m bench.<name>`."""
