"""Benchmarks (``make bench``): speed and recognition figures, each against a measured floor."""
