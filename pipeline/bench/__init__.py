"""Benchmarks behind ``make bench``: each writes a JSON result file."""
