"""Benchmarks (``make bench``): each writes ``results/bench/<name>.json``. Never run as timed tests."""
