"""Benchmarks (not part of `make test`): run one with `python -m benchmarks.<name>`."""
