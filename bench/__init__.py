"""Benchmarks. `make bench` (python -m bench) runs them all, writes bench/results.json and BENCHMARKS.md."""
