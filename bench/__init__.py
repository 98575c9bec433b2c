"""Benchmarks of fastload against its peers (run with the benchmark environment, .venv-bench)."""
